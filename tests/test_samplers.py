"""Tests of the training samplers (talkjax.data.samplers) on the tiny synthetic corpus."""

import os

import chex
import numpy as np
import pytest
import skimage.data

from talkjax import audio as audio_lib
from talkjax import faces
from talkjax import landmarks as lm
from talkjax.data import samplers
from talkjax.data.loader import SegmentDataset
from talkjax.errors import ConfigError




@pytest.fixture(scope="session")
def corpus(tiny_corpus) -> str:
  return tiny_corpus


@pytest.fixture(scope="module")
def data(corpus) -> SegmentDataset:
  return SegmentDataset(corpus, "train")


@pytest.fixture(scope="module")
def clip_mels(data) -> dict:
  """The whole-clip Wav2Lip mel of every clip, from the audio front end (the reference)."""
  return {s["clip"]: audio_lib.melspectrogram(audio_lib.load(data.segment(i).meta["source"]))
          for i, s in enumerate(data.segments)}


def _window(mel: np.ndarray, frame: int, offset: int) -> np.ndarray:
  return audio_lib.mel_windows(mel, frame + 1, fps=25.0, offset=offset)[frame][..., None]


def _find(frames: np.ndarray, image: np.ndarray) -> int:
  (hits,) = np.nonzero(np.all(frames == image, axis=(1, 2, 3)))
  assert len(hits) >= 1
  return int(hits[0])


@pytest.mark.parametrize("name", list(samplers.SAMPLERS))
@pytest.mark.parametrize("image_size", [None, 64])
def test_batches_match_the_documented_spec(corpus, name, image_size):
  kwargs = {} if image_size is None or name == "landmarks" else {"image_size": image_size}
  ds = samplers.make_sampler(name, root=corpus, split="train", batch_size=3, seed=0, **kwargs)
  batch = ds[1]
  spec = samplers.sampler(name, SegmentDataset(corpus, "train"), **kwargs).spec()
  assert set(batch) == set(spec)
  for key, (shape, dtype) in spec.items():
    chex.assert_shape(batch[key], (3,) + shape)
    chex.assert_type(batch[key], dtype)
  stored = {"dck_pairs": 128}.get(name, 96)
  size = image_size or stored
  for key in batch:
    if batch[key].dtype == np.uint8:
      assert batch[key].shape[-2] == size
  if name == "renderer":
    assert spec["references"][0] == (3, size, size, 3)


def test_wav2lip_windows_follow_wav2lips_offsets(data, clip_mels):
  smp = samplers.sampler("wav2lip", data)
  for item in (0, 5):
    ex = smp.example(item, np.random.default_rng(item))
    i = smp._items[item]
    allf = data.frames(i, range(data.segments[i]["num_frames"]))
    t = _find(allf, ex["frames"][0])
    np.testing.assert_array_equal(ex["frames"], allf[t:t + 5])
    np.testing.assert_array_equal(ex["masked"][:, :48], ex["frames"][:, :48])
    assert not ex["masked"][:, 48:].any() and ex["frames"][:, 48:].any()
    r = _find(allf, ex["reference"][0])
    assert r != t
    np.testing.assert_array_equal(ex["reference"], allf[r:r + 5])
    mel = clip_mels[data.segments[i]["clip"]]
    start = data.segments[i]["start"]
    np.testing.assert_array_equal(ex["mel"], _window(mel, start + t, 0))
    for k in range(5):  # frame k of the window takes the window starting one frame earlier
      np.testing.assert_array_equal(ex["indiv_mels"][k], _window(mel, start + t + k, -1))
    assert t >= 1  # the first frame's shifted window must exist (Wav2Lip skips t = 0)


def _syncnet_positions(data, clip_mels, smp, item, ex):
  """Checks a syncnet example's faces are frames t..t+4 (lower halves); returns t and, for each of its
  mels, the frames whose mel window it is."""
  i = smp._items[item]
  seg = data.segment(i)
  allf = data.frames(i, range(seg.num_frames))
  t = _find(allf[:, 48:], ex["faces"][0])
  np.testing.assert_array_equal(ex["faces"], allf[t:t + 5, 48:])
  mel = clip_mels[data.segments[i]["clip"]]
  return t, [[u for u in range(seg.num_frames) if np.array_equal(m, _window(mel, seg.meta["start"] + u, 0))]
             for m in ex["mel"].reshape(-1, 80, 16, 1)]


def test_syncnet_pairs_lower_halves_with_in_and_off_sync_audio(data, clip_mels):
  smp = samplers.sampler("syncnet", data, min_shift=5)
  labels = []
  for k in range(24):
    ex = smp.example(k % smp.num_items, np.random.default_rng([7, k]))
    t, (matches,) = _syncnet_positions(data, clip_mels, smp, k % smp.num_items, ex)
    assert len(matches) == 1
    if ex["label"] == 1.0:
      assert matches == [t]
    else:
      assert abs(matches[0] - t) >= 5
    labels.append(float(ex["label"]))
  assert 0 < sum(labels) < len(labels)


