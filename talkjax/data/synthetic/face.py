"""Face geometry: the 131 landmarks and the shapes drawn around them, in canonical 3-D face units.

Canonical frame: ``x`` to the image right, ``y`` down, ``z`` towards the camera; the frontal face has
its eye line near ``y = -0.22``, the mouth near ``y = 0.35`` and the chin near ``y = 0.72``. Every
drawn feature is built from the same formulas as the landmarks that describe it, so drawing and
landmarks agree by construction: contour and jaw landmarks are control points of the face outline
(a Catmull-Rom spline through them), eye landmarks sample the lid curves that bound the drawn eye,
lip landmarks sample the outer lip edge and the inner edge that bounds the dark mouth opening.

Articulation (per frame, from the viseme track):

- width ``w`` spreads the mouth corners, roundness ``r`` narrows them, protrudes and thickens the
  lips and makes the opening rounder;
- openness ``o`` is the area of the opening relative to its maximum (``mouth_aperture``): the
  aperture ``A`` at the centre is ``o * mouth_width`` for a neutral lip shape, taller for a narrow
  one. The upper lip rises by 0.3 A, the lower lip and the jaw drop by 0.7 A (the chin by 0.75 A,
  jaw points nearer the ear proportionally less, as for a jaw rotating about the ear).

Shapes are returned in painter's order (back to front); see ``render.py`` for projection and
rasterisation.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.special

from talkjax import landmarks as lmk
from talkjax.data.synthetic.speakers import MOUTH_INTERIOR, SCLERA, Appearance, teeth_colour

APERTURE_PER_WIDTH = 1.0  # widest lip aperture as a fraction of the resting mouth half-width
_UPPER_SHARE = 0.3  # share of the aperture taken by the upper lip rising (the rest is the jaw)
_CHIN_DROP = 0.75  # chin drop per unit aperture
TEETH_UPPER, TEETH_LOWER = 0.26, 0.12  # visible teeth as fractions of the local aperture


@dataclasses.dataclass(frozen=True)
class Shape:
  """One drawing primitive for every frame.

  Attributes:
    points: (T, n, 3) canonical vertices.
    fill: RGB colour.
    kind: "polygon" or "line".
    width: line width in face units (lines only).
    body: True for body parts (neck, shirt), which follow the head's translation but not its
      rotation.
    visible: (T,) bool, frames in which the shape is drawn (None = all).
    inset: the polygon is a band between an upper curve (first half of the points, left to right)
      and a lower curve (second half, right to left); the rasteriser pulls both curves half a
      canvas pixel inwards, because PIL fills polygons edges inclusive, which would otherwise
      widen a thin mouth opening by a whole canvas pixel.
  """
  points: np.ndarray
  fill: tuple[int, int, int]
  kind: str = "polygon"
  width: float = 0.0
  body: bool = False
  visible: np.ndarray | None = None
  inset: bool = False


def _shade(rgb, factor: float) -> tuple[int, int, int]:
  v = np.clip(np.round(np.asarray(rgb, dtype=np.float64) * factor), 0, 255).astype(int)
  return (int(v[0]), int(v[1]), int(v[2]))


def _mix(a, b, t: float) -> tuple[int, int, int]:
  v = np.round(np.asarray(a, dtype=np.float64) * (1 - t) + np.asarray(b, dtype=np.float64) * t).astype(int)
  return (int(v[0]), int(v[1]), int(v[2]))


def catmull_rom(points: np.ndarray, samples: int = 6, closed: bool = True) -> np.ndarray:
  """Densifies (..., n, D) control points with a uniform Catmull-Rom spline.

  The curve passes through every control point: ``samples`` points per span, the span's first
  control point first (an open curve also ends on its last control point).
  """
  p = np.asarray(points, dtype=np.float64)
  if closed:
    p0, p1, p2, p3 = np.roll(p, 1, -2), p, np.roll(p, -1, -2), np.roll(p, -2, -2)
  else:
    first = 2 * p[..., :1, :] - p[..., 1:2, :]  # reflected phantom end points
    last = 2 * p[..., -1:, :] - p[..., -2:-1, :]
    ext = np.concatenate([first, p, last], axis=-2)
    p0, p1, p2, p3 = ext[..., :-3, :], ext[..., 1:-2, :], ext[..., 2:-1, :], ext[..., 3:, :]
  t = np.arange(samples) / samples
  t2, t3 = t * t, t * t * t
  b0 = (-t3 + 2 * t2 - t) / 2
  b1 = (3 * t3 - 5 * t2 + 2) / 2
  b2 = (-3 * t3 + 4 * t2 + t) / 2
  b3 = (t3 - t2) / 2
  seg = (p0[..., None, :] * b0[:, None] + p1[..., None, :] * b1[:, None] + p2[..., None, :] * b2[:, None]
         + p3[..., None, :] * b3[:, None])
  out = seg.reshape(*seg.shape[:-3], -1, p.shape[-1])
  if not closed:  # spans stop short of their end point: add the curve's last point
    out = np.concatenate([out, p[..., -1:, :]], axis=-2)
  return out


def _xyz(x, y, z) -> np.ndarray:
  x, y, z = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (x, y, z)))
  return np.stack([x, y, z], axis=-1)


def _mirror(p: np.ndarray) -> np.ndarray:
  return p * np.array([-1.0, 1.0, 1.0])


# --------------------------------------------------------------------------------------------------
# Mouth


def _lip_profile(u: np.ndarray, roundness: np.ndarray) -> np.ndarray:
  """Opening profile along the mouth (u in [-1, 1] across the inner width): 0 at the corners."""
  e = 0.6 - 0.15 * roundness
  return np.clip(1.0 - u * u, 0.0, 1.0) ** e


def _mouth_widths(a: Appearance, w: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Outer and inner mouth half-widths for lip width ``w`` and roundness ``r``."""
  w_out = a.mouth_width * (0.84 + 0.28 * w - 0.2 * r)
  return w_out, w_out * (0.88 - 0.12 * r)


