"""Tests of preprocessing to ArrayRecord (talkjax.data.records/shards/preprocess, experiments/preprocess)."""

import json
import math
import os
import shutil
import subprocess
import sys
import weakref

import chex
import numpy as np
import pytest
import skimage.data
from PIL import Image

import media
from talkjax import audio as audio_lib
from talkjax import faces
from talkjax import video as video_lib
from talkjax.data import records, shards
from talkjax.data import preprocess as pre
from talkjax.data.loader import SegmentDataset
from talkjax.errors import ConfigError, MediaError

# The tiny corpus every data test file shares (built once per session, see ``corpus`` below).



@pytest.fixture(scope="session")
def corpus(tiny_corpus) -> str:
  return tiny_corpus


# ------------------------------------------------------------------------------------------------
# Records


def test_record_round_trip_is_exact_and_zero_copy():
  rng = np.random.default_rng(0)
  arrays = {"f32": rng.random((3, 131, 2), dtype=np.float32), "mask": rng.random(7) > 0.5,
            "i16": rng.integers(-3000, 3000, 11).astype(np.int16), "empty": np.zeros((0, 4), np.float32),
            "big_endian": np.arange(5, dtype=">f8")}
  blobs = {"jpeg": b"\xff\xd8abc", "nothing": b""}
  data = records.encode("segment", {"key": "a#000", "n": 3, "pair": None}, arrays, blobs)
  rec = records.decode(data)
  assert rec.kind == "segment" and rec.meta == {"key": "a#000", "n": 3, "pair": None}
  for name, value in arrays.items():
    np.testing.assert_array_equal(rec.arrays[name], value)
    assert rec.arrays[name].dtype == value.dtype.newbyteorder("<")
    assert not rec.arrays[name].flags.writeable  # a view into the record bytes
  assert rec.blobs == blobs


def test_record_rejects_objects_and_corruption():
  with pytest.raises(ValueError, match="'objs': dtype object"):
    records.encode("segment", {}, {"objs": np.array([{"a": 1}], dtype=object)})
  data = records.encode("frame", {"t": 0}, {"x": np.arange(100, dtype=np.float32)})
  with pytest.raises(MediaError, match="bad magic"):
    records.decode(b"PK\x03\x04" + data[4:], "shard.array_record[3]")
  with pytest.raises(MediaError, match="'x' runs past the end.*truncated"):
    records.decode(data[:-40], "r")
  # A header naming a Python object dtype (what a pickle-based format would execute) is refused.
  evil = data.replace(b'"dtype":"<f4"', b'"dtype":"|O8"')
  with pytest.raises(MediaError, match="unsupported dtype"):
    records.decode(evil, "r")
  with pytest.raises(MediaError, match="corrupt JPEG"):
    records.decode_jpeg(b"\xff\xd8 not really", "frame 3")


def test_split_segments_cuts_long_stretches_evenly_and_drops_short_ones():
  s = pre.Settings(max_record_seconds=10.0, min_record_seconds=1.0)
  parts, dropped = pre._split_segments([(0, 260), (270, 290), (300, 800)], s)
  assert parts == [(0, 130), (130, 260), (300, 550), (550, 800)]
  assert dropped == [(270, 290)]


