"""Projection of the canonical face into the frame, backgrounds, and rasterisation.

Pixel coordinates (landmarks included) put the origin at the top-left *corner* of the image: pixel
``(i, j)`` covers ``[j, j+1) x [i, i+1)`` and its centre is at ``(j + 0.5, i + 0.5)``, as with
MediaPipe's normalised coordinates times the frame size.

The head is a rigid 3-D body: canonical points are rotated (yaw, pitch, roll) about a pivot inside
the head, projected orthographically, scaled so the face (top of the head to the chin) spans
``FACE_FRACTION`` of the frame height, and translated. Neck and shirt follow half the head's
translation and none of its rotation.

Rasterisation: PIL fills the polygons on a canvas ``supersample`` times larger than the frame, which
is then box-filtered down, giving anti-aliased edges (coverage quantised to 1 / supersample**2).
All geometry is computed for the whole clip at once with NumPy; the per-frame loop only issues the
PIL calls.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw

from talkjax.data.synthetic.face import FaceFrames
from talkjax.data.synthetic.motion import HeadTrack
from talkjax.data.synthetic.speakers import Appearance

FACE_FRACTION = 0.6
_HEAD_TOP, _CHIN = -1.08, 0.72  # canonical extent used to size the face in the frame
_PIVOT = np.array([0.0, 0.2, -0.35])
_BODY_FOLLOW = 0.5  # fraction of the head's translation that the body follows


def default_supersample(size: int) -> int:
  """Canvas factor: 4 for small frames (where the mouth is a few pixels tall), 2 from 192 px up."""
  return 4 if size < 192 else 2


def pixels_per_unit(size: int, appearance: Appearance) -> float:
  """Frame pixels per canonical face unit at head scale 1."""
  return FACE_FRACTION * size / (_CHIN - _HEAD_TOP) * appearance.face_size


def project(points: np.ndarray, track: HeadTrack, size: int, appearance: Appearance,
            body: bool = False) -> np.ndarray:
  """(T, n, 3) canonical points -> (T, n, 2) float64 pixel coordinates (corner convention)."""
  p = np.asarray(points, dtype=np.float64) - _PIVOT
  x, y, z = p[..., 0], p[..., 1], p[..., 2]
  if not body:
    yaw, pitch, roll = (np.asarray(getattr(track, k))[:, None] for k in ("yaw", "pitch", "roll"))
    x, z = x * np.cos(yaw) + z * np.sin(yaw), -x * np.sin(yaw) + z * np.cos(yaw)
    y, z = y * np.cos(pitch) + z * np.sin(pitch), -y * np.sin(pitch) + z * np.cos(pitch)
    x, y = x * np.cos(roll) - y * np.sin(roll), x * np.sin(roll) + y * np.cos(roll)
  x, y = x + _PIVOT[0], y + _PIVOT[1]
  s = pixels_per_unit(size, appearance) * np.asarray(track.scale)[:, None]
  follow = _BODY_FOLLOW if body else 1.0
  cx = size / 2 + follow * np.asarray(track.tx)[:, None] * size
  cy = size / 2 + follow * np.asarray(track.ty)[:, None] * size
  centre_y = 0.5 * (_HEAD_TOP + _CHIN)
  return np.stack([cx + s * x, cy + s * (y - centre_y)], axis=-1)


def make_background(appearance: Appearance, size: int, supersample: int = 1) -> np.ndarray:
  """The speaker's static background, (size * supersample, size * supersample, 3) uint8.

  Smooth patterns are computed at frame resolution and repeated ``supersample`` times (the canvas
  is box-filtered back down, so this is exact); blobs are drawn on the canvas itself.
  """
  rng = np.random.default_rng(appearance.background_seed)
  c0 = np.asarray(appearance.background_colours[0], dtype=np.float64)
  c1 = np.asarray(appearance.background_colours[1], dtype=np.float64)
  kind = appearance.background_kind
  if kind == "blobs":
    canvas = size * supersample
    img = Image.new("RGB", (canvas, canvas), tuple(int(v) for v in c0))
    draw = ImageDraw.Draw(img)
    for _ in range(40):
      cx, cy = rng.uniform(0, canvas, 2)
      r = rng.uniform(0.03, 0.15) * canvas
      colour = c0 + (c1 - c0) * rng.uniform(0.3, 1.0)
      draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in colour))
    return np.asarray(img).copy()
  coords = (np.arange(size) + 0.5) / size
  xx, yy = np.meshgrid(coords, coords)
  theta = appearance.background_angle
  along = xx * np.cos(theta) + yy * np.sin(theta)
  if kind == "gradient":
    mix = (along - along.min()) / max(along.max() - along.min(), 1e-6)
  elif kind == "stripes":
    mix = 0.5 + 0.5 * np.tanh(3 * np.sin(2 * np.pi * along / appearance.background_period))
  else:  # checker
    across = -xx * np.sin(theta) + yy * np.cos(theta)
    period = appearance.background_period
    mix = 0.5 + 0.5 * np.tanh(3 * np.sin(2 * np.pi * along / period) * np.sin(2 * np.pi * across / period))
  img = c0 + (c1 - c0) * mix[..., None]
  # Low-frequency shading, so the pattern is not perfectly regular.
  for _ in range(3):
    f = rng.uniform(0.5, 2.0, 2)
    wave = np.sin(2 * np.pi * (f[0] * xx + f[1] * yy) + rng.uniform(0, 2 * np.pi))
    img += rng.uniform(3, 8) * wave[..., None]
  img = np.clip(np.round(img), 0, 255).astype(np.uint8)
  return np.repeat(np.repeat(img, supersample, axis=0), supersample, axis=1)


def downsample(canvas: np.ndarray, factor: int) -> np.ndarray:
  """Box-filters an (H*f, W*f, 3) uint8 canvas to (H, W, 3) uint8 (mean of each f x f block)."""
  if factor == 1:
    return np.asarray(canvas)
  return np.asarray(Image.fromarray(np.asarray(canvas)).reduce(factor))


def _inset_band(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Pulls the two curves of a band polygon (T, 2K, 2) half a canvas pixel towards each other.

  Returns the new vertices and, per frame, whether anything is left to draw.
  """
  k = xy.shape[1] // 2
  upper, lower = xy[:, :k].copy(), xy[:, k:][:, ::-1].copy()
  gap = lower[..., 1] - upper[..., 1]
  step = np.sign(gap) * np.minimum(0.5, 0.5 * np.abs(gap))  # never past the middle
  upper[..., 1] += step
  lower[..., 1] -= step
  drawable = np.abs(lower[..., 1] - upper[..., 1]).max(axis=1) >= 0.5
  return np.concatenate([upper, lower[:, ::-1]], axis=1), drawable


