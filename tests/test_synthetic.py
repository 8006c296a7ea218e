"""Tests of the synthetic talking-face corpus (talkjax.data.synthetic and experiments/make_synthetic)."""

import dataclasses
import json
import os
import subprocess
import sys

import chex
import numpy as np
import pytest

from talkjax import audio as audio_lib
from talkjax import landmarks as lmk
from talkjax import video
from talkjax.data import synthetic as syn
from talkjax.data.synthetic import corpus as corpus_lib
from talkjax.data.synthetic import face as face_lib
from talkjax.data.synthetic import motion, phonemes, speakers
from talkjax.errors import ConfigError

SIZE = 128
DURATION = 3.0
T = int(DURATION * 25)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("synthetic"))
  syn.make_corpus(root, speakers=2, clips=1, seed=7, size=SIZE, pairs=True, duration=DURATION, progress=False)
  return root


@pytest.fixture(scope="module")
def decoded(corpus_dir):
  """Every clip of the corpus decoded back from its mp4, with its sidecars."""
  out = []
  for spk in sorted(os.listdir(corpus_dir)):
    folder = os.path.join(corpus_dir, spk)
    if not os.path.isdir(folder):
      continue
    for name in sorted(f for f in os.listdir(folder) if f.endswith(".mp4")):
      stem = os.path.join(folder, name[:-4])
      with open(stem + ".json") as f:
        meta = json.load(f)
      out.append(dict(path=stem + ".mp4", frames=video.read_frames(stem + ".mp4"), meta=meta,
                      landmarks=np.load(stem + ".landmarks.npy"), visemes=np.load(stem + ".visemes.npy")))
  return out


@pytest.fixture(scope="module")
def clip256():
  """An uncompressed in-memory clip at 256 px (pixel-exact checks)."""
  return syn.generate_clip(3, size=256, duration=2.0)


# --------------------------------------------------------------------------------------------------
# The on-disk corpus


def test_corpus_tree_and_sidecars(corpus_dir, decoded):
  assert sorted(os.listdir(corpus_dir)) == ["corpus.json", "spk000", "spk001"]
  names = sorted(os.listdir(os.path.join(corpus_dir, "spk000")))
  assert names == sorted(["speaker.json"] + [f"00000_{m}{ext}" for m in "ab"
                                             for ext in (".mp4", ".landmarks.npy", ".visemes.npy", ".json")])
  assert len(decoded) == 4
  assert [p for p, _ in syn.find_pairs(corpus_dir)] == [os.path.join(corpus_dir, f"spk00{i}", "00000_a.mp4")
                                                       for i in range(2)]
  assert len(syn.find_clips(corpus_dir)) == 4
  for clip in decoded:
    chex.assert_shape(clip["frames"], (T, SIZE, SIZE, 3))
    chex.assert_shape(clip["landmarks"], (T, 131, 2))
    chex.assert_shape(clip["visemes"], (T, 3))
    assert clip["landmarks"].dtype == np.float32 and clip["visemes"].dtype == np.float32
    assert clip["visemes"].min() >= 0 and clip["visemes"].max() <= 1
    assert clip["meta"]["num_frames"] == T and clip["meta"]["fps"] == 25.0
    assert clip["meta"]["segments"][0][0] == "sil" and clip["meta"]["segments"][-1][0] == "sil"
  with open(os.path.join(corpus_dir, "spk001", "speaker.json")) as f:
    assert syn.Speaker.from_dict(json.load(f)) == syn.speaker_for(7, 1)


def test_openness_from_pixels_tracks_visemes_after_h264(decoded):
  for clip in decoded:
    measured = syn.measure_mouth_openness(clip["frames"], clip["landmarks"])
    r = np.corrcoef(measured, clip["visemes"][:, 0])[0, 1]
    print(f"openness from pixels vs viseme track, {os.path.basename(clip['path'])}: r = {r:.4f}")
    assert r >= 0.95, (clip["path"], r)


def test_silence_gives_closed_mouth(decoded):
  for clip in decoded:
    measured = syn.measure_mouth_openness(clip["frames"], clip["landmarks"])
    times = np.arange(T) / 25
    silent = np.zeros(T, bool)
    for phone, _, start, end, _, _ in clip["meta"]["segments"]:
      if phone == "sil":  # frames well inside a pause (coarticulation may still act at its edges)
        silent |= (times >= start + 0.1) & (times <= end - 0.1)
    assert silent.sum() >= 3
    assert clip["visemes"][silent, 0].max() < 0.01
    assert measured[silent].max() < 0.01
    assert measured.max() > 0.08  # while speech opens the mouth well beyond that