def test_find_clips_ids_speakers_and_pairs(tmp_path):
  for rel in ("lrs2/main/611/00001.mp4", "lrs2/main/611/00002.mp4", "lrs2/main/612/00001.MOV",
              "lrs2/main/612/notes.txt", "lrs2/.hidden/x.mp4", "syn/spk000/00000_a.mp4",
              "syn/spk000/00000_b.mp4", "syn/spk000/00001_a.mp4", "hdtf/WDA_BarackObama_000.mp4",
              "hdtf/WDA_BarackObama_001.mp4", "hdtf/RD_Radio1_000.mp4"):
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
  lrs2 = pre.find_clips(tmp_path / "lrs2")
  assert [(c.clip, c.speaker) for c in lrs2] == [
      ("main/611/00001", "main/611"), ("main/611/00002", "main/611"), ("main/612/00001", "main/612")]
  syn = pre.find_clips(tmp_path / "syn")
  assert [(c.clip, c.speaker, c.pair) for c in syn] == [
      ("spk000/00000_a", "spk000", ("spk000/00000", "a")),
      ("spk000/00000_b", "spk000", ("spk000/00000", "b")),
      ("spk000/00001_a", "spk000", None)]  # no _b partner
  assert [c.speaker for c in pre.find_clips(tmp_path / "hdtf")] == ["RD_Radio1", "WDA_BarackObama",
                                                                    "WDA_BarackObama"]
  listing = tmp_path / "list.txt"
  absolute = tmp_path / "hdtf/RD_Radio1_000.mp4"
  listing.write_text(f"# two clips\nsyn/spk000/00000_a.mp4\n\n{absolute}\n")
  listed = pre.find_clips(listing)
  assert [(c.clip, c.speaker) for c in listed] == [("syn/spk000/00000_a", "syn/spk000"),
                                                   ("hdtf/RD_Radio1_000", "hdtf")]
  # Files of one directory: the directory names the speaker.
  one_dir = pre.find_clips([tmp_path / "syn/spk000/00000_b.mp4", tmp_path / "syn/spk000/00000_a.mp4"])
  assert [(c.clip, c.speaker, c.pair) for c in one_dir] == [
      ("spk000/00000_b", "spk000", ("spk000/00000", "b")),
      ("spk000/00000_a", "spk000", ("spk000/00000", "a"))]
  with pytest.raises(ConfigError, match="neither a directory nor a list"):
    pre.find_clips(tmp_path / "nope")
  (tmp_path / "empty.txt").write_text("# nothing listed\n")
  with pytest.raises(ConfigError, match="no video files"):
    pre.find_clips(tmp_path / "empty.txt")


def test_split_speakers_is_deterministic_and_holds_out_at_least_one():
  names = [f"spk{i:03d}" for i in range(40)]
  split = pre.split_speakers(names, 0.25)
  assert split == pre.split_speakers(list(reversed(names)), 0.25)
  held = sorted(s for s, v in split.items() if v == "eval")
  assert 4 <= len(held) <= 18  # ~10 expected from the hash
  # Adding speakers never moves existing ones.
  bigger = pre.split_speakers(names + [f"new{i}" for i in range(20)], 0.25)
  assert all(bigger[s] == split[s] for s in names)
  tiny = pre.split_speakers(["a", "b", "c"], 0.01)
  assert sorted(tiny.values()) == ["eval", "train", "train"]
  assert pre.split_speakers(["a", "b"], 0.0) == {"a": "train", "b": "train"}
  explicit = pre.split_speakers(["a", "b", "c"], 0.5, eval_speakers=["c"])
  assert explicit == {"a": "train", "b": "train", "c": "eval"}


# ------------------------------------------------------------------------------------------------
# The synthetic corpus with sidecar landmarks


