"""LMD (hand-computed displacements, and MediaPipe landmarks on a real face) and the openness
correlation on synthetic clips whose ground-truth openness is known."""

import numpy as np
import pytest
import skimage.data

from talkjax import landmarks as lm
from talkjax.data import synthetic
from talkjax.errors import ShapeError
from talkjax.metrics import lmd, openness

PHOTO = skimage.data.astronaut()


def test_lmd_of_known_displacements():
  rng = np.random.default_rng(0)
  ref = rng.uniform(0, 100, (6, lm.NUM_POINTS, 2)).astype(np.float32)
  gen = ref + np.array([3.0, 4.0], np.float32)                   # every point moved 5 px
  d = lmd.landmark_distance(gen, ref)
  assert d.m_lmd == pytest.approx(5.0) and d.f_lmd == pytest.approx(5.0)
  lips_only = ref.copy()
  lips_only[:, lm.LIPS_SLICE] += np.array([3.0, 4.0], np.float32)
  d = lmd.landmark_distance(lips_only, ref)
  assert d.m_lmd == pytest.approx(5.0) and d.f_lmd == pytest.approx(5.0 * 40 / 131)
  # Frames without a face (NaN rows) on either side are left out of the means and counted.
  missing = lips_only.copy()
  missing[1] = np.nan
  ref_missing = ref.copy()
  ref_missing[4, 0] = np.nan
  d = lmd.landmark_distance(missing, ref_missing)
  assert (d.frames_used, d.frames_total) == (4, 6) and d.m_lmd == pytest.approx(5.0)
  assert np.isnan(lmd.landmark_distance(np.full_like(ref, np.nan), ref).m_lmd)
  with pytest.raises(ShapeError, match="131"):
    lmd.per_frame(ref[:, :68], ref[:, :68])
  with pytest.raises(ShapeError, match="subset"):
    lmd.per_frame(ref, ref, subset="eyes")


def test_lmd_on_mediapipe_landmarks_of_a_real_face():
  frames = [PHOTO, np.roll(PHOTO, 4, axis=1), np.zeros_like(PHOTO)]   # moved 4 px right; no face
  marks = lmd.detect(frames)
  assert marks.shape == (3, 131, 2) and np.all(np.isnan(marks[2]))
  same = lmd.landmark_distance(marks[:1], marks[:1])
  assert same.m_lmd == 0.0 and same.frames_used == 1
  moved = lmd.landmark_distance(marks[1:2], marks[:1])
  assert moved.f_lmd == pytest.approx(4.0, abs=0.6) and moved.m_lmd == pytest.approx(4.0, abs=0.8)
  assert lmd.landmark_distance(marks[1:], marks[:2]).frames_used == 1


@pytest.fixture(scope="module")
def clip():
  return synthetic.generate_clip(seed=5, size=128, duration=2.0)


def test_openness_correlation_tracks_the_speech(clip):
  target = clip.visemes[:, 0]
  r_true = openness.openness_correlation(clip.frames, clip.landmarks, target)
  assert r_true > 0.9                                             # the yardstick's ceiling
  # A generator whose mouth lags the speech by 4 frames (160 ms) scores clearly lower ...
  lag = 4
  late = np.concatenate([np.repeat(clip.frames[:1], lag, 0), clip.frames[:-lag]])
  late_marks = np.concatenate([np.repeat(clip.landmarks[:1], lag, 0), clip.landmarks[:-lag]])
  r_late = openness.openness_correlation(late, late_marks, target)
  assert r_late < r_true - 0.1
  # ... and one whose mouth never moves scores NaN (no variation to correlate).
  still = np.repeat(clip.frames[:1], len(target), 0)
  assert np.isnan(openness.openness_correlation(still, np.repeat(clip.landmarks[:1], len(target), 0), target))
  m = synthetic.measure_mouth_openness(clip.frames, clip.landmarks)
  assert r_true == pytest.approx(np.corrcoef(m, target)[0, 1], abs=1e-12)


def test_pearson_and_shape_errors(clip):
  assert openness.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1])
  with pytest.raises(ShapeError, match="equal-length"):
    openness.pearson([1, 2], [1, 2, 3])
  with pytest.raises(ShapeError, match="target_openness"):
    openness.openness_correlation(clip.frames, clip.landmarks, clip.visemes[:-1, 0])