def test_audio_and_video_durations_agree(decoded):
  for clip in decoded:
    info = video.probe(clip["path"])
    wav = audio_lib.load(clip["path"])
    assert info.has_audio and info.audio_sample_rate == 16000 and info.fps == pytest.approx(25.0)
    assert info.num_frames == T
    assert abs(wav.shape[0] / 16000 - T / 25) <= 1 / 25


def test_pairs_share_head_track_but_not_speech(decoded):
  for a, b in ((decoded[0], decoded[1]), (decoded[2], decoded[3])):
    assert a["meta"]["pair_member"] == "a" and b["meta"]["pair_member"] == "b"
    assert a["meta"]["head_track"] == b["meta"]["head_track"]
    np.testing.assert_array_equal(a["landmarks"][:, lmk.POSE_SLICE], b["landmarks"][:, lmk.POSE_SLICE])
    assert np.abs(a["landmarks"][:, lmk.LIPS_SLICE] - b["landmarks"][:, lmk.LIPS_SLICE]).max() > 2.0
    assert a["meta"]["segments"] != b["meta"]["segments"]
    assert np.abs(a["visemes"] - b["visemes"]).max() > 0.3
  wav_a, wav_b = audio_lib.load(decoded[0]["path"]), audio_lib.load(decoded[1]["path"])
  assert np.abs(wav_a - wav_b).max() > 0.1


def test_rerun_skips_finished_clips_and_rejects_other_settings(corpus_dir):
  mp4 = os.path.join(corpus_dir, "spk000", "00000_a.mp4")
  before = os.stat(mp4).st_mtime_ns
  paths = syn.make_corpus(corpus_dir, speakers=2, clips=1, seed=7, size=SIZE, pairs=True, duration=DURATION,
                          progress=False)
  assert len(paths) == 4 and os.stat(mp4).st_mtime_ns == before
  with pytest.raises(ConfigError, match="size"):
    syn.make_corpus(corpus_dir, speakers=2, clips=1, seed=7, size=96, pairs=True, duration=DURATION,
                    progress=False)


def test_interrupted_run_leaves_no_half_clip_and_resumes(tmp_path, monkeypatch):
  calls = {"n": 0}
  real = corpus_lib.iter_clip_frames

  def failing(plan, size, vis=None, supersample=None):
    calls["n"] += 1
    frames = real(plan, size, vis, supersample)
    if calls["n"] == 2:  # the second clip dies half way through its video
      def broken():
        for i, frame in enumerate(frames):
          if i == 10:
            raise KeyboardInterrupt
          yield frame
      return broken()
    return frames

  monkeypatch.setattr(corpus_lib, "iter_clip_frames", failing)
  root = str(tmp_path / "c")
  with pytest.raises(KeyboardInterrupt):
    syn.make_corpus(root, speakers=1, clips=2, size=64, duration=1.0, progress=False)
  folder = os.path.join(root, "spk000")
  assert os.path.exists(os.path.join(folder, "00000.mp4"))
  assert not os.path.exists(os.path.join(folder, "00001.mp4"))
  assert not [f for f in os.listdir(folder) if "partial" in f]
  first = os.stat(os.path.join(folder, "00000.mp4")).st_mtime_ns
  monkeypatch.setattr(corpus_lib, "iter_clip_frames", real)
  syn.make_corpus(root, speakers=1, clips=2, size=64, duration=1.0, progress=False)
  assert os.stat(os.path.join(folder, "00000.mp4")).st_mtime_ns == first
  assert all(os.path.exists(os.path.join(folder, f)) for f in syn.clip_files("00001"))
  assert video.probe(os.path.join(folder, "00001.mp4")).num_frames == 25


