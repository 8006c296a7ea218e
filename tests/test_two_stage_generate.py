"""Two-stage generation with the renderers: audio -> landmarks -> sketches -> faces -> mp4."""

import json
import os
import subprocess
import sys

import av
import jax
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

import media
from experiments import configs
from talkjax import checkpoints
from talkjax import landmarks as lm
from talkjax import tasks
from talkjax.errors import ConfigError
from talkjax.generate import pipeline, two_stage
from talkjax.generate.hooks import VideoContext
from talkjax.train.state import example_batch

RENDER_TINY = {"data.image_size": 32, "data.num_references": 2, "model.width": 8, "model.features": 16,
               "model.spade_hidden": 16, "model.adain_hidden": 16, "model.audio_width_divisor": 4,
               "inference.num_references": 2, "inference.batch_size": 4}


def _random_variables(config, seed):
  """Every network's variables of ``config``'s task, drawn with NumPy (init would compile threefry)."""
  task = tasks.get(config.task)
  nets = task.networks(config)
  shapes = jax.eval_shape(lambda: task.init(config, nets, jax.random.PRNGKey(0),
                                            example_batch(task.batch_spec(config))))
  rng = np.random.default_rng(seed)

  def draw(path, s):
    name = jax.tree_util.keystr(path)
    if "batch_stats" in name:
      return np.full(s.shape, 1.0 if ("var" in name.split("[")[-1]) else 0.0, np.float32)
    if len(s.shape) <= 1:
      return np.full(s.shape, 1.0 if name.endswith("['scale']") else 0.0, np.float32)
    return (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(np.float32)
  return jax.tree_util.tree_map_with_path(draw, shapes)


def _write_workdir(path, config, variables):
  """A training workdir as experiments.train leaves it: config.json and a step-0 checkpoint."""
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  state = {"params": {n: v["params"] for n, v in variables.items()},
           "batch_stats": {n: v.get("batch_stats", {}) for n, v in variables.items()}}
  with checkpoints.TrainCheckpointer(os.path.join(path, "checkpoints"), async_save=False) as ckpt:
    ckpt.save(0, state)
  return str(path)


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
  base = tmp_path_factory.mktemp("two_stage")
  rconfig = configs.get_config("gaussian_renderer:runlocal", RENDER_TINY)
  lconfig = configs.get_config("iplap_landmark:tiny")
  return (_write_workdir(base / "renderer", rconfig, _random_variables(rconfig, 0)),
          _write_workdir(base / "landmarks", lconfig, _random_variables(lconfig, 1)))


@pytest.fixture(scope="module")
def media_files(tmp_path_factory):
  base = tmp_path_factory.mktemp("media")
  photo = str(base / "astronaut.png")
  Image.fromarray(skdata.astronaut()).save(photo)
  speech = media.espeak_wav(base / "speech.wav", "Hello there.")
  return photo, speech


def test_photo_and_speech_make_a_playable_mp4(workdirs, media_files, tmp_path):
  renderer_dir, landmark_dir = workdirs
  photo, speech = media_files
  renderer = pipeline.load_renderer(renderer_dir, landmark_workdir=landmark_dir)
  assert isinstance(renderer, two_stage.TwoStageRenderer)
  crop = renderer.crop
  assert (crop.kind, crop.size, crop.margin, crop.paste, crop.mask) == ("ip_lap", 32, 25, "feather", "face")
  out = str(tmp_path / "out.mp4")
  report = pipeline.generate(renderer, photo, speech, out, progress=False)
  assert os.path.exists(out) and report.still and not report.passthrough_frames
  with av.open(out) as container:
    assert len(container.streams.audio) == 1
    frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
  assert len(frames) == report.num_frames
  assert abs(report.num_frames / 25.0 - report.audio_seconds) <= 1 / 25.0
  photo_px = skdata.astronaut().astype(np.float32)
  box = renderer.crop  # the face region changed, the corners did not (feathered paste, H.264 noise)
  x0, y0, x1, y1 = (int(v) for v in np.asarray(report_box(renderer_dir, photo, box)))
  face_diff = np.abs(frames[5].astype(np.float32)[y0:y1, x0:x1] - photo_px[y0:y1, x0:x1]).mean()
  corner_diff = np.abs(frames[5].astype(np.float32)[:64, :64] - photo_px[:64, :64]).mean()
  assert face_diff > 3.0 * corner_diff and corner_diff < 4.0
  # The driving landmarks came from the landmark model: a full track, normalised to the crops.
  assert renderer.driving.shape == (report.num_frames, lm.NUM_POINTS, 2)
  assert np.all(np.isfinite(renderer.driving))


def report_box(renderer_dir, photo, crop):
  """The IP_LAP inference box of the photo's face (what the pipeline pasted into)."""
  from talkjax import faces
  from talkjax import video as video_lib
  track = faces.track_faces([video_lib.load_image(photo)], keep_mesh=False)
  return faces.ip_lap_boxes(track.landmarks, margin=crop.margin)[0]


def test_missing_landmark_model_is_a_clear_error(workdirs):
  renderer_dir, _ = workdirs
  with pytest.raises(ConfigError, match="landmark_workdir"):
    pipeline.load_renderer(renderer_dir)
  with pytest.raises(ConfigError, match="no such directory"):
    pipeline.load_renderer(renderer_dir, landmark_workdir=renderer_dir + "-missing")
  with pytest.raises(ConfigError, match="no config.json"):    # a directory that is not a workdir
    pipeline.load_renderer(renderer_dir, landmark_workdir=os.path.dirname(renderer_dir))


def test_cli_takes_the_landmark_workdir_flag(workdirs, media_files, tmp_path, repo_root):
  """``python -m experiments.generate --landmark_workdir=DIR`` (the issue's command) renders the mp4;
  without the flag and without ``config.inference.landmark_workdir`` it exits 1 naming the flag."""
  renderer_dir, landmark_dir = workdirs
  photo, speech = media_files
  out = tmp_path / "cli" / "astronaut.mp4"
  base = [sys.executable, "-m", "experiments.generate", f"--workdir={renderer_dir}", f"--face={photo}",
          f"--audio={speech}", f"--output={out}", "--quiet"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  missing = subprocess.run(base, capture_output=True, text=True, timeout=600, cwd=repo_root, env=env)
  assert missing.returncode == 1 and "--landmark_workdir" in missing.stderr, missing.stderr[-2000:]
  assert not out.exists()
  proc = subprocess.run(base + [f"--landmark_workdir={landmark_dir}"], capture_output=True, text=True,
                        timeout=900, cwd=repo_root, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "end to end" in proc.stdout
  with av.open(str(out)) as container:
    assert len(container.streams.audio) == 1
    assert sum(1 for _ in container.decode(video=0)) > 10
  assert os.listdir(out.parent) == ["astronaut.mp4"]


def test_landmark_workdir_is_refused_by_single_stage_models(tmp_path):
  """A landmark model means nothing to a model that renders from audio directly: a clear error."""
  config = configs.get_config("dck_unet:tiny")
  workdir = str(tmp_path / "dck")
  os.makedirs(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  with pytest.raises(ConfigError, match="two-stage renderers only"):
    pipeline.load_renderer(workdir, landmark_workdir=str(tmp_path / "lm"))


class _OpenAndClose:
  """A landmark predictor that opens the mouth on even output frames (lower lip down 6 px)."""

  def predict_track(self, mel, landmarks, source_indices, fps=25.0):
    del mel, fps
    points = np.asarray(landmarks, np.float32)
    faced = np.flatnonzero(np.all(np.isfinite(points), axis=(1, 2)))
    nearest = faced[np.abs(faced[None] - np.arange(len(points))[:, None]).argmin(axis=1)]
    out = points[nearest[source_indices]].copy()      # faceless frames borrow the nearest face
    out[::2, lm.LIPS_SLICE.start + 31:, 1] += 6.0          # inner lower lip
    return type("Track", (), {"landmarks": out})()


def test_prepare_picks_references_by_openness_and_maps_landmarks_into_the_crops(workdirs):
  renderer_dir, _ = workdirs
  config = pipeline.read_workdir_config(renderer_dir)
  variables = pipeline.load_variables(config, renderer_dir)
  hook = two_stage.make_renderer(config, variables, predictor=_OpenAndClose())
  rng = np.random.default_rng(0)
  base = rng.uniform(100, 200, (1, lm.NUM_POINTS, 2)).astype(np.float32)
  base[0, lm.INNER_LIP_TOP] = base[0, lm.INNER_LIP_BOTTOM]     # opening = how far the lower lip moves
  points = np.repeat(base, 6, axis=0)
  points[:, lm.INNER_LIP_BOTTOM, 1] += np.array([3.0, 0.0, 5.0, 1.0, np.nan, 2.0])  # frame 4: no face
  points[4] = np.nan
  boxes = np.tile(np.array([[90.0, 90.0, 210.0, 210.0]], np.float32), (6, 1))
  boxes[4] = np.nan
  crops = rng.integers(0, 256, (5, 32, 32, 3), np.uint8)
  ctx = VideoContext(num_frames=8, fps=25.0, mel=np.zeros((80, 60), np.float32),
                     source_indices=np.array([0, 1, 2, 3, 4, 5, 4, 3]), landmarks=points, boxes=boxes,
                     crop_landmarks=(points - 90.0) * (32 / 120.0), sample_indices=np.array([0, 1, 2, 3, 5]),
                     sample_crops=crops, still=False)
  hook.prepare(ctx)
  np.testing.assert_array_equal(hook.references, [1, 2])        # most closed and most open mouth
  np.testing.assert_allclose(hook.driving[1], (points[1] - 90.0) / 120.0, atol=1e-6)   # odd: unchanged
  opened = (points[0] - 90.0) / 120.0
  opened[lm.LIPS_SLICE.start + 31:, 1] += 6.0 / 120.0
  np.testing.assert_allclose(hook.driving[0], opened, atol=1e-6)
  assert np.all(np.isfinite(hook.driving))                       # faceless frame 4 borrowed a neighbour
  out = hook.generate_chunk(crops[:3], None, np.zeros((3, 80, 16, 1), np.float32), np.array([0, 1, 2]))
  assert out.shape == (3, 32, 32, 3) and out.dtype == np.uint8
  json.dumps(config.to_dict())   # the workdir config round-trips
