"""Audio loading and Wav2Lip's mel-spectrogram front end (also used by IP_LAP and most successors).

- ``load``: any file FFmpeg can read (wav/flac/mp3/m4a/ogg, or the audio track of mp4/mkv/mov),
  decoded with PyAV, channels averaged, resampled with soxr "HQ" to 16 kHz mono float32. For a wav
  file this equals Wav2Lip's ``librosa.core.load(path, sr=16000)`` (same channel mean, same resampler
  and output length).
- ``melspectrogram``: ``(80, T)`` float32 at 80 frames/s, ``T = 1 + len(wav) // 200``; numerically
  Wav2Lip's ``audio.melspectrogram``. The STFT is written out here (framing, periodic Hann window,
  rfft) rather than calling ``librosa.stft`` so that the edge padding cannot change under a librosa
  upgrade: ``pad_mode="constant"`` (zeros) is what librosa >= 0.10 does and so what the ``lipsync``
  package computes today; ``pad_mode="reflect"`` is what Wav2Lip's original librosa 0.7 did, so use it
  to feed checkpoints trained with the original code base. The two differ only in the first and last
  two mel frames.
- ``mel_windows``: the 16-frame (0.2 s) mel window for each video frame.
"""

from __future__ import annotations

import functools
import logging
import math
import os

import av
import numpy as np

from talkjax.errors import AudioError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
NUM_MELS = 80
N_FFT = 800
HOP_LENGTH = 200  # 12.5 ms at 16 kHz
WIN_LENGTH = 800  # 50 ms at 16 kHz
MEL_FPS = SAMPLE_RATE // HOP_LENGTH  # 80 mel frames per second
MEL_WINDOW = 16  # mel frames per video-frame window (0.2 s)
PREEMPHASIS = 0.97
FMIN = 55.0
FMAX = 7600.0
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0

# Peak amplitude below which a waveform counts as silent (-80 dBFS, under typical dither noise).
SILENCE_PEAK = 1e-4

_PAD_MODES = ("constant", "reflect")
_MEL_CHUNK = 4096  # STFT frames per block: bounds memory for long recordings (~13 MB per block)


# ------------------------------------------------------------------------------------------------
# Loading


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
  """Resamples a 1-D waveform with soxr (quality "HQ"), exactly as ``librosa.resample``'s default.

  The output has ``ceil(len(wav) * target_sr / orig_sr)`` samples and the input's float dtype
  (float32 for integer input).

  Raises:
    AudioError: not 1-D, or a non-positive sample rate.
  """
  import soxr

  wav = np.asarray(wav)
  if wav.ndim != 1:
    raise AudioError("wav", f"resample expects a 1-D waveform, got shape {wav.shape}")
  if orig_sr <= 0 or target_sr <= 0:
    raise AudioError("wav", f"sample rates must be positive, got {orig_sr} -> {target_sr}")
  if not np.issubdtype(wav.dtype, np.floating):
    wav = wav.astype(np.float32)
  if orig_sr == target_sr or wav.size == 0:
    return wav
  n_out = int(math.ceil(wav.shape[0] * float(target_sr) / orig_sr))
  out = soxr.resample(wav, orig_sr, target_sr, quality="soxr_hq")
  if out.shape[0] < n_out:
    out = np.pad(out, (0, n_out - out.shape[0]))
  return np.asarray(out[:n_out], dtype=wav.dtype)


def _is_mp4_family(container: av.container.InputContainer) -> bool:
  return any(name in ("mov", "mp4", "m4a", "3gp", "3g2", "mj2") for name in container.format.name.split(","))