def test_cli_writes_playable_pairs_and_reports_bad_arguments(tmp_path, repo_root):
  out = str(tmp_path / "cli")
  cmd = [sys.executable, "-m", "experiments.make_synthetic", f"--output={out}", "--speakers=2", "--clips=1",
         "--pairs", "--size=64", "--duration=1.2", "--seed=3", "--workers=2"]
  done = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=180)
  assert done.returncode == 0, done.stderr
  assert "synthetic corpus" in done.stderr  # the progress bar
  assert len(syn.find_pairs(out)) == 2
  for i, spk in enumerate(("spk000", "spk001")):
    plans = syn.plan_pair(syn.speaker_for(3, i), (3, i, 0), 1.2)
    for m, plan in zip("ab", plans):
      path = os.path.join(out, spk, f"00000_{m}.mp4")
      frames = video.read_frames(path)
      wav = audio_lib.load(path)
      chex.assert_shape(frames, (30, 64, 64, 3))
      assert abs(wav.shape[0] / 16000 - frames.shape[0] / 25) <= 1 / 25
      # Worker processes write exactly what this process computes.
      assert np.load(path[:-4] + ".landmarks.npy").tobytes() == syn.clip_landmarks(plan, 64).tobytes()
  bad = subprocess.run(cmd[:4] + ["--speakers=0"], cwd=repo_root, capture_output=True, text=True, timeout=120)
  assert bad.returncode != 0 and "speakers" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("kwargs,field", [
    (dict(size=63), "size"), (dict(size=16), "size"), (dict(duration=0.0), "duration"),
    (dict(speakers=0), "speakers"), (dict(clips=-1), "clips"), (dict(seed=-2), "seed"),
    (dict(workers=0), "workers"),
])
def test_make_corpus_rejects_bad_arguments(tmp_path, kwargs, field):
  args = dict(speakers=1, clips=1, size=64, duration=1.0, progress=False)
  args.update(kwargs)
  with pytest.raises(ConfigError, match=field):
    syn.make_corpus(str(tmp_path / "bad"), **args)
  assert not os.path.exists(tmp_path / "bad")


# --------------------------------------------------------------------------------------------------
# In memory: determinism, geometry, landmarks


def test_generation_is_deterministic():
  a = syn.generate_clip(11, size=64, duration=1.0)
  b = syn.generate_clip(11, size=64, duration=1.0)
  for x, y in zip(a, b):
    assert x.tobytes() == y.tobytes()
  c = syn.generate_clip(12, size=64, duration=1.0)
  assert a.audio.tobytes() != c.audio.tobytes() and a.landmarks.tobytes() != c.landmarks.tobytes()
  chex.assert_shape(a.frames, (25, 64, 64, 3))
  chex.assert_shape(a.audio, (16000,))
  assert a.audio.dtype == np.float32 and np.abs(a.audio).max() <= 0.95


def test_in_memory_pair_shares_pose_landmarks_and_blinks():
  a, b = syn.generate_pair(4, size=64, duration=2.0)
  np.testing.assert_array_equal(a.landmarks[:, lmk.POSE_SLICE], b.landmarks[:, lmk.POSE_SLICE])
  assert not np.array_equal(a.landmarks[:, lmk.CONTENT_SLICE], b.landmarks[:, lmk.CONTENT_SLICE])
  assert not np.array_equal(a.audio, b.audio)


def _probe(frame, point):
  x, y = int(np.floor(point[0])), int(np.floor(point[1]))
  return frame[y, x].astype(np.int32)


def _near(frame, point, colour, tol=25, radius=1):
  """Whether a pixel within ``radius`` of ``point`` has ``colour`` (max channel difference <= tol)."""
  x, y = int(np.floor(point[0])), int(np.floor(point[1]))
  block = frame[max(y - radius, 0):y + radius + 1, max(x - radius, 0):x + radius + 1].astype(np.int32)
  return bool((np.abs(block - np.asarray(colour)).max(axis=-1) <= tol).any())


def test_lip_landmarks_lie_on_lip_pixels(clip256):
  lip = syn.speaker_for(3, 0).appearance.lip
  skin = syn.speaker_for(3, 0).appearance.skin
  on_lip = on_edge = total = 0
  for t in range(clip256.frames.shape[0]):
    frame, lm = clip256.frames[t], clip256.landmarks[t]
    for i in range(lmk.LIPS_SLICE.start, lmk.LIPS_SLICE.stop):
      on_lip += _near(frame, lm[i], lip)
      total += 1
    for i in lmk.OUTER_LIPS:  # the outer lip points are on the lip / skin edge
      on_edge += _near(frame, lm[i], skin, radius=2)
  assert on_lip / total >= 0.99, on_lip / total
  assert on_edge / (total / 2) >= 0.99, on_edge / (total / 2)


