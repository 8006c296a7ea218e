"""Tests of the generic generation pipeline (talkjax.generate) and ``python -m experiments.generate``.

A tiny DCK U-Net checkpoint (``dck_unet:tiny``, NumPy-filled weights, saved with the engine's
checkpointer) renders a real photograph (``skimage.data.astronaut()``) speaking real speech
(espeak-ng), and short face videos made from the same photo with per-frame markers drawn below the
face, so the order of the output frames can be read back after H.264.
"""

import glob
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import media
from experiments import configs
from talkjax import audio as audio_lib
from talkjax import checkpoints, fileio, generate, tasks
from talkjax import video as video_lib
from talkjax.errors import AudioError, CheckpointError, ConfigError, MediaError, NoFaceError
from talkjax.nn.numpy_init import numpy_variables
from talkjax.train import state as state_lib

FPS = 25
SIZE = 256
MARK = 48  # rows of the frame-index marker at the bottom of each test frame


def make_workdir(path, arg="tiny"):
  """A training workdir with one checkpoint of ``dck_unet:<arg>`` (random weights) and its config.json."""
  config = configs.get_config(f"dck_unet:{arg}")
  task = tasks.get("dck_unet")
  nets, spec = task.networks(config), task.batch_spec(config)
  abstract = jax.eval_shape(lambda: task.init(config, nets, jax.random.PRNGKey(0), state_lib.example_batch(spec)))
  variables = numpy_variables(abstract)
  txs = {n: state_lib.make_optimizer(config, n, 10)[0] for n in nets}
  params = {n: variables[n]["params"] for n in nets}
  state = state_lib.TrainState(
      step=jnp.ones((), jnp.int32), rng=jax.random.key_data(jax.random.PRNGKey(0)), params=params,
      batch_stats={n: variables[n].get("batch_stats", {}) for n in nets},
      opt_state={n: txs[n].init(params[n]) for n in nets},
      weights={k: jnp.float32(v) for k, v in task.initial_weights(config).items()})
  with checkpoints.TrainCheckpointer(os.path.join(path, "checkpoints"), async_save=False) as ckpt:
    ckpt.save(1, state)
  fileio.atomic_write_text(os.path.join(path, "config.json"), config.to_json_best_effort(indent=2) + "\n")
  return str(path), config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return make_workdir(tmp_path_factory.mktemp("dck_work"))


@pytest.fixture(scope="module")
def renderer(workdir):
  return generate.load_renderer(workdir[0])


@pytest.fixture(scope="module")
def astronaut():
  from skimage import data
  return np.asarray(data.astronaut(), np.uint8)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
  return media.espeak_wav(tmp_path_factory.mktemp("speech") / "speech.wav", "Hello there, how are you?")


def marked_frames(photo, n, blank=()):
  """``n`` 256x256 frames of the photo with frame index ``k`` drawn in the bottom rows; frames in
  ``blank`` are grey (no face) but still marked."""
  base = np.asarray(Image.fromarray(photo).resize((SIZE, SIZE), Image.BILINEAR))
  frames = []
  for k in range(n):
    frame = np.full_like(base, 128) if k in blank else base.copy()
    frame[-MARK:] = media.index_frame(k, MARK, SIZE)
    frames.append(frame)
  return frames


def read_marks(path):
  return [media.decode_index(f.image[-MARK:]) for f in video_lib.iter_frames(path)]


def wav_file(path, seconds, sr=16000, silent=False):
  t = np.arange(int(seconds * sr)) / sr
  wav = np.zeros_like(t) if silent else 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
  sf.write(path, wav.astype(np.float32), sr)
  return str(path)


def test_loop_indices_go_back_and_forth():
  np.testing.assert_array_equal(generate.loop_indices(11, 4), [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2])
  np.testing.assert_array_equal(generate.loop_indices(3, 1), [0, 0, 0])
  np.testing.assert_array_equal(generate.loop_indices(5, 9), [0, 1, 2, 3, 4])


