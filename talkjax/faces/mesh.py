"""MediaPipe's 468-point face mesh, run on a rotated square region of interest (ROI).

MediaPipe feeds the mesh model a 192x192 crop of a square ROI rotated so the eyes are level:
from a detection, the box enlarged 1.5x (square on its long side) and rotated by the eye-to-eye
angle; on the following frames, from the previous frame's mesh (eye corners 33 -> 263). The model
returns 468 ``(x, y, z)`` points in crop pixels and a face-presence logit; the tracker re-detects
when the presence drops.

Deviation (documented in BUILD_NOTES): the ROI from a previous mesh uses the points' bounding box
*in the eye-aligned frame* rather than MediaPipe's axis-aligned one, so the face fills the crop by
the same amount whatever the head roll (MediaPipe's crop grows by up to ~40% at 45 degrees).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image

from talkjax.errors import CheckpointError
from talkjax.faces import _tflite
from talkjax.faces._image import check_frame, sigmoid
from talkjax.faces.detector import LEFT_EYE, RIGHT_EYE

NUM_MESH_POINTS = 468
INPUT_SIZE = 192
ROI_SCALE = 1.5
# Outer eye corners (image-left 33, image-right 263): the roll reference for mesh-derived ROIs.
EYE_OUTER = (33, 263)
# MediaPipe's FACEMESH_FACE_OVAL, in order around the face (forehead top 10, clockwise on screen).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)


@dataclasses.dataclass(frozen=True)
class Roi:
  """A rotated square region: centre ``(cx, cy)``, side ``size`` (pixels), ``angle`` (radians).

  The ROI's x axis points along ``(cos angle, sin angle)`` in image coordinates (y down), so an angle
  of zero is an upright face and a positive angle a face rolled clockwise on screen.
  """
  cx: float
  cy: float
  size: float
  angle: float

  def crop_to_image(self, crop_size: int) -> np.ndarray:
    """(2, 3) affine matrix taking ``crop_size`` crop pixels to image pixels."""
    k = self.size / crop_size
    c, s = math.cos(self.angle), math.sin(self.angle)
    half = 0.5 * crop_size
    return np.array([[k * c, -k * s, self.cx - half * k * (c - s)],
                     [k * s, k * c, self.cy - half * k * (s + c)]], np.float64)

  def box(self) -> np.ndarray:
    """Axis-aligned (4,) xyxy box enclosing the rotated square."""
    r = 0.5 * self.size * (abs(math.cos(self.angle)) + abs(math.sin(self.angle)))
    return np.array([self.cx - r, self.cy - r, self.cx + r, self.cy + r], np.float32)


def _roll(start: np.ndarray, end: np.ndarray) -> float:
  return math.atan2(float(end[1] - start[1]), float(end[0] - start[0]))


def roi_from_detection(box: np.ndarray, keypoints: np.ndarray, scale: float = ROI_SCALE) -> Roi:
  """MediaPipe's detection -> mesh ROI: box centre, long side x ``scale``, eye-to-eye roll."""
  box = np.asarray(box, np.float64)
  size = max(box[2] - box[0], box[3] - box[1]) * scale
  return Roi(0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3]), float(size),
             _roll(keypoints[LEFT_EYE], keypoints[RIGHT_EYE]))


def roi_from_mesh(points: np.ndarray, scale: float = ROI_SCALE) -> Roi:
  """Mesh -> ROI for the next frame: eye-aligned bounding box of the points, long side x ``scale``."""
  xy = np.asarray(points, np.float64)[:, :2]
  angle = _roll(xy[EYE_OUTER[0]], xy[EYE_OUTER[1]])
  c, s = math.cos(angle), math.sin(angle)
  # Coordinates along the ROI axes (rotate by -angle), bounding box there, centre back to the image.
  u = xy[:, 0] * c + xy[:, 1] * s
  v = -xy[:, 0] * s + xy[:, 1] * c
  uc, vc = 0.5 * (u.min() + u.max()), 0.5 * (v.min() + v.max())
  size = max(u.max() - u.min(), v.max() - v.min()) * scale
  return Roi(uc * c - vc * s, uc * s + vc * c, float(size), angle)