def test_syncnet_negatives_give_each_window_its_in_sync_and_k_off_sync_windows(data, clip_mels):
  smp = samplers.sampler("syncnet", data, min_shift=5, negatives=3)
  assert smp.spec()["mel"] == ((4, 80, 16, 1), np.float32) and smp.spec()["label"] == ((4,), np.float32)
  for k in range(12):
    ex = smp.example(k % smp.num_items, np.random.default_rng([9, k]))
    chex.assert_shape(ex["mel"], (4, 80, 16, 1))
    np.testing.assert_array_equal(ex["label"], [1, 0, 0, 0])
    t, at = _syncnet_positions(data, clip_mels, smp, k % smp.num_items, ex)
    assert at[0] == [t]
    offs = [u for (u,) in at[1:]]
    assert all(abs(u - t) >= 5 for u in offs) and len(set(offs)) == 3   # distinct off-sync starts
  # negatives = 0 (the default) is the one-pair stream with the draws it always made (label, start,
  # partner), so held-out checks before and after this option see the same pairs.
  one = samplers.sampler("syncnet", data)
  for k in range(6):
    ex = one.example(k, np.random.default_rng(k))
    assert ex["mel"].shape == (80, 16, 1) and ex["label"].shape == ()
    rng, i = np.random.default_rng(k), one._items[k]
    starts = one._starts(data.segments[i])
    positive = rng.random() < 0.5
    t = int(rng.choice(starts[(starts - starts[0] >= 5) | (starts[-1] - starts >= 5)]))
    u = t if positive else int(rng.choice(starts[np.abs(starts - t) >= 5]))
    seg = data.segment(i)
    np.testing.assert_array_equal(ex["faces"], data.frames(i, range(t, t + 5))[:, 48:])
    np.testing.assert_array_equal(ex["mel"], seg.mel_window(u, 0))
    assert ex["label"] == float(positive)
  with pytest.raises(ConfigError, match="negatives: expected an integer >= 0"):
    samplers.sampler("syncnet", data, negatives=-1)


def _mouth_by_hand(points: np.ndarray, start: int) -> np.ndarray:
  """The expert's mouth target of frames start .. start + 4 from (T, 131, 2) box-normalised landmarks."""
  p = points[start:start + 5]
  inner = np.hypot(*(p[:, lm.index_of(13)] - p[:, lm.index_of(14)]).T)
  width = np.hypot(*(p[:, lm.index_of(61)] - p[:, lm.index_of(291)]).T)
  return 30.0 * np.stack([inner, width - width.mean()], axis=-1)


def test_syncnet_mouth_targets_are_the_mouth_shape_of_each_windows_frames(data, clip_mels):
  smp = samplers.sampler("syncnet", data, min_shift=5, negatives=2, mouth=True)
  assert smp.spec()["face_mouth"] == ((5, 2), np.float32)
  assert smp.spec()["mel_mouth"] == ((3, 5, 2), np.float32)
  openings = []
  for k in range(6):
    item = k % smp.num_items
    ex = smp.example(item, np.random.default_rng([3, k]))
    chex.assert_shape([ex["face_mouth"], ex["mel_mouth"]], [(5, 2), (3, 5, 2)])
    openings.append(ex["mel_mouth"][..., 0])
    t, at = _syncnet_positions(data, clip_mels, smp, item, ex)
    points = data.segment(smp._items[item]).arrays["landmarks"].astype(np.float64) / data.settings["size"]
    np.testing.assert_allclose(ex["face_mouth"], _mouth_by_hand(points, t), atol=1e-4)
    for window, (u,) in zip(ex["mel_mouth"], at):   # each mel window's target: the frames it sounds for
      np.testing.assert_allclose(window, _mouth_by_hand(points, u), atol=1e-4)
    np.testing.assert_array_equal(ex["mel_mouth"][0], ex["face_mouth"])
  # The synthetic mouth opens and closes: the inner opening is never negative and varies.
  assert np.min(openings) >= 0 and np.std(openings) > 0.1
  # One pair per window (negatives = 0): one target per mel window as well.
  one = samplers.sampler("syncnet", data, mouth=True)
  assert one.spec()["mel_mouth"] == ((5, 2), np.float32)
  examples = [one.example(k % one.num_items, np.random.default_rng(k)) for k in range(8)]
  positives = [ex for ex in examples if ex["label"] == 1.0]
  assert 0 < len(positives) < len(examples)
  for ex in positives:
    np.testing.assert_array_equal(ex["mel_mouth"], ex["face_mouth"])
  assert any(not np.array_equal(ex["mel_mouth"], ex["face_mouth"]) for ex in examples if ex["label"] == 0.0)
  assert "face_mouth" not in samplers.sampler("syncnet", data).spec()


