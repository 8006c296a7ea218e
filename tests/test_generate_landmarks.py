"""experiments.generate_landmarks and talkjax.models.landmark_inference, on real faces and real speech.

Tiny, randomly initialised landmark generators are written as training workdirs (config.json and a
checkpoint, exactly what ``experiments.train`` leaves), so the tests run in seconds; the predicted
lips are meaningless, the plumbing is what is checked: frame counts, still/looping pose, coordinate
systems, atomic outputs and the errors for bad input.
"""

import json
import os
import subprocess
import sys

import av
import chex
import jax
import jax.numpy as jnp
import media
import numpy as np
import optax
import pytest
import skimage.data
from PIL import Image
from test_iplap_landmark import random_variables

from experiments import configs
from experiments import generate_landmarks as gl
from talkjax import checkpoints, faces
from talkjax import landmarks as lm
from talkjax.errors import AudioError, CheckpointError, ConfigError, MediaError, NoFaceError
from talkjax.generate import loop_indices
from talkjax.models import landmark_inference
from talkjax.tasks import landmarks as task
from talkjax.train.state import TrainState, example_batch

FPS = 25


def make_workdir(path, spec: str) -> str:
  """A training workdir of config ``spec`` with a random (untrained) checkpoint at step 1."""
  config = configs.get_config(spec)
  model = task.make_model(config.model)
  batch = example_batch(task.batch_spec(config))
  ref_pose, ref_content = batch["reference"][..., :74, :], batch["reference"][..., 74:, :]
  variables = random_variables(model, (batch["mel"], batch["pose"], ref_pose, ref_content))
  params = jax.tree.map(jnp.asarray, variables["params"])
  state = TrainState(step=jnp.asarray(1, jnp.int32), rng=jax.random.PRNGKey(0), params={"generator": params},
                     batch_stats={"generator": variables["batch_stats"]},
                     opt_state={"generator": optax.adam(1e-3).init(params)},
                     weights={k: jnp.float32(v) for k, v in config.loss_weights.items()})
  os.makedirs(path, exist_ok=True)
  with checkpoints.TrainCheckpointer(os.path.join(path, "checkpoints"), async_save=False) as ckpt:
    ckpt.save(1, state)
  with open(os.path.join(path, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  root = tmp_path_factory.mktemp("generate_landmarks")
  photo = str(root / "astronaut.png")
  Image.fromarray(skimage.data.astronaut()).save(photo)
  speech = media.espeak_wav(root / "speech.wav", "Hello there, how are you today?")
  return {"root": root, "photo": photo, "speech": speech,
          "iplap": make_workdir(root / "iplap", "iplap_landmark:tiny"),
          "dct": make_workdir(root / "dct", "dct_landmark:tiny")}


def audio_frames(path) -> int:
  import soundfile as sf
  info = sf.info(path)
  return int(round(info.frames / info.samplerate * FPS))


def test_photo_gives_a_still_pose_and_a_sketch_video_with_audio(files, tmp_path):
  out = str(tmp_path / "out")
  info = gl.generate_landmarks(files["dct"], files["photo"], files["speech"], out, progress=False,
                               sketch_size=128)
  n = audio_frames(files["speech"])
  assert info["num_frames"] == n and info["still"] and not info["looped"]
  assert sorted(os.listdir(out)) == ["boxes.npy", "info.json", "landmarks.npy", "landmarks_crop.npy",
                                     "sketch.mp4", "source_frames.npy"]
  points, crop = np.load(os.path.join(out, "landmarks.npy")), np.load(os.path.join(out, "landmarks_crop.npy"))
  boxes, source = np.load(os.path.join(out, "boxes.npy")), np.load(os.path.join(out, "source_frames.npy"))
  chex.assert_shape([points, crop], (n, lm.NUM_POINTS, 2))
  chex.assert_shape(boxes, (n, 4))
  assert np.isfinite(points).all() and np.array_equal(source, np.zeros(n))
  # Still pose: the photo's own pose points in every frame, in source pixels and in its crop box.
  track = faces.track_faces([skimage.data.astronaut()], keep_mesh=False)
  np.testing.assert_allclose(points[:, lm.POSE_SLICE], np.broadcast_to(track.landmarks[0, lm.POSE_SLICE],
                                                                     (n, 74, 2)), atol=1e-3)
  expected_box = faces.ip_lap_boxes(track.landmarks[0], margin=5)
  np.testing.assert_allclose(boxes, np.broadcast_to(expected_box, (n, 4)))
  np.testing.assert_allclose(lm.denormalize_from_box(crop, boxes), points, atol=1e-3)
  assert info["reference_frames"] == [0, 0, 0]         # Nl = 3 references, all the photo
  with av.open(os.path.join(out, "sketch.mp4")) as container:
    video = container.streams.video[0]
    assert (video.width, video.height) == (128, 128)
    assert len(container.streams.audio) == 1
    decoded = sum(1 for _ in container.decode(video=0))
  assert decoded == n
  with open(os.path.join(out, "info.json")) as f:
    assert json.load(f)["num_frames"] == n


def test_short_video_loops_back_and_forth(files, tmp_path):
  photo = skimage.data.astronaut()[::2, ::2]      # 256 x 256
  frames = [np.roll(photo, 3 * k, axis=1) for k in range(8)]   # the face moves right 3 px a frame
  video = media.write_test_video(tmp_path / "face.mp4", frames, FPS)
  out = str(tmp_path / "out")
  info = gl.generate_landmarks(files["iplap"], video, files["speech"], out, progress=False, sketch_size=64)
  n = audio_frames(files["speech"])
  assert info["looped"] and info["face_frames"] == 8 and info["num_frames"] == n
  source = np.load(os.path.join(out, "source_frames.npy"))
  np.testing.assert_array_equal(source, loop_indices(n, 8))
  points = np.load(os.path.join(out, "landmarks.npy"))
  nose_x = points[:, lm.NOSE_TIP, 0]
  # The pose follows the shown frame: 3 px further right per source frame, back and forth.
  np.testing.assert_allclose(nose_x - nose_x[0], 3.0 * source, atol=1.5)
  same = source == source[0]
  np.testing.assert_allclose(points[same][:, lm.POSE_SLICE], np.broadcast_to(points[0, lm.POSE_SLICE],
                                                                           (same.sum(), 74, 2)), atol=1e-4)


def test_predict_windows_uses_the_centre_of_each_window(files):
  predictor = landmark_inference.load_predictor(files["iplap"])
  assert predictor.batch_size == 8 and predictor.num_frames == 5 and predictor.num_references == 3
  rng = np.random.default_rng(0)
  n = 12                                                    # 8 windows: one batch
  mel = rng.uniform(-4, 4, (n, 80, 16, 1)).astype(np.float32)
  pose = rng.uniform(0, 1, (n, 74, 2)).astype(np.float32)
  ref = rng.uniform(0, 1, (3, 131, 2)).astype(np.float32)
  got = predictor.predict_windows(mel, pose, ref)
  chex.assert_shape(got, (n, 57, 2))
  windows = np.arange(8)[:, None] + np.arange(5)[None]
  every = np.asarray(predictor._apply(predictor.variables, mel[windows], pose[windows],
                                      np.broadcast_to(ref, (8, 3, 131, 2))))
  # Frame f comes from the window centred on it; the first and last two from the end windows.
  plan = [(0, 0), (0, 1)] + [(f - 2, 2) for f in range(2, 10)] + [(7, 3), (7, 4)]
  for f, (start, pos) in enumerate(plan):
    np.testing.assert_allclose(got[f], every[start, pos], atol=1e-5)
  starts, which, where = landmark_inference.window_plan(2, 5)   # shorter than a window: padded
  assert starts.tolist() == [0] and which.tolist() == [0, 0] and where.tolist() == [0, 1]
  with pytest.raises(ValueError, match="reference"):
    predictor.predict_windows(mel, pose, ref[:2])
  with pytest.raises(ValueError, match="NaN"):
    predictor.predict_windows(mel, np.full_like(pose, np.nan), ref)


def test_select_references_spreads_over_mouth_opening():
  points = np.zeros((6, 131, 2), np.float32)
  opening = np.array([3.0, 1.0, 5.0, 0.0, 2.0, 4.0])
  points[:, lm.INNER_LIP_BOTTOM, 1] = opening
  assert landmark_inference.select_references(points, 3).tolist() == [3, 4, 2]   # closed, middle, open
  valid = np.array([True, True, False, True, True, True])
  assert landmark_inference.select_references(points, 2, valid).tolist() == [3, 5]


def test_bad_inputs_raise_clear_errors(files, tmp_path):
  def run(workdir, face, audio, **kw):
    return gl.generate_landmarks(workdir, face, audio, str(tmp_path / "o"), progress=False, **kw)

  with pytest.raises(MediaError, match="face file not found"):
    run(files["iplap"], str(tmp_path / "missing.png"), files["speech"])
  corrupt = tmp_path / "corrupt.wav"
  corrupt.write_bytes(b"RIFF\x00\x01garbage" * 10)
  with pytest.raises(AudioError, match="corrupt.wav"):
    run(files["iplap"], files["photo"], str(corrupt))
  blank = str(tmp_path / "blank.png")
  Image.fromarray(np.full((128, 128, 3), 127, np.uint8)).save(blank)
  with pytest.raises(NoFaceError, match="blank.png"):
    run(files["iplap"], blank, files["speech"])
  with pytest.raises(CheckpointError, match="checkpoints"):
    run(str(tmp_path), files["photo"], files["speech"], config=configs.get_config("iplap_landmark:tiny"))
  with pytest.raises(ConfigError, match="model"):
    run(files["iplap"], files["photo"], files["speech"], config=configs.get_config("dct_landmark:tiny"))
  assert not os.path.exists(tmp_path / "o")


def test_cli_reports_bad_input_and_exits_1(files, tmp_path, repo_root):
  result = subprocess.run(
      [sys.executable, "-m", "experiments.generate_landmarks", f"--workdir={files['iplap']}",
       f"--face={tmp_path / 'nope.mp4'}", f"--audio={files['speech']}"],
      cwd=repo_root, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert "nope.mp4: face file not found" in result.stderr