def test_sidecar_corpus_records_match_the_sources(corpus):
  index = pre.load_index(corpus)
  raw = os.path.join(os.path.dirname(corpus), "raw")
  assert index["clips"] == 12 and index["records"] == 12 and index["frames"] == 12 * 50
  assert not index["skipped"]
  assert index["hours"] == pytest.approx(600 / 25 / 3600, abs=1e-6)
  splits = index["splits"]
  assert len(splits["eval"]["speakers"]) == 1 and len(splits["train"]["speakers"]) == 2
  assert splits["eval"]["frames"] + splits["train"]["frames"] == 600

  data = SegmentDataset(corpus, "all")
  keys = [s["key"] for s in data.segments]
  i_a, i_b = keys.index("spk001/00000_a#000"), keys.index("spk001/00000_b#000")
  a, b = data.segment(i_a), data.segment(i_b)
  assert a.meta["source"] == os.path.join(raw, "spk001", "00000_a.mp4")
  assert a.meta["pair"] == ["spk001/00000", "a"]
  chex.assert_shape([a.arrays["landmarks"], a.arrays["face_landmarks"]], (50, 131, 2))
  chex.assert_shape([a.arrays["boxes"], a.arrays["face_boxes"]], (50, 4))
  # Landmarks in crop pixels map back to the sidecar's source pixels.
  side = np.load(os.path.join(raw, "spk001", "00000_a.landmarks.npy"))
  back = faces.from_crop_coords(a.arrays["landmarks"], a.arrays["boxes"], 96)
  np.testing.assert_allclose(back, side, atol=1e-3)
  back = faces.from_crop_coords(a.arrays["face_landmarks"], a.arrays["face_boxes"], 128)
  np.testing.assert_allclose(back, side, atol=1e-3)
  visemes = np.load(os.path.join(raw, "spk001", "00000_a.visemes.npy"))
  np.testing.assert_array_equal(a.arrays["visemes"], visemes)
  # IP_LAP crops: the landmark box +-5 px, square; loose crops: identical for the a/b pair (pose only).
  box = a.arrays["boxes"][7]
  lo, hi = side[7].min(0), side[7].max(0)
  assert box[2] - box[0] == box[3] - box[1] == round(max(hi - lo) + 10)
  np.testing.assert_array_equal(a.arrays["face_boxes"], b.arrays["face_boxes"])
  assert not np.array_equal(a.arrays["boxes"], b.arrays["boxes"])  # jaws differ: tight boxes differ
  side_len = a.arrays["face_boxes"][:, 2] - a.arrays["face_boxes"][:, 0]
  assert len(np.unique(side_len)) == 1 and 1.3 < side_len[0] / (hi - lo).max() < 1.7
  # Mel: the clip's Wav2Lip mel (from the mp4's audio) from mel_start on.
  mel = audio_lib.melspectrogram(audio_lib.load(a.meta["source"]))
  assert a.meta["mel_total"] == mel.shape[1] and a.meta["mel_start"] == 0
  np.testing.assert_array_equal(a.arrays["mel"], mel[:, :a.arrays["mel"].shape[1]])
  # Frames: JPEG crops of the decoded video at the stored boxes.
  frames = video_lib.read_frames(a.meta["source"], fps=25)
  got = data.frames(i_a, [0, 31], "image")
  chex.assert_shape(got, (2, 96, 96, 3))
  for k, t in enumerate((0, 31)):
    want = faces.crop(frames[t], a.arrays["boxes"][t], 96).astype(np.float64)
    psnr = 10 * np.log10(255.0**2 / np.mean((got[k] - want) ** 2))
    assert psnr > 30, psnr
  chex.assert_shape(data.frames(i_b, [49], "face"), (1, 128, 128, 3))


def test_preprocess_streams_frames_with_bounded_memory(corpus, tmp_path, monkeypatch):
  """Frames are cropped and encoded as they are decoded: no more than a couple alive at once."""
  raw = os.path.join(os.path.dirname(corpus), "raw")
  alive, peak = set(), [0]
  real = pre._frames

  def tracked(path):
    for frame in real(path):
      frame = np.array(frame)
      alive.add(id(frame))
      weakref.finalize(frame, alive.discard, id(frame))
      peak[0] = max(peak[0], len(alive))
      yield frame

  monkeypatch.setattr(pre, "_frames", tracked)
  source = pre.find_clips([os.path.join(raw, "spk000", "00001_a.mp4")])[0]
  report, segments = pre.process_clip(source, pre.Settings(landmarks="sidecar", size=64, face_size=64,
                                                           max_record_seconds=0.8), str(tmp_path / "r.ar"))
  assert report["records"] == [[0, 16], [16, 33], [33, 50]] and len(segments) == 3
  assert peak[0] <= 2
  positions = [s["position"] for s in segments]
  assert positions == [0, 17, 35] and shards.num_records(str(tmp_path / "r.ar")) == 3 + 50


