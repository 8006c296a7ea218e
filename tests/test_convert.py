"""Generic converter behaviour (third_party.convert + torch_io) on the Wav2Lip/SyncNet kinds: safe
loading, wrappers and prefixes, strict key/shape checks, NaN rejection and the CLI round trip."""

import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
import torch

from talkjax import checkpoints
from talkjax.errors import CheckpointError
from test_models_wav2lip import torch_state_dict  # pylint: disable=wrong-import-order
from third_party import convert
from third_party.converters.torch_io import load_torch_file

KINDS = ("wav2lip", "wav2lip_syncnet", "wav2lip_disc", "syncnet_v2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class NotAllowed:
  """A custom class: unpickling it needs code execution, which weights_only=True refuses."""

  def __init__(self):
    self.payload = "import os"


@pytest.fixture(scope="module")
def disc_sd():
  return torch_state_dict("wav2lip_disc")


def test_my_kinds_are_registered():
  assert set(KINDS) <= set(convert.available_kinds())
  with pytest.raises(CheckpointError, match="unknown converter kind 'wav2lipp'"):
    convert.module_for("wav2lipp")


def test_checkpoint_with_custom_class_is_refused(tmp_path, disc_sd):
  path = tmp_path / "evil.pth"
  torch.save({"state_dict": disc_sd, "extra": NotAllowed()}, path)
  with pytest.raises(CheckpointError, match="refused"):
    load_torch_file(path)
  with pytest.raises(CheckpointError, match="refused"):
    convert.convert_file("wav2lip_disc", str(path), str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()


def test_wrapped_module_prefixed_checkpoint_converts(tmp_path, disc_sd):
  # What Wav2Lip's training script saves (DataParallel prefixes, optimizer state, counters).
  wrapped = {"state_dict": {"module." + k: v for k, v in disc_sd.items()},
             "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
             "global_step": 1000, "global_epoch": 3}
  path = tmp_path / "disc.pth"
  torch.save(wrapped, path)
  plain = convert.convert_state_dict("wav2lip_disc", disc_sd)
  chex.assert_trees_all_equal(convert.convert_state_dict("wav2lip_disc", load_torch_file(path)), plain)
  chex.assert_trees_all_equal(convert.convert_state_dict("wav2lip_disc", wrapped), plain)
  # Layout: OIHW -> HWIO.
  torch_kernel = disc_sd["face_encoder_blocks.1.0.conv_block.0.weight"].numpy()
  np.testing.assert_array_equal(plain["params"]["face_encoder_blocks_1_0"]["conv"]["kernel"],
                                torch_kernel.transpose(2, 3, 1, 0))


def test_missing_key_is_named(disc_sd):
  sd = dict(disc_sd)
  del sd["face_encoder_blocks.3.1.conv_block.0.bias"]
  with pytest.raises(CheckpointError, match=r"missing keys: face_encoder_blocks\.3\.1\.conv_block\.0\.bias"):
    convert.convert_state_dict("wav2lip_disc", sd)


def test_extra_key_is_named(disc_sd):
  sd = dict(disc_sd, **{"face_encoder_blocks.7.0.conv_block.0.weight": torch.zeros(3)})
  with pytest.raises(CheckpointError,
                     match=r"unknown keys: face_encoder_blocks\.7\.0\.conv_block\.0\.weight"):
    convert.convert_state_dict("wav2lip_disc", sd)


def test_misshaped_key_is_named_with_both_shapes(disc_sd):
  sd = dict(disc_sd)
  sd["binary_pred.0.weight"] = torch.zeros(2, 512, 1, 1)
  with pytest.raises(CheckpointError,
                     match=r"binary_pred\.0\.weight: expected \(1, 512, 1, 1\), found \(2, 512, 1, 1\)"):
    convert.convert_state_dict("wav2lip_disc", sd)


def test_all_problems_are_reported_at_once(disc_sd):
  sd = dict(disc_sd)
  del sd["binary_pred.0.bias"]
  sd["stray.weight"] = torch.zeros(1)
  with pytest.raises(CheckpointError) as info:
    convert.convert_state_dict("wav2lip_disc", sd)
  assert "binary_pred.0.bias" in str(info.value) and "stray.weight" in str(info.value)


def test_nan_weights_are_rejected(disc_sd):
  sd = dict(disc_sd)
  w = sd["face_encoder_blocks.2.1.conv_block.0.weight"].clone()
  w[0, 0, 0, 0] = float("nan")
  sd["face_encoder_blocks.2.1.conv_block.0.weight"] = w
  with pytest.raises(CheckpointError, match=r"non-finite.*face_encoder_blocks\.2\.1\.conv_block\.0\.weight"):
    convert.convert_state_dict("wav2lip_disc", sd)


def test_cli_reports_bad_checkpoint_and_exits_2(tmp_path, disc_sd):
  sd = dict(disc_sd)
  del sd["binary_pred.0.bias"]
  path = tmp_path / "broken.pth"
  torch.save(sd, path)
  proc = subprocess.run([sys.executable, "-m", "third_party.convert", "--kind=wav2lip_disc",
                         f"--input={path}", f"--output={tmp_path / 'out'}"],
                        cwd=REPO, capture_output=True, text=True, env=_env(), timeout=600, check=False)
  assert proc.returncode == 2
  assert "binary_pred.0.bias" in proc.stderr
  assert not (tmp_path / "out").exists()


def _env():
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  env["JAX_PLATFORMS"] = "cpu"
  return env


def test_cli_round_trips_every_kind(tmp_path):
  """torch.save a random state dict -> CLI -> load_variables == convert_state_dict -> the module runs."""
  state_dicts, procs = {}, {}
  for kind in KINDS:
    state_dicts[kind] = torch_state_dict(kind, seed=11)
    path = tmp_path / f"{kind}.pth"
    torch.save({"state_dict": state_dicts[kind], "global_step": 5}, path)
    # The four conversions run concurrently: each is mostly interpreter start-up and tracing.
    procs[kind] = subprocess.Popen(
        [sys.executable, "-m", "third_party.convert", f"--kind={kind}", f"--input={path}",
         f"--output={tmp_path / kind}"], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
  for kind, proc in procs.items():
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"{kind}: {err[-2000:]}"
    assert f"wrote {kind} variables" in out
  for kind in KINDS:
    loaded = checkpoints.load_variables(tmp_path / kind)
    expected = convert.convert_state_dict(kind, state_dicts[kind])
    chex.assert_trees_all_equal(loaded, expected)
    module = convert.module_for(kind)
    inputs = convert.example_inputs(kind, 1)
    # Running is the point here, not speed: skip LLVM's optimisations (halves the compile time).
    compiled = jax.jit(module.apply).lower(loaded, *inputs).compile({"xla_backend_optimization_level": 0})
    out = compiled(loaded, *inputs)
    for leaf in jax.tree.leaves(out):
      assert leaf.shape[0] == 1 and np.all(np.isfinite(leaf))
  # Writing over an existing conversion needs --overwrite.
  proc = subprocess.run([sys.executable, "-m", "third_party.convert", "--kind=wav2lip_disc",
                         f"--input={tmp_path / 'wav2lip_disc.pth'}", f"--output={tmp_path / 'wav2lip_disc'}"],
                        cwd=REPO, capture_output=True, text=True, env=_env(), timeout=600, check=False)
  assert proc.returncode == 2 and "already exists" in proc.stderr