def _profile_integral(roundness: np.ndarray) -> np.ndarray:
  """Integral over u in [-1, 1] of ``_lip_profile`` (area of the opening per unit width x height)."""
  return scipy.special.beta(0.5, 1.6 - 0.15 * np.asarray(roundness, dtype=np.float64))


_NEUTRAL = (0.5, 0.15)  # lip width and roundness at which openness 1 means an aperture of mouth_width


def mouth_aperture(a: Appearance, visemes: np.ndarray) -> np.ndarray:
  """(T,) vertical lip aperture at the mouth centre, face units.

  Openness is the *area* of the opening relative to its maximum: a narrow, rounded mouth opens
  taller than a spread one for the same openness. That keeps the dark area that the pixel yardstick
  measures proportional to openness whatever the lip shape.
  """
  visemes = np.asarray(visemes, dtype=np.float64)
  w, r = visemes[:, 1], visemes[:, 2]
  _, w_in = _mouth_widths(a, w, r)
  _, w_ref = _mouth_widths(a, np.float64(_NEUTRAL[0]), np.float64(_NEUTRAL[1]))
  area_factor = (w_ref * _profile_integral(_NEUTRAL[1])) / (w_in * _profile_integral(r))
  return visemes[:, 0] * APERTURE_PER_WIDTH * a.mouth_width * area_factor


