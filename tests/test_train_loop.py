"""End-to-end tests of talkjax.train.train_and_evaluate: smoke runs of every config, resume, NaN, SIGTERM."""

import json
import os
import signal
import struct
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments import configs
from talkjax import checkpoints
from talkjax.errors import CheckpointError, ConfigError
from talkjax.train import TrainingDivergedError, train_and_evaluate

# Configs whose runlocal variant is too big for a 2-step CI run: name -> (variant, overrides).
SMOKE = {"dck_unet": ("tiny", {})}


# The many short runs below compile the same programs: share compilations (conftest.py).
pytestmark = pytest.mark.usefixtures("xla_cache")


def toy(arg="runlocal", **overrides):
  base = {"total_steps": 2, "log_every": 1, "checkpoint_every": 0, "eval_every": 0, "images_every": 0}
  base.update(overrides)
  return configs.get_config(f"toy_gan:{arg}", base)


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def read_events(workdir):
  """(tag, step, kind) of every summary value in the TensorBoard event files (TFRecord framing)."""
  from talkjax.train.logging import _summary_writer_class
  _summary_writer_class()  # Imports tensorboardX without torch.
  from tensorboardX.proto import event_pb2
  out = []
  folder = os.path.join(workdir, "tensorboard")
  for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name), "rb") as f:
      data = f.read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      for v in event.summary.value:
        out.append((v.tag, event.step, v.WhichOneof("value")))
  return out


def params_of(state):
  return jax.device_get(state.params)


def max_diff(a, b):
  return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))),
                                          a, b)))


@pytest.mark.parametrize("name", configs.list_configs())
def test_every_config_runlocal_trains_two_steps(name, tmp_path):
  variant, extra = SMOKE.get(name, ("runlocal", {}))
  config = configs.get_config(f"{name}:{variant}")
  wanted = {"total_steps": 2, "log_every": 1, "checkpoint_every": 2, "eval_every": 2, "images_every": 2}
  overrides = {k: v for k, v in wanted.items() if k in config}
  overrides.update(extra)
  config = configs.apply_overrides(config, overrides)
  workdir = str(tmp_path / "work")
  state = train_and_evaluate(config, workdir)

  assert int(jax.device_get(state.step)) == 2
  assert checkpoints.TrainCheckpointer(os.path.join(workdir, "checkpoints")).all_steps() == [2]
  rows = read_metrics(workdir)
  train_rows = [r for r in rows if any(k.startswith("train/") for k in r)]
  assert [r["step"] for r in train_rows] == [1, 2]
  losses = [v for r in train_rows for k, v in r.items() if k.startswith("train/") and k.endswith("/loss")]
  assert losses and all(np.isfinite(losses))
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f) == json.loads(config.to_json_best_effort())
  events = read_events(workdir)
  assert any(tag.startswith("train/") and kind == "simple_value" for tag, _, kind in events)
  if config.get("evals"):
    assert any(k.startswith("eval/") for r in rows for k in r)
    assert any(tag.startswith("eval/") and kind == "image" for tag, _, kind in events)


def test_toy_run_logs_images_evals_and_trains(tmp_path):
  """The toy GAN learns (held-out L1 drops), logs grids, and its eval-driven GAN switch fires."""
  config = toy(total_steps=40, log_every=10, eval_every=20, images_every=20, checkpoint_every=20,
               **{"gan_start.below": 0.08, "evals.holdout.num_batches": 2})
  workdir = str(tmp_path)
  state = train_and_evaluate(config, workdir)
  rows = read_metrics(workdir)
  first = next(r for r in rows if "train/generator/l1" in r)["train/generator/l1"]
  last = [r for r in rows if "train/generator/l1" in r][-1]["train/generator/l1"]
  assert last < 0.6 * first
  evals = [r for r in rows if "eval/holdout/generator/l1" in r]
  assert [r["step"] for r in evals] == [20, 40]
  assert all(15.0 < r["eval/quality/psnr"] < 60.0 for r in evals)
  # The GAN weight starts at 0 and switches on after the first eval with held-out L1 < 0.08.
  weights = [(r["step"], r["weights/gan"]) for r in rows if "weights/gan" in r]
  assert weights[0] == (10, 0.0)
  switched = evals[0]["eval/holdout/generator/l1"] < 0.08
  assert float(jax.device_get(state.weights["gan"])) == pytest.approx(0.01 if switched else 0.0)
  events = read_events(workdir)
  image_tags = {tag for tag, _, kind in events if kind == "image"}
  assert {"train/generator", "eval/holdout/generator", "eval/quality"} <= image_tags
  assert any(kind == "tensor" for _, _, kind in events)  # The config as text.