def test_inner_lips_bound_the_dark_opening(clip256):
  wide = np.flatnonzero(clip256.visemes[:, 0] > 0.4)
  assert wide.size >= 3
  for t in wide:
    lm = clip256.landmarks[t]
    mid = 0.5 * (lm[lmk.INNER_LIP_TOP] + lm[lmk.INNER_LIP_BOTTOM])
    assert speakers.luminance(_probe(clip256.frames[t], mid)) < 60
  opening = lmk.inner_mouth_opening(clip256.landmarks)
  assert np.corrcoef(opening, clip256.visemes[:, 0])[0, 1] > 0.9


def test_contour_and_eye_landmarks_on_the_drawn_face(clip256):
  skin = np.array(syn.speaker_for(3, 0).appearance.skin)
  contour = list(range(0, 8)) + list(range(lmk.JAW_SLICE.start, lmk.JAW_SLICE.stop))
  hits, total = 0, 0
  for t in range(0, clip256.frames.shape[0], 5):
    lm = clip256.landmarks[t]
    centre = lm[lmk.NOSE_TIP]
    for i in contour:  # just inside the outline is (possibly shaded) skin
      d = (centre - lm[i]) / np.linalg.norm(centre - lm[i])
      px = _probe(clip256.frames[t], lm[i] + 2.0 * d)
      hits += min(np.abs(px - skin).max(), np.abs(px - 0.9 * skin).max()) <= 20
      total += 1
  assert hits / total >= 0.99, hits / total
  # An open eye shows white / iris between the lid centres, not skin.
  plan = syn.plan_clip(syn.speaker_for(3, 0), 3, 2.0)
  open_frames = np.flatnonzero(plan.track.blink < 0.05)
  t = int(open_frames[0])
  lm = clip256.landmarks[t]
  mid = 0.5 * (lm[lmk.index_of(159)] + lm[lmk.index_of(145)])
  assert np.abs(_probe(clip256.frames[t], mid) - skin).max() > 40


def test_jaw_drops_and_lips_part_with_openness():
  spk = syn.speaker_for(0, 2)
  vis = np.stack([np.linspace(0, 1, 11), np.full(11, 0.5), np.full(11, 0.15)], axis=1)
  track = syn.HeadTrack.still(11)
  geo = face_lib.build_face(spk.appearance, vis, track.blink, track.gaze)
  chin = geo.landmarks[:, lmk.CHIN, 1] - geo.landmarks[:, lmk.NOSE_TIP, 1]
  assert np.all(np.diff(chin) > 0)
  gap = lmk.inner_mouth_opening(geo.landmarks[..., :2])
  assert gap[0] == pytest.approx(0.0, abs=1e-9) and np.all(np.diff(gap) > 0)
  # Closed lips: the inner upper and lower lips coincide.
  top, bottom = geo.landmarks[0, lmk.INNER_LIP_TOP, :2], geo.landmarks[0, lmk.INNER_LIP_BOTTOM, :2]
  np.testing.assert_allclose(top, bottom, atol=1e-12)
  # The pose landmarks (contour sides, brows, nose, eyes) do not move with speech.
  np.testing.assert_array_equal(geo.landmarks[0, lmk.POSE_SLICE], geo.landmarks[-1, lmk.POSE_SLICE])


def test_openness_measure_ignores_head_scale_and_resolution():
  spk = syn.speaker_for(1, 0)
  plan = syn.plan_clip(spk, 5, 2.0)
  results = []
  for scale, size in ((0.85, 128), (1.15, 128), (1.0, 192)):
    still = dataclasses.replace(plan, track=syn.HeadTrack.still(plan.num_frames, scale=scale))
    clip = syn.render_clip(still, size)
    results.append(syn.measure_mouth_openness(clip.frames, clip.landmarks))
  open_frames = np.flatnonzero(syn.clip_visemes(plan)[:, 0] > 0.3)
  assert open_frames.size >= 3
  for other in results[1:]:
    ratio = other[open_frames] / results[0][open_frames]
    assert np.median(np.abs(ratio - 1)) < 0.08, np.median(ratio)