def mouth_curves(a: Appearance, visemes: np.ndarray, u: np.ndarray) -> dict[str, np.ndarray]:
  """Lip curves sampled at ``u`` (K,) in [-1, 1] (left corner to right corner), each (T, K, 3).

  Keys: outer_upper, outer_lower (sampled across the outer width), inner_upper, inner_lower
  (across the inner width), teeth_upper / teeth_lower (lower edge of the upper teeth, upper edge of
  the lower teeth, across the inner width).
  """
  o, w, r = (visemes[:, i:i + 1] for i in range(3))
  w_out, w_in = _mouth_widths(a, w, r)
  aperture = mouth_aperture(a, visemes)[:, None]
  up, down = _UPPER_SHARE * aperture, (1 - _UPPER_SHARE) * aperture
  u = np.asarray(u, dtype=np.float64)[None]
  y0 = a.mouth_y

  def inner_at(x):  # inner-lip profile at canonical x
    return _lip_profile(np.clip(x / w_in, -1.0, 1.0), r)

  x_in = u * w_in
  prof_in = inner_at(x_in)
  x_out = u * w_out
  prof_out = inner_at(x_out)
  bow = np.clip(1.0 - u * u, 0, 1) ** 0.6 * (1.0 - 0.25 * np.exp(-(u / 0.15) ** 2))
  t_up = a.lip_upper * (1.0 + 0.35 * r) * bow
  t_lo = a.lip_lower * (1.0 + 0.25 * r) * np.clip(1.0 - u * u, 0, 1) ** 0.55
  z_lip = 0.55 + 0.06 * np.clip(1.0 - u * u, 0, 1) + 0.05 * r
  gap = (up + down) * prof_in
  out = {
      "outer_upper": _xyz(x_out, y0 - up * prof_out - t_up, z_lip),
      "outer_lower": _xyz(x_out, y0 + down * prof_out + t_lo, z_lip - 0.02),
      "inner_upper": _xyz(x_in, y0 - up * prof_in, z_lip),
      "inner_lower": _xyz(x_in, y0 + down * prof_in, z_lip - 0.02),
      "teeth_upper": _xyz(x_in, y0 - up * prof_in + TEETH_UPPER * gap, z_lip - 0.01),
      "teeth_lower": _xyz(x_in, y0 + down * prof_in - TEETH_LOWER * gap, z_lip - 0.03),
  }
  return out


# Positions along the lips of the MediaPipe lip points: cosine spacing (denser at the corners).
_U_UPPER = -np.cos(np.pi * np.arange(11) / 10)  # 11 points, left corner -> right corner
_U_LOWER = np.cos(np.pi * np.arange(1, 10) / 10)  # 9 points, right -> left, corners excluded

# --------------------------------------------------------------------------------------------------
# Outline, jaw


def _side_contour(a: Appearance) -> tuple[list[int], np.ndarray, np.ndarray]:
  """Image-left contour from temple to next-to-chin: MediaPipe ids, (12, 3) points, jaw-drop weights."""
  fw = a.face_width
  jw = a.jaw_width * fw
  cy = a.chin
  rows = [
      (162, -0.93 * fw, -0.45, 0.0, 0.0),
      (127, -0.98 * fw, -0.30, 0.0, 0.0),
      (234, -1.00 * fw, -0.14, 0.0, 0.0),
      (93, -0.99 * fw, 0.02, 0.0, 0.0),
      (132, -0.97 * fw, 0.14, 0.0, 0.03),
      (58, -(fw + (jw - fw) * 0.35), 0.26, 0.02, 0.1),
      (172, -(fw + (jw - fw) * 0.7), 0.37, 0.05, 0.22),
      (136, -jw, 0.46, 0.1, 0.4),
      (150, -0.82 * jw, cy - 0.17, 0.2, 0.62),
      (149, -0.62 * jw, cy - 0.09, 0.28, 0.8),
      (176, -0.40 * jw, cy - 0.04, 0.33, 0.92),
      (148, -0.20 * jw, cy - 0.01, 0.36, 0.98),
  ]
  ids = [r[0] for r in rows]
  pts = np.array([r[1:4] for r in rows])
  weights = np.array([r[4] for r in rows])
  return ids, pts, weights


_MIRROR = {  # image-left MediaPipe index -> its image-right counterpart
    162: 389, 127: 356, 234: 454, 93: 323, 132: 361, 58: 288, 172: 397, 136: 365, 150: 379, 149: 378,
    176: 400, 148: 377,
}


# --------------------------------------------------------------------------------------------------
# Eyes, brows, nose