def test_resume_equals_straight_run(tmp_path):
  # gan_start.below=1.0: the eval at step 3 switches the GAN weight on, so the resumed run must also
  # restore the loss weights from the checkpoint to match.
  common = {"checkpoint_every": 3, "eval_every": 3, "gan_start.below": 1.0}
  straight = train_and_evaluate(toy(total_steps=6, **common), str(tmp_path / "a"))
  first = train_and_evaluate(toy(total_steps=3, **common), str(tmp_path / "b"))
  assert int(jax.device_get(first.step)) == 3
  resumed = train_and_evaluate(toy(total_steps=6, **common), str(tmp_path / "b"))
  diff = max_diff(params_of(straight), params_of(resumed))
  print(f"resume: max |params(6 straight) - params(3 + 3 resumed)| = {diff:.3g}")
  assert diff < 1e-6
  assert max_diff(jax.device_get(straight.batch_stats), jax.device_get(resumed.batch_stats)) < 1e-6
  assert float(jax.device_get(resumed.weights["gan"])) == pytest.approx(0.01)
  for workdir in ("a", "b"):
    with open(tmp_path / workdir / "checkpoints" / "6" / "data" / "process_0-of-1.json") as f:
      assert json.load(f)["next_index"] == 6  # Six batches consumed in both runs.
  a, b = read_metrics(str(tmp_path / "a")), read_metrics(str(tmp_path / "b"))
  def loss(rows, step):
    return next(r["train/generator/loss"] for r in rows if r["step"] == step and "train/generator/loss" in r)
  for step in (4, 5, 6):
    assert loss(b, step) == pytest.approx(loss(a, step), abs=1e-6)
  # The second run's config differed (total_steps): the old one is kept next to the new one.
  assert len([f for f in os.listdir(tmp_path / "b") if f.startswith("config.")]) == 2


def test_nan_loss_stops_naming_step_and_term_and_keeps_last_good_checkpoint(tmp_path):
  config = toy("runlocal,nan_at=5", total_steps=8, checkpoint_every=2)
  workdir = str(tmp_path)
  with pytest.raises(TrainingDivergedError, match=r"step 5: generator/l1 = nan") as info:
    train_and_evaluate(config, workdir)
  assert "last good checkpoint is step 4" in str(info.value)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  assert checkpoints.TrainCheckpointer(ckpt_dir).all_steps() == [2, 4]
  state = checkpoints.load_train_state(ckpt_dir)
  assert int(state["step"]) == 4
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))


def test_frozen_network_loading_and_errors(tmp_path):
  missing = str(tmp_path / "nowhere")
  with pytest.raises(CheckpointError,
                     match=r"config\.frozen\.features.*no such variables directory.*save_feature_net"):
    train_and_evaluate(toy(**{"frozen.features": missing}), str(tmp_path / "w0"))

  from talkjax.tasks import toy as toy_task
  wrong = str(tmp_path / "wrong")
  checkpoints.save_variables(wrong, {"params": {"Conv_0": {"kernel": np.zeros((5, 5, 3, 4), np.float32),
                                                           "bias": np.zeros((4,), np.float32)}}})
  with pytest.raises(CheckpointError,
                     match=r"does not match the frozen 'features' network.*kernel.*\(5, 5, 3, 4\)"):
    train_and_evaluate(toy(**{"frozen.features": wrong}), str(tmp_path / "w1"))

  good = toy_task.save_feature_net(str(tmp_path / "features"))
  workdir = str(tmp_path / "w2")
  train_and_evaluate(toy(total_steps=1, **{"frozen.features": good}), workdir)
  (row,) = [r for r in read_metrics(workdir) if "train/generator/loss" in r]
  assert row["train/generator/features"] > 0.0


def test_bad_settings_are_config_errors(tmp_path):
  with pytest.raises(ConfigError, match=r"unknown evaluator 'nope'; available: loss, psnr"):
    train_and_evaluate(toy(**{"evals.holdout.type": "nope"}), str(tmp_path / "a"))
  with pytest.raises(ConfigError, match=r"batch_size=6 must be divisible by the data axis \(8 devices\)"):
    train_and_evaluate(toy(batch_size=6), str(tmp_path / "b"))
  with pytest.raises(ConfigError, match=r"config\.optim\.generator: unknown field\(s\) nesterov"):
    config = toy()
    with config.unlocked():
      config.optim.generator.nesterov = True
    train_and_evaluate(config, str(tmp_path / "c"))


def test_sigterm_saves_checkpoint_and_exits_zero(tmp_path, repo_root, xla_cache):
  workdir = tmp_path / "work"
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=xla_cache)
  cmd = [sys.executable, "-m", "experiments.train", "--config=toy_gan:runlocal", f"--workdir={workdir}",
         "--config.total_steps=1000000", "--config.log_every=1", "--config.eval_every=0",
         "--config.images_every=0", "--config.checkpoint_every=0"]
  proc = subprocess.Popen(cmd, cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  try:
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
      if (workdir / "metrics.jsonl").exists() and len(read_metrics(str(workdir))) >= 3:
        break
      time.sleep(0.5)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
  finally:
    if proc.poll() is None:
      proc.kill()
  log = out.decode()
  assert proc.returncode == 0, log[-3000:]
  assert "Preempted: checkpoint saved at step" in log
  steps = checkpoints.TrainCheckpointer(str(workdir / "checkpoints")).all_steps()
  assert len(steps) == 1 and steps[0] >= 3
  assert int(checkpoints.load_train_state(str(workdir / "checkpoints"))["step"]) == steps[0]
