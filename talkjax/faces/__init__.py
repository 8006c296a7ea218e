"""Real faces: MediaPipe detection + 468-point mesh (ai-edge-litert), tracking, crops, paste-back.

Typical preprocessing of a clip (streams frames; keeps only small per-frame arrays)::

  from talkjax import faces
  track = faces.track_faces(frames)                      # never raises on faceless frames
  print(track.summary())                                 # detected / interpolated / missing, segments
  boxes = faces.ip_lap_boxes(track.landmarks, margin=5)  # (T, 4) square boxes, source pixels
  crops = [faces.crop(f, b, 128) for f, b in zip(frames, boxes) if np.isfinite(b).all()]
  points_in_crop = faces.to_crop_coords(track.landmarks, boxes, 128)

and of generation (paste the generated crops back)::

  boxes = faces.loose_boxes(track.landmarks, segments=track.segments, frame_size=track.frame_size)
  out = faces.paste_blend(frame, generated, boxes[t], faces.ellipse_mask(256))

All points and boxes are continuous pixel coordinates (pixel (i, j) spans [j, j+1) x [i, i+1)).
"""

from talkjax.faces.crops import (
    IP_LAP_INFERENCE_MARGIN,
    IP_LAP_TRAIN_MARGIN,
    crop,
    crop_frames,
    from_crop_coords,
    int_box,
    ip_lap_boxes,
    loose_boxes,
    normalise_in_boxes,
    square_boxes,
    to_crop_coords,
)
from talkjax.faces.detector import Detections, FaceDetector, box_iou
from talkjax.faces.mesh import FACE_OVAL, FaceMesh, Roi, roi_from_detection, roi_from_mesh
from talkjax.faces.paste import ellipse_mask, landmark_mask, paste_blend, paste_direct, paste_frames
from talkjax.faces.temporal import OneEuroFilter, interpolate_gaps, plan_gaps, smooth_segments
from talkjax.faces.tracker import FaceTrack, FaceTracker, FrameFace, mesh_box, require_face, track_faces

__all__ = [
    "IP_LAP_INFERENCE_MARGIN", "IP_LAP_TRAIN_MARGIN", "Detections", "FACE_OVAL", "FaceDetector",
    "FaceMesh", "FaceTrack", "FaceTracker", "FrameFace", "OneEuroFilter", "Roi", "box_iou", "crop",
    "crop_frames",
    "ellipse_mask", "from_crop_coords", "int_box", "interpolate_gaps", "ip_lap_boxes", "landmark_mask",
    "loose_boxes", "mesh_box", "normalise_in_boxes", "paste_blend", "paste_direct", "paste_frames",
    "plan_gaps", "require_face", "roi_from_detection", "roi_from_mesh", "smooth_segments",
    "square_boxes", "to_crop_coords", "track_faces",
]
