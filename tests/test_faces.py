"""Tests of talkjax.faces: real MediaPipe detection + mesh on a real photo, tracking, gaps, crops, paste."""

from __future__ import annotations

import math

import chex
import numpy as np
import pytest
import skimage.data
from PIL import Image

from talkjax import faces
from talkjax import landmarks as lm
from talkjax.errors import CheckpointError, NoFaceError
from talkjax.faces import detector as det_mod
from talkjax.faces import paste as paste_mod
from talkjax.faces._image import check_frame

PHOTO = skimage.data.astronaut()  # 512x512 RGB, one frontal face around (225, 125)
FACE_CENTRE = (224.0, 150.0)  # photo point shown at the centre of the 256x256 test frames


def frame_to_photo(tx: float, ty: float, degrees: float, scale: float, half: float = 128.0):
  """Affine (A, b): frame pixel p -> photo pixel A p + b (continuous pixel coordinates)."""
  a = math.radians(degrees)
  mat = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
  return mat, np.array(FACE_CENTRE) + np.array([tx, ty]) - mat @ np.array([half, half])


def render(mat: np.ndarray, off: np.ndarray, size: int = 256) -> np.ndarray:
  # PIL's affine transform maps output continuous coordinates to input ones, like our convention.
  data = (mat[0, 0], mat[0, 1], off[0], mat[1, 0], mat[1, 1], off[1])
  return np.asarray(Image.fromarray(PHOTO).transform((size, size), Image.AFFINE, data, Image.BILINEAR))


@pytest.fixture(scope="module")
def tracker():
  return faces.FaceTracker(num_threads=1)


# ------------------------------------------------------------------------------------------------
# Detector


def test_anchor_layouts_match_mediapipe():
  short = det_mod.ssd_anchor_centres(128, (8, 16, 16, 16), 2)
  full = det_mod.ssd_anchor_centres(192, (4,), 1)
  chex.assert_shape(short, (896, 2))
  chex.assert_shape(full, (2304, 2))
  # Stride 8: a 16x16 grid, 2 anchors a cell, row-major; then stride 16: 8x8 grid, 6 anchors a cell.
  np.testing.assert_allclose(short[0], short[1])
  np.testing.assert_allclose(short[:2], [[1 / 32, 1 / 32]] * 2)
  np.testing.assert_allclose(short[2], [3 / 32, 1 / 32])
  np.testing.assert_allclose(short[512:518], [[1 / 16, 1 / 16]] * 6)
  np.testing.assert_allclose(short[-1], [15 / 16, 15 / 16])
  np.testing.assert_allclose(full[48], [1 / 96, 3 / 96])


def test_box_iou_and_weighted_nms():
  a = np.array([[0, 0, 10, 10]], np.float32)
  b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
  np.testing.assert_allclose(faces.box_iou(a, b), [[50 / 150, 0.0, 1.0]])
  boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
  kps = np.stack([np.full((6, 2), v, np.float32) for v in (1.0, 3.0, 7.0)])
  scores = np.array([0.6, 0.9, 0.8], np.float32)
  out_b, out_k, out_s = det_mod.weighted_nms(boxes, kps, scores, 0.3)
  # Best first; the two overlapping boxes merge into their score-weighted mean and keep the top score.
  np.testing.assert_allclose(out_s, [0.9, 0.8])
  np.testing.assert_allclose(out_b[0], (0.9 * boxes[1] + 0.6 * boxes[0]) / 1.5, rtol=1e-6)
  np.testing.assert_allclose(out_k[0], np.full((6, 2), (0.9 * 3 + 0.6 * 1) / 1.5), rtol=1e-6)
  np.testing.assert_allclose(out_b[1], boxes[2])


