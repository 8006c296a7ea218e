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