def test_measure_accepts_float_frames_and_rejects_bad_input(clip256):
  frames, lm = clip256.frames[:4], clip256.landmarks[:4]
  np.testing.assert_allclose(syn.measure_mouth_openness(frames.astype(np.float32) / 255, lm),
                             syn.measure_mouth_openness(frames, lm), rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="landmarks: expected shape"):
    syn.measure_mouth_openness(frames, lm[:3])
  with pytest.raises(ValueError, match="frames: expected"):
    syn.measure_mouth_openness(frames[..., 0], lm)
  bad = lm.copy()
  bad[1, 5, 0] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    syn.measure_mouth_openness(frames, bad)
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    syn.measure_mouth_openness(frames.astype(np.float32), lm)


def test_face_fills_the_middle_of_the_frame(clip256):
  lm = clip256.landmarks
  top = lm[:, lmk.POSE_SLICE, 1].min(axis=1)
  chin = lm[:, lmk.CHIN, 1]
  # brows to chin is ~45% of the frame; the hair adds the rest of the ~60% face.
  height = (chin - top) / 256
  assert 0.35 < height.mean() < 0.6
  centre = lm.reshape(-1, 2).mean(axis=0) / 256
  np.testing.assert_allclose(centre, [0.5, 0.52], atol=0.08)


# --------------------------------------------------------------------------------------------------
# Speakers, speech, visemes, motion


def test_speakers_differ():
  spks = [syn.speaker_for(0, i) for i in range(8)]
  skins = np.array([s.appearance.skin for s in spks], dtype=float)
  assert min(np.linalg.norm(skins[i] - skins[j]) for i in range(8) for j in range(i)) > 3
  for attr in ("face_width", "eye_spacing", "chin"):
    assert len({round(getattr(s.appearance, attr), 4) for s in spks}) == 8
  assert len({s.appearance.background_kind for s in spks}) >= 3
  assert len({s.appearance.hair_style for s in spks}) >= 2
  f0 = np.array([s.voice.f0 for s in spks])
  assert f0.min() < 150 < f0.max()
  for s in spks:  # the lip / skin contrast that the pixel yardstick relies on
    ratio = speakers.luminance(s.appearance.lip) / speakers.luminance(s.appearance.skin)
    assert 0.6 < ratio < 0.82
    teeth = speakers.luminance(speakers.teeth_colour(s.appearance.skin))
    assert teeth / speakers.luminance(s.appearance.skin) < 0.25


def test_voice_pitch_and_loudness_are_speech_like():
  spk = syn.speaker_for(0, 5)
  plan = syn.plan_clip(spk, 1, 3.0)
  wav = syn.clip_audio(plan).astype(np.float64)
  chex.assert_shape(wav, (48000,))
  energies = {"vowel": [], "sil": [], "s": []}
  f0s = []
  for seg in plan.segments:
    a, b = int(seg.start * 16000), int(seg.end * 16000)
    kind = phonemes.PHONES[seg.phone].kind
    if kind == "vowel" and b - a > 1200:
      x = wav[a + 200:b - 200]
      energies["vowel"].append(np.mean(x ** 2))
      ac = np.correlate(x, x, "full")[x.size - 1:]
      lo, hi = int(16000 / 400), int(16000 / 60)
      f0s.append(16000 / (lo + np.argmax(ac[lo:hi])))
    elif seg.phone == "sil" and b - a > 4000:
      energies["sil"].append(np.mean(wav[a + 800:b - 800] ** 2))
  assert f0s and np.median(f0s) == pytest.approx(spk.voice.f0, rel=0.2)
  assert 10 * np.log10(np.mean(energies["vowel"]) / np.mean(energies["sil"])) > 40


def test_fricative_energy_is_high_frequency():
  spk = syn.speaker_for(0, 1)
  segs = (syn.Segment("sil", "", 0.0, 0.2, 0.0, -1), syn.Segment("aa", "", 0.2, 0.5, 1.0, 0),
          syn.Segment("s", "", 0.5, 0.8, 1.0, 0), syn.Segment("sil", "", 0.8, 1.0, 0.0, -1))
  from talkjax.data.synthetic import voice
  wav = voice.synthesize(segs, spk.voice, 16000, np.random.default_rng(0))

  def high_share(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / 16000)
    return spec[freqs > 4000].sum() / spec.sum()

  assert high_share(wav[int(0.55 * 16000):int(0.75 * 16000)]) > 0.6
  assert high_share(wav[int(0.25 * 16000):int(0.45 * 16000)]) < 0.05