def load(path: str | os.PathLike[str], sr: int | None = SAMPLE_RATE) -> np.ndarray:
  """Loads the (first) audio stream of any media file as mono float32 at ``sr`` Hz.

  Args:
    path: wav, flac, mp3, m4a, ogg, ... or a video whose audio track to use (mp4, mkv, mov, ...).
    sr: target sample rate; ``None`` keeps the file's own rate.

  Returns:
    ``(num_samples,)`` float32, nominally in [-1, 1].

  Raises:
    AudioError: missing file, unreadable/corrupt file, no audio stream, no samples, or NaN/inf
      samples. Silent audio is returned (a face that keeps its mouth closed is a valid output)
      with a logged warning.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise AudioError(path, "file not found")
  if os.path.isdir(path):
    raise AudioError(path, "is a directory, not an audio file")
  if os.path.getsize(path) == 0:
    raise AudioError(path, "file is empty (0 bytes)")
  if sr is not None and sr <= 0:
    raise AudioError(path, f"target sample rate must be positive, got {sr}")
  try:
    container = av.open(path, mode="r")
  except av.FFmpegError as e:
    raise AudioError(path, f"cannot open (corrupt, truncated or not a media file): {e}") from e
  chunks: list[np.ndarray] = []
  try:
    if not container.streams.audio:
      raise AudioError(path, "has no audio stream")
    stream = container.streams.audio[0]
    native_sr = int(stream.sample_rate or stream.codec_context.sample_rate or 0)
    if native_sr <= 0:
      raise AudioError(path, "audio stream has no sample rate (corrupt header?)")
    # Format conversion only (to planar float32); the rate is fixed to the stream's in case a
    # frame disagrees, and resampling to ``sr`` happens below with soxr for librosa parity.
    converter = av.AudioResampler(format="fltp", rate=native_sr)
    try:
      for frame in container.decode(stream):
        for converted in converter.resample(frame):
          chunks.append(_mix_down(converted.to_ndarray()))
      for converted in converter.resample(None):
        chunks.append(_mix_down(converted.to_ndarray()))
    except av.FFmpegError as e:
      raise AudioError(path, f"decode error (corrupt or truncated?): {e}") from e
    wav = np.concatenate(chunks) if chunks else np.zeros((0,), np.float32)
    # mp4 and flac headers state the exact length (other containers' durations may be bitrate
    # estimates, so they are left alone). AAC pads its last frame to 1024 samples: trim that; far
    # fewer samples than stated means the file was cut off.
    exact = _is_mp4_family(container) or container.format.name == "flac"
    if exact and stream.duration and stream.time_base is not None:
      declared = int(round(float(stream.duration * stream.time_base) * native_sr))
      if 0 < declared < wav.shape[0] <= declared + 2048:
        wav = wav[:declared]
      elif wav.shape[0] and wav.shape[0] < declared - max(2048, declared // 100):
        raise AudioError(path, f"truncated: decoded {wav.shape[0] / native_sr:.3f} s of the "
                         f"{declared / native_sr:.3f} s the header declares")
  finally:
    container.close()

  if wav.size == 0:
    raise AudioError(path, "audio stream contains no samples")
  finite = np.isfinite(wav)
  if not finite.all():
    bad = int(wav.size - finite.sum())
    what = "all samples are" if bad == wav.size else f"{bad} of {wav.size} samples are"
    raise AudioError(path, f"{what} NaN/inf")
  if sr is not None and sr != native_sr:
    wav = resample(wav, native_sr, sr)
  if float(np.max(np.abs(wav))) < SILENCE_PEAK:
    logger.warning("%s: audio is silent (peak < %g); the generated face will keep its mouth closed",
                   path, SILENCE_PEAK)
  return np.ascontiguousarray(wav, dtype=np.float32)


def _mix_down(planes: np.ndarray) -> np.ndarray:
  planes = np.asarray(planes, dtype=np.float32)
  if planes.ndim == 1:
    return planes
  # Plain channel mean, as librosa.to_mono (FFmpeg's own downmix would weight by layout).
  return planes[0] if planes.shape[0] == 1 else np.mean(planes, axis=0)


# ------------------------------------------------------------------------------------------------
# Mel spectrogram


@functools.lru_cache(maxsize=None)
def mel_basis() -> np.ndarray:
  """The ``(80, 401)`` mel filter bank (slaney scale and norm, 55..7600 Hz), float32 like librosa's."""
  import librosa

  basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=NUM_MELS, fmin=FMIN, fmax=FMAX,
                              htk=False, norm="slaney", dtype=np.float32)
  basis.setflags(write=False)
  return basis


@functools.lru_cache(maxsize=None)
def _hann_window() -> np.ndarray:
  # Periodic ("fftbins") Hann, the STFT convention of librosa/scipy.get_window.
  n = np.arange(WIN_LENGTH, dtype=np.float64)
  window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WIN_LENGTH)
  window.setflags(write=False)
  return window


def num_mel_frames(num_samples: int) -> int:
  """Mel frames for ``num_samples`` of audio: ``1 + num_samples // 200`` (centred STFT)."""
  return 1 + int(num_samples) // HOP_LENGTH


