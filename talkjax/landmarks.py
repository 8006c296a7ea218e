"""The 131-point IP_LAP landmark schema (a subset of MediaPipe's 468-point face mesh).

Arrays of landmarks in talkjax are ``(..., 131, 2)`` float32 ``(x, y)`` pixel coordinates, in this
order: ``POSE`` (74 points), then ``JAW`` (17), then ``LIPS`` (40). The numbers are MediaPipe mesh
indices. "Image-left" means small x on a frontal face (the subject's right side).

Semantics of each group, in table order (used by the synthetic face generator, which must place
its drawn features where a real mesh would put these points):

- ``POSE[0:4]``   162, 127, 234, 93: image-left face contour, temple down to cheek.
- ``POSE[4:8]``   323, 454, 356, 389: image-right face contour, cheek up to temple.
- ``POSE[8:18]``  image-left eyebrow: 70, 63, 105, 66, 107 upper edge (outer to inner),
                  55, 65, 52, 53, 46 lower edge (inner to outer).
- ``POSE[18:28]`` image-right eyebrow: 336, 296, 334, 293, 300 upper edge (inner to outer),
                  276, 283, 282, 295, 285 lower edge (outer to inner).
- ``POSE[28:33]`` nose bridge 168, 6, 197, 195, 5 (between the eyes down to above the tip).
- ``POSE[33:42]`` nose base 48, 115, 220, 45, 4, 275, 440, 344, 278 (image-left alar, through the
                  tip 4, to image-right alar).
- ``POSE[42:58]`` image-left eye: 33 (outer corner), 246, 161, 160, 159, 158, 157, 173 upper lid,
                  133 (inner corner), 155, 154, 153, 145, 144, 163, 7 lower lid back to the outer corner.
- ``POSE[58:74]`` image-right eye: 362 (inner corner), 398, 384, 385, 386, 387, 388, 466 upper lid,
                  263 (outer corner), 249, 390, 373, 374, 380, 381, 382 lower lid back to the inner corner.
- ``JAW``         132, 58, 172, 136, 150, 149, 176, 148, 152 (chin), 377, 400, 378, 379, 365, 397,
                  288, 361: lower face contour from image-left cheek through the chin to image-right.
- ``LIPS[0:11]``  outer upper lip 61 (image-left corner), 185, 40, 39, 37, 0 (top centre), 267, 269,
                  270, 409, 291 (image-right corner).
- ``LIPS[11:20]`` outer lower lip 375, 321, 405, 314, 17 (bottom centre), 84, 181, 91, 146 (right to left).
- ``LIPS[20:31]`` inner upper lip 78 (left inner corner), 191, 80, 81, 82, 13 (centre), 312, 311,
                  310, 415, 308 (right inner corner).
- ``LIPS[31:40]`` inner lower lip 324, 318, 402, 317, 14 (centre), 87, 178, 88, 95 (right to left).
"""

from __future__ import annotations

import numpy as np

POSE: tuple[int, ...] = (
    162, 127, 234, 93, 323, 454, 356, 389,
    70, 63, 105, 66, 107, 55, 65, 52, 53, 46,
    336, 296, 334, 293, 300, 276, 283, 282, 295, 285,
    168, 6, 197, 195, 5, 48, 115, 220, 45, 4, 275, 440, 344, 278,
    33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7,
    362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374, 380, 381, 382,
)
JAW: tuple[int, ...] = (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361)
LIPS: tuple[int, ...] = (
    61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291,
    375, 321, 405, 314, 17, 84, 181, 91, 146,
    78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308,
    324, 318, 402, 317, 14, 87, 178, 88, 95,
)
CONTENT: tuple[int, ...] = JAW + LIPS
ALL: tuple[int, ...] = POSE + CONTENT  # MediaPipe index of each of the 131 talkjax points.

NUM_POSE, NUM_JAW, NUM_LIPS = len(POSE), len(JAW), len(LIPS)
NUM_CONTENT = NUM_JAW + NUM_LIPS
NUM_POINTS = len(ALL)

# Slices into the 131-point array.
POSE_SLICE = slice(0, NUM_POSE)
JAW_SLICE = slice(NUM_POSE, NUM_POSE + NUM_JAW)
LIPS_SLICE = slice(NUM_POSE + NUM_JAW, NUM_POINTS)
CONTENT_SLICE = slice(NUM_POSE, NUM_POINTS)