def test_cli_renders_the_astronaut_photo_with_real_speech(workdir, astronaut, speech, tmp_path):
  photo = tmp_path / "astronaut.png"
  Image.fromarray(astronaut).save(photo)
  out = tmp_path / "out" / "astronaut.mp4"
  proc = subprocess.run([sys.executable, "-m", "experiments.generate", "--config=dck_unet:tiny",
                         f"--workdir={workdir[0]}", f"--face={photo}", f"--audio={speech}", f"--output={out}",
                         "--quiet"], capture_output=True, text=True, timeout=900,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "end to end" in proc.stdout and "generation" in proc.stdout and "encoding" in proc.stdout
  seconds = len(audio_lib.load(speech)) / audio_lib.SAMPLE_RATE
  info = video_lib.probe(out)
  assert info.has_audio and (info.width, info.height) == (512, 512)
  frames = video_lib.read_frames(out)
  assert abs(len(frames) / FPS - seconds) <= 1.0 / FPS  # length follows the audio, within one frame
  assert abs(info.duration - seconds) <= 1.0 / FPS + 0.03  # container duration (AAC frame padding)
  np.testing.assert_allclose(len(audio_lib.load(out)) / audio_lib.SAMPLE_RATE, seconds, atol=0.03)
  # Direct paste: outside the face box the photo is untouched (up to H.264), inside it is generated.
  diff = np.abs(frames.astype(np.int16) - astronaut[None].astype(np.int16)).mean(axis=(0, 3))
  assert diff[-100:].mean() < 4.0
  assert diff.max() > 10.0
  assert os.listdir(out.parent) == ["astronaut.mp4"]


def test_short_video_loops_back_and_forth_and_faceless_frames_pass_through(renderer, astronaut, tmp_path):
  frames = marked_frames(astronaut, 12, blank=range(4, 11))  # 7 faceless frames: more than max_gap
  face = media.write_test_video(tmp_path / "face.mp4", frames, FPS, crf=12)
  audio = wav_file(tmp_path / "tone.wav", 1.6)  # 40 output frames from 12 video frames
  out = tmp_path / "looped.mp4"
  report = generate.generate(renderer, face, audio, out, progress=False)
  assert report.looped and report.face_frames == 12 and report.num_frames == 40
  expected = generate.loop_indices(40, 12)
  assert read_marks(out) == expected.tolist()
  assert report.faceless_source_frames == list(range(4, 11))
  assert report.passthrough_frames == [i for i, j in enumerate(expected) if 4 <= j <= 10]
  decoded = video_lib.read_frames(out)
  source = video_lib.read_frames(face)
  for i, j in enumerate(expected):
    err = np.abs(decoded[i].astype(np.int16) - source[j].astype(np.int16))
    if 4 <= j <= 10:
      assert err[:-MARK].mean() < 2.0, i  # unchanged (two H.264 generations apart)
    else:
      assert err[:-MARK].max() > 20, i  # the face region was regenerated
  assert "passed through unchanged" in report.summary()
  assert set(report.timings) >= {"decode", "detection", "generation", "paste", "encoding", "total"}


def test_long_video_streams_feathered_and_silence_works(renderer, astronaut, tmp_path):
  frames = marked_frames(astronaut, 30)
  face = media.write_test_video(tmp_path / "face.mp4", frames, FPS, crf=12)
  audio = wav_file(tmp_path / "silence.wav", 0.8, silent=True)  # 20 frames: no looping, a second decode
  source = video_lib.read_frames(face)[:20].astype(np.int16)
  border = {}
  for paste in ("direct", "feather"):
    out = tmp_path / f"{paste}.mp4"
    report = generate.generate(renderer, face, audio, out, paste=paste, progress=False)
    assert not report.looped and report.num_frames == 20 and report.face_frames == 20
    assert read_marks(out) == list(range(20))
    assert report.passthrough_frames == []
    err = np.abs(video_lib.read_frames(out).astype(np.int16) - source).mean(axis=3)
    # The change on the crop box's own border pixels (inside the frame).
    ring = []
    for t, box in enumerate(report.boxes[:20]):
      x0, y0, x1, y1 = (int(v) for v in box)
      x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, SIZE) - 1, min(y1, SIZE - MARK) - 1
      ring += [err[t, y0, x0:x1], err[t, y1, x0:x1], err[t, y0:y1, x0], err[t, y0:y1, x1]]
    border[paste] = float(np.concatenate(ring).mean())
  # Direct cover replaces the whole box: its edge shows; the feathered mask is 0 on the box border.
  assert border["feather"] < 4.0 and border["feather"] < 0.2 * border["direct"], border  # 4: two H.264 passes


class IdentityRenderer:
  """A model-free renderer: returns the crops it is given and records what the pipeline hands it."""

  def __init__(self, crop, batch_size=5):
    self.crop, self.mel_offset, self.batch_size = crop, -2, batch_size
    self.context, self.calls = None, []

  def prepare(self, context):
    self.context = context

  def generate_chunk(self, crops, crop_landmarks, mel_windows, frame_indices):
    self.calls.append((crops.shape, crop_landmarks.shape, mel_windows.shape, list(frame_indices)))
    return crops


