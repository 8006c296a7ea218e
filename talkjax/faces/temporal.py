"""Clip-level post-processing of per-frame face results: gap filling and zero-lag smoothing.

Pure NumPy on small (T, ...) arrays; used by the tracker and the crop rules.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def plan_gaps(detected: np.ndarray, max_gap: int) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
  """Which undetected frames to interpolate, and the resulting segments.

  Args:
    detected: (T,) bool, frames with a face.
    max_gap: longest run of undetected frames between two detected ones that is interpolated.

  Returns:
    ``(interpolated, segments)``: a (T,) bool mask of frames to fill, and the half-open
    ``(start, stop)`` frame ranges of consecutive usable (detected or interpolated) frames.
  """
  detected = np.asarray(detected, bool)
  t = detected.shape[0]
  idx = np.arange(t)
  prev = np.maximum.accumulate(np.where(detected, idx, -1)) if t else idx
  nxt = np.minimum.accumulate(np.where(detected, idx, t)[::-1])[::-1] if t else idx
  interpolated = (~detected) & (prev >= 0) & (nxt < t) & (nxt - prev - 1 <= max_gap)
  valid = (detected | interpolated).astype(np.int8)
  edges = np.diff(np.concatenate([[0], valid, [0]]))
  starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
  return interpolated, tuple((int(a), int(b)) for a, b in zip(starts, stops))


def interpolate_gaps(values: np.ndarray, detected: np.ndarray, interpolated: np.ndarray) -> np.ndarray:
  """Fills ``values[interpolated]`` linearly from the nearest detected frames on both sides.

  ``values`` is (T, ...); frames neither detected nor interpolated are set to NaN.
  """
  out = np.array(values, dtype=np.float32, copy=True)
  detected, interpolated = np.asarray(detected, bool), np.asarray(interpolated, bool)
  t = out.shape[0]
  out[~(detected | interpolated)] = np.nan
  if not np.any(interpolated):
    return out
  idx = np.arange(t)
  prev = np.maximum.accumulate(np.where(detected, idx, -1))
  nxt = np.minimum.accumulate(np.where(detected, idx, t)[::-1])[::-1]
  f = np.flatnonzero(interpolated)
  w = ((f - prev[f]) / (nxt[f] - prev[f])).astype(np.float32).reshape((-1,) + (1,) * (out.ndim - 1))
  out[f] = out[prev[f]] * (1.0 - w) + out[nxt[f]] * w
  return out


def smooth_segments(values: np.ndarray, segments: Iterable[tuple[int, int]], window: int) -> np.ndarray:
  """Centred moving average of (T, ...) ``values`` inside each segment; NaN outside them.

  Frame ``i`` of segment ``[s, e)`` averages ``values[i-r : i+r+1]`` with
  ``r = min(window // 2, i - s, e - 1 - i)``: symmetric everywhere, so it adds no lag or drift.
  """
  values = np.asarray(values, np.float64)
  out = np.full(values.shape, np.nan, np.float32)
  half = max(0, int(window) // 2)
  for s, e in segments:
    seg = values[s:e]
    n = e - s
    csum = np.concatenate([np.zeros((1,) + seg.shape[1:]), np.cumsum(seg, axis=0)], axis=0)
    i = np.arange(n)
    r = np.minimum(half, np.minimum(i, n - 1 - i))
    shape = (-1,) + (1,) * (seg.ndim - 1)
    out[s:e] = (csum[i + r + 1] - csum[i - r]) / (2 * r + 1).reshape(shape)
  return out


class OneEuroFilter:
  """Causal one-euro filter (Casiez et al., CHI 2012) for streaming use (live / TTS-driven video).

  The offline pipeline smooths with :func:`smooth_segments` (zero lag, needs the whole clip); a
  stream cannot look ahead, so it needs a causal filter, and the one-euro filter trades jitter for
  lag adaptively: slow motion gets a low cutoff (``min_cutoff`` Hz: steady boxes), fast motion a
  higher one (``+ beta * speed``: little lag). Works elementwise on arrays of any fixed shape, e.g. a
  (4,) box or (131, 2) landmarks.

  Args:
    fps: frame rate of the stream.
    min_cutoff: cutoff frequency (Hz) at rest.
    beta: cutoff increase per unit of speed (units/s); 0 gives a plain first-order low-pass.
    d_cutoff: cutoff (Hz) of the low-pass applied to the speed estimate.
  """

  def __init__(self, fps: float = 25.0, *, min_cutoff: float = 1.0, beta: float = 0.05,
               d_cutoff: float = 1.0):
    if fps <= 0 or min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
      raise ValueError(f"OneEuroFilter: need fps, min_cutoff, d_cutoff > 0 and beta >= 0, got "
                       f"fps={fps}, min_cutoff={min_cutoff}, d_cutoff={d_cutoff}, beta={beta}")
    self.dt = 1.0 / fps
    self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
    self.reset()

  def reset(self) -> None:
    """Forgets the state (e.g. after a cut or a lost face)."""
    self._x: np.ndarray | None = None
    self._dx: np.ndarray | None = None

  def _alpha(self, cutoff):
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / self.dt)

  def __call__(self, x: np.ndarray) -> np.ndarray:
    """Filters the next sample; returns the smoothed value (float64, same shape)."""
    x = np.asarray(x, np.float64)
    if self._x is None:
      self._x, self._dx = x.copy(), np.zeros_like(x)
      return x.copy()
    if x.shape != self._x.shape:
      raise ValueError(f"OneEuroFilter: sample shape {x.shape} differs from the first one's {self._x.shape}")
    a_d = self._alpha(self.d_cutoff)
    self._dx = self._dx + a_d * ((x - self._x) / self.dt - self._dx)
    a = self._alpha(self.min_cutoff + self.beta * np.abs(self._dx))
    self._x = self._x + a * (x - self._x)
    return self._x.copy()
