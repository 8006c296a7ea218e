"""Landmark distance: M-LMD (the 40 lip points) and F-LMD (all 131 points), in pixels.

Definition: for each frame, the mean over the points of the Euclidean distance between the
generated frame's landmark and the reference frame's landmark (same point), in pixels of the
evaluated frames (the generated video's size; reference frames are resized to it first); a video's
LMD is the mean over its frames where *both* frames have a detected face; a dataset's the mean over
videos. No alignment or normalisation is applied (the talking-face papers' "LMD" is this raw
distance at the evaluated size; compare numbers only at equal sizes).

Landmarks are talkjax's 131-point schema (``talkjax.landmarks``: pose 74, jaw 17, lips 40) from
the MediaPipe mesh (``talkjax.faces``), detected independently on every frame (no interpolation
across missed frames), or given by the caller.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from talkjax import landmarks as lm
from talkjax.errors import ShapeError

SUBSETS = {"mouth": lm.LIPS_SLICE, "face": slice(0, lm.NUM_POINTS)}


@dataclasses.dataclass(frozen=True)
class LandmarkDistance:
  """LMD of one video.

  Attributes:
    m_lmd: mean lip-point distance over the usable frames (NaN if none).
    f_lmd: mean all-point distance over the usable frames (NaN if none).
    frames_used: frames where both generated and reference faces were found.
    frames_total: frames compared.
  """
  m_lmd: float
  f_lmd: float
  frames_used: int
  frames_total: int


def per_frame(generated: np.ndarray, reference: np.ndarray, subset: str = "mouth") -> np.ndarray:
  """``(T, 131, 2)`` pairs -> ``(T,)`` mean point distance (NaN where either frame has no face)."""
  if subset not in SUBSETS:
    raise ShapeError(f"lmd: subset must be one of {sorted(SUBSETS)}, got {subset!r}")
  g, r = np.asarray(generated, np.float64), np.asarray(reference, np.float64)
  if g.shape != r.shape or g.ndim != 3 or g.shape[1:] != (lm.NUM_POINTS, 2):
    raise ShapeError(f"lmd: expected two (T, {lm.NUM_POINTS}, 2) landmark arrays, got {g.shape} and "
                     f"{r.shape}")
  sl = SUBSETS[subset]
  d = np.linalg.norm(g[:, sl] - r[:, sl], axis=-1)   # NaN propagates from missing faces
  return d.mean(axis=-1)


def landmark_distance(generated: np.ndarray, reference: np.ndarray) -> LandmarkDistance:
  """M-LMD and F-LMD of a video from its per-frame landmarks (NaN rows = no face)."""
  m = per_frame(generated, reference, "mouth")
  f = per_frame(generated, reference, "face")
  ok = np.isfinite(f) & np.isfinite(m)
  used = int(ok.sum())
  return LandmarkDistance(m_lmd=float(m[ok].mean()) if used else float("nan"),
                          f_lmd=float(f[ok].mean()) if used else float("nan"),
                          frames_used=used, frames_total=int(m.shape[0]))


def detect(frames, tracker=None) -> np.ndarray:
  """``(T, 131, 2)`` landmarks detected on each frame (NaN rows where no face), no gap filling."""
  from talkjax import faces  # pylint: disable=g-import-not-at-top
  track = faces.track_faces(frames, tracker=tracker, max_gap=0, smooth_window=1, keep_mesh=False)
  out = np.array(track.landmarks, np.float32)
  out[~track.detected] = np.nan
  return out