def render_frames(face: FaceFrames, track: HeadTrack, appearance: Appearance, size: int,
                  supersample: int | None = None) -> Iterator[np.ndarray]:
  """Yields the (size, size, 3) uint8 frames of a clip, one at a time."""
  ss = supersample or default_supersample(size)
  background = Image.fromarray(make_background(appearance, size, ss))
  unit = pixels_per_unit(size, appearance) * ss
  prepared = []
  for shape in face.shapes:
    xy = project(shape.points, track, size, appearance, body=shape.body) * ss - 0.5
    keep = np.ones(xy.shape[0], dtype=bool) if shape.visible is None else np.asarray(shape.visible, bool)
    if shape.inset:
      xy, drawable = _inset_band(xy)
      keep = keep & drawable
    width = 0
    if shape.kind == "line":
      width = max(1, int(round(shape.width * unit * float(np.mean(track.scale)))))
    prepared.append((xy, keep, shape.fill, shape.kind, width))
  for t in range(track.num_frames):
    img = background.copy()
    draw = ImageDraw.Draw(img)
    for xy, keep, fill, kind, width in prepared:
      if not keep[t]:
        continue
      flat = xy[t].ravel().tolist()
      if kind == "polygon":
        draw.polygon(flat, fill=fill)
      else:
        draw.line(flat, fill=fill, width=width, joint="curve")
    yield np.asarray(img.reduce(ss)) if ss > 1 else np.asarray(img)
