"""Putting generated face crops back into the source frames.

- :func:`paste_direct` — the DCK paper's direct cover: the crop, resized to its box, replaces the
  box's pixels (clipped at the frame border). Needs a temporally stable box (``crops.loose_boxes``).
- :func:`paste_blend` — alpha blend with a soft mask in crop coordinates, so no box edge or seam is
  visible: ``out = frame * (1 - m) + crop * m``. Masks: :func:`ellipse_mask` (no landmarks needed)
  or :func:`landmark_mask` (the convex hull of the face or lower-face landmarks). Both are
  Gaussian-feathered and forced to exactly 0 along the crop border, so the blend is continuous
  across the box edge whatever the crop contains.

Crops may be uint8 (0..255) or float in [0, 1], independently of the frame's dtype; the output has
the frame's dtype.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from talkjax import landmarks as lm
from talkjax.faces._image import resize
from talkjax.faces.crops import int_box

DEFAULT_FEATHER = 0.05  # Gaussian sigma as a fraction of the crop side


def _as_frame_scale(crop: np.ndarray, frame_dtype: np.dtype, name: str) -> np.ndarray:
  """The crop as float32 in the frame's value range."""
  crop = np.asarray(crop)
  if np.issubdtype(crop.dtype, np.floating):
    if not np.all(np.isfinite(crop)):
      raise ValueError(f"{name}: contains NaN or infinite values")
    crop = crop.astype(np.float32)
    return crop * 255.0 if frame_dtype == np.uint8 else crop
  if crop.dtype != np.uint8:
    raise ValueError(f"{name}: unsupported dtype {crop.dtype} (expected uint8 or float in [0, 1])")
  crop = crop.astype(np.float32)
  return crop if frame_dtype == np.uint8 else crop / 255.0


def _placement(frame: np.ndarray, box: np.ndarray, name: str):
  x0, y0, x1, y1 = int_box(box, name)
  height, width = frame.shape[:2]
  fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
  inside = (slice(fy0, fy1), slice(fx0, fx1))
  in_crop = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
  return (x1 - x0, y1 - y0), inside, in_crop, (fx1 > fx0 and fy1 > fy0)


def _check_pair(frame: np.ndarray, crop: np.ndarray) -> None:
  if frame.ndim != 3 or crop.ndim != 3 or crop.shape[0] < 1 or crop.shape[1] < 1:
    raise ValueError(f"frame/crop: expected (H, W, C) images, got {frame.shape} and {crop.shape}")
  if frame.shape[2] != crop.shape[2]:
    raise ValueError(f"crop: has {crop.shape[2]} channels, the frame {frame.shape[2]}")


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
  if dtype == np.uint8:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
  return values.astype(dtype)


def paste_direct(frame: np.ndarray, crop: np.ndarray, box: np.ndarray, *, name: str = "box") -> np.ndarray:
  """Returns a copy of ``frame`` with ``crop`` resized onto ``box`` (clipped at the border)."""
  frame, crop = np.asarray(frame), np.asarray(crop)
  _check_pair(frame, crop)
  (bw, bh), inside, in_crop, visible = _placement(frame, box, name)
  out = frame.copy()
  if not visible:
    return out
  if crop.dtype == frame.dtype and crop.shape[:2] == (bh, bw):
    out[inside] = crop[in_crop]  # exact copy, no resampling
    return out
  patch = _as_frame_scale(crop, frame.dtype, "crop")
  patch = resize(patch, bw, bh)
  out[inside] = _to_dtype(patch[in_crop], frame.dtype)
  return out


def paste_blend(frame: np.ndarray, crop: np.ndarray, box: np.ndarray, mask: np.ndarray, *,
                name: str = "box") -> np.ndarray:
  """Returns ``frame`` with ``crop`` blended onto ``box`` through ``mask``.

  Args:
    frame: (H, W, C) source frame.
    crop: (S, S, C) generated face (uint8 or float in [0, 1]).
    box: (4,) box the crop was cut from, source pixels.
    mask: (S', S') float weights in [0, 1] in crop coordinates (resized to the box with the crop).
  """
  frame, crop, mask = np.asarray(frame), np.asarray(crop), np.asarray(mask, np.float32)
  _check_pair(frame, crop)
  if mask.ndim != 2:
    raise ValueError(f"mask: expected an (S, S) weight map, got shape {mask.shape}")
  if not np.all(np.isfinite(mask)) or mask.min() < 0 or mask.max() > 1:
    raise ValueError("mask: weights must be finite and in [0, 1]")
  (bw, bh), inside, in_crop, visible = _placement(frame, box, name)
  out = frame.copy()
  if not visible:
    return out
  patch = resize(_as_frame_scale(crop, frame.dtype, "crop"), bw, bh)[in_crop]
  m = np.clip(resize(mask, bw, bh), 0.0, 1.0)[in_crop][..., None]
  region = frame[inside].astype(np.float32)
  out[inside] = _to_dtype(region + m * (patch - region), frame.dtype)
  return out


