"""Face crop boxes per clip, cropping with border padding, and mapping points in and out of crops.

Boxes are ``(..., 4)`` float32 ``(x0, y0, x1, y1)`` in source-frame pixels (continuous coordinates,
see ``talkjax.faces._image``), square, with *integer* corners: a crop of a box whose side equals the
output size is an exact pixel copy, and pasting it back restores the frame bit for bit. Boxes may
reach outside the frame; the missing pixels are padded when cropping. NaN boxes mark frames without
a face.

Two crop rules:

- :func:`ip_lap_boxes` — IP_LAP's: the bounding box of the 131 landmarks, +-5 px (training) or
  +-25 px (inference), made square on its long side (centre kept), per frame.
- :func:`loose_boxes` — for models that regenerate the whole face and paste it back directly
  (DCK-style, 256x256): a square of ``scale`` (default 1.5) times the long side of the landmark box,
  centred on it, so the forehead, cheeks and chin have margin. To keep the pasted face from
  jittering, the side is constant per segment (the median over the segment) and the centre is
  smoothed by a centred moving average (default 9 frames); the box is then shifted inside the frame
  when it fits (``keep_inside``), otherwise cropping pads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from talkjax.faces._image import resize
from talkjax.faces.temporal import smooth_segments

IP_LAP_TRAIN_MARGIN = 5
IP_LAP_INFERENCE_MARGIN = 25
LOOSE_SCALE = 1.5
LOOSE_SMOOTH_WINDOW = 9


def _points_box(points: np.ndarray) -> np.ndarray:
  xy = np.asarray(points, np.float64)[..., :2]
  return np.concatenate([xy.min(axis=-2), xy.max(axis=-2)], axis=-1)


def square_boxes(centres: np.ndarray, sides: np.ndarray) -> np.ndarray:
  """Square boxes with integer corners from ``(..., 2)`` centres and ``(...)`` sides.

  The side is rounded to an integer (at least 1) and the corner placed so the box centre is within
  half a pixel of the requested one. NaN in, NaN out.
  """
  centres = np.asarray(centres, np.float64)
  sides = np.asarray(sides, np.float64)
  ok = np.isfinite(sides) & np.all(np.isfinite(centres), axis=-1)
  side = np.where(ok, np.maximum(1.0, np.round(np.where(ok, sides, 1.0))), np.nan)
  corner = np.round(centres - 0.5 * side[..., None])
  boxes = np.concatenate([corner, corner + side[..., None]], axis=-1)
  return np.where(ok[..., None], boxes, np.nan).astype(np.float32)


def ip_lap_boxes(landmarks: np.ndarray, margin: float = IP_LAP_TRAIN_MARGIN) -> np.ndarray:
  """IP_LAP crop boxes: landmark bounding box +- ``margin`` px, made square.

  Args:
    landmarks: (..., 131, 2) points (NaN frames give NaN boxes).
    margin: 5 for training data (``IP_LAP_TRAIN_MARGIN``), 25 at inference.

  Returns:
    (..., 4) float32 integer-cornered square boxes in source pixels.
  """
  box = _points_box(landmarks)
  box = box + np.array([-margin, -margin, margin, margin], np.float64)
  centres = 0.5 * (box[..., :2] + box[..., 2:])
  sides = np.max(box[..., 2:] - box[..., :2], axis=-1)
  return square_boxes(centres, sides)


def _valid_segments(valid: np.ndarray) -> tuple[tuple[int, int], ...]:
  edges = np.diff(np.concatenate([[0], valid.astype(np.int8), [0]]))
  return tuple(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def loose_boxes(landmarks: np.ndarray, *, scale: float = LOOSE_SCALE,
                smooth_window: int = LOOSE_SMOOTH_WINDOW,
                segments: Iterable[tuple[int, int]] | None = None,
                frame_size: tuple[int, int] | None = None, keep_inside: bool = True) -> np.ndarray:
  """Temporally stable loose face boxes for a clip (see the module docstring).

  Args:
    landmarks: (T, N, 2) points per frame (the 131 IP_LAP points or the 468 mesh), NaN where missing.
    scale: box side / long side of the landmarks' bounding box.
    smooth_window: centred moving-average window for the box centre, in frames.
    segments: ``(start, stop)`` ranges treated as continuous shots (default: runs of finite frames,
      e.g. ``FaceTrack.segments``); the side is constant within each.
    frame_size: ``(height, width)``; with ``keep_inside``, boxes that fit are shifted into the frame.
    keep_inside: shift boxes inside the frame where they fit (requires ``frame_size``).

  Returns:
    (T, 4) float32 integer-cornered square boxes in source pixels (NaN outside segments).
  """
  landmarks = np.asarray(landmarks, np.float64)
  if landmarks.ndim != 3 or landmarks.shape[-1] != 2:
    raise ValueError(f"landmarks: expected (T, N, 2), got shape {landmarks.shape}")
  if scale <= 0:
    raise ValueError(f"scale: must be > 0, got {scale}")
  box = _points_box(landmarks)
  centres = 0.5 * (box[:, :2] + box[:, 2:])
  sides = np.max(box[:, 2:] - box[:, :2], axis=-1) * scale
  valid = np.all(np.isfinite(box), axis=-1)
  segs = _valid_segments(valid) if segments is None else tuple(segments)
  centres = smooth_segments(centres, segs, smooth_window).astype(np.float64)
  const_sides = np.full(sides.shape, np.nan)
  for s, e in segs:
    if not np.all(valid[s:e]):
      raise ValueError(f"segments: frames {s}..{e - 1} include frames without landmarks")
    const_sides[s:e] = max(1.0, np.round(np.median(sides[s:e])))  # integral before the inside-shift
  if keep_inside and frame_size is not None:
    height, width = frame_size
    for axis, limit in ((0, width), (1, height)):
      half = 0.5 * const_sides
      fits = half * 2 <= limit
      clipped = np.clip(centres[:, axis], half, limit - half)
      centres[:, axis] = np.where(fits, clipped, centres[:, axis])
  return square_boxes(centres, const_sides)


def int_box(box: np.ndarray, name: str = "box") -> tuple[int, int, int, int]:
  """A (4,) box rounded to integer ``(x0, y0, x1, y1)``; ValueError naming ``name`` if NaN or empty."""
  b = np.asarray(box, np.float64).reshape(-1)
  if b.shape != (4,) or not np.all(np.isfinite(b)):
    raise ValueError(f"{name}: expected a finite (x0, y0, x1, y1) box, got {np.asarray(box).tolist()}")
  x0, y0, x1, y1 = (int(v) for v in np.round(b))
  if x1 <= x0 or y1 <= y0:
    raise ValueError(f"{name}: empty box {b.tolist()}")
  return x0, y0, x1, y1


def crop(frame: np.ndarray, box: np.ndarray, size: int | None = None, *, pad: str = "edge",
         name: str = "box") -> np.ndarray:
  """Cuts ``box`` out of ``frame`` (padding outside the frame) and resizes it to ``size`` x ``size``.

  Args:
    frame: (H, W, C) or (H, W) image, any dtype.
    box: (4,) box in source pixels (rounded to integers).
    size: output side (None: the box's own size, an exact pixel copy).
    pad: ``"edge"`` (replicate the border pixels; no black bars for the network to see) or
      ``"zero"``.
    name: how to name the box in errors.

  Returns:
    The crop: same dtype as ``frame`` for uint8 input or an unresized crop, else float32.
  """
  if pad not in ("edge", "zero"):
    raise ValueError(f"pad: expected 'edge' or 'zero', got {pad!r}")
  frame = np.asarray(frame)
  if frame.ndim not in (2, 3):
    raise ValueError(f"frame: expected an (H, W[, C]) image, got shape {frame.shape}")
  x0, y0, x1, y1 = int_box(box, name)
  height, width = frame.shape[:2]
  fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
  if fx1 <= fx0 or fy1 <= fy0:  # entirely outside: nothing to replicate
    region = np.zeros((y1 - y0, x1 - x0) + frame.shape[2:], frame.dtype)
  else:
    region = frame[fy0:fy1, fx0:fx1]
    widths = [(fy0 - y0, y1 - fy1), (fx0 - x0, x1 - fx1)] + [(0, 0)] * (frame.ndim - 2)
    if any(a or b for a, b in widths):
      region = np.pad(region, widths, mode="edge" if pad == "edge" else "constant")
  if size is not None:
    if size < 1:
      raise ValueError(f"size: must be >= 1, got {size}")
    region = resize(np.ascontiguousarray(region), size, size)
  return np.ascontiguousarray(region)


def crop_frames(frames: Iterable[np.ndarray], boxes: np.ndarray, size: int | None = None, *,
                pad: str = "edge") -> Iterator[np.ndarray | None]:
  """Streams ``crop(frames[t], boxes[t], size)``; yields None for frames whose box is NaN."""
  boxes = np.asarray(boxes)
  for t, frame in enumerate(frames):
    if t >= len(boxes):
      raise ValueError(f"boxes: {len(boxes)} boxes for more frames than that")
    if not np.all(np.isfinite(boxes[t])):
      yield None
      continue
    yield crop(frame, boxes[t], size, pad=pad, name=f"boxes[{t}]")


def to_crop_coords(points: np.ndarray, boxes: np.ndarray, size: float) -> np.ndarray:
  """Maps (..., N, 2) source-pixel points into ``size``-pixel crops of (..., 4) ``boxes``."""
  points, boxes = np.asarray(points, np.float64), np.asarray(boxes, np.float64)
  origin = boxes[..., None, :2]
  extent = boxes[..., None, 2:] - origin
  return ((points - origin) * (size / extent)).astype(np.float32)


def from_crop_coords(points: np.ndarray, boxes: np.ndarray, size: float) -> np.ndarray:
  """Inverse of :func:`to_crop_coords`: crop pixels -> source pixels."""
  points, boxes = np.asarray(points, np.float64), np.asarray(boxes, np.float64)
  origin = boxes[..., None, :2]
  extent = boxes[..., None, 2:] - origin
  return (points * (extent / size) + origin).astype(np.float32)


def normalise_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  """Points as fractions [0, 1] of their crop box (IP_LAP's landmark normalisation)."""
  return to_crop_coords(points, boxes, 1.0)
