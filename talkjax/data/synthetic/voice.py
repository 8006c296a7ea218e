"""A source-filter speech synthesiser (Klatt-style, vectorised in the STFT domain).

Sources: a glottal pulse train (Rosenberg flow-derivative pulses) with per-speaker f0, per-cycle
jitter and shimmer, pitch declination and accents on stressed syllables; and white noise for
frication, stop bursts, aspiration and breathiness.

Filters, applied per 8 ms STFT frame: the vocal-tract transfer function as a cascade of five
two-pole resonances (F1..F3 tracks blended from the phone sequence with the same dominance model
as the mouth, so formant transitions and lip motion come from one articulatory timeline; F4, F5
fixed), an extra low-pass for nasal murmur and voice bars, and a band-pass per fricative / burst
place (s high, sh mid, f flat and weak, p low, t high, k mid).

Why the STFT domain: the filters change every few milliseconds, and a per-sample time-varying IIR
cascade is a Python loop; multiplying spectra frame by frame is exact enough at an 8 ms hop, fully
vectorised, and deterministic.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from talkjax.data.synthetic import phonemes
from talkjax.data.synthetic.script import Segment
from talkjax.data.synthetic.speakers import Voice
from talkjax.data.synthetic.visemes import dominance_blend, gaussian_smooth

N_FFT = 512
HOP = 128
_BANDWIDTHS = np.array([80.0, 110.0, 150.0, 220.0, 300.0])
_HIGH_FORMANTS = np.array([3500.0, 4500.0])
_OPEN_PHASE, _CLOSING_PHASE = 0.42, 0.16  # Rosenberg pulse shape, fractions of a period
_SPEECH_RMS = 0.08  # about -22 dBFS over voiced frames
_NOISE_FLOOR = 10 ** (-58 / 20)  # relative to _SPEECH_RMS: room / microphone noise
_FRICATION_GAIN = 6.0  # frication / burst noise relative to voicing, calibrated so /s/ is ~5 dB below a vowel
_ASPIRATION_GAIN = 0.8
_ENVELOPE_RATE = 1000.0  # Hz: grid on which the source amplitudes are smoothed


def _segment_source_params(segments: tuple[Segment, ...]) -> np.ndarray:
  """(S, 7): voice amplitude, low-pass cutoff (Hz), frication gain, frication centre, bandwidth,
  aspiration gain, accent weight."""
  out = np.zeros((len(segments), 7))
  for i, seg in enumerate(segments):
    p = phonemes.PHONES[seg.phone]
    loud = seg.stress ** 1.3
    voice, cutoff, fric, asp = 0.0, 1e5, 0.0, 0.0
    centre, bw, gain = p.noise
    if p.kind == "vowel":
      voice = loud
    elif p.kind == "approximant":
      voice = 0.55 * loud
    elif p.kind == "nasal":
      voice, cutoff = 0.5 * loud, 700.0
    elif p.kind == "fricative":
      fric = gain
      voice = 0.25 * loud if p.voiced else 0.0
      cutoff = 900.0 if p.voiced else cutoff
    elif p.kind == "stop":
      if seg.part == "closure":
        voice, cutoff = (0.07, 350.0) if p.voiced else (0.0, cutoff)
      elif seg.part == "release":
        fric = gain
        voice = 0.2 * loud if p.voiced else 0.0
      else:  # aspiration
        asp = 0.35
    elif p.kind == "aspirate":
      asp = 0.3
    accent = max(seg.stress - 0.8, 0.0) / 0.35 if p.kind == "vowel" else 0.0
    out[i] = (voice, cutoff, fric, centre, bw, asp, accent)
  return out


def _glottal_source(f0: np.ndarray, voice: Voice, rng: np.random.Generator, sr: int) -> np.ndarray:
  """Rosenberg flow-derivative pulse train following the per-sample f0, with jitter and shimmer."""
  phase0 = np.cumsum(f0 / sr)
  n_cycles = int(phase0[-1]) + 2
  jitter = 1.0 + voice.jitter * rng.standard_normal(n_cycles)
  shimmer = np.clip(1.0 + voice.shimmer * rng.standard_normal(n_cycles), 0.2, None)
  phase = np.cumsum(f0 * jitter[phase0.astype(np.int64)] / sr)
  cycle = phase.astype(np.int64)
  frac = phase - cycle
  op, cl = _OPEN_PHASE, _CLOSING_PHASE
  rising = frac < op
  falling = (frac >= op) & (frac < op + cl)
  d = np.zeros_like(frac)
  d[rising] = np.sin(np.pi * frac[rising] / op) / op
  d[falling] = -np.sin(0.5 * np.pi * (frac[falling] - op) / cl) / cl
  return d * shimmer[np.minimum(cycle, n_cycles - 1)]


def _stft(x: np.ndarray, window: np.ndarray, n_frames: int) -> np.ndarray:
  padded = np.pad(x, (N_FFT // 2, N_FFT // 2 + n_frames * HOP))
  frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
  return np.fft.rfft(frames * window, axis=-1)


def _istft(spec: np.ndarray, window: np.ndarray, n_samples: int) -> np.ndarray:
  frames = np.fft.irfft(spec, n=N_FFT, axis=-1) * window
  k = frames.shape[0]
  out = np.zeros((k + N_FFT // HOP) * HOP)
  norm = np.zeros_like(out)
  w2 = window ** 2
  for j in range(N_FFT // HOP):  # overlap-add, one hop-sized quarter of every frame at a time
    sl = slice(j * HOP, (j + 1) * HOP)
    out[j * HOP:j * HOP + k * HOP] += frames[:, sl].reshape(-1)
    norm[j * HOP:j * HOP + k * HOP] += np.tile(w2[sl], k)
  out /= np.maximum(norm, 1e-8)
  return out[N_FFT // 2:N_FFT // 2 + n_samples]


def _resonances(freqs: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
  """|H| of a cascade of unit-DC-gain two-pole resonators: (K, F) from (K, R) formants."""
  w = 2 * np.pi * freqs[None, :, None]
  sigma = np.pi * bandwidths
  w0 = 2 * np.pi * formants[:, None, :]
  a = sigma ** 2 + w0 ** 2
  mag = a / np.sqrt((a - w ** 2) ** 2 + (2 * sigma * w) ** 2)
  return mag.prod(axis=-1)


def f0_contour(times: np.ndarray, segments: tuple[Segment, ...], voice: Voice,
               rng: np.random.Generator) -> np.ndarray:
  """f0 (Hz) at ``times``: declination over each phrase, accents on stressed vowels, slow drift."""
  params = _segment_source_params(segments)
  starts = np.array([s.start for s in segments])
  ends = np.array([s.end for s in segments])
  seg_index = np.minimum(np.searchsorted(ends, times, side="right"), len(segments) - 1)
  accent = params[seg_index, 6]
  dt = float(times[1] - times[0]) if times.shape[0] > 1 else 0.01
  accent = gaussian_smooth(accent[:, None], 0.06 / dt)[:, 0]
  # Declination: each phrase (run of speech between silences) starts high and falls.
  is_sil = np.array([s.phone == "sil" for s in segments])
  phrase_pos = np.zeros_like(times)
  for a, b in _runs(~is_sil):
    t0, t1 = starts[a], ends[b - 1]
    m = (times >= t0) & (times < t1)
    phrase_pos[m] = (times[m] - t0) / max(t1 - t0, 1e-3)
  semitones = voice.f0_range * accent + 1.5 * (0.5 - phrase_pos)
  drift_freq = rng.uniform(0.2, 0.6)
  semitones += 0.6 * np.sin(2 * np.pi * drift_freq * times + rng.uniform(0, 2 * np.pi))
  return voice.f0 * 2.0 ** (semitones / 12.0)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
  """[start, end) index runs where ``mask`` is True."""
  edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
  return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def synthesize(segments: tuple[Segment, ...], voice: Voice, num_samples: int, rng: np.random.Generator,
               sr: int = 16000) -> np.ndarray:
  """Speech for an utterance.

  Args:
    segments: the timed phones (``script.random_utterance``), covering the clip.
    voice: the speaker's voice.
    num_samples: length of the output.
    rng: randomness for jitter, shimmer, noise and level (the output is a pure function of its state).
    sr: sample rate.

  Returns:
    (num_samples,) float32 in [-1, 1], speech at about -22 dBFS RMS over voiced parts.
  """
  n_frames = num_samples // HOP + 1
  frame_times = np.arange(n_frames) * HOP / sr
  starts = np.array([s.start for s in segments])
  ends = np.array([s.end for s in segments])

  # Formant tracks share the articulatory timeline with the mouth.
  targets = np.array([phonemes.PHONES[s.phone].formants for s in segments], dtype=np.float64)
  dom = np.array([phonemes.PHONES[s.phone].formant_dominance for s in segments])[:, None].repeat(3, axis=1)
  formants = dominance_blend(frame_times, starts, ends, targets, dom, 0.025, 0.025) * voice.formant_scale
  formants = np.concatenate([formants, np.broadcast_to(_HIGH_FORMANTS * voice.formant_scale, (n_frames, 2))],
                            axis=1)

  params = _segment_source_params(segments)
  frame_seg = np.minimum(np.searchsorted(ends, frame_times, side="right"), len(segments) - 1)
  cutoff = params[frame_seg, 1]
  # Noise spectra switch per frame; frames of segments without noise borrow the nearest noisy
  # segment's shape so a fricative's first and last milliseconds are not shaped by the vowel.
  noisy = np.flatnonzero(params[:, 2] > 0)
  if noisy.size:
    nearest = noisy[np.abs(noisy[None, :] - frame_seg[:, None]).argmin(axis=1)]
  else:
    nearest = frame_seg
  centre, bw = params[nearest, 3], params[nearest, 4]

  # Amplitudes are applied per sample (sharp stop closures); spectra per 8 ms frame.
  sample_times = np.arange(num_samples) / sr
  # The envelopes are smoothed (3 ms Gaussian) on a 1 kHz grid, then interpolated to the audio rate.
  env_times = np.arange(int(np.ceil(num_samples / sr * _ENVELOPE_RATE)) + 1) / _ENVELOPE_RATE
  env_seg = np.minimum(np.searchsorted(ends, env_times, side="right"), len(segments) - 1)
  env = scipy.ndimage.gaussian_filter1d(params[env_seg][:, [0, 2, 5]], 0.003 * _ENVELOPE_RATE, axis=0,
                                        mode="nearest")
  amps = [np.interp(sample_times, env_times, env[:, c]) for c in range(3)]
  voice_amp, fric_amp, asp_amp = amps[0], amps[1], amps[2] + voice.breathiness * amps[0]

  f0 = np.interp(sample_times, frame_times, f0_contour(frame_times, segments, voice, rng))
  glottal = _glottal_source(f0, voice, rng, sr)
  glottal /= np.sqrt(np.mean(glottal ** 2)) + 1e-12
  noise = rng.standard_normal(num_samples)

  window = np.hanning(N_FFT + 1)[:N_FFT]
  freqs = np.fft.rfftfreq(N_FFT, 1.0 / sr)
  tract = _resonances(freqs, formants, _BANDWIDTHS)
  tilt = 10 ** (voice.tilt / 20 * np.log2(np.maximum(freqs, 500.0) / 500.0))
  lowpass = 1.0 / np.sqrt(1.0 + (freqs[None] / cutoff[:, None]) ** 4)
  band = np.exp(-0.5 * ((freqs[None] - centre[:, None]) / (0.5 * bw[:, None])) ** 2)
  g_spec = _stft(glottal, window, n_frames)
  n_spec = _stft(noise, window, n_frames)
  y = (voice_amp * _istft(g_spec * (tract * tilt[None] * lowpass), window, num_samples)
       + fric_amp * _istft(n_spec * (band * _FRICATION_GAIN), window, num_samples)
       + asp_amp * _istft(n_spec * (tract * _ASPIRATION_GAIN), window, num_samples))

  voiced = voice_amp > 0.5
  level = np.sqrt(np.mean(y[voiced] ** 2)) if voiced.any() else np.sqrt(np.mean(y ** 2)) + 1e-12
  y = y * (_SPEECH_RMS * rng.uniform(0.7, 1.3) / max(level, 1e-12))
  y = y + _SPEECH_RMS * _NOISE_FLOOR * rng.standard_normal(num_samples)
  peak = np.max(np.abs(y))
  if peak > 0.95:
    y *= 0.95 / peak
  return y.astype(np.float32)