def test_resume_skips_finished_clips_and_crashes_leave_nothing_trusted(corpus, tmp_path, monkeypatch):
  raw = os.path.join(os.path.dirname(corpus), "raw")
  folder = os.path.join(raw, "spk002")
  clips = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".mp4"))
  out = str(tmp_path / "ds")
  kw = dict(landmarks="sidecar", size=64, face_size=64, progress=False)
  calls = []
  real = pre.process_clip

  def crash_on_third(source, *args, **kwargs):
    calls.append(source.clip)
    if len(calls) == 3:
      raise KeyboardInterrupt  # a crash mid-run (not a bad clip)
    return real(source, *args, **kwargs)

  monkeypatch.setattr(pre, "process_clip", crash_on_third)
  with pytest.raises(KeyboardInterrupt):
    pre.preprocess(clips, out, shard_bytes=1, **kw)  # commits after every clip
  assert len(shards.load_manifests(out)) == 2 and not os.path.exists(os.path.join(out, "index.json"))
  assert not [n for n in os.listdir(os.path.join(out, "shards")) if n.startswith(".")]
  # A shard without a manifest (a crash between rename and manifest) is not trusted, and deleted.
  shutil.copy(os.path.join(out, "shards", shards.load_manifests(out)[0]["shard"]),
              os.path.join(out, "shards", "part-orphan-00000.array_record"))
  calls.clear()
  index = pre.preprocess(clips, out, **kw)
  assert calls == ["spk002/00001_a", "spk002/00001_b"]  # the two unfinished clips only
  assert not os.path.exists(os.path.join(out, "shards", "part-orphan-00000.array_record"))
  assert index["clips"] == 4 and index["records"] == 4 and [s["key"] for s in index["segments"]] == [
      "spk002/00000_a#000", "spk002/00000_b#000", "spk002/00001_a#000", "spk002/00001_b#000"]
  assert len(SegmentDataset(out, "all")) == 4
  calls.clear()
  pre.preprocess(clips, out, **kw)
  assert calls == []
  with pytest.raises(ConfigError, match="size: existing 64 vs requested 128"):
    pre.preprocess(clips, out, landmarks="sidecar", size=128, face_size=64, progress=False)


def test_worker_processes_write_the_same_records(corpus, tmp_path):
  raw = os.path.join(os.path.dirname(corpus), "raw")
  clips = [os.path.join(raw, "spk000", f"0000{j}_{m}.mp4") for j in (0, 1) for m in "ab"]
  kw = dict(landmarks="sidecar", size=64, face_size=64, progress=False)
  one = pre.preprocess(clips, str(tmp_path / "one"), workers=0, **kw)
  two = pre.preprocess(clips, str(tmp_path / "two"), workers=2, **kw)
  def strip(segs):  # where a record landed depends on which worker finished first
    return [{k: v for k, v in s.items() if k not in ("index", "shard")} for s in segs]

  assert strip(one["segments"]) == strip(two["segments"])
  d1, d2 = SegmentDataset(tmp_path / "one", "all"), SegmentDataset(tmp_path / "two", "all")
  for i in range(4):
    s1, s2 = d1.segment(i), d2.segment(i)
    for name in s1.arrays:
      np.testing.assert_array_equal(s1.arrays[name], s2.arrays[name])
    np.testing.assert_array_equal(d1.frames(i, [0, 49], "face"), d2.frames(i, [0, 49], "face"))


# ------------------------------------------------------------------------------------------------
# Real faces: the astronaut through the whole CLI with MediaPipe

PHOTO = skimage.data.astronaut()
FACE_CENTRE = np.array([224.0, 150.0])  # photo point shown at the centre of the 256x256 frames
NUM_FRAMES = 40
BLANK = [10, 11] + list(range(24, 31))  # a short gap (interpolated) and a long one (splits the clip)


def _motion(t: int) -> tuple[np.ndarray, np.ndarray]:
  """Frame t's affine map (A, b): frame pixel p -> photo pixel A p + b."""
  angle = math.radians(5.0 * math.sin(t / 6.0))
  scale = 1.0 + 0.06 * math.sin(t / 9.0 + 1.0)
  mat = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
  shift = np.array([8.0 * math.sin(t / 5.0), 6.0 * math.cos(t / 7.0)])
  return mat, FACE_CENTRE + shift - mat @ np.array([128.0, 128.0])


