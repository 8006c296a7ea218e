"""MediaPipe BlazeFace face detection (short- and full-range models) run with ai-edge-litert.

The decoding follows MediaPipe's face-detection graphs: SSD anchors of unit size on fixed strides,
box and 6 keypoint offsets in input pixels relative to the anchor centre, sigmoid scores, and a
score-weighted non-maximum suppression (IoU 0.3) that averages overlapping boxes and keypoints.
The frame is letterboxed into the square model input (aspect kept, black borders, range [-1, 1]);
talkjax resizes with antialiasing (PIL bilinear), which keeps small faces detectable at 720p+.

Keypoints, in order: image-left eye, image-right eye, nose tip, mouth centre, image-left ear
tragion, image-right ear tragion (MediaPipe calls the first one "left eye"; on a frontal,
non-mirrored photo it has the smaller x).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from talkjax.errors import CheckpointError
from talkjax.faces import _tflite
from talkjax.faces._image import check_frame, sigmoid, to_pil

NUM_KEYPOINTS = 6
LEFT_EYE, RIGHT_EYE, NOSE_TIP, MOUTH, LEFT_TRAGION, RIGHT_TRAGION = range(NUM_KEYPOINTS)


@dataclasses.dataclass(frozen=True)
class _Spec:
  filename: str
  input_size: int
  strides: tuple[int, ...]
  anchors_per_layer: int


# From MediaPipe's face_detection_{short,full}_range_common graphs (SsdAnchorsCalculator options):
# short range: 4 layers, strides 8/16/16/16, interpolated_scale_aspect_ratio 1 (2 anchors a layer);
# full range: 1 layer, stride 4, no interpolated anchor (1 anchor).
_SPECS = {
    "short": _Spec(_tflite.SHORT_RANGE, 128, (8, 16, 16, 16), 2),
    "full": _Spec(_tflite.FULL_RANGE, 192, (4,), 1),
}


def ssd_anchor_centres(input_size: int, strides: tuple[int, ...], anchors_per_layer: int) -> np.ndarray:
  """(N, 2) normalised ``(x, y)`` anchor centres in MediaPipe's order.

  Consecutive layers with the same stride share one grid; each grid cell repeats its centre once per
  anchor of every layer in the group (all anchors have unit size: ``fixed_anchor_size``).
  """
  centres = []
  i = 0
  while i < len(strides):
    j = i
    while j < len(strides) and strides[j] == strides[i]:
      j += 1
    repeats = anchors_per_layer * (j - i)
    cells = -(-input_size // strides[i])
    grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
    ys, xs = np.meshgrid(grid, grid, indexing="ij")
    c = np.stack([xs.ravel(), ys.ravel()], axis=-1)
    centres.append(np.repeat(c, repeats, axis=0))
    i = j
  return np.concatenate(centres, axis=0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of ``(..., N, 4)`` and ``(..., M, 4)`` xyxy boxes -> ``(..., N, M)``."""
  a = np.asarray(a, np.float64)[..., :, None, :]
  b = np.asarray(b, np.float64)[..., None, :, :]
  iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
  ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
  inter = iw * ih
  area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
  area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
  union = area_a + area_b - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclasses.dataclass(frozen=True)
class Detections:
  """Faces found in one frame, best score first, in frame pixel coordinates.

  Attributes:
    boxes: (N, 4) float32 ``(x0, y0, x1, y1)``.
    keypoints: (N, 6, 2) float32 ``(x, y)``; order in the module docstring.
    scores: (N,) float32 detection confidences in (0, 1).
  """
  boxes: np.ndarray
  keypoints: np.ndarray
  scores: np.ndarray

  def __len__(self) -> int:
    return int(self.scores.shape[0])


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """MediaPipe's WEIGHTED non-maximum suppression.

  Repeatedly takes the best remaining candidate and every remaining candidate overlapping it by more
  than ``iou_threshold`` (itself included), and replaces them by their score-weighted mean box and
  keypoints, keeping the best score. Inputs are already thresholded.
  """
  order = np.argsort(-scores, kind="stable")
  boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
  flat = np.concatenate([boxes, keypoints.reshape(len(boxes), -1)], axis=1)
  remaining = np.arange(len(scores))
  out_flat, out_scores = [], []
  while remaining.size:
    top = remaining[0]
    iou = box_iou(boxes[top][None], boxes[remaining])[0]
    cluster = remaining[iou > iou_threshold]
    if cluster.size == 0:  # a degenerate (zero-area) top box overlaps nothing, not even itself
      cluster = remaining[:1]
    w = scores[cluster]
    out_flat.append((flat[cluster] * w[:, None]).sum(0) / w.sum())
    out_scores.append(scores[top])
    remaining = np.setdiff1d(remaining, cluster, assume_unique=True)
    remaining = remaining[np.argsort(-scores[remaining], kind="stable")]
  if not out_flat:
    return (np.zeros((0, 4), np.float32), np.zeros((0, NUM_KEYPOINTS, 2), np.float32),
            np.zeros((0,), np.float32))
  merged = np.stack(out_flat).astype(np.float32)
  return (merged[:, :4], merged[:, 4:].reshape(-1, NUM_KEYPOINTS, 2),
          np.asarray(out_scores, np.float32))