def test_vowel_mouth_shape_is_a_function_of_formants():
  o, w, r = syn.vowel_mouth_shape(np.array([270, 730, 300]), np.array([2290, 1090, 870]))
  assert o[1] > 0.95 and o[0] < 0.2  # /a/ open, /i/ nearly closed
  assert w[0] > 0.95 and w[2] < 0.05  # /i/ spread, /u/ narrow
  assert r[2] > 0.9 and r[0] == 0.0  # /u/ rounded
  for name in phonemes.VOWELS:
    p = phonemes.PHONES[name]
    np.testing.assert_allclose(p.mouth, [float(v) for v in syn.vowel_mouth_shape(*p.formants[:2])])


def test_bilabials_close_the_lips_and_pauses_stay_closed():
  rng = np.random.default_rng(0)
  checked = 0
  for _ in range(5):
    segs = syn.random_utterance(rng, 4.0)
    centres = np.array([0.5 * (s.start + s.end) for s in segs])
    track = syn.viseme_track(segs, centres)
    for s, v in zip(segs, track):
      closing = s.part in ("", "closure") and s.end - s.start >= 0.045
      if phonemes.PHONES[s.phone].place == "bilabial" and closing:
        assert v[0] < 0.12, (s, v)
        checked += 1
      if s.phone == "sil" and s.end - s.start > 0.2:
        assert v[0] < 1e-3
      if phonemes.PHONES[s.phone].kind == "vowel" and s.end - s.start > 0.1 and s.phone in ("aa", "ae", "ah"):
        assert v[0] > 0.35, (s, v)
  assert checked >= 3


def test_utterances_cover_the_clip_contiguously():
  segs = syn.random_utterance(np.random.default_rng(3), 5.0, rate=1.1)
  assert segs[0].start == 0.0 and segs[-1].end == pytest.approx(5.0)
  for a, b in zip(segs[:-1], segs[1:]):
    assert a.end == pytest.approx(b.start)
  assert segs[0].phone == "sil" and segs[-1].phone == "sil"
  assert sum(s.phone == "sil" for s in segs) >= 3  # leading, trailing and at least one phrase pause
  assert all(s.phone in phonemes.PHONES for s in segs)


def test_excerpt_is_a_retimed_window_of_the_utterance():
  from talkjax.data.synthetic import script  # pylint: disable=g-import-not-at-top
  segs = syn.random_utterance(np.random.default_rng(5), 9.0)
  cut = script.excerpt(segs, 2.37, 3.0)
  assert cut[0].start == 0.0 and cut[-1].end == 3.0
  for a, b in zip(cut[:-1], cut[1:]):
    assert a.end == pytest.approx(b.start)
  # Every cut segment is the original one shifted by -2.37 and clipped to the window.
  inside = [s for s in segs if s.end > 2.37 and s.start < 5.37]
  assert [(s.phone, s.part, s.word) for s in cut] == [(s.phone, s.part, s.word) for s in inside]
  for c, s in zip(cut[1:-1], inside[1:-1]):
    assert (c.start, c.end) == pytest.approx((s.start - 2.37, s.end - 2.37))
  with pytest.raises(ValueError, match="outside the utterance"):
    script.excerpt(segs, 7.0, 3.0)


def test_excerpt_pairs_are_independent_in_mouth_opening():
  """Whole utterances share closed-mouth ends (the pair's openness correlates); excerpts do not."""
  def pooled_r(excerpt):
    a_all, b_all = [], []
    for i in range(12):
      for j in range(2):
        a, b = syn.plan_pair(syn.speaker_for(0, i), (0, i, j), 3.0, excerpt=excerpt)
        a_all.append(syn.clip_visemes(a)[:, 0])
        b_all.append(syn.clip_visemes(b)[:, 0])
    return np.corrcoef(np.concatenate(a_all), np.concatenate(b_all))[0, 1]

  whole, excerpts = pooled_r(False), pooled_r(True)
  print(f"openness r between the clips of a pair: whole utterances {whole:.3f}, excerpts {excerpts:.3f}")
  assert whole > 0.15 and abs(excerpts) < 0.08
  # Excerpts are deterministic, speech-dense, and the default (whole utterances) is unchanged by them.
  p1 = syn.plan_clip(syn.speaker_for(0, 1), (0, 1, 0), 3.0, excerpt=True)
  again = syn.plan_clip(syn.speaker_for(0, 1), (0, 1, 0), 3.0, excerpt=True)
  assert (p1.segments, p1.audio_seed) == (again.segments, again.audio_seed)
  plain = syn.plan_clip(syn.speaker_for(0, 1), (0, 1, 0), 3.0)
  assert plain.segments[0].phone == "sil" and p1.segments != plain.segments
  assert p1.track.to_dict() == plain.track.to_dict() and p1.segments[-1].end == pytest.approx(3.0)