@pytest.mark.parametrize("model", ["short", "full"])
def test_detector_finds_the_astronaut_and_undoes_the_letterbox(model):
  detect = faces.FaceDetector(model, num_threads=1)
  found = detect(PHOTO)
  assert len(found) == 1 and found.scores[0] > 0.8
  box, kp = found.boxes[0], found.keypoints[0]
  # The face spans about x 175..275, y 75..175 in the photo; eyes above nose above mouth.
  assert abs(0.5 * (box[0] + box[2]) - 225) < 8 and abs(0.5 * (box[1] + box[3]) - 125) < 10
  assert 85 < box[2] - box[0] < 115
  assert kp[det_mod.LEFT_EYE, 0] < kp[det_mod.NOSE_TIP, 0] < kp[det_mod.RIGHT_EYE, 0]
  assert kp[det_mod.LEFT_EYE, 1] < kp[det_mod.NOSE_TIP, 1] < kp[det_mod.MOUTH, 1]
  # The same photo inside a wide canvas (letterboxed differently, smaller in the input): the box moves
  # by the paste offset and keeps its size.
  canvas = np.full((560, 640, 3), 128, np.uint8)
  canvas[24:536, 100:612] = PHOTO
  moved = detect(canvas)
  assert len(moved) == 1
  # (BlazeFace's boxes wobble by a few pixels with the face's scale in the input.)
  np.testing.assert_allclose(moved.boxes[0], box + np.array([100, 24, 100, 24]), atol=8.0)
  assert len(detect(np.zeros((256, 256, 3), np.uint8))) == 0
  assert len(detect(np.full((200, 300, 3), 0.5, np.float32))) == 0


# ------------------------------------------------------------------------------------------------
# Mesh ROI geometry


def test_roi_matrix_and_roi_from_mesh_recover_a_rotation():
  roi = faces.Roi(cx=100.0, cy=50.0, size=96.0, angle=math.radians(30))
  m = roi.crop_to_image(192)
  np.testing.assert_allclose(m @ [96, 96, 1], [100, 50], atol=1e-9)  # crop centre -> ROI centre
  # One crop pixel along the crop's x axis moves size/192 pixels along (cos, sin) of the angle.
  np.testing.assert_allclose(m @ [97, 96, 1] - m @ [96, 96, 1],
                             0.5 * np.array([math.cos(roi.angle), math.sin(roi.angle)]), atol=1e-9)
  # A synthetic "mesh": an upright 60x80 point cloud, rotated by 20 degrees about (300, 200).
  rng = np.random.default_rng(0)
  pts = np.concatenate([rng.uniform([-30, -40], [30, 40], (468, 2)), np.zeros((468, 1))], axis=1)
  pts[33, :2], pts[263, :2] = (-25, -10), (25, -10)  # outer eye corners level
  pts[0, :2], pts[1, :2] = (-30, -40), (30, 40)  # pin the extent
  a = math.radians(20)
  rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
  pts[:, :2] = pts[:, :2] @ rot.T + [300, 200]
  got = faces.roi_from_mesh(pts)
  assert got.angle == pytest.approx(a, abs=1e-9)
  assert got.size == pytest.approx(80 * 1.5, abs=1e-6)  # long side of the eye-aligned box, x1.5
  np.testing.assert_allclose([got.cx, got.cy], [300, 200], atol=1e-6)


def test_mesh_is_consistent_across_resolutions(tracker):
  # The same photo at 4x (2048x2048): the ROI is box-reduced 4x before the crop, and the landmarks
  # must be the 512-px ones scaled by 4.
  small = faces.track_faces([PHOTO], tracker=tracker)
  big = faces.track_faces([np.asarray(Image.fromarray(PHOTO).resize((2048, 2048), Image.BICUBIC))],
                          tracker=tracker)
  assert small.num_detected == big.num_detected == 1
  assert np.linalg.norm(big.landmarks[0] / 4 - small.landmarks[0], axis=-1).mean() < 0.5


# ------------------------------------------------------------------------------------------------
# Tracking on a real face under known motion


def _motion_clip():
  rng = np.random.default_rng(7)
  params = [(0.0, 0.0, 0.0, 1.0)] + [
      (rng.uniform(-8, 8), rng.uniform(-8, 8), rng.uniform(-6, 6), rng.uniform(0.92, 1.08))
      for _ in range(23)]
  mats = [frame_to_photo(*p) for p in params]
  blank = {6, 7} | set(range(13, 20))  # a 2-frame gap (interpolated) and a 7-frame gap (split)
  frames = [np.zeros((256, 256, 3), np.uint8) if t in blank else render(*m) for t, m in enumerate(mats)]
  return frames, mats, blank