class FaceDetector:
  """BlazeFace detector: ``FaceDetector("short")(frame)`` -> :class:`Detections`.

  Args:
    model: ``"short"`` (128x128 input; faces filling a good part of the frame, within ~2 m: talking
      heads) or ``"full"`` (192x192; small or distant faces, ~4x slower).
    min_score: detection confidence threshold (MediaPipe's short-range graph uses 0.5).
    nms_threshold: IoU above which overlapping detections are merged.
    num_threads: TFLite interpreter threads (None: runtime default).
    model_path: a different ``.tflite`` file of the same architecture (default: the vendored one).
  """

  def __init__(self, model: str = "short", *, min_score: float = 0.5, nms_threshold: float = 0.3,
               num_threads: int | None = None, model_path: str | None = None):
    if model not in _SPECS:
      raise ValueError(f"model: expected one of {sorted(_SPECS)}, got {model!r}")
    if not 0.0 < min_score < 1.0:
      raise ValueError(f"min_score: must be in (0, 1), got {min_score}")
    spec = _SPECS[model]
    self.model = model
    self.input_size = spec.input_size
    self.min_score = float(min_score)
    self.nms_threshold = float(nms_threshold)
    self._anchors = ssd_anchor_centres(spec.input_size, spec.strides, spec.anchors_per_layer)
    n = self._anchors.shape[0]
    self.model_path = model_path or _tflite.model_path(spec.filename)
    self._net = _tflite.TfliteModel(self.model_path, (1, spec.input_size, spec.input_size, 3), 2,
                                    num_threads)
    shapes = sorted(self._net.output_shapes, key=lambda s: s[-1])
    if shapes != [(1, n, 1), (1, n, 4 + 2 * NUM_KEYPOINTS)]:
      raise CheckpointError(f"{self._net.path}: outputs {self._net.output_shapes} do not match the "
                       f"{model}-range anchor layout ({n} anchors)")
    self._regressor_first = self._net.output_shapes[0][-1] != 1

  def __call__(self, frame, name: str = "frame") -> Detections:
    """Detects faces in an (H, W, 3) RGB frame (uint8, or float in [0, 1])."""
    return self.run(check_frame(frame, name))

  def run(self, frame: np.ndarray) -> Detections:
    """Detects faces in a frame already validated by ``check_frame`` ((H, W, 3) uint8)."""
    image = to_pil(frame)
    size = self.input_size
    width, height = image.size
    scale = size / max(width, height)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    # reducing_gap: a fast box-filter pre-reduction for large downscales (720p -> 128 is 10x).
    small = np.asarray(image.resize((new_w, new_h), Image.BILINEAR, reducing_gap=3.0), np.float32)
    tensor = np.full((1, size, size, 3), -1.0, np.float32)  # black letterbox borders
    tensor[0, pad_y:pad_y + new_h, pad_x:pad_x + new_w] = small * (2.0 / 255.0) - 1.0
    out = self._net(tensor)
    raw_boxes, raw_scores = (out[0], out[1]) if self._regressor_first else (out[1], out[0])
    raw_boxes, raw_scores = raw_boxes[0], raw_scores[0, :, 0]
    scores = sigmoid(raw_scores)
    keep = scores >= self.min_score
    if not np.any(keep):
      return Detections(np.zeros((0, 4), np.float32), np.zeros((0, NUM_KEYPOINTS, 2), np.float32),
                        np.zeros((0,), np.float32))
    raw, anchors, scores = raw_boxes[keep] / size, self._anchors[keep], scores[keep]
    centre = raw[:, 0:2] + anchors
    half = 0.5 * raw[:, 2:4]
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :]
    valid = np.all(half > 0, axis=1)
    boxes, keypoints, scores = weighted_nms(boxes[valid], keypoints[valid], scores[valid],
                                            self.nms_threshold)
    # Letterbox removal: normalised model-input coordinates -> frame pixels.
    offset = np.array([pad_x, pad_y], np.float32)
    factor = np.array([width / new_w, height / new_h], np.float32)
    boxes = ((boxes.reshape(-1, 2, 2) * size - offset) * factor).reshape(-1, 4)
    keypoints = (keypoints * size - offset) * factor
    return Detections(boxes.astype(np.float32), keypoints.astype(np.float32), scores)