def test_corpus_records_excerpts_and_reads_older_settings(tmp_path):
  root = str(tmp_path / "c")
  syn.make_corpus(root, speakers=1, clips=1, size=64, duration=1.0, pairs=True, excerpts=True, progress=False)
  with open(os.path.join(root, "corpus.json")) as f:
    assert json.load(f)["excerpts"] is True
  with open(os.path.join(root, "spk000", "00000_b.json")) as f:
    segments = json.load(f)["segments"]
  plan = syn.plan_pair(syn.speaker_for(0, 0), (0, 0, 0), 1.0, excerpt=True)[1]
  assert [s[0] for s in segments] == [s.phone for s in plan.segments]
  with pytest.raises(ConfigError, match="excerpts: existing True vs requested False"):
    syn.make_corpus(root, speakers=1, clips=1, size=64, duration=1.0, pairs=True, progress=False)
  # A corpus written before the setting existed was made with whole utterances.
  old = str(tmp_path / "old")
  syn.make_corpus(old, speakers=1, clips=1, size=64, duration=1.0, progress=False)
  path = os.path.join(old, "corpus.json")
  with open(path) as f:
    settings = json.load(f)
  del settings["excerpts"]
  with open(path, "w") as f:
    json.dump(settings, f)
  assert len(syn.make_corpus(old, speakers=1, clips=1, size=64, duration=1.0, progress=False)) == 1
  with pytest.raises(ConfigError, match="excerpts"):
    syn.make_corpus(old, speakers=1, clips=1, size=64, duration=1.0, excerpts=True, progress=False)


def test_head_track_moves_slowly_and_blinks():
  track = motion.sample_head_track(np.random.default_rng(0), 250, 25.0, motion=1.0, blink_rate=0.45)
  assert 0.005 < np.std(track.tx) < 0.05 and np.degrees(np.std(track.roll)) < 8
  assert np.degrees(np.abs(np.diff(track.yaw)).max()) < 1.0  # slow: < 1 degree per frame
  assert track.blink.max() > 0.95 and np.mean(track.blink > 0.5) < 0.1
  appearance = syn.speaker_for(0, 0).appearance
  lm = face_lib.build_face(appearance, np.zeros((250, 3)), track.blink, track.gaze).landmarks
  lid_gap = lm[:, lmk.index_of(145), 1] - lm[:, lmk.index_of(159), 1]
  assert lid_gap[track.blink.argmax()] < 0.1 * lid_gap[track.blink.argmin()]


def test_openness_is_learnable_from_the_mel_spectrogram():
  """A linear map from 80-bin mel windows predicts held-out speakers' openness (not trivially)."""
  feats, targets, groups = [], [], []
  for i in range(8):
    plan = syn.plan_clip(syn.speaker_for(2, i), (2, i, 0), 3.0)
    vis = syn.clip_visemes(plan)
    mel = audio_lib.melspectrogram(syn.clip_audio(plan))
    padded = np.pad(mel, ((0, 0), (8, 8)), mode="edge")
    for f in range(plan.num_frames):
      s = int(80 * f / 25)  # mel frames centred on the video frame's time
      feats.append(padded[:, s:s + 16].reshape(80, 8, 2).mean(-1).ravel())
      targets.append(vis[f, 0])
      groups.append(i)
  x, y, g = np.array(feats), np.array(targets), np.array(groups)
  train = g < 6
  mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
  xb = np.concatenate([(x - mu) / sd, np.ones((len(x), 1))], axis=1)
  w = np.linalg.solve(xb[train].T @ xb[train] + 100 * np.eye(xb.shape[1]), xb[train].T @ y[train])
  r = np.corrcoef(xb[~train] @ w, y[~train])[0, 1]
  assert 0.6 < r < 0.99, r