def test_tracking_follows_known_motion_and_reports_blank_frames(tracker):
  frames, mats, blank = _motion_clip()
  track = faces.track_faces(iter(frames), tracker=tracker, max_gap=5)  # a generator: streamed
  t_all = len(frames)
  chex.assert_shape(track.landmarks, (t_all, 131, 2))
  chex.assert_shape(track.mesh, (t_all, 468, 3))
  chex.assert_shape(track.boxes, (t_all, 4))
  expected_detected = np.array([t not in blank for t in range(t_all)])
  np.testing.assert_array_equal(track.detected, expected_detected)
  np.testing.assert_array_equal(np.flatnonzero(track.interpolated), [6, 7])
  assert track.segments == ((0, 13), (20, 24))
  assert (track.num_detected, track.num_interpolated, track.num_missing) == (15, 2, 7)
  np.testing.assert_array_equal(track.missing_frames, np.arange(13, 20))
  assert np.all(np.isnan(track.landmarks[13:20])) and np.all(np.isnan(track.smooth_boxes[13:20]))
  # Only the first frame, the frame after each gap and the blank frames (short + full-range
  # fallback) need the detector: 1 + 1 + 1 + 2 * 9.
  assert track.detector_runs == 21
  # Landmarks follow the known motion: frame 0's points mapped photo-wards and into frame t.
  mat0, off0 = mats[0]
  photo_pts = track.landmarks[0] @ mat0.T + off0
  errors = []
  for t in np.flatnonzero(track.detected)[1:]:
    mat, off = mats[t]
    expected = (photo_pts - off) @ np.linalg.inv(mat).T
    errors.append(np.linalg.norm(track.landmarks[t] - expected, axis=-1).mean())
  print("astronaut tracking: mean landmark error per frame (px):", np.round(errors, 2))
  assert max(errors) < 3.0, errors
  # The 2-frame gap is the straight line between frames 5 and 8.
  pts, boxes = track.landmarks, track.boxes
  np.testing.assert_allclose(pts[6], pts[5] + (pts[8] - pts[5]) / 3, atol=1e-4)
  np.testing.assert_allclose(boxes[7], boxes[5] + 2 * (boxes[8] - boxes[5]) / 3, atol=1e-4)
  # Landmark order: image-left mouth corner left of the image-right one, chin below the nose tip.
  assert np.all(track.landmarks[0, lm.MOUTH_LEFT, 0] < track.landmarks[0, lm.MOUTH_RIGHT, 0])
  assert track.landmarks[0, lm.CHIN, 1] > track.landmarks[0, lm.NOSE_TIP, 1]
  assert "7 missing" in track.summary()
  faces.require_face(track, "clip.mp4")  # some frames have a face: fine
  with pytest.raises(NoFaceError, match=r"clip\.mp4: no face in 7 of 24 frames \(13, 14"):
    faces.require_face(track, "clip.mp4", every_frame=True)


def test_blank_clip_never_raises_but_require_face_does(tracker):
  track = faces.track_faces([np.zeros((64, 96, 3), np.uint8)] * 3, tracker=tracker)
  assert track.num_missing == 3 and track.segments == () and track.frame_size == (64, 96)
  with pytest.raises(NoFaceError, match="photo.png: no face detected in any of its 3 frame"):
    faces.require_face(track, "photo.png")


def test_iou_tracking_keeps_the_same_face_of_two(tracker):
  # Two copies of the face side by side; the right one starts larger and shrinks while the left one
  # grows, so "largest face" would switch half way; IoU with the previous box must not.
  def frame(t):
    left = render(*frame_to_photo(0, 0, 0, 1.0 - 0.02 * t))
    right = render(*frame_to_photo(0, 0, 0, 0.9 + 0.02 * t))
    return np.concatenate([left, right], axis=1)
  frames = [frame(t) for t in range(11)]
  every = faces.FaceTracker(tracker.detector, fallback=None, redetect_every=1)
  for trk in (tracker, every):
    track = faces.track_faces(frames, tracker=trk)
    assert track.num_detected == 11
    centres_x = 0.5 * (track.boxes[:, 0] + track.boxes[:, 2])
    assert np.all(centres_x > 256), centres_x  # always the right-hand face
  assert track.detector_runs == 11
  # A fresh tracker on the last frame takes the (now larger) left face.
  fresh = faces.FaceTracker(tracker.detector, fallback=None).update(frames[-1])
  assert 0.5 * (fresh.box[0] + fresh.box[2]) < 256