def _eye_curves(a: Appearance, blink: np.ndarray, side: int, t: np.ndarray) -> tuple[np.ndarray, ...]:
  """Upper-lid (current), upper-lid (open) and lower-lid points at ``t`` (0 = outer corner, 1 = inner).

  ``side`` is -1 for the image-left eye, +1 for the image-right eye. Returns (T, K, 3) arrays.
  """
  cx = side * a.eye_spacing
  x_outer, x_inner = cx + side * a.eye_width, cx - side * a.eye_width
  y_outer, y_inner = a.eye_y - a.eye_tilt / 2, a.eye_y + a.eye_tilt / 2
  t = np.asarray(t, dtype=np.float64)[None]
  x = x_outer + (x_inner - x_outer) * t
  base = y_outer + (y_inner - y_outer) * t
  bump = np.sin(np.pi * np.clip(t, 0, 1))
  open_upper = base - a.eye_height * bump ** 0.8
  closed = base + 0.35 * a.eye_height * bump
  b = blink[:, None]
  upper = open_upper * (1 - b) + closed * b
  lower = base + 0.45 * a.eye_height * bump ** 0.9
  z = 0.45 + 0.04 * bump
  shape = np.broadcast_shapes(b.shape, x.shape)
  bc = lambda v: np.broadcast_to(v, shape)  # noqa: E731
  return _xyz(bc(x), upper, bc(z)), _xyz(bc(x), bc(open_upper), bc(z)), _xyz(bc(x), bc(lower), bc(z))