def test_mouth_shape_is_unchanged_by_a_mirror_flip(data):
  points = data.segment(0).arrays["landmarks"] / data.settings["size"]
  shape = lm.mouth_shape(points)
  chex.assert_shape(shape, (points.shape[0], 3))
  np.testing.assert_allclose(lm.mouth_shape(samplers.flip_landmarks(points)), shape, atol=1e-6)
  np.testing.assert_allclose(shape[:, 0], lm.inner_mouth_opening(points), atol=1e-7)


def test_dck_pairs_share_pose_and_differ_in_speech(data, clip_mels):
  smp = samplers.sampler("dck_pairs", data, swap=True)
  assert smp.num_items == 4  # 2 train speakers x 2 pairs
  swaps = set()
  for k in range(8):
    ex = smp.example(k % 4, np.random.default_rng(k))
    a, b = smp._items[k % 4]
    fa, fb = data.frames(a, range(50), "face"), data.frames(b, range(50), "face")
    hits = [(_find(fa, ex["source"]), "a") if np.any(np.all(fa == ex["source"], axis=(1, 2, 3))) else None,
            (_find(fb, ex["source"]), "b") if np.any(np.all(fb == ex["source"], axis=(1, 2, 3))) else None]
    (t, member), = [h for h in hits if h]
    src, tgt = (a, b) if member == "a" else (b, a)
    swaps.add(member)
    np.testing.assert_array_equal(ex["target"], data.frames(tgt, [t], "face")[0])
    seg_s, seg_t = data.segment(src), data.segment(tgt)
    np.testing.assert_array_equal(ex["target_mel"], _window(clip_mels[seg_t.meta["clip"]], t, -2))
    np.testing.assert_array_equal(ex["source_mel"], _window(clip_mels[seg_s.meta["clip"]], t, -2))
    # Same head pose: identical pose landmarks; different speech: lips differ somewhere in the clip.
    pose = lm.POSE_SLICE
    np.testing.assert_array_equal(ex["source_landmarks"][pose], ex["target_landmarks"][pose])
    np.testing.assert_allclose(ex["source_landmarks"] * 128, seg_s.arrays["face_landmarks"][t], atol=1e-4)
    assert np.abs(seg_s.arrays["face_landmarks"][:, lm.LIPS_SLICE]
                  - seg_t.arrays["face_landmarks"][:, lm.LIPS_SLICE]).max() > 1.0
    top = slice(0, 45)  # forehead and eyes: the same picture in both clips
    assert np.abs(ex["source"][top].astype(int) - ex["target"][top]).mean() < 4.0
  assert swaps == {"a", "b"}


def test_landmarks_sampler_uses_ip_lap_normalisation(data, clip_mels):
  smp = samplers.sampler("landmarks", data, num_references=15)
  ex = smp.example(2, np.random.default_rng(3))
  i = smp._items[2]
  seg = data.segment(i)
  raw = os.path.join(os.path.dirname(data.root), "raw")
  side = np.load(os.path.join(raw, seg.meta["clip"] + ".landmarks.npy"))
  boxes = seg.arrays["boxes"]
  norm = lm.normalize_to_box(side, boxes)  # IP_LAP: [0, 1] inside each frame's crop box
  matches = [t for t in range(46) if np.allclose(ex["pose"], norm[t:t + 5, lm.POSE_SLICE], atol=1e-5)]
  assert len(matches) == 1
  t = matches[0]
  np.testing.assert_allclose(ex["target"], norm[t:t + 5, lm.CONTENT_SLICE], atol=1e-5)
  np.testing.assert_allclose(ex["target"][:, :17], norm[t:t + 5, lm.JAW_SLICE], atol=1e-5)
  for k in range(5):
    np.testing.assert_array_equal(ex["mel"][k], _window(clip_mels[seg.meta["clip"]], t + k, -2))
  refs = [int(np.argmin(np.abs(norm - r).sum(axis=(1, 2)))) for r in ex["reference"]]
  assert len(set(refs)) == 15 and not set(refs) & set(range(t, t + 5))
  assert 0.0 < ex["pose"].min() and ex["target"].max() < 1.0


