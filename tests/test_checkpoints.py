"""talkjax.checkpoints: variables files and training checkpoints (keep-last-K, atomicity, resharding,
data-iterator positions, export)."""

import asyncio
import os
import subprocess
import sys
import textwrap

import chex
import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from talkjax import checkpoints
from talkjax.errors import CheckpointError


def mesh_of(n):
  return Mesh(np.asarray(jax.devices()[:n]), ("data",))


def make_state(mesh, scale=1.0):
  """A train-state-like tree: a matrix split over the data axis, a replicated vector, a scalar step."""
  w = np.arange(64, dtype=np.float32).reshape(16, 4) * scale
  b = np.linspace(-1, 1, 5).astype(np.float32) * scale
  put = lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec))  # noqa: E731
  return {"params": {"w": put(w, P("data")), "b": put(b, P())}, "step": put(np.int32(7), P())}


def target_on(mesh):
  return {"params": {"w": jax.ShapeDtypeStruct((16, 4), jnp.float32, sharding=NamedSharding(mesh, P("data"))),
                     "b": jax.ShapeDtypeStruct((5,), jnp.float32, sharding=NamedSharding(mesh, P()))},
          "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=NamedSharding(mesh, P()))}


def test_variables_round_trip_and_refusals(tmp_path):
  variables = {"params": {"conv": {"kernel": np.ones((3, 3, 2, 4), np.float32)}},
               "batch_stats": {"bn": {"mean": np.zeros((4,), np.float32)}}}
  path = checkpoints.save_variables(tmp_path / "v", variables)
  chex.assert_trees_all_close(checkpoints.load_variables(path), variables)
  with pytest.raises(CheckpointError, match="already exists"):
    checkpoints.save_variables(path, variables)
  with pytest.raises(CheckpointError, match=r"non-finite.*kernel"):
    checkpoints.save_variables(tmp_path / "nan", {"params": {"kernel": np.array([np.nan], np.float32)}})
  with pytest.raises(CheckpointError, match="no such checkpoint directory"):
    checkpoints.load_variables(tmp_path / "missing")


def test_keep_last_k_and_keep_period(tmp_path):
  mesh = mesh_of(1)
  with checkpoints.TrainCheckpointer(tmp_path / "a", keep=2) as ckpt:
    for step in range(1, 6):
      assert ckpt.save(step, make_state(mesh, scale=step))
    assert not ckpt.save(5, make_state(mesh))  # Already there: not saved twice.
    ckpt.wait()
    assert ckpt.all_steps() == [4, 5]
    restored = ckpt.restore(target_on(mesh))
  np.testing.assert_array_equal(np.asarray(restored["params"]["w"]), np.arange(64).reshape(16, 4) * 5.0)
  with checkpoints.TrainCheckpointer(tmp_path / "b", keep=1, keep_period=2) as ckpt:
    for step in range(1, 6):
      ckpt.save(step, make_state(mesh))
    ckpt.wait()
    assert ckpt.all_steps() == [2, 4, 5]
  with pytest.raises(CheckpointError, match="keep must be >= 1"):
    checkpoints.TrainCheckpointer(tmp_path / "c", keep=0)


@pytest.mark.parametrize("save_devices,restore_devices", [(8, 1), (1, 8), (8, 2)])
def test_restore_onto_a_different_device_count(tmp_path, save_devices, restore_devices):
  with checkpoints.TrainCheckpointer(tmp_path) as ckpt:
    ckpt.save(3, make_state(mesh_of(save_devices)))
  with checkpoints.TrainCheckpointer(tmp_path) as ckpt:
    mesh = mesh_of(restore_devices)
    restored = ckpt.restore(target_on(mesh))
  w = restored["params"]["w"]
  assert w.sharding == NamedSharding(mesh, P("data"))
  assert len(w.addressable_shards) == restore_devices
  assert w.addressable_shards[0].data.shape == (16 // restore_devices, 4)
  chex.assert_trees_all_close(jax.device_get(restored), jax.device_get(make_state(mesh_of(1))))


def test_data_iterator_position_is_saved_and_restored(tmp_path):
  dataset = grain.MapDataset.range(1000).map(lambda i: {"x": np.full((2,), i, np.int64)}).to_iter_dataset()
  iterator = iter(dataset)
  for _ in range(5):
    next(iterator)
  with checkpoints.TrainCheckpointer(tmp_path) as ckpt:
    ckpt.save(5, make_state(mesh_of(1)), iterator)
  expected = [int(next(iterator)["x"][0]) for _ in range(3)]
  fresh = iter(dataset)
  with checkpoints.TrainCheckpointer(tmp_path) as ckpt:
    ckpt.restore(target_on(mesh_of(1)), data_iterator=fresh)
  assert [int(next(fresh)["x"][0]) for _ in range(3)] == expected == [5, 6, 7]


def test_restore_errors_name_the_problem(tmp_path):
  with checkpoints.TrainCheckpointer(tmp_path) as ckpt:
    with pytest.raises(CheckpointError, match="no complete checkpoint to restore"):
      ckpt.restore(target_on(mesh_of(1)))
    ckpt.save(1, make_state(mesh_of(1)))
    ckpt.wait()
    with pytest.raises(CheckpointError, match=r"no checkpoint for step 9 \(have \[1\]\)"):
      ckpt.restore(target_on(mesh_of(1)), step=9)
    wrong = target_on(mesh_of(1))
    wrong["params"]["w"] = jax.ShapeDtypeStruct((3, 3), jnp.float32)
    with pytest.raises(CheckpointError, match="cannot restore the train state"):
      ckpt.restore(wrong)


_CRASHING_SAVER = textwrap.dedent("""
  import os, sys
  import numpy as np
  from orbax.checkpoint._src.path import atomicity
  from talkjax import checkpoints

  directory, mode = sys.argv[1], sys.argv[2]
  original = atomicity.AtomicRenameTemporaryPath.finalize

  async def crash_before_commit(self):
    if self.get_final().name == "2":
      os._exit(3)  # Everything of step 2 is written; the process dies before the final rename.
    return await original(self)

  if mode == "before_commit":
    atomicity.AtomicRenameTemporaryPath.finalize = crash_before_commit
  ckpt = checkpoints.TrainCheckpointer(directory)
  ckpt.save(1, {"w": np.full((256, 256), 1.0, np.float32)})
  ckpt.wait()
  ckpt.save(2, {"w": np.full((4096, 1024), 2.0, np.float32)})  # 16 MB, written in the background.
  if mode == "while_writing":
    os._exit(3)
  ckpt.wait()
  os._exit(0)
""")


@pytest.mark.parametrize("mode", ["while_writing", "before_commit"])
def test_crash_mid_save_leaves_no_visible_partial_checkpoint(tmp_path, repo_root, mode, monkeypatch):
  directory = tmp_path / "ckpt"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", _CRASHING_SAVER, str(directory), mode], cwd=repo_root,
                          env=env, capture_output=True, timeout=300)
  assert result.returncode == 3, result.stderr.decode()[-3000:]
  leftovers = sorted(os.listdir(directory))
  if mode == "before_commit":
    assert any(name.startswith("2.orbax-checkpoint-tmp") for name in leftovers), leftovers
  assert "2" not in leftovers
  # Orbax removes the leftovers in a background thread; slowed down here (as on a loaded machine),
  # the checkpointer must still have waited for it by the time it is ready.
  from orbax.checkpoint._src.path import temporary_paths  # pylint: disable=g-import-not-at-top
  cleanup = temporary_paths.cleanup_temporary_paths

  async def slow_cleanup(*args, **kwargs):
    await asyncio.sleep(1.0)
    return await cleanup(*args, **kwargs)

  monkeypatch.setattr(temporary_paths, "cleanup_temporary_paths", slow_cleanup)
  with checkpoints.TrainCheckpointer(directory) as ckpt:
    assert ckpt.all_steps() == [1]
    restored = ckpt.restore({"w": jax.ShapeDtypeStruct((256, 256), jnp.float32)})
    np.testing.assert_array_equal(np.asarray(restored["w"]), 1.0)
  # Opening the directory again cleaned up the temporary leftovers.
  assert sorted(os.listdir(directory)) == ["1"]


def test_load_train_state_and_export_network(tmp_path):
  state = {"params": {"generator": {"w": np.ones((2, 3), np.float32)},
                      "discriminator": {"v": np.zeros(2, np.float32)}},
           "batch_stats": {"generator": {"mean": np.full((3,), 0.5, np.float32)}, "discriminator": {}},
           "step": np.int32(4)}
  with checkpoints.TrainCheckpointer(tmp_path / "ckpt") as ckpt:
    ckpt.save(4, state)
  loaded = checkpoints.load_train_state(tmp_path / "ckpt")
  chex.assert_trees_all_close(loaded["params"], state["params"])
  assert int(loaded["step"]) == 4
  out = checkpoints.export_network(tmp_path / "ckpt", "generator", tmp_path / "gen")
  variables = checkpoints.load_variables(out)
  chex.assert_trees_all_close(variables, {"params": {"w": np.ones((2, 3), np.float32)},
                                          "batch_stats": {"mean": np.full((3,), 0.5, np.float32)}})
  with pytest.raises(CheckpointError, match=r"no network 'vgg'.*discriminator, generator"):
    checkpoints.export_network(tmp_path / "ckpt", "vgg", tmp_path / "vgg")
  with pytest.raises(CheckpointError, match="no such checkpoint directory"):
    checkpoints.load_train_state(tmp_path / "nothing")


def test_load_train_state_reads_a_checkpoint_with_a_data_iterator_quietly(tmp_path, caplog):
  """Generation and export read trainer checkpoints, which hold the loader's position too: that item
  has a handler, so Orbax does not warn that it "could not be restored"."""
  iterator = iter(grain.MapDataset.range(10).to_iter_dataset())
  next(iterator)
  state = {"params": {"g": {"w": np.full((2,), 3.0, np.float32)}}, "step": np.int32(2)}
  with checkpoints.TrainCheckpointer(tmp_path / "ckpt") as ckpt:
    ckpt.save(2, state, iterator)
  with caplog.at_level("WARNING"):
    loaded = checkpoints.load_train_state(tmp_path / "ckpt")
  np.testing.assert_array_equal(loaded["params"]["g"]["w"], [3.0, 3.0])
  assert not [r for r in caplog.records if "could not be restored" in r.getMessage()]