def _brow(a: Appearance, side: int, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Upper and lower brow edges at ``t`` (0 = inner end, 1 = outer end), each (K, 3)."""
  cx = side * a.eye_spacing
  x_in, x_out = cx - side * 0.8 * a.eye_width, cx + side * 1.25 * a.eye_width
  t = np.asarray(t, dtype=np.float64)
  x = x_in + (x_out - x_in) * t
  lower = a.eye_y - a.brow_gap - a.brow_arch * np.sin(np.pi * t ** 0.8) + 0.02 * t
  upper = lower - a.brow_thickness * (1.0 - 0.45 * t)
  z = np.full_like(t, 0.45)
  return _xyz(x, upper, z), _xyz(x, lower, z)


def _nose(a: Appearance) -> tuple[np.ndarray, np.ndarray]:
  """Bridge (5, 3) and base (9, 3) points in landmark order."""
  length = a.nose_tip - a.eye_y
  fr = np.array([0.0, 0.3, 0.55, 0.75, 0.9])
  bridge = _xyz(0.0 * fr, a.eye_y + length * fr, 0.5 + 0.3 * fr)
  nw, ty = a.nose_width, a.nose_tip
  # The alae sit back at about the depth of the eyes, so the eye-to-alae distance that normalises
  # the openness measure foreshortens with pitch like the mouth does.
  half = np.array([[-nw, ty - 0.01, 0.5], [-0.85 * nw, ty + 0.035, 0.55], [-0.5 * nw, ty + 0.05, 0.63],
                   [-0.22 * nw, ty + 0.02, 0.78]])
  base = np.concatenate([half, [[0.0, ty, 0.9]], _mirror(half[::-1])], axis=0)
  return bridge, base


# --------------------------------------------------------------------------------------------------
# Everything


@dataclasses.dataclass(frozen=True)
class FaceFrames:
  """The face for every frame of a clip.

  Attributes:
    landmarks: (T, 131, 3) canonical landmark positions in talkjax order.
    shapes: drawing primitives in painter's order.
  """
  landmarks: np.ndarray
  shapes: list[Shape]


def build_face(a: Appearance, visemes: np.ndarray, blink: np.ndarray, gaze: np.ndarray) -> FaceFrames:
  """Landmarks and shapes of the face for each frame.

  Args:
    a: the speaker's appearance.
    visemes: (T, 3) openness, width, roundness.
    blink: (T,) eyelid closure.
    gaze: (T, 2) iris offset.
  """
  visemes = np.asarray(visemes, dtype=np.float64)
  n = visemes.shape[0]
  pos: dict[int, np.ndarray] = {}  # MediaPipe index -> (T, 3)
  tile = lambda p: np.broadcast_to(np.asarray(p, np.float64), (n, 3))  # noqa: E731

  # Mouth and jaw.
  jaw_drop = _CHIN_DROP * mouth_aperture(a, visemes)
  mouth_lm = mouth_curves(a, visemes, np.concatenate([_U_UPPER, _U_LOWER]))
  upper_ids = lmk.LIPS[0:11]
  lower_ids = lmk.LIPS[11:20]
  inner_upper_ids = lmk.LIPS[20:31]
  inner_lower_ids = lmk.LIPS[31:40]
  for k, i in enumerate(upper_ids):
    pos[i] = mouth_lm["outer_upper"][:, k]
  for k, i in enumerate(lower_ids):
    pos[i] = mouth_lm["outer_lower"][:, 11 + k]
  for k, i in enumerate(inner_upper_ids):
    pos[i] = mouth_lm["inner_upper"][:, k]
  for k, i in enumerate(inner_lower_ids):
    pos[i] = mouth_lm["inner_lower"][:, 11 + k]

  ids, side_pts, weights = _side_contour(a)
  drop = jaw_drop[:, None, None] * np.array([0.0, 1.0, 0.0]) * weights[None, :, None]
  left = side_pts[None] + drop  # (T, 12, 3)
  right = _mirror(left)
  chin = _xyz(np.zeros(n), a.chin + jaw_drop, np.full(n, 0.38))
  for k, i in enumerate(ids):
    pos[i] = left[:, k]
    pos[_MIRROR[i]] = right[:, k]
  pos[152] = chin

  # Eyes.
  t_upper = np.arange(1, 8) / 8
  for side, corner_o, upper_ids_e, corner_i, lower_ids_e in (
      (-1, 33, (246, 161, 160, 159, 158, 157, 173), 133, (155, 154, 153, 145, 144, 163, 7)),
      (1, 263, (466, 388, 387, 386, 385, 384, 398), 362, (382, 381, 380, 374, 373, 390, 249)),
  ):
    # Both tables run outer -> inner along the upper lid and inner -> outer along the lower lid.
    t_all = np.concatenate([[0.0], t_upper, [1.0], 1 - t_upper])
    upper, _, lower = _eye_curves(a, blink, side, t_all)
    pos[corner_o] = upper[:, 0]
    pos[corner_i] = upper[:, 8]
    for k, i in enumerate(upper_ids_e):
      pos[i] = upper[:, 1 + k]
    for k, i in enumerate(lower_ids_e):
      pos[i] = lower[:, 9 + k]

  # Brows: tables give the MediaPipe ids with their t (0 inner, 1 outer).
  quarter = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
  for side, up_ids, up_t, lo_ids, lo_t in (
      (-1, (70, 63, 105, 66, 107), quarter[::-1], (55, 65, 52, 53, 46), quarter),
      (1, (336, 296, 334, 293, 300), quarter, (276, 283, 282, 295, 285), quarter[::-1]),
  ):
    up_pts, _ = _brow(a, side, up_t)
    _, lo_pts = _brow(a, side, lo_t)
    for k, i in enumerate(up_ids):
      pos[i] = tile(up_pts[k])
    for k, i in enumerate(lo_ids):
      pos[i] = tile(lo_pts[k])

  bridge, base = _nose(a)
  for k, i in enumerate((168, 6, 197, 195, 5)):
    pos[i] = tile(bridge[k])
  for k, i in enumerate((48, 115, 220, 45, 4, 275, 440, 344, 278)):
    pos[i] = tile(base[k])

  landmarks = np.stack([pos[i] for i in lmk.ALL], axis=1)
  shapes = _shapes(a, visemes, blink, gaze, left, right, chin, n)
  return FaceFrames(landmarks=landmarks, shapes=shapes)


def _shapes(a: Appearance, visemes, blink, gaze, left, right, chin, n) -> list[Shape]:
  skin = a.skin
  tile = lambda p: np.broadcast_to(np.asarray(p, np.float64), (n,) + np.asarray(p).shape)  # noqa: E731
  fw = a.face_width
  shapes: list[Shape] = []

  # Hair behind the head, body, ears.
  if a.hair_style == "long":
    back = _xyz([-1.05 * fw, -1.18 * fw, -1.22 * fw, -1.15 * fw, 1.15 * fw, 1.22 * fw, 1.18 * fw, 1.05 * fw,
                 0.0], [-0.6, -0.1, 0.5, 1.05, 1.05, 0.5, -0.1, -0.6, -1.0], -0.1)
    shapes.append(Shape(tile(catmull_rom(back, 5)), _shade(a.hair, 0.8)))
  jw = a.jaw_width * fw
  neck = _xyz([-0.72 * jw, 0.72 * jw, 0.8 * jw, -0.8 * jw], [0.3, 0.3, 1.5, 1.5], 0.0)
  shapes.append(Shape(tile(neck), _shade(skin, 0.8), body=True))
  shirt = _xyz([-0.82 * jw, -0.3 * jw, 0.0, 0.3 * jw, 0.82 * jw, 1.9, 2.6, -2.6, -1.9],
               [0.98, 1.05, 1.18, 1.05, 0.98, 1.2, 3.0, 3.0, 1.2], 0.0)
  shapes.append(Shape(tile(shirt), a.shirt, body=True))
  ear_t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
  for side in (-1, 1):
    ear = _xyz(side * (0.97 * fw + 0.06 * np.cos(ear_t)) + side * 0.02, -0.1 + 0.15 * np.sin(ear_t), -0.05)
    shapes.append(Shape(tile(ear), _shade(skin, 0.88)))

  # Face: outline through the contour / jaw landmarks, closed over a forehead arc.
  forehead_r = _xyz([0.8 * fw, 0.45 * fw, 0.0], [-0.68, -0.84, -0.9], 0.0)
  forehead = np.concatenate([forehead_r, _mirror(forehead_r[:2][::-1])], axis=0)
  outline = np.concatenate([left, chin[:, None], right[:, ::-1], tile(forehead)], axis=1)
  face_dense = catmull_rom(outline, 5)
  shapes.append(Shape(face_dense, _shade(skin, 0.9)))
  centre = np.array([0.0, -0.05, 0.0])
  inner = centre + (face_dense - centre) * np.array([0.9, 0.93, 1.0])
  shapes.append(Shape(inner, skin))
  blush = _mix(skin, (skin[0] + 25, skin[1] - 10, skin[2] - 5), 0.1 + 0.2 * a.blush)
  for side in (-1, 1):
    cheek = _xyz(side * 0.36 * fw / 0.58 + 0.09 * np.cos(ear_t), 0.14 + 0.06 * np.sin(ear_t), 0.4)
    shapes.append(Shape(tile(cheek), blush))

  # Hair on top of the head.
  if a.hair_style != "bald":
    h = min(a.hairline + 0.1, -0.5) if a.hair_style == "fringe" else a.hairline
    outer = _xyz([-1.1 * fw, -1.1 * fw, -0.82 * fw, 0.0, 0.82 * fw, 1.1 * fw, 1.1 * fw],
                 [-0.22, -0.6, -0.98, -1.08, -0.98, -0.6, -0.22], 0.0)
    # The hairline hugs the face outline at the temples (so the contour landmarks stay on skin).
    if a.hair_style == "fringe":
      mid = [h + 0.03, h + 0.04, h + 0.04, h + 0.04, h + 0.03]
    else:
      mid = [h + 0.04, h + 0.005, h, h + 0.005, h + 0.04]
    line = _xyz([1.04 * fw, 1.01 * fw, 0.87 * fw, 0.6 * fw, 0.3 * fw, 0.0, -0.3 * fw, -0.6 * fw, -0.87 * fw,
                 -1.01 * fw, -1.04 * fw],
                [-0.22, -0.45, h - 0.04, *mid, h - 0.04, -0.45, -0.22],
                [0.0, 0.0, 0.15, 0.3, 0.3, 0.3, 0.3, 0.3, 0.15, 0.0, 0.0])
    cap = np.concatenate([catmull_rom(outer, 5, closed=False), catmull_rom(line, 5, closed=False)], axis=0)
    shapes.append(Shape(tile(cap), a.hair))

  # Eyes: white, iris, pupil, skin caps that hide the iris outside the opening, lash line.
  t_dense = np.linspace(0, 1, 13)
  iris_t = np.linspace(0, 2 * np.pi, 14, endpoint=False)
  lash = _shade(a.brow, 0.55)
  for side in (-1, 1):
    upper, open_upper, lower = _eye_curves(a, blink, side, t_dense)
    shapes.append(Shape(np.concatenate([upper, lower[:, ::-1]], axis=1), SCLERA))
    cx = side * a.eye_spacing + gaze[:, 0:1] * 0.35 * a.eye_width
    cy = a.eye_y + gaze[:, 1:2] * 0.25 * a.eye_height - 0.1 * a.eye_height
    r_iris = 0.42 * a.eye_width
    iris = _xyz(cx + r_iris * np.cos(iris_t), cy + r_iris * np.sin(iris_t), 0.5)
    pupil = _xyz(cx + 0.42 * r_iris * np.cos(iris_t), cy + 0.42 * r_iris * np.sin(iris_t), 0.5)
    shapes.append(Shape(iris, a.iris))
    shapes.append(Shape(pupil, (18, 14, 14)))
    lift = np.array([0.0, -(r_iris + 0.02), 0.0])
    shapes.append(Shape(np.concatenate([upper, open_upper[:, ::-1] + lift], axis=1), skin))
    shapes.append(Shape(np.concatenate([lower, lower[:, ::-1] - lift], axis=1), skin))
    shapes.append(Shape(upper, lash, kind="line", width=0.014))
    shapes.append(Shape(lower, _shade(skin, 0.8), kind="line", width=0.006))

  # Brows.
  t_brow = np.linspace(0, 1, 9)
  for side in (-1, 1):
    up, lo = _brow(a, side, t_brow)
    shapes.append(Shape(tile(np.concatenate([up, lo[::-1]], axis=0)), a.brow))

  # Nose: shadow down the image-left side of the bridge, nostrils, the base line.
  bridge, base = _nose(a)
  side_line = bridge[:4] + np.array([[-0.03, 0, 0], [-0.04, 0, 0], [-0.05, 0, 0], [-0.06, 0, 0]])
  shadow = np.concatenate([side_line, base[:5], bridge[::-1]], axis=0)
  shapes.append(Shape(tile(shadow), _shade(skin, 0.9)))
  for side in (-1, 1):
    nostril = _xyz(side * 0.42 * a.nose_width + 0.17 * a.nose_width * np.cos(iris_t),
                   a.nose_tip + 0.028 + 0.012 * np.sin(iris_t), 0.7)
    shapes.append(Shape(tile(nostril), _shade(skin, 0.45)))
  shapes.append(Shape(tile(catmull_rom(base, 4, closed=False)), _shade(skin, 0.7), kind="line", width=0.01))

  # Mouth: lips, then the opening (dark, with shadowed teeth) drawn over them, inset by the
  # rasteriser so its area is not biased; a lip-meeting line only while the lips are together.
  u = -np.cos(np.linspace(0, np.pi, 25))
  m = mouth_curves(a, visemes, u)
  open_ = mouth_aperture(a, visemes) >= 0.004
  shapes.append(Shape(np.concatenate([m["outer_upper"], m["inner_upper"][:, ::-1]], axis=1), a.lip))
  shapes.append(Shape(np.concatenate([m["outer_lower"], m["inner_lower"][:, ::-1]], axis=1), a.lip))
  shapes.append(Shape(np.concatenate([m["inner_upper"], m["inner_lower"][:, ::-1]], axis=1), MOUTH_INTERIOR,
                      visible=open_, inset=True))
  teeth = teeth_colour(skin)
  shapes.append(Shape(np.concatenate([m["inner_upper"], m["teeth_upper"][:, ::-1]], axis=1), teeth,
                      visible=open_, inset=True))
  shapes.append(Shape(np.concatenate([m["teeth_lower"], m["inner_lower"][:, ::-1]], axis=1),
                      _shade(teeth, 0.9), visible=open_, inset=True))
  shapes.append(Shape(m["inner_upper"], _shade(a.lip, 0.85), kind="line", width=0.004, visible=~open_))
  return shapes