def melspectrogram(wav: np.ndarray, *, pad_mode: str = "constant") -> np.ndarray:
  """Wav2Lip's normalised log-mel spectrogram of 16 kHz mono audio.

  Pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]``; centred STFT (n_fft 800, hop 200, periodic Hann
  window of 800) with ``pad_mode`` padding of 400 samples at each end; magnitude; 80-band mel
  projection; ``20 log10(max(1e-5, .)) - 20`` dB; ``clip(8 (dB + 100) / 100 - 4, -4, 4)``.
  Computed in float64, returned as float32.

  Args:
    wav: ``(num_samples,)`` waveform at 16 kHz.
    pad_mode: ``"constant"`` (zeros: librosa >= 0.10, the ``lipsync`` package) or ``"reflect"``
      (librosa 0.7, the original Wav2Lip repository).

  Returns:
    ``(80, 1 + num_samples // 200)`` float32 in [-4, 4].

  Raises:
    AudioError: not 1-D, empty, NaN/inf samples, or an unknown ``pad_mode``.
  """
  if pad_mode not in _PAD_MODES:
    raise AudioError("pad_mode", f"must be one of {_PAD_MODES}, got {pad_mode!r}")
  y = np.asarray(wav)
  if y.ndim != 1:
    raise AudioError("wav", f"melspectrogram expects a 1-D waveform, got shape {y.shape}")
  if y.size == 0:
    raise AudioError("wav", "waveform is empty")
  y = y.astype(np.float64)
  if not np.all(np.isfinite(y)):
    raise AudioError("wav", f"waveform contains {int(np.sum(~np.isfinite(y)))} NaN/inf samples")

  # Pre-emphasis, bit-identical to scipy.signal.lfilter([1, -k], [1], y).
  emphasized = np.empty_like(y)
  emphasized[0] = y[0]
  emphasized[1:] = y[1:] - PREEMPHASIS * y[:-1]

  half = N_FFT // 2
  padded = np.pad(emphasized, (half, half), mode=pad_mode)
  num_frames = num_mel_frames(y.shape[0])
  frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
  window = _hann_window()
  basis = mel_basis().astype(np.float64)
  out = np.empty((NUM_MELS, num_frames), np.float64)
  for start in range(0, num_frames, _MEL_CHUNK):
    block = frames[start:start + _MEL_CHUNK] * window
    magnitude = np.abs(np.fft.rfft(block, n=N_FFT, axis=-1))  # (chunk, 401)
    out[:, start:start + block.shape[0]] = basis @ magnitude.T
  min_level = math.pow(10.0, MIN_LEVEL_DB / 20.0)
  db = 20.0 * np.log10(np.maximum(min_level, out)) - REF_LEVEL_DB
  normalized = (2.0 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
  return np.clip(normalized, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Windows per video frame


def mel_start(frame_index: int | np.ndarray, fps: float = 25.0, offset: int = 0) -> np.ndarray:
  """First mel frame of video frame ``f``'s window: ``int(80 * (f + offset) / fps)`` (unclamped)."""
  f = np.asarray(frame_index, dtype=np.float64) + offset
  # 80 * integer is exact in float64 and the division is correctly rounded, so floor() is exact
  # whenever the true quotient is an integer (no 15.999... at frame boundaries). Python's int()
  # truncates toward zero; floor is the same for the non-negative indices Wav2Lip uses and the
  # sane choice for negative offsets.
  return np.floor(MEL_FPS * f / fps).astype(np.int64)


def mel_windows(mel: np.ndarray, num_frames: int, fps: float = 25.0, offset: int = 0) -> np.ndarray:
  """Cuts the 16-frame mel window of each video frame.

  Window ``f`` is ``mel[:, s:s+16]`` with ``s = int(80 * (f + offset) / fps)`` (Wav2Lip's rule for any
  frame rate), clamped to ``[0, T - 16]`` so frames past either end of the audio repeat the first or
  last full window. ``offset`` shifts the audio relative to the video (Wav2Lip's training uses the
  window starting one frame earlier, ``offset=-1``; IP_LAP centres it, ``offset=-2``).

  Args:
    mel: ``(80, T)`` from ``melspectrogram``.
    num_frames: number of video frames.
    fps: video frame rate.
    offset: whole video frames to shift the window by.

  Returns:
    ``(num_frames, 80, 16)`` float32.

  Raises:
    AudioError: wrong mel shape, mel shorter than one window, or bad ``num_frames``/``fps``.
  """
  mel = np.asarray(mel)
  if mel.ndim != 2 or mel.shape[0] != NUM_MELS:
    hint = " (transposed? expected (80, T))" if mel.ndim == 2 and mel.shape[1] == NUM_MELS else ""
    raise AudioError("mel", f"expected shape ({NUM_MELS}, T), got {mel.shape}{hint}")
  total = mel.shape[1]
  if total < MEL_WINDOW:
    raise AudioError("mel", f"has {total} frames, fewer than one {MEL_WINDOW}-frame window "
                     f"({MEL_WINDOW / MEL_FPS:.2f} s of audio); the audio is too short")
  if int(num_frames) != num_frames or num_frames < 0:
    raise AudioError("num_frames", f"must be a non-negative integer, got {num_frames!r}")
  if not (fps > 0 and math.isfinite(fps)):
    raise AudioError("fps", f"must be positive and finite, got {fps!r}")
  if int(offset) != offset:
    raise AudioError("offset", f"must be a whole number of frames, got {offset!r}")
  starts = np.clip(mel_start(np.arange(int(num_frames)), fps, int(offset)), 0, total - MEL_WINDOW)
  index = starts[:, None] + np.arange(MEL_WINDOW)[None, :]  # (F, 16)
  return np.ascontiguousarray(np.transpose(mel[:, index], (1, 0, 2)), dtype=np.float32)
