"""Viseme tracks: mouth shape over time from a timed phone sequence, with coarticulation.

Coarticulation follows Cohen & Massaro's dominance model (1993): every segment pulls each mouth
parameter towards its target with a strength ("dominance", its coarticulation resistance) that is
constant inside the segment and decays exponentially before it (anticipation) and after it
(carry-over); the parameter at time t is the dominance-weighted mean of all targets. Alveolars and
velars have low dominance and borrow the vowels' shapes; w, sh and r impose their rounding.

Lip closure is a constraint, not a target: a large dominance would have to reach far to be reached
inside a 50 ms /p/, and would then drag the neighbouring vowels shut. Instead the blended openness
is multiplied by ``1 - closure(t)``, where ``closure`` is 1 inside bilabials (and 0.85 inside
labiodentals, lower lip against the teeth) and in silence, with Gaussian flanks of ~30 ms (lips
close just before a /p/ and part right after it). A short Gaussian finally removes the kinks at
segment boundaries (lip motion is smooth).

Channels: ``openness`` (0 = lips together, 1 = widest jaw opening), ``width`` (0 = narrow /
protruded, 1 = spread) and ``roundness`` (0 = unrounded, 1 = fully rounded).
"""

from __future__ import annotations

import numpy as np

from talkjax.data.synthetic import phonemes
from talkjax.data.synthetic.script import Segment

CHANNELS = ("openness", "width", "roundness")
CONTROL_RATE = 200.0  # Hz: grid on which tracks are blended before resampling to video frames
# Exponential time constants (seconds) of the dominance functions, per channel: rounding is
# anticipated longest (it starts several phones early in real speech), jaw opening shortest.
_TAU_BEFORE = np.array([0.04, 0.07, 0.10])
_TAU_AFTER = np.array([0.03, 0.05, 0.06])
_SMOOTH_SIGMA = 0.012  # seconds


def dominance_blend(times: np.ndarray, starts: np.ndarray, ends: np.ndarray, targets: np.ndarray,
                    dominance: np.ndarray, tau_before, tau_after) -> np.ndarray:
  """Cohen-Massaro blending of per-segment targets.

  Args:
    times: (N,) seconds at which to evaluate.
    starts, ends: (S,) segment boundaries (seconds).
    targets: (S, C) target of each segment for each channel.
    dominance: (S, C) dominance magnitude inside each segment.
    tau_before, tau_after: (C,) or scalar decay constants before the start / after the end.

  Returns:
    (N, C) blended values. Every time inside some segment has a positive total weight.
  """
  times = np.asarray(times, dtype=np.float64)
  tau_before = np.asarray(tau_before, dtype=np.float64)
  tau_after = np.asarray(tau_after, dtype=np.float64)
  out = np.empty((times.shape[0], targets.shape[1]))
  for lo in range(0, times.shape[0], 1024):  # chunks bound memory on long utterances
    t = times[lo:lo + 1024, None, None]
    before = np.maximum(starts[None, :, None] - t, 0.0) / tau_before
    after = np.maximum(t - ends[None, :, None], 0.0) / tau_after
    weight = dominance[None] * np.exp(-(before + after))
    total = weight.sum(axis=1)
    out[lo:lo + 1024] = (weight * targets[None]).sum(axis=1) / np.maximum(total, 1e-12)
  return out


def gaussian_smooth(values: np.ndarray, sigma_samples: float) -> np.ndarray:
  """Smooths (N, C) along axis 0 with edge padding (no pull towards zero at the ends)."""
  if sigma_samples <= 0:
    return values
  radius = int(np.ceil(3 * sigma_samples))
  k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_samples) ** 2)
  k /= k.sum()
  padded = np.pad(values, ((radius, radius), (0, 0)), mode="edge")
  out = np.empty_like(values)
  for c in range(values.shape[1]):
    out[:, c] = np.convolve(padded[:, c], k, mode="valid")
  return out


# Closure strength of phones that constrain the lips (see the module docstring).
_CLOSURE = {"bilabial": 1.0, "labiodental": 0.85}
_CLOSURE_TAU_BEFORE = 0.035
_CLOSURE_TAU_AFTER = 0.028


def mouth_targets(segments: tuple[Segment, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per segment: (S, 3) targets, (S, 3) dominances and (S,) lip-closure strength."""
  targets = np.zeros((len(segments), 3))
  dominance = np.zeros((len(segments), 3))
  closure = np.zeros(len(segments))
  for i, seg in enumerate(segments):
    p = phonemes.PHONES[seg.phone]
    target = np.array(p.mouth, dtype=np.float64)
    dom = np.array(p.mouth_dominance, dtype=np.float64)
    if p.kind == "vowel":
      target[0] *= 0.55 + 0.45 * seg.stress  # stressed syllables are hyperarticulated
      dom *= 0.7 + 0.3 * seg.stress
    elif seg.part in ("release", "aspiration"):
      dom *= 0.1  # the articulators are already moving to the next vowel
    if p.kind == "silence":
      closure[i] = 1.0
    elif p.place in _CLOSURE and seg.part in ("", "closure"):
      closure[i] = _CLOSURE[p.place]
    targets[i], dominance[i] = target, dom
  return targets, dominance, closure


def closure_track(times: np.ndarray, segments: tuple[Segment, ...], strength: np.ndarray) -> np.ndarray:
  """(N,) lip-closure constraint in [0, 1]: max over closing segments of a plateau with Gaussian flanks."""
  starts = np.array([s.start for s in segments])[None]
  ends = np.array([s.end for s in segments])[None]
  t = np.asarray(times, dtype=np.float64)[:, None]
  out = np.zeros(t.shape[0])
  keep = strength > 0
  if not keep.any():
    return out
  starts, ends, strength = starts[:, keep], ends[:, keep], strength[keep]
  for lo in range(0, t.shape[0], 1024):
    tt = t[lo:lo + 1024]
    before = np.maximum(starts - tt, 0.0) / _CLOSURE_TAU_BEFORE
    after = np.maximum(tt - ends, 0.0) / _CLOSURE_TAU_AFTER
    out[lo:lo + 1024] = (strength[None] * np.exp(-(before ** 2 + after ** 2))).max(axis=1)
  return out


def viseme_track(segments: tuple[Segment, ...], times: np.ndarray, articulation: float = 1.0) -> np.ndarray:
  """Mouth shape at ``times`` (seconds): (N, 3) float64 (openness, width, roundness) in [0, 1].

  Args:
    segments: the utterance (``script.random_utterance``).
    times: where to sample, e.g. ``np.arange(T) / fps`` for video frames.
    articulation: speaker gain on openness.
  """
  times = np.asarray(times, dtype=np.float64)
  end = max(segments[-1].end, float(times.max(initial=0.0)))
  grid = np.arange(0.0, end + 2.0 / CONTROL_RATE, 1.0 / CONTROL_RATE)
  starts = np.array([s.start for s in segments])
  ends = np.array([s.end for s in segments])
  targets, dominance, closure = mouth_targets(segments)
  fine = dominance_blend(grid, starts, ends, targets, dominance, _TAU_BEFORE, _TAU_AFTER)
  fine[:, 0] *= articulation * (1.0 - closure_track(grid, segments, closure))
  fine = gaussian_smooth(fine, _SMOOTH_SIGMA * CONTROL_RATE)
  out = np.stack([np.interp(times, grid, fine[:, c]) for c in range(3)], axis=-1)
  return np.clip(out, 0.0, 1.0)
