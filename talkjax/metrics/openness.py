"""Openness correlation: the synthetic corpus's lip-sync yardstick as a metric.

``r`` = Pearson correlation between ``talkjax.data.synthetic.measure_mouth_openness`` measured on
the generated frames (with the clip's landmarks, which say where the mouth is) and the ground-truth
mouth openness of the synthetic clip (``<clip>.visemes.npy`` column 0, the openness the audio was
synthesised with). 1 = the generated mouth opens exactly when and as much as the speech says; ~0 =
unrelated to the speech. On the corpus's own (ground-truth) frames the yardstick reaches r > 0.95,
the ceiling to compare against.
"""

from __future__ import annotations

import numpy as np

from talkjax.errors import ShapeError


def pearson(x, y) -> float:
  """Pearson correlation of two equal-length 1-D sequences (NaN if either is constant)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape != y.shape or x.ndim != 1:
    raise ShapeError(f"pearson: expected two equal-length 1-D sequences, got {x.shape} and {y.shape}")
  if x.size < 2:
    raise ShapeError(f"pearson: need at least 2 values, got {x.size}")
  dx, dy = x - x.mean(), y - y.mean()
  den = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
  return float(np.sum(dx * dy) / den) if den > 0 else float("nan")


def openness_correlation(frames, landmarks, target_openness) -> float:
  """Pearson r between the pixel openness of ``frames`` and ``target_openness``.

  Args:
    frames: ``(T, H, W, 3)`` RGB generated frames (uint8, or float in [0, 1]).
    landmarks: ``(T, 131, 2)`` landmarks in pixels of ``frames`` (the synthetic clip's sidecar,
      scaled to the frames' size).
    target_openness: ``(T,)`` ground-truth openness (``visemes[:, 0]``).
  """
  from talkjax.data.synthetic import measure_mouth_openness  # pylint: disable=g-import-not-at-top
  target = np.asarray(target_openness, np.float64)
  if target.ndim != 1 or target.shape[0] != np.shape(frames)[0]:
    raise ShapeError(f"openness: target_openness must be ({np.shape(frames)[0]},) to match the frames, "
                     f"got {target.shape}")
  return pearson(measure_mouth_openness(frames, landmarks), target)