def test_renderer_sketches_line_up_with_the_frames(data, clip_mels):
  smp = samplers.sampler("renderer", data, image_size=64, num_references=5)
  ex = smp.example(1, np.random.default_rng(11))
  i = smp._items[1]
  seg = data.segment(i)
  small = samplers._resize(data.frames(i, range(50)), 64)
  t = _find(small, ex["target"])
  norm = seg.arrays["landmarks"] / 96.0
  for k, f in enumerate(range(t - 2, t + 3)):
    np.testing.assert_array_equal(ex["sketches"][k], lm.draw_sketch(norm[f], 64))
  np.testing.assert_array_equal(ex["mel"], _window(clip_mels[seg.meta["clip"]], t, -2))
  refs = [_find(small, r) for r in ex["references"]]
  assert len(set(refs)) == 5 and t not in refs
  for r, sk in zip(refs, ex["reference_sketches"]):
    np.testing.assert_array_equal(sk, lm.draw_sketch(norm[r], 64))
  np.testing.assert_array_equal(ex["masked"][:32], ex["target"][:32])
  assert not ex["masked"][32:].any()
  assert ex["sketches"].max() == lm.SKETCH_GREY


def test_mirror_permutation_matches_a_real_mirrored_face():
  photo = skimage.data.astronaut()
  tracker = faces.FaceTracker(num_threads=1)
  pts = faces.track_faces([photo], tracker=tracker).landmarks[0]
  mirrored = faces.track_faces([np.ascontiguousarray(photo[:, ::-1])], tracker=tracker).landmarks[0]
  predicted = samplers.flip_landmarks(pts / 512.0) * 512.0
  err = np.linalg.norm(predicted - mirrored, axis=-1)
  assert err.mean() < 2.5 and err.max() < 5.0, (err.mean(), err.max())  # measured 1.35 / 2.2 px
  # A wrong permutation (identity) is far off: the check has teeth.
  wrong = np.stack([512.0 - pts[:, 0], pts[:, 1]], -1)
  assert np.linalg.norm(wrong - mirrored, axis=-1).mean() > 10


def test_flip_mirrors_images_and_landmarks_together(data):
  plain = samplers.sampler("renderer", data, num_references=2)
  flipping = samplers.sampler("renderer", data, num_references=2, flip=True)
  flips = 0
  for k in range(6):
    a = plain.example(k, np.random.default_rng(k))
    b = flipping.example(k, np.random.default_rng(k))
    if np.array_equal(b["target"], a["target"]):
      np.testing.assert_array_equal(b["sketches"], a["sketches"])
      continue
    flips += 1
    np.testing.assert_array_equal(b["target"], a["target"][:, ::-1])
    np.testing.assert_array_equal(b["references"], a["references"][:, :, ::-1])
    # Mirrored landmarks drawn anew land on the mirrored drawing (up to pixel rounding).
    overlap = (b["sketches"] > 0) & (a["sketches"][:, :, ::-1] > 0)
    assert overlap.sum() > 0.6 * (a["sketches"] > 0).sum()
  assert 0 < flips < 6


def test_color_jitter_scales_brightness_contrast_saturation():
  rng = np.random.default_rng(0)
  img = rng.integers(40, 120, (2, 8, 8, 3)).astype(np.uint8)
  np.testing.assert_array_equal(samplers.color_jitter(img, np.ones(3, np.float32)), img)
  np.testing.assert_array_equal(samplers.color_jitter(img, np.array([2, 1, 1], np.float32)),
                                np.clip(img.astype(int) * 2, 0, 255))
  flat = samplers.color_jitter(img, np.array([1, 0, 1], np.float32))
  assert np.ptp(flat.astype(int) @ [299, 587, 114] / 1000, axis=(1, 2)).max() < 1.0  # no contrast left
  grey = samplers.color_jitter(img, np.array([1, 1, 0], np.float32))
  assert np.abs(grey[..., 0].astype(int) - grey[..., 2]).max() <= 1  # no saturation left


def test_bad_options_give_clear_errors(corpus, tmp_path):
  with pytest.raises(ConfigError, match="unknown 'lipgan'.*wav2lip, syncnet"):
    samplers.make_sampler("lipgan", root=corpus, batch_size=2)
  with pytest.raises(ConfigError, match=r"\['num_refs'\] do not apply to sampler 'renderer'.*num_references"):
    samplers.make_sampler("renderer", root=corpus, batch_size=2, options={"num_refs": 3, "kind": "corpus"})
  with pytest.raises(ConfigError, match="no index.json"):
    samplers.make_sampler("wav2lip", root=str(tmp_path), batch_size=2)
  with pytest.raises(ConfigError, match="split: expected one of train, eval, all"):
    samplers.make_sampler("wav2lip", root=corpus, split="test", batch_size=2)
  with pytest.raises(ConfigError, match=r"mel offsets \[-5\]"):
    samplers.make_sampler("landmarks", root=corpus, batch_size=2, mel_offset=-5)
  with pytest.raises(ConfigError, match="no usable segment.*it needs a second window start"):
    samplers.make_sampler("syncnet", root=corpus, batch_size=2, min_shift=100)
