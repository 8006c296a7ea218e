"""Face tracking over a clip: detect once, follow with the mesh, fill short gaps, smooth boxes.

Per frame (:class:`FaceTracker`, streaming, one frame in memory at a time):
  1. If the previous frame had a face, run the mesh on the ROI derived from that frame's mesh
     (MediaPipe's tracking); keep it if the face-presence score is >= ``min_presence``.
  2. Otherwise (first frame, face lost, or a periodic re-detection) run the detector: the short-range
     BlazeFace, falling back to the full-range one when it finds nothing. Among several faces take
     the one overlapping the last tracked face most (IoU >= ``min_iou``); with no overlap, the largest
     and most central one (score ``area * (1 - distance to the frame centre / half diagonal)``).
     Run the mesh on the detection's ROI, then once more on the ROI of that mesh, so landmarks of
     re-detected frames match those of tracked frames (the detection ROI is looser).
  3. No face: the frame is reported as not detected. Nothing raises on a blank frame.

Per clip (:func:`track_faces`): interior gaps of at most ``max_gap`` frames (default 5, 0.2 s at
25 fps) are filled by linear interpolation between the faces on either side (landmarks, mesh and
boxes); longer gaps and gaps at the start or end of the clip are left missing (NaN) and split the
clip into segments. Face boxes are then smoothed with a centred moving average inside each segment
(zero lag; the window shrinks symmetrically at segment ends so the ends are not pulled inward).
Landmarks are *not* smoothed: smoothing would damp the lip motion the models learn from.

Use :func:`require_face` where a face is mandatory (e.g. a reference photo): it raises
:class:`talkjax.errors.NoFaceError`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np
from tqdm import tqdm

from talkjax import landmarks as lm
from talkjax.errors import NoFaceError
from talkjax.faces._image import check_frame
from talkjax.faces.detector import Detections, FaceDetector, box_iou
from talkjax.faces.mesh import NUM_MESH_POINTS, FaceMesh, Roi, roi_from_detection, roi_from_mesh
from talkjax.faces.temporal import interpolate_gaps, plan_gaps, smooth_segments

DEFAULT_MAX_GAP = 5
DEFAULT_SMOOTH_WINDOW = 5


def mesh_box(points: np.ndarray) -> np.ndarray:
  """(..., N, 2+) points -> (..., 4) xyxy bounding boxes of their ``(x, y)``."""
  xy = np.asarray(points)[..., :2]
  return np.concatenate([xy.min(axis=-2), xy.max(axis=-2)], axis=-1)


@dataclasses.dataclass(frozen=True)
class FrameFace:
  """The tracker's result for one frame.

  Attributes:
    mesh: (468, 3) float32 mesh in frame pixels, or None when no face was found.
    presence: the mesh's face-presence probability (0 when no face was found).
    source: ``"tracking"`` (mesh from the previous frame's ROI), ``"detection"`` or ``"none"``.
  """
  mesh: np.ndarray | None
  presence: float
  source: str

  @property
  def found(self) -> bool:
    return self.mesh is not None

  @property
  def box(self) -> np.ndarray | None:
    return None if self.mesh is None else mesh_box(self.mesh)

  @property
  def landmarks(self) -> np.ndarray | None:
    """(131, 2) IP_LAP points, or None."""
    return None if self.mesh is None else lm.select_from_mesh(self.mesh[:, :2])


class FaceTracker:
  """Streaming single-face tracker: ``tracker.update(frame)`` -> :class:`FrameFace`.

  Args:
    detector: ``"short"``, ``"full"`` or a :class:`FaceDetector`.
    fallback: detector tried when ``detector`` finds nothing (``"full"``, a detector, or None).
    min_presence: mesh face-presence probability below which tracking is lost.
    min_iou: least IoU with the last tracked face for a detection to count as the same face.
    redetect_every: also run the detector every this many frames while tracking (None: only when
      tracking is lost; 1: detect on every frame, the slow reference mode).
    refine: after a detection, run the mesh a second time on the ROI of its own result.
    num_threads: TFLite interpreter threads for the models this tracker creates.

  Not thread-safe (TFLite interpreters are not): use one tracker per thread or process.
  """

  def __init__(self, detector: str | FaceDetector = "short", *, fallback: str | FaceDetector | None = "full",
               min_presence: float = 0.5, min_iou: float = 0.1, redetect_every: int | None = None,
               refine: bool = True, num_threads: int | None = None):
    if not 0.0 < min_presence < 1.0:
      raise ValueError(f"min_presence: must be in (0, 1), got {min_presence}")
    if redetect_every is not None and redetect_every < 1:
      raise ValueError(f"redetect_every: must be None or >= 1, got {redetect_every}")
    self.detector = detector if isinstance(detector, FaceDetector) else FaceDetector(
        detector, num_threads=num_threads)
    if fallback is None or isinstance(fallback, FaceDetector):
      self.fallback = fallback
    else:
      self.fallback = (None if fallback == self.detector.model
                       else FaceDetector(fallback, num_threads=num_threads))
    self.mesh = FaceMesh(num_threads=num_threads)
    self.min_presence = float(min_presence)
    self.min_iou = float(min_iou)
    self.redetect_every = redetect_every
    self.refine = refine
    self.detector_runs = 0
    self.mesh_runs = 0
    self.reset()

  def reset(self) -> None:
    """Forgets the tracked face (call between unrelated clips)."""
    self._roi: Roi | None = None
    self._last_box: np.ndarray | None = None
    self._since_detection = 0

  def _detect(self, frame: np.ndarray) -> Detections:
    self.detector_runs += 1
    dets = self.detector.run(frame)
    if len(dets) == 0 and self.fallback is not None:
      self.detector_runs += 1
      dets = self.fallback.run(frame)
    return dets

  def select(self, dets: Detections, frame_size: tuple[int, int]) -> int:
    """Index of the detection to follow (see the module docstring)."""
    if self._last_box is not None:
      iou = box_iou(self._last_box[None], dets.boxes)[0]
      best = int(np.argmax(iou))
      if iou[best] >= self.min_iou:
        return best
    height, width = frame_size
    b = dets.boxes.astype(np.float64)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    dist = np.hypot(0.5 * (b[:, 0] + b[:, 2]) - 0.5 * width, 0.5 * (b[:, 1] + b[:, 3]) - 0.5 * height)
    score = area * np.clip(1.0 - dist / (0.5 * math.hypot(width, height)), 0.0, None)
    return int(np.argmax(score))

  def _run_mesh(self, frame: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
    self.mesh_runs += 1
    return self.mesh.run(frame, roi)

  def _usable(self, mesh: np.ndarray, presence: float) -> bool:
    if presence < self.min_presence or not np.all(np.isfinite(mesh)):
      return False
    box = mesh_box(mesh)
    return bool(box[2] - box[0] > 4 and box[3] - box[1] > 4)

  def update(self, frame, name: str = "frame") -> FrameFace:
    """Processes the next frame of the clip ((H, W, 3) RGB, uint8 or float in [0, 1])."""
    frame = check_frame(frame, name)
    result = None
    periodic = self.redetect_every is not None and self._since_detection >= self.redetect_every
    if self._roi is not None and not periodic:
      mesh, presence = self._run_mesh(frame, self._roi)
      if self._usable(mesh, presence):
        result = FrameFace(mesh, presence, "tracking")
    if result is None:
      self._since_detection = 0
      dets = self._detect(frame)
      if len(dets):
        i = self.select(dets, frame.shape[:2])
        mesh, presence = self._run_mesh(frame, roi_from_detection(dets.boxes[i], dets.keypoints[i]))
        if self._usable(mesh, presence) and self.refine:
          mesh2, presence2 = self._run_mesh(frame, roi_from_mesh(mesh))
          if self._usable(mesh2, presence2):
            mesh, presence = mesh2, presence2
        if self._usable(mesh, presence):
          result = FrameFace(mesh, presence, "detection")
      if result is None and periodic and self._roi is not None:
        # A periodic check that missed (e.g. a profile the detector cannot see): keep tracking.
        mesh, presence = self._run_mesh(frame, self._roi)
        if self._usable(mesh, presence):
          result = FrameFace(mesh, presence, "tracking")
    self._since_detection += 1
    if result is None:
      self._roi = None  # keep _last_box: a re-detected face is matched against it
      return FrameFace(None, 0.0, "none")
    self._roi = roi_from_mesh(result.mesh)
    self._last_box = mesh_box(result.mesh)
    return result


@dataclasses.dataclass(frozen=True)
class FaceTrack:
  """A face tracked through a clip. All coordinates in frame pixels; NaN where no face.

  Attributes:
    landmarks: (T, 131, 2) float32 IP_LAP points (``talkjax.landmarks`` order), not smoothed.
    boxes: (T, 4) float32 xyxy bounding boxes of the 468-point mesh, not smoothed.
    smooth_boxes: (T, 4) float32 ``boxes`` after the centred moving average within segments.
    presence: (T,) float32 mesh face-presence probability (0 on undetected frames).
    detected: (T,) bool, a face was found on the frame.
    interpolated: (T,) bool, the frame's face was interpolated across a short gap.
    segments: half-open ``(start, stop)`` ranges of consecutive usable frames.
    frame_size: ``(height, width)`` of the frames.
    max_gap: the longest gap that was interpolated.
    mesh: (T, 468, 3) float32 full mesh, or None when not kept.
    detector_runs: how many times a detector model ran (a measure of tracking efficiency).
  """
  landmarks: np.ndarray
  boxes: np.ndarray
  smooth_boxes: np.ndarray
  presence: np.ndarray
  detected: np.ndarray
  interpolated: np.ndarray
  segments: tuple[tuple[int, int], ...]
  frame_size: tuple[int, int]
  max_gap: int
  mesh: np.ndarray | None = None
  detector_runs: int = 0

  @property
  def num_frames(self) -> int:
    return int(self.detected.shape[0])

  @property
  def valid(self) -> np.ndarray:
    """(T,) bool: frames with a face (detected or interpolated)."""
    return self.detected | self.interpolated

  @property
  def num_detected(self) -> int:
    return int(self.detected.sum())

  @property
  def num_interpolated(self) -> int:
    return int(self.interpolated.sum())

  @property
  def num_missing(self) -> int:
    """Frames left without a face (in long gaps or at the clip's ends)."""
    return self.num_frames - int(self.valid.sum())

  @property
  def missing_frames(self) -> np.ndarray:
    return np.flatnonzero(~self.valid)

  def summary(self) -> str:
    return (f"{self.num_frames} frames: {self.num_detected} detected, {self.num_interpolated} "
            f"interpolated, {self.num_missing} missing; {len(self.segments)} segment(s) "
            f"{list(self.segments)}; detector ran {self.detector_runs} time(s)")


def track_faces(frames: Iterable, *, tracker: FaceTracker | None = None, max_gap: int = DEFAULT_MAX_GAP,
                smooth_window: int = DEFAULT_SMOOTH_WINDOW, keep_mesh: bool = True,
                progress: bool = False, total: int | None = None, **tracker_kwargs) -> FaceTrack:
  """Tracks the face through ``frames`` (any iterable of (H, W, 3) RGB arrays; streamed).

  Only the per-frame results are kept, never the frames, so memory stays small on long videos
  (about 5.6 kB a frame with the mesh, 1 kB without).

  Args:
    frames: the clip's frames, uint8 or float in [0, 1], all the same size.
    tracker: a :class:`FaceTracker` to use (it is reset first); else one is built from
      ``tracker_kwargs``.
    max_gap: longest run of faceless frames between two faces that is interpolated.
    smooth_window: moving-average window (frames) for ``smooth_boxes``; 1 disables smoothing.
    keep_mesh: keep the full (T, 468, 3) mesh in the result.
    progress: show a tqdm progress bar (stderr).
    total: number of frames, for the progress bar when ``frames`` has no ``len``.

  Returns:
    A :class:`FaceTrack`. Blank or faceless frames never raise; see :func:`require_face`.
  """
  if max_gap < 0:
    raise ValueError(f"max_gap: must be >= 0, got {max_gap}")
  if smooth_window < 1:
    raise ValueError(f"smooth_window: must be >= 1, got {smooth_window}")
  if tracker is None:
    tracker = FaceTracker(**tracker_kwargs)
  elif tracker_kwargs:
    raise ValueError(f"pass either tracker or tracker options, not both ({sorted(tracker_kwargs)})")
  tracker.reset()
  runs_before = tracker.detector_runs
  if total is None and hasattr(frames, "__len__"):
    total = len(frames)  # type: ignore[arg-type]
  meshes, boxes, presence, frame_size = [], [], [], None
  empty = np.full((NUM_MESH_POINTS, 3), np.nan, np.float32)
  no_box = np.full((4,), np.nan, np.float32)
  for t, frame in enumerate(tqdm(frames, total=total, disable=not progress, desc="faces", unit="frame")):
    frame = check_frame(frame, f"frame {t}")
    if frame_size is None:
      frame_size = frame.shape[:2]
    elif frame.shape[:2] != frame_size:
      raise ValueError(f"frame {t}: size {frame.shape[1]}x{frame.shape[0]} differs from the first "
                       f"frame's {frame_size[1]}x{frame_size[0]}")
    face = tracker.update(frame, f"frame {t}")
    mesh = empty if face.mesh is None else face.mesh
    meshes.append(mesh if keep_mesh else lm.select_from_mesh(mesh))
    # Boxes come from the whole mesh (forehead included) even when only the 131 points are kept.
    boxes.append(no_box if face.mesh is None else mesh_box(face.mesh))
    presence.append(face.presence)
  if frame_size is None:
    raise ValueError("frames: the clip has no frames")
  points = np.stack(meshes)
  detected = np.all(np.isfinite(points.reshape(len(points), -1)), axis=1)
  interpolated, segments = plan_gaps(detected, max_gap)
  points = interpolate_gaps(points, detected, interpolated)
  boxes = interpolate_gaps(np.stack(boxes), detected, interpolated)
  landmarks = lm.select_from_mesh(points[..., :2]) if keep_mesh else points[..., :2]
  return FaceTrack(
      landmarks=np.ascontiguousarray(landmarks, np.float32),
      boxes=boxes,
      smooth_boxes=smooth_segments(boxes, segments, smooth_window),
      presence=np.asarray(presence, np.float32),
      detected=detected,
      interpolated=interpolated,
      segments=segments,
      frame_size=(int(frame_size[0]), int(frame_size[1])),
      max_gap=int(max_gap),
      mesh=points if keep_mesh else None,
      detector_runs=tracker.detector_runs - runs_before,
  )


def require_face(track: FaceTrack, source: str = "<frames>", *, every_frame: bool = False) -> FaceTrack:
  """Returns ``track`` if it has a face where the caller needs one, else raises ``NoFaceError``.

  Args:
    track: the result of :func:`track_faces`.
    source: the file (or description) named in the error.
    every_frame: require a face (detected or interpolated) on every frame, not just on one.
  """
  if not np.any(track.valid):
    raise NoFaceError(source, f"no face detected in any of its {track.num_frames} frame(s)")
  if every_frame and track.num_missing:
    missing = track.missing_frames
    listed = ", ".join(str(int(i)) for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
    raise NoFaceError(source, f"no face in {len(missing)} of {track.num_frames} frames ({listed})")
  return track