# ------------------------------------------------------------------------------------------------
# Gaps and smoothing


def test_plan_and_interpolate_gaps():
  detected = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0], bool)
  interp, segments = faces.plan_gaps(detected, max_gap=2)
  # Leading and trailing gaps are never interpolated; the 2-gap is, the 3-gap splits.
  np.testing.assert_array_equal(np.flatnonzero(interp), [3, 4])
  assert segments == ((1, 6), (9, 11))
  values = np.arange(12, dtype=np.float32)[:, None] * np.array([1.0, -2.0], np.float32)
  values[~detected] = 123.0  # garbage where undetected
  out = faces.interpolate_gaps(values, detected, interp)
  np.testing.assert_allclose(out[3:5], [[3, -6], [4, -8]])
  assert np.all(np.isnan(out[[0, 6, 7, 8, 11]]))
  np.testing.assert_allclose(out[[1, 2, 5, 9, 10]], values[[1, 2, 5, 9, 10]])
  interp0, seg0 = faces.plan_gaps(detected, max_gap=0)
  assert not interp0.any() and seg0 == ((1, 3), (5, 6), (9, 11))


def test_smooth_segments_is_a_centred_average_without_lag():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(20, 3))
  out = faces.smooth_segments(x, [(2, 12), (15, 20)], window=5)
  ref = np.full_like(x, np.nan)
  for s, e in [(2, 12), (15, 20)]:
    for i in range(s, e):
      r = min(2, i - s, e - 1 - i)
      ref[i] = x[i - r:i + r + 1].mean(0)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
  ramp = np.linspace(0, 10, 15)[:, None]
  np.testing.assert_allclose(faces.smooth_segments(ramp, [(0, 15)], 7), ramp, atol=1e-5)  # no lag


def test_one_euro_filter_is_causal_steady_and_follows_steps():
  rng = np.random.default_rng(4)
  # beta = 0: a first-order low-pass with alpha = 1 / (1 + tau / dt), tau = 1 / (2 pi f_c); on white
  # noise of std 1 its output has std sqrt(alpha / (2 - alpha)).
  f = faces.OneEuroFilter(fps=25, min_cutoff=1.0, beta=0.0)
  np.testing.assert_array_equal(f(np.array([3.0, 4.0])), [3.0, 4.0])  # the first sample passes through
  steady = np.array([f(np.array([3.0, 4.0]) + rng.normal(0, 1.0, 2)) for _ in range(4000)])
  alpha = 1 / (1 + (1 / (2 * np.pi)) * 25)
  np.testing.assert_allclose(steady[50:].std(axis=0), np.sqrt(alpha / (2 - alpha)), rtol=0.1)
  np.testing.assert_allclose(steady[50:].mean(axis=0), [3.0, 4.0], atol=0.05)
  f = faces.OneEuroFilter(fps=25, min_cutoff=1.0, beta=0.05)
  out = np.array([f(np.array([0.0 if t < 5 else 10.0])) for t in range(40)])[:, 0]
  np.testing.assert_array_equal(out[:5], 0.0)  # causal: nothing moves before the step
  assert np.all(np.diff(out) >= 0) and 9.5 < out[-1] <= 10.0  # monotone, converges


# ------------------------------------------------------------------------------------------------
# Crops, coordinates, paste-back