class FaceMesh:
  """The 468-point face mesh: ``FaceMesh()(frame, roi)`` -> ``(points (468, 3), presence)``.

  ``points`` are ``(x, y, z)`` float32 in frame pixels (z: relative depth, same scale as x, smaller
  is nearer the camera); ``presence`` is the model's face-presence probability in (0, 1).
  Pixels of the ROI outside the frame read as black (MediaPipe's zero border).

  Args:
    num_threads: TFLite interpreter threads (None: runtime default).
    model_path: a different ``.tflite`` file of the same architecture (default: the vendored one).
  """

  def __init__(self, *, num_threads: int | None = None, model_path: str | None = None):
    self.model_path = model_path or _tflite.model_path(_tflite.FACE_LANDMARK)
    self._net = _tflite.TfliteModel(self.model_path, (1, INPUT_SIZE, INPUT_SIZE, 3), 2, num_threads)
    sizes = [int(np.prod(s)) for s in self._net.output_shapes]
    if sorted(sizes) != [1, 3 * NUM_MESH_POINTS]:
      raise CheckpointError(f"{self._net.path}: outputs {self._net.output_shapes} are not a 468-point mesh "
                       "and a presence score")
    self._points_first = sizes[0] != 1

  def __call__(self, frame, roi: Roi, name: str = "frame") -> tuple[np.ndarray, float]:
    return self.run(check_frame(frame, name), roi)

  def crop(self, frame: np.ndarray, roi: Roi) -> np.ndarray:
    """The (192, 192, 3) float32 [0, 1] model input for ``roi`` of a (H, W, 3) uint8 frame.

    Only the ROI's bounding region of the frame is converted to PIL (a 720p frame costs the same as
    its face). When the ROI is more than twice the crop's size it is first box-filtered down by an
    integer factor, so large faces (1080p, 4K) are not aliased by the bilinear resampling.
    """
    height, width = frame.shape[:2]
    m = roi.crop_to_image(INPUT_SIZE)
    bx0, by0, bx1, by1 = roi.box()
    # +2 px so bilinear taps at the region's edge still read real pixels.
    x0, y0 = max(0, int(math.floor(bx0)) - 2), max(0, int(math.floor(by0)) - 2)
    x1, y1 = min(width, int(math.ceil(bx1)) + 2), min(height, int(math.ceil(by1)) + 2)
    if x1 <= x0 or y1 <= y0:  # the ROI lies entirely outside the frame
      return np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.float32)
    region = Image.fromarray(np.ascontiguousarray(frame[y0:y1, x0:x1]), mode="RGB")
    factor = int(roi.size / INPUT_SIZE) if roi.size >= 2 * INPUT_SIZE else 1
    if factor > 1:
      region = region.reduce(factor)
    # Crop pixel -> region pixel: shift by the region's corner, divide by the reduction factor.
    local = np.concatenate([m[:, :2], (m[:, 2] - (x0, y0))[:, None]], axis=1) / factor
    patch = region.transform((INPUT_SIZE, INPUT_SIZE), Image.AFFINE, tuple(local.ravel()),
                             resample=Image.BILINEAR)
    return np.asarray(patch, np.float32) * (1.0 / 255.0)

  def run(self, frame: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
    """Runs the mesh on a frame already validated by ``check_frame`` ((H, W, 3) uint8)."""
    if not (roi.size > 1.0 and math.isfinite(roi.size) and math.isfinite(roi.angle)
            and math.isfinite(roi.cx) and math.isfinite(roi.cy)):
      raise ValueError(f"roi: needs a finite centre, size > 1 pixel and angle, got {roi}")
    out = self._net(self.crop(frame, roi)[None])
    raw, logit = (out[0], out[1]) if self._points_first else (out[1], out[0])
    pts = raw.reshape(NUM_MESH_POINTS, 3).astype(np.float64)
    m = roi.crop_to_image(INPUT_SIZE)
    xy = pts[:, :2] @ m[:, :2].T + m[:, 2]
    z = pts[:, 2:] * (roi.size / INPUT_SIZE)
    presence = float(sigmoid(np.asarray(logit, np.float32)).ravel()[0])
    return np.concatenate([xy, z], axis=1).astype(np.float32), presence