# Positions *within the 131 array* of useful points.
_POS = {m: i for i, m in enumerate(ALL)}
MOUTH_LEFT, MOUTH_RIGHT = _POS[61], _POS[291]
INNER_LIP_TOP, INNER_LIP_BOTTOM = _POS[13], _POS[14]
OUTER_LIP_TOP, OUTER_LIP_BOTTOM = _POS[0], _POS[17]
CHIN = _POS[152]
NOSE_TIP = _POS[4]
NOSE_BASE = tuple(range(33, 42))   # POSE[33:42]: the nose base, alar to alar through the tip
OUTER_LIPS = tuple(range(LIPS_SLICE.start, LIPS_SLICE.start + 20))
INNER_LIPS = tuple(range(LIPS_SLICE.start + 20, NUM_POINTS))

assert NUM_POSE == 74 and NUM_JAW == 17 and NUM_LIPS == 40 and len(set(ALL)) == 131


def index_of(mediapipe_index: int) -> int:
  """Position in the 131-point array of a MediaPipe mesh index."""
  return _POS[mediapipe_index]


def select_from_mesh(mesh: np.ndarray) -> np.ndarray:
  """(..., 468 or 478, C) MediaPipe mesh -> (..., 131, C) talkjax points."""
  mesh = np.asarray(mesh)
  if mesh.shape[-2] < 468:
    raise ValueError(f"expected a 468- or 478-point mesh, got shape {mesh.shape}")
  return mesh[..., list(ALL), :]


def inner_mouth_opening(landmarks: np.ndarray) -> np.ndarray:
  """Distance between the inner upper- and lower-lip centres (13 and 14), per frame."""
  lm = np.asarray(landmarks)
  return np.linalg.norm(lm[..., INNER_LIP_TOP, :] - lm[..., INNER_LIP_BOTTOM, :], axis=-1)


def mouth_shape(landmarks: np.ndarray) -> np.ndarray:
  """``(..., 3)``: inner opening (13-14), outer opening (0-17) and width (61-291) of the mouth, per frame.

  In the landmarks' units. The auxiliary target of the lip-sync expert's ``mouth`` loss
  (:class:`talkjax.data.samplers.SyncNetSampler`); rotation-invariant and unchanged by a mirror flip.
  """
  lm = np.asarray(landmarks)
  pairs = ((INNER_LIP_TOP, INNER_LIP_BOTTOM), (OUTER_LIP_TOP, OUTER_LIP_BOTTOM), (MOUTH_LEFT, MOUTH_RIGHT))
  return np.stack([np.linalg.norm(lm[..., a, :] - lm[..., b, :], axis=-1) for a, b in pairs], axis=-1)


# --- Sketches: IP_LAP's 125-edge drawing -----------------------------------------------------

def _chain(points: tuple[int, ...]) -> list[tuple[int, int]]:
  return [(a, b) for a, b in zip(points[:-1], points[1:])]


# Edges between MediaPipe indices: MediaPipe's lips (40), eyes (16 + 16), eyebrows (8 + 8), the face
# oval without the forehead (24) and IP_LAP's 13 nose edges: 125 in all.
_LIPS_EDGES = (
    _chain((61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291))
    + _chain((61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291))
    + _chain((78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308))
    + _chain((78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)))
_EYE_EDGES = (
    _chain((263, 249, 390, 373, 374, 380, 381, 382, 362))
    + _chain((263, 466, 388, 387, 386, 385, 384, 398, 362))
    + _chain((33, 7, 163, 144, 145, 153, 154, 155, 133))
    + _chain((33, 246, 161, 160, 159, 158, 157, 173, 133)))
_BROW_EDGES = (
    _chain((276, 283, 282, 295, 285)) + _chain((300, 293, 334, 296, 336))
    + _chain((46, 53, 52, 65, 55)) + _chain((70, 63, 105, 66, 107)))
_OVAL_EDGES = _chain((389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149,
                      150, 136, 172, 58, 132, 93, 234, 127, 162))
_NOSE_EDGES = _chain((168, 6, 197, 195, 5, 4)) + _chain((48, 115, 220, 45, 4, 275, 440, 344, 278))

SKETCH_EDGES_MEDIAPIPE: tuple[tuple[int, int], ...] = tuple(
    _LIPS_EDGES + _EYE_EDGES + _BROW_EDGES + _OVAL_EDGES + _NOSE_EDGES)
# The same edges as positions in the 131-point array.
SKETCH_EDGES: np.ndarray = np.array([(_POS[a], _POS[b]) for a, b in SKETCH_EDGES_MEDIAPIPE], np.int32)
SKETCH_GREY = 224