def test_ip_lap_boxes_and_point_mapping():
  pts = np.zeros((2, 131, 2), np.float32)
  pts[0, :, 0] = np.linspace(100, 180, 131)  # x 100..180, y 50..110 -> 80x60
  pts[0, :, 1] = np.linspace(50, 110, 131)
  pts[1] = np.nan
  boxes = faces.ip_lap_boxes(pts, margin=5)
  # 90x70 with the margin, made square 90x90 around the same centre (140, 80).
  np.testing.assert_array_equal(boxes[0], [95, 35, 185, 125])
  assert np.all(np.isnan(boxes[1]))
  np.testing.assert_array_equal(faces.ip_lap_boxes(pts[0], margin=25), [75, 15, 205, 145])
  in_crop = faces.to_crop_coords(pts[0], boxes[0], 128)
  np.testing.assert_allclose(in_crop[0], [(100 - 95) * 128 / 90, (50 - 35) * 128 / 90], rtol=1e-6)
  np.testing.assert_allclose(faces.from_crop_coords(in_crop, boxes[0], 128), pts[0], atol=1e-4)
  norm = faces.normalise_in_boxes(pts[:1], boxes[:1])
  assert 0 < norm.min() and norm.max() < 1


def test_crop_pads_outside_the_frame():
  frame = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
  out = faces.crop(frame, np.array([-2, -1, 4, 5]))
  chex.assert_shape(out, (6, 6, 3))
  np.testing.assert_array_equal(out[1:, 2:], frame[0:5, 0:4])
  np.testing.assert_array_equal(out[1:, 0], frame[0:5, 0])  # edge replication
  np.testing.assert_array_equal(out[0, 2:], frame[0, 0:4])
  zero = faces.crop(frame, np.array([-2, -1, 4, 5]), pad="zero")
  assert np.all(zero[0] == 0) and np.all(zero[:, :2] == 0)
  assert np.all(faces.crop(frame, np.array([20, 20, 24, 24])) == 0)  # entirely outside
  with pytest.raises(ValueError, match=r"boxes\[3\]: expected a finite"):
    faces.crop(frame, np.array([np.nan, 0, 4, 4]), name="boxes[3]")


@pytest.mark.parametrize("box", [[40, 30, 140, 130], [-30, 100, 70, 200], [150, -20, 230, 60]])
def test_crop_then_paste_back_reproduces_the_frame(box):
  rng = np.random.default_rng(2)
  frame = rng.integers(0, 256, (180, 200, 3), dtype=np.uint8)
  box = np.array(box, np.float32)
  exact = faces.crop(frame, box)  # native size: a pixel copy
  np.testing.assert_array_equal(faces.paste_direct(frame, exact, box), frame)
  mask = faces.ellipse_mask(exact.shape[0])
  np.testing.assert_array_equal(faces.paste_blend(frame, exact, box, mask), frame)
  # Through a resize (a 100-px box at 64 px and back) the round trip is close on a smooth image.
  yy, xx = np.mgrid[0:180, 0:200]
  smooth = np.stack([xx, yy, xx + yy], -1).astype(np.float32) / 380.0
  small = faces.crop(smooth, box, 64)
  chex.assert_shape(small, (64, 64, 3))
  back = faces.paste_direct(smooth, small, box)
  x0, y0, x1, y1 = (int(v) for v in box)
  inner = (slice(max(y0, 0) + 2, min(y1, 180) - 2), slice(max(x0, 0) + 2, min(x1, 200) - 2))
  assert np.abs(back[inner] - smooth[inner]).max() < 0.01
  # float crops paste into uint8 frames in the frame's range
  pasted = faces.paste_direct(frame, np.full((16, 16, 3), 0.5, np.float32), box)
  assert pasted.dtype == np.uint8 and pasted[inner][0, 0, 0] == 128


def test_feathered_blend_has_no_seam_and_direct_cover_does():
  frame = np.full((200, 200, 3), 40, np.uint8)
  crop = np.full((128, 128, 3), 220, np.uint8)
  box = np.array([36, 36, 164, 164], np.float32)
  direct = faces.paste_direct(frame, crop, box).astype(np.int32)
  assert np.abs(np.diff(direct[100, :, 0])).max() == 180  # the box edge
  for mask in (faces.ellipse_mask(128), faces.landmark_mask(_face_points_in_crop(128), 128)):
    assert mask[0].max() == 0 and mask[:, -1].max() == 0  # zero along the crop border
    assert mask[64, 64] > 0.99
    blended = faces.paste_blend(frame, crop, box, mask).astype(np.int32)
    assert blended[100, 100, 0] >= 218  # the face is replaced in the middle
    red = blended[..., 0]
    steps = max(np.abs(np.diff(red, axis=0)).max(), np.abs(np.diff(red, axis=1)).max())
    assert steps <= 18, steps  # a gradual transition: at most 10% of the 180-level contrast a pixel
    np.testing.assert_array_equal(blended[:36], frame[:36])  # untouched outside the box