def _border_taper(size: int, width: float) -> np.ndarray:
  """(S, S) weights: 0 on the outermost pixels, a smooth ramp over ``width`` pixels, then 1."""
  d = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32)
  r = np.clip(d / max(width, 1e-6), 0.0, 1.0)
  r = r * r * (3.0 - 2.0 * r)  # smoothstep: no kink where the ramp meets 1
  return np.outer(r, r)


def _feather(binary: np.ndarray, sigma: float) -> np.ndarray:
  size = binary.shape[0]
  soft = ndimage.gaussian_filter(binary.astype(np.float32), sigma, mode="constant") if sigma > 0 else binary
  return np.clip(soft * _border_taper(size, 2.0 * sigma), 0.0, 1.0).astype(np.float32)


def ellipse_mask(size: int, *, centre: tuple[float, float] = (0.5, 0.52),
                 radii: tuple[float, float] = (0.36, 0.38), feather: float = DEFAULT_FEATHER) -> np.ndarray:
  """(S, S) float32 Gaussian-feathered ellipse; centre and radii as fractions of ``size``.

  The defaults cover the face in a loose crop (``crops.loose_boxes``: the landmarks span the middle
  2/3 of it) from the brows to below the chin, and leave two feather widths (2 sigma) between the
  ellipse and the crop border, so the mask has decayed to ~0 before the border taper acts.
  """
  if size < 2:
    raise ValueError(f"size: must be >= 2, got {size}")
  yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
  inside = ((xx - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 <= 1.0
  return _feather(inside, feather * size)


LOWER_FACE_POINTS = tuple(range(lm.JAW_SLICE.start, lm.JAW_SLICE.stop)) + tuple(range(33, 42)) + (2, 3, 4, 5)
"""Indices into the 131 points outlining the lower face: jaw, nose base, lower cheek contour."""


def landmark_mask(points: np.ndarray, size: int, *, region: str = "face", feather: float = DEFAULT_FEATHER,
                  grow: float = 0.0) -> np.ndarray:
  """(S, S) float32 feathered mask of the convex hull of face landmarks, in crop coordinates.

  Args:
    points: (131, 2) IP_LAP landmarks in crop pixels (``crops.to_crop_coords``), or any (N, 2) points
      with ``region="points"``.
    size: crop side S.
    region: ``"face"`` (all 131 points: eyebrows to chin), ``"lower"`` (jaw, nose base and lower
      cheeks: the part mouth-editing models change) or ``"points"`` (all given points).
    feather: Gaussian sigma as a fraction of ``size``.
    grow: scale the hull about its centroid by ``1 + grow`` before feathering.
  """
  pts = np.asarray(points, np.float64)
  if pts.ndim != 2 or pts.shape[1] != 2:
    raise ValueError(f"points: expected (N, 2), got shape {pts.shape}")
  if region == "face" or region == "lower":
    if pts.shape[0] != lm.NUM_POINTS:
      raise ValueError(f"points: region {region!r} needs the {lm.NUM_POINTS} IP_LAP points, "
                       f"got {pts.shape[0]}")
    if region == "lower":
      pts = pts[list(LOWER_FACE_POINTS)]
  elif region != "points":
    raise ValueError(f"region: expected 'face', 'lower' or 'points', got {region!r}")
  if not np.all(np.isfinite(pts)):
    raise ValueError("points: contain NaN (no face on this frame?)")
  try:
    hull = pts[ConvexHull(pts).vertices]
  except QhullError as e:
    raise ValueError(f"points: degenerate (collinear or coincident), no face outline ({e})") from e
  centre = hull.mean(axis=0)
  hull = centre + (hull - centre) * (1.0 + grow)
  img = Image.new("L", (size, size), 0)
  ImageDraw.Draw(img).polygon([tuple(p) for p in hull.tolist()], fill=1)
  return _feather(np.asarray(img), feather * size)


def paste_frames(frames: Iterable[np.ndarray], crops: Iterable[np.ndarray | None], boxes: np.ndarray,
                 masks: np.ndarray | Iterable[np.ndarray] | None = None) -> Iterator[np.ndarray]:
  """Streams pasted frames; frames whose crop is None or box is NaN pass through unchanged.

  ``masks``: None (direct cover), one (S, S) mask for every frame, or an iterable of per-frame masks.
  """
  boxes = np.asarray(boxes)
  per_frame = masks is not None and not (isinstance(masks, np.ndarray) and masks.ndim == 2)
  mask_iter = iter(masks) if per_frame else None
  for t, (frame, crop_t) in enumerate(zip(frames, crops, strict=True)):
    m = next(mask_iter) if mask_iter is not None else masks
    if crop_t is None or not np.all(np.isfinite(boxes[t])):
      yield np.asarray(frame)
    elif m is None:
      yield paste_direct(frame, crop_t, boxes[t], name=f"boxes[{t}]")
    else:
      yield paste_blend(frame, crop_t, boxes[t], m, name=f"boxes[{t}]")