assert len(SKETCH_EDGES_MEDIAPIPE) == 125 and len(set(SKETCH_EDGES_MEDIAPIPE)) == 125


def normalize_to_box(landmarks: np.ndarray, box: np.ndarray) -> np.ndarray:
  """Pixel coordinates -> [0, 1] coordinates inside ``box = (x0, y0, x1, y1)`` (per frame or shared)."""
  lm = np.asarray(landmarks, np.float32)
  box = np.asarray(box, np.float32)
  origin = box[..., None, :2]
  extent = np.maximum(box[..., None, 2:] - box[..., None, :2], 1e-6)
  return (lm - origin) / extent


def denormalize_from_box(landmarks: np.ndarray, box: np.ndarray) -> np.ndarray:
  """Inverse of :func:`normalize_to_box`."""
  lm = np.asarray(landmarks, np.float32)
  box = np.asarray(box, np.float32)
  return lm * (box[..., None, 2:] - box[..., None, :2]) + box[..., None, :2]


def _line_pixels(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Pixels of 1-px 8-connected lines between integer endpoints, for many lines at once.

  Reproduces OpenCV's ``cv2.line(..., thickness=1, lineType=LINE_8)`` pixel for pixel (checked in
  tests/test_landmarks.py), including how it breaks ties at exact half-pixel positions: along the
  major axis the line runs from its smaller end; on x-major lines ties go towards the start's y, on
  y-major lines ties go towards the smaller x.
  """
  d = ends - starts
  x_major = np.abs(d[:, 0]) >= np.abs(d[:, 1])
  major = np.where(x_major, 0, 1)
  minor = 1 - major
  rows = np.arange(len(starts))
  flip = d[rows, major] < 0
  s = np.where(flip[:, None], ends, starts)
  e = np.where(flip[:, None], starts, ends)
  d = e - s
  steps = d[rows, major]
  counts = steps + 1
  line = np.repeat(rows, counts)
  t = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
  denom = np.maximum(steps, 1)[line]
  minor_pos = s[line, minor[line]] + t * d[line, minor[line]] / denom
  towards_up = x_major[line] & (d[line, minor[line]] < 0)
  minor_px = np.where(towards_up, np.floor(minor_pos + 0.5), np.ceil(minor_pos - 0.5)).astype(np.int64)
  major_px = s[line, major[line]] + t
  xs = np.where(x_major[line], major_px, minor_px)
  ys = np.where(x_major[line], minor_px, major_px)
  return xs, ys


def draw_sketch(landmarks_normalized: np.ndarray, size: int, value: int = SKETCH_GREY) -> np.ndarray:
  """Draws IP_LAP's 125-edge sketch of one face: (size, size, 3) uint8, grey lines on black.

  ``landmarks_normalized`` is (131, 2) in [0, 1] crop coordinates (:func:`normalize_to_box`). As in
  IP_LAP (MediaPipe's drawing utilities), a point maps to pixel ``min(floor(v * size), size - 1)`` and
  an edge with an end outside [0, 1] is not drawn.
  """
  lm = np.asarray(landmarks_normalized, np.float64)
  if lm.shape != (NUM_POINTS, 2):
    raise ValueError(f"draw_sketch expects ({NUM_POINTS}, 2) normalised landmarks, got {lm.shape}")
  img = np.zeros((size, size), np.uint8)
  valid = np.all((lm >= 0.0) & (lm <= 1.0), axis=-1)
  px = np.minimum(np.floor(np.nan_to_num(lm, nan=-1.0) * size), size - 1).astype(np.int64)
  edges = SKETCH_EDGES[valid[SKETCH_EDGES[:, 0]] & valid[SKETCH_EDGES[:, 1]]]
  if len(edges):
    xs, ys = _line_pixels(px[edges[:, 0]], px[edges[:, 1]])
    img[ys, xs] = value
  return np.repeat(img[:, :, None], 3, axis=2)


def draw_sketches(landmarks_normalized: np.ndarray, size: int) -> np.ndarray:
  """(..., 131, 2) normalised landmarks -> (..., size, size, 3) uint8 sketches."""
  lm = np.asarray(landmarks_normalized)
  flat = lm.reshape(-1, NUM_POINTS, 2)
  out = np.stack([draw_sketch(x, size) for x in flat]) if len(flat) else np.zeros((0, size, size, 3), np.uint8)
  return out.reshape(lm.shape[:-2] + (size, size, 3))