def _face_points_in_crop(size):
  """A plausible 131-point layout from the real mesh of the astronaut, in a loose crop of it."""
  track = faces.track_faces([PHOTO], tracker=faces.FaceTracker(num_threads=1))
  boxes = faces.loose_boxes(track.landmarks, frame_size=track.frame_size)
  return faces.to_crop_coords(track.landmarks[0], boxes[0], size)


def test_loose_boxes_are_stable_and_inside_the_frame():
  rng = np.random.default_rng(3)
  base = np.stack(np.meshgrid(np.linspace(0, 100, 131), [0.0], indexing="xy"), -1)[0]
  base[:, 1] = np.linspace(0, 120, 131)
  t = 30
  drift = np.linspace(0, 30, t)[:, None, None] * np.array([1.0, 0.0])  # slow pan right
  jitter = rng.normal(0, 2.0, (t, 1, 2))
  pts = base[None] + [60, 40] + drift + jitter
  pts[10:12] = np.nan  # a gap splits the clip: two segments
  boxes = faces.loose_boxes(pts, frame_size=(400, 300))
  sides = boxes[:, 2] - boxes[:, 0]
  np.testing.assert_array_equal(sides, boxes[:, 3] - boxes[:, 1])
  assert np.all(np.isnan(boxes[10:12]))
  assert len(np.unique(sides[:10])) == 1 and len(np.unique(sides[12:])) == 1  # constant per segment
  assert sides[0] == 180  # 1.5x the long side of the 100x120 landmark box
  centre_x = 0.5 * (boxes[:, 0] + boxes[:, 2])
  raw_x = 0.5 * (pts[..., 0].min(axis=1) + pts[..., 0].max(axis=1))
  seg = slice(12, 30)
  assert np.std(np.diff(centre_x[seg])) < 0.5 * np.std(np.diff(raw_x[seg]))  # jitter damped
  ok = ~np.isnan(boxes[:, 0])
  assert boxes[ok, 0].min() >= 0 and boxes[ok, 2].max() <= 300 and boxes[ok, 1].min() >= 0


# ------------------------------------------------------------------------------------------------
# Bad input


def test_bad_frames_are_named():
  with pytest.raises(ValueError, match=r"frame 2: expected an \(H, W, 3\) RGB image"):
    faces.track_faces([PHOTO[:64, :64], PHOTO[:64, :64], PHOTO[:64, :64, 0]], tracker=faces.FaceTracker())
  with pytest.raises(ValueError, match="img: image contains NaN"):
    check_frame(np.full((16, 16, 3), np.nan, np.float32), "img")
  with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
    check_frame(np.full((16, 16, 3), 200.0, np.float32))
  with pytest.raises(ValueError, match="frame 1: size 32x32 differs"):
    faces.track_faces([np.zeros((16, 16, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)])
  with pytest.raises(ValueError, match="mask: weights must be finite"):
    paste_mod.paste_blend(PHOTO, PHOTO[:8, :8], np.array([0, 0, 8, 8]), np.full((8, 8), 2.0))
  with pytest.raises(ValueError, match="model: expected one of"):
    faces.FaceDetector("medium")


def test_missing_or_wrong_model_files_raise_checkpoint_errors(tmp_path):
  with pytest.raises(CheckpointError, match="nothing.tflite: MediaPipe model file not found"):
    faces.FaceDetector(model_path=str(tmp_path / "nothing.tflite"))
  corrupt = tmp_path / "corrupt.tflite"
  corrupt.write_bytes(b"not a flatbuffer" * 64)
  with pytest.raises(CheckpointError, match="corrupt.tflite: not a loadable TFLite model"):
    faces.FaceMesh(model_path=str(corrupt))
  short = faces.FaceDetector("short").model_path
  with pytest.raises(CheckpointError, match=r"input of shape \(1, 192, 192, 3\), got \[\(1, 128"):
    faces.FaceMesh(model_path=short)