def _astronaut_frame(t: int) -> np.ndarray:
  if t in BLANK:
    return np.zeros((256, 256, 3), np.uint8)
  mat, off = _motion(t)
  data = (mat[0, 0], mat[0, 1], off[0], mat[1, 0], mat[1, 1], off[1])
  return np.asarray(Image.fromarray(PHOTO).transform((256, 256), Image.AFFINE, data, Image.BILINEAR))


def test_astronaut_cli_with_mediapipe_follows_the_motion_and_skips_bad_clips(tmp_path, repo_root):
  tree = tmp_path / "input" / "astro"
  tree.mkdir(parents=True)
  speech = media.sine(220.0, NUM_FRAMES / 25.0) * np.hanning(NUM_FRAMES * 640).astype(np.float32)
  video_lib.write_video(tree / "talk.mp4", (_astronaut_frame(t) for t in range(NUM_FRAMES)), 25, audio=speech,
                        preset="ultrafast")
  video_lib.write_video(tree / "mute.mp4", (_astronaut_frame(t) for t in range(10)), 25, preset="ultrafast")
  video_lib.write_video(tree / "empty_room.mp4", (np.full((96, 96, 3), 90, np.uint8) for _ in range(10)), 25,
                        audio=speech[:6400], preset="ultrafast")
  (tree / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
  out = tmp_path / "out"
  cmd = [sys.executable, "-m", "experiments.preprocess", f"--input={tmp_path / 'input'}", f"--output={out}",
         "--landmarks=mediapipe", "--size=128", "--face_size=128", "--min_record_seconds=0.2", "--quiet"]
  run = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  index = json.loads((out / "index.json").read_text())
  reasons = {os.path.basename(s["source"]): s["reason"] for s in index["skipped"]}
  assert set(reasons) == {"mute.mp4", "broken.mp4", "empty_room.mp4"}
  assert "no audio stream" in reasons["mute.mp4"]
  assert "no face detected in any of its 10 frames" in reasons["empty_room.mp4"]
  assert "cannot open" in reasons["broken.mp4"] or "corrupt" in reasons["broken.mp4"]
  (report,) = index["clip_reports"]
  assert report["frames"] == NUM_FRAMES and report["detected"] == NUM_FRAMES - len(BLANK)  # every real face
  assert report["interpolated_frames"] == [10, 11] and report["missing_frames"] == list(range(24, 31))
  assert report["segments"] == [[0, 24], [31, 40]] and report["records"] == [[0, 24], [31, 40]]
  assert "frame(s) without a face [24, 25, 26, 27, 28, 29, 30]" in run.stdout

  data = SegmentDataset(out, "all")
  assert [s["key"] for s in data.segments] == ["astro/talk#000", "astro/talk#001"]
  source = {}
  for i in range(2):
    seg = data.segment(i)
    pts = faces.from_crop_coords(seg.arrays["landmarks"], seg.arrays["boxes"], 128)
    loose = faces.from_crop_coords(seg.arrays["face_landmarks"], seg.arrays["face_boxes"], 128)
    np.testing.assert_allclose(loose, pts, atol=1e-3)
    for k in range(seg.num_frames):
      source[seg.meta["start"] + k] = pts[k]
  # Frame 0's landmarks carried to frame t by the known motion: frame 0 -> photo -> frame t.
  a0, b0 = _motion(0)
  photo_pts = source[0] @ a0.T + b0
  errors = []
  for t in sorted(source):
    if t in BLANK:
      continue
    at, bt = _motion(t)
    expected = (photo_pts - bt) @ np.linalg.inv(at).T
    errors.append(np.linalg.norm(source[t] - expected, axis=-1).mean())
  assert len(errors) == NUM_FRAMES - len(BLANK) and max(errors) < 3.0, errors