@pytest.mark.parametrize("kind", ["loose", "ip_lap"])
def test_hook_contract_prepare_context_and_chunks(kind, astronaut, tmp_path):
  frames = marked_frames(astronaut, 8, blank=range(2, 8))  # a face on frames 0-1 only
  face = media.write_test_video(tmp_path / "face.mp4", frames, FPS, crf=12)
  audio = wav_file(tmp_path / "tone.wav", 0.88)  # 22 output frames
  size = 128 if kind == "ip_lap" else 96
  renderer = IdentityRenderer(generate.CropSpec(kind=kind, size=size, margin=25))
  report = generate.generate(renderer, face, audio, tmp_path / "out.mp4", progress=False)
  ctx = renderer.context
  assert ctx.num_frames == report.num_frames == 22 and ctx.fps == FPS and not ctx.still
  np.testing.assert_array_equal(ctx.source_indices, generate.loop_indices(22, 8))
  assert ctx.landmarks.shape == ctx.crop_landmarks.shape == (8, 131, 2) and ctx.boxes.shape == (8, 4)
  assert np.isfinite(ctx.boxes[:2]).all() and np.isnan(ctx.boxes[2:]).all()
  assert list(ctx.sample_indices) == [0, 1] and ctx.sample_crops.shape == (2, size, size, 3)
  assert ctx.mel.shape[0] == 80 and ctx.mel.shape[1] >= 0.88 * 80
  sides = ctx.boxes[:2, 2] - ctx.boxes[:2, 0]
  np.testing.assert_allclose(ctx.boxes[:2, 3] - ctx.boxes[:2, 1], sides)  # square boxes
  inside = (ctx.crop_landmarks[:2] >= 0) & (ctx.crop_landmarks[:2] <= size)
  assert inside.all()  # the face lies inside its crop
  # Only frames with a face reach the renderer, in chunks of at most batch_size, with their windows.
  with_face = [i for i, j in enumerate(ctx.source_indices) if j < 2]
  assert [i for call in renderer.calls for i in call[3]] == with_face
  for shape, pts, mels, ids in renderer.calls:
    assert shape == (len(ids), size, size, 3) and pts == (len(ids), 131, 2) and mels == (len(ids), 80, 16, 1)
    assert len(ids) <= 5
  assert report.passthrough_frames == [i for i in range(22) if i not in with_face]


def test_failure_mid_way_leaves_no_output(renderer, astronaut, tmp_path):
  photo = tmp_path / "photo.jpg"
  Image.fromarray(astronaut).save(photo)
  audio = wav_file(tmp_path / "tone.wav", 1.0)

  class Failing:
    crop, mel_offset, batch_size = renderer.crop, renderer.mel_offset, 4
    calls = 0

    def generate_chunk(self, *args):
      Failing.calls += 1
      if Failing.calls == 3:
        raise RuntimeError("generator exploded")
      return renderer.generate_chunk(*args)

  out = tmp_path / "out" / "never.mp4"
  with pytest.raises(RuntimeError, match="exploded"):
    generate.generate(Failing(), photo, audio, out, progress=False)
  assert not os.path.exists(out) and os.listdir(out.parent) == []
  assert not glob.glob(os.path.join(os.path.dirname(out), ".*partial*"))


def test_bad_inputs_are_clear_errors(workdir, renderer, astronaut, tmp_path):
  photo = tmp_path / "photo.png"
  Image.fromarray(astronaut).save(photo)
  audio = wav_file(tmp_path / "tone.wav", 0.5)
  out = tmp_path / "out.mp4"
  with pytest.raises(MediaError, match="missing.mp4: face file not found"):
    generate.generate(renderer, tmp_path / "missing.mp4", audio, out, progress=False)
  corrupt = tmp_path / "corrupt.wav"
  corrupt.write_bytes(b"RIFF\x00\x00\x00\x00garbage" * 10)
  with pytest.raises(AudioError, match="corrupt.wav"):
    generate.generate(renderer, photo, corrupt, out, progress=False)
  blank = tmp_path / "wall.png"
  Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(blank)
  with pytest.raises(NoFaceError, match="wall.png: no face"):
    generate.generate(renderer, blank, audio, out, progress=False)
  with pytest.raises(MediaError, match="broken.jpg"):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    generate.generate(renderer, tmp_path / "broken.jpg", audio, out, progress=False)
  assert not os.path.exists(out)
  with pytest.raises(CheckpointError, match="no checkpoints/ directory"):
    generate.load_variables(workdir[1], tmp_path)
  with pytest.raises(ConfigError, match="differs from the one .* was trained with in .*model"):
    generate.load_renderer(workdir[0], configs.get_config("dck_unet:runlocal"))
  with pytest.raises(ConfigError, match="paste"):
    generate.generate(renderer, photo, audio, out, paste="poisson", progress=False)


def test_workdir_config_is_used_when_none_is_given(workdir):
  renderer = generate.load_renderer(workdir[0], batch_size=3)
  assert renderer.batch_size == 3 and renderer.crop.size == 64 and renderer.crop.kind == "loose"
  with open(os.path.join(workdir[0], "config.json")) as f:
    assert json.load(f)["model"]["image_size"] == 64
