"""MFCCs exactly as ``python_speech_features.mfcc`` computes them with its defaults (NumPy, float64).

This is the audio front end of joonson's SyncNet (and so of LSE-C / LSE-D), which calls
``python_speech_features.mfcc(audio, 16000)`` on the **int16** samples read by
``scipy.io.wavfile``: the features depend on that scale (log energies shift by ``2 * log(32768)``),
so callers pass int16-scaled samples (see :func:`to_int16_scale`).

The defaults, step by step:

1. pre-emphasis ``y[0] = x[0]``, ``y[n] = x[n] - 0.97 x[n-1]``;
2. frames of 400 samples (25 ms) every 160 (10 ms), ``1 + ceil((N - 400) / 160)`` of them (one
   frame if ``N <= 400``), the last one zero-padded; no window (rectangular);
3. power spectrum ``|rfft(frame, 512)|^2 / 512`` (257 bins); frame energy = its sum (0 -> eps);
4. 26 triangular mel filters between 0 Hz and ``sr / 2``: mel = 2595 log10(1 + f / 700), 28 points
   evenly spaced in mel, FFT bins ``floor((512 + 1) * f / sr)``, unnormalised triangles rising over
   ``[b[j], b[j+1])`` and falling over ``[b[j+1], b[j+2])``; filterbank energies (0 -> eps);
5. ``log``, orthonormal DCT-II, first 13 coefficients;
6. sinusoidal lifter ``1 + 11 sin(pi n / 22)``;
7. coefficient 0 replaced by the log frame energy.

(eps is ``numpy.finfo(float).eps``.) Output ``(num_frames, 13)``, 100 frames per second.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from talkjax.errors import AudioError

SAMPLE_RATE = 16000
WIN_LENGTH = 400       # 25 ms
HOP_LENGTH = 160       # 10 ms
N_FFT = 512
NUM_FILTERS = 26
NUM_CEPS = 13
PREEMPHASIS = 0.97
CEP_LIFTER = 22
INT16_SCALE = 32768.0
_EPS = np.finfo(np.float64).eps


def to_int16_scale(wav: np.ndarray) -> np.ndarray:
  """Float audio in [-1, 1] -> the int16 values FFmpeg's ``pcm_s16le`` encoder would write.

  FFmpeg converts float samples with ``clip(lrintf(x * 32768))``; a wav that was int16 to begin
  with (decoded as ``x / 32768``) comes back bit-exact. Returned as float64 (the values are integers).
  """
  wav = np.asarray(wav)
  if np.issubdtype(wav.dtype, np.integer):
    return wav.astype(np.float64)
  if wav.size and np.nanmax(np.abs(wav)) > 2.0:
    raise AudioError("<samples>", f"float audio must be in [-1, 1] (peak {np.nanmax(np.abs(wav)):.4g}); pass "
                     "int16 samples as an integer array")
  scaled = np.rint(wav.astype(np.float32) * np.float32(INT16_SCALE))
  return np.clip(scaled, -32768, 32767).astype(np.float64)


def _hz_to_mel(hz):
  return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def _mel_to_hz(mel):
  return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int = SAMPLE_RATE, num_filters: int = NUM_FILTERS,
                   n_fft: int = N_FFT) -> np.ndarray:
  """``(num_filters, n_fft // 2 + 1)`` triangular filters (python_speech_features' layout)."""
  mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), num_filters + 2)
  edges = np.floor((n_fft + 1) * _mel_to_hz(mels) / sample_rate).astype(np.int64)
  bank = np.zeros((num_filters, n_fft // 2 + 1), np.float64)
  bins = np.arange(n_fft // 2 + 1)
  for j in range(num_filters):
    lo, mid, hi = edges[j], edges[j + 1], edges[j + 2]
    rising = (bins >= lo) & (bins < mid)
    falling = (bins >= mid) & (bins < hi)
    bank[j, rising] = (bins[rising] - lo) / (mid - lo)
    bank[j, falling] = (hi - bins[falling]) / (hi - mid)
  bank.setflags(write=False)
  return bank


@functools.lru_cache(maxsize=4)
def _dct_matrix(n: int, k: int) -> np.ndarray:
  """First ``k`` rows of the orthonormal DCT-II matrix of size ``n`` (scipy's ``norm='ortho'``)."""
  i = np.arange(n)[None, :]
  m = np.arange(k)[:, None]
  mat = np.cos(np.pi * m * (2 * i + 1) / (2 * n)) * math.sqrt(2.0 / n)
  mat[0] /= math.sqrt(2.0)
  mat.setflags(write=False)
  return mat


def num_frames(num_samples: int) -> int:
  """MFCC frames python_speech_features produces for ``num_samples`` samples."""
  if num_samples <= WIN_LENGTH:
    return 1
  return 1 + int(math.ceil((num_samples - WIN_LENGTH) / HOP_LENGTH))


def mfcc(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """13 MFCCs per 10 ms: ``python_speech_features.mfcc(samples, sample_rate)`` with its defaults.

  Args:
    samples: ``(N,)`` mono audio on the scale the caller means (SyncNet: int16 values, see
      :func:`to_int16_scale`); any real dtype.
    sample_rate: only 16 kHz is meaningful for SyncNet; the window and hop are 25 ms / 10 ms of it.

  Returns:
    ``(num_frames(N), 13)`` float64.
  """
  x = np.asarray(samples)
  if x.ndim != 1:
    raise AudioError("<samples>", f"expected mono (N,) audio for MFCCs, got shape {x.shape}")
  if x.size == 0:
    raise AudioError("<samples>", "no samples to compute MFCCs from")
  x = x.astype(np.float64)
  if not np.all(np.isfinite(x)):
    raise AudioError("<samples>", "audio contains NaN or inf")
  # python_speech_features rounds half up (decimal ROUND_HALF_UP), not to even.
  win = int(math.floor(0.025 * sample_rate + 0.5))
  hop = int(math.floor(0.01 * sample_rate + 0.5))
  emphasised = np.concatenate([x[:1], x[1:] - PREEMPHASIS * x[:-1]])
  n = 1 if x.size <= win else 1 + int(math.ceil((x.size - win) / hop))
  padded = np.zeros(((n - 1) * hop + win,), np.float64)
  padded[:x.size] = emphasised
  frames = np.lib.stride_tricks.sliding_window_view(padded, win)[::hop][:n]
  power = np.square(np.abs(np.fft.rfft(frames, N_FFT))) / N_FFT
  energy = power.sum(axis=1)
  energy = np.where(energy == 0, _EPS, energy)
  feats = power @ mel_filterbank(sample_rate, NUM_FILTERS, N_FFT).T
  feats = np.where(feats == 0, _EPS, feats)
  ceps = np.log(feats) @ _dct_matrix(NUM_FILTERS, NUM_CEPS).T
  lift = 1.0 + (CEP_LIFTER / 2.0) * np.sin(np.pi * np.arange(NUM_CEPS) / CEP_LIFTER)
  ceps = ceps * lift
  ceps[:, 0] = np.log(energy)
  return ceps
