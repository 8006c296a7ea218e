"""The trainer on different meshes and processes: same numbers on 1 and 8 devices, with parameter
sharding, across a checkpoint saved on 8 devices and restored on 1, and with two processes."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import portpicker
import pytest

from experiments import configs
from talkjax import checkpoints
from talkjax.train import train_and_evaluate


# The many short runs below compile the same programs: share compilations (conftest.py).
pytestmark = pytest.mark.usefixtures("xla_cache")


def toy(**overrides):
  base = {"total_steps": 2, "log_every": 1, "checkpoint_every": 0, "eval_every": 0, "images_every": 0}
  base.update(overrides)
  return configs.get_config("toy_gan:runlocal", base)


def losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {(r["step"], k): v for r in rows for k, v in r.items() if k.startswith("train/") and "/loss" in k}


def max_diff(a, b):
  return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))),
                                          a, b)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Two steps of the toy GAN on 1 device, 8 devices, and 8 devices with sharded parameters."""
  root = tmp_path_factory.mktemp("meshes")
  out = {}
  for name, overrides in {"one": {"mesh.shape": (1,)}, "eight": {"mesh.shape": (8,)},
                          "fsdp": {"mesh.shape": (-1,), "mesh.shard_params_min_size": 64}}.items():
    workdir = str(root / name)
    state = train_and_evaluate(toy(**overrides), workdir)
    out[name] = (workdir, state)
  return out


def test_one_and_eight_devices_agree(runs):
  one_dir, one = runs["one"]
  assert len(one.params["generator"]["Conv_0"]["kernel"].sharding.device_set) == 1
  for name in ("eight", "fsdp"):
    workdir, state = runs[name]
    assert len(state.params["generator"]["Conv_0"]["kernel"].sharding.device_set) == 8
    diff = max_diff(jax.device_get(one.params), jax.device_get(state.params))
    print(f"sharding: max |params(1 device) - params({name})| = {diff:.3g}")
    assert diff < 1e-5
    assert max_diff(jax.device_get(one.batch_stats), jax.device_get(state.batch_stats)) < 1e-5
    a, b = losses(one_dir), losses(workdir)
    assert set(a) == set(b) and len(a) == 4
    for key in a:
      assert b[key] == pytest.approx(a[key], abs=1e-5)


def test_parameter_sharding_rule_splits_large_tensors(runs):
  _, state = runs["fsdp"]
  # generator Conv_1 kernel (3, 3, 8, 3) has 216 >= 64 elements; its only dim divisible by 8 is 2.
  spec = state.params["generator"]["Conv_1"]["kernel"].sharding.spec
  assert tuple(spec) == (None, None, "data", None)
  adam = [(jax.tree_util.keystr(path), leaf) for path, leaf in
          jax.tree_util.tree_leaves_with_path(state.opt_state["generator"])
          if "Conv_1" in jax.tree_util.keystr(path) and "kernel" in jax.tree_util.keystr(path)]
  assert len(adam) == 2  # Adam's mu and nu follow their parameter's sharding.
  assert all(tuple(leaf.sharding.spec) == (None, None, "data", None) for _, leaf in adam)
  # Small tensors (a bias of 3) stay replicated.
  assert tuple(state.params["generator"]["Conv_1"]["bias"].sharding.spec) == ()


def test_checkpoint_saved_on_eight_devices_resumes_on_one(runs, tmp_path):
  import shutil
  one_dir, _ = runs["one"]
  eight_dir, _ = runs["eight"]
  # Continue both runs to step 3 on a 1-device mesh (copies: the fixture's workdirs stay intact).
  results = {}
  for name, src in (("from_one", one_dir), ("from_eight", eight_dir)):
    workdir = str(tmp_path / name)
    shutil.copytree(src, workdir)
    results[name] = train_and_evaluate(toy(total_steps=3, **{"mesh.shape": (1,)}), workdir)
    assert int(jax.device_get(results[name].step)) == 3
    assert len(results[name].params["generator"]["Conv_0"]["kernel"].sharding.device_set) == 1
  from_one, from_eight = (jax.device_get(results[k].params) for k in ("from_one", "from_eight"))
  diff = max_diff(from_one, from_eight)
  print(f"restore: max |params(saved on 1) - params(saved on 8)| after a step on 1 device = {diff:.3g}")
  assert diff < 1e-5


def test_two_processes_step_together_like_one(runs, tmp_path, repo_root, xla_cache):
  one_dir, one = runs["one"]
  workdir = tmp_path / "multi"
  port = portpicker.pick_unused_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_COMPILATION_CACHE_DIR=xla_cache)
  procs = []
  for pid in range(2):
    cmd = [sys.executable, "-m", "experiments.train", "--multihost",
           f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={pid}",
           "--config=toy_gan:runlocal", f"--workdir={workdir}",
           "--config.total_steps=2", "--config.log_every=1", "--config.eval_every=0",
           "--config.images_every=0", "--config.checkpoint_every=0"]
    procs.append(subprocess.Popen(cmd, cwd=repo_root, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT))
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=400)[0].decode())
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-4000:]
  state = checkpoints.load_train_state(str(workdir / "checkpoints"))
  assert int(state["step"]) == 2
  diff = max_diff(jax.device_get(one.params), state["params"])
  a, b = losses(one_dir), losses(str(workdir))
  loss_diff = max(abs(a[k] - b[k]) for k in a)
  print(f"multi-process: 2 processes x 2 devices vs 1 device: max |params diff| = {diff:.3g}, "
        f"max |loss diff| = {loss_diff:.3g}")
  assert diff < 1e-5
  assert set(a) == set(b)
  for key in a:
    assert b[key] == pytest.approx(a[key], abs=1e-5)
  # Each process recorded its own data position: 2 batches of its half of the global batch.
  for pid in range(2):
    with open(workdir / "checkpoints" / "2" / "data" / f"process_{pid}-of-2.json") as f:
      assert json.load(f)["next_index"] == 2
