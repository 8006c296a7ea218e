"""Unit tests of the engine's parts: the GAN step against a hand-written update, optimisers,
meshes, the data-source seam, the task registry and logging helpers."""

import math
import sys
import types

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.ndimage

from experiments import configs
from talkjax import tasks
from talkjax.errors import ConfigError
from talkjax.tasks import LossContext
from talkjax.tasks import toy
from talkjax.train import data_source, logging as log_lib, mesh as mesh_lib, state as state_lib
from talkjax.train.step import FINITE, make_eval_step, make_train_step


def toy_setup(arg="runlocal", **overrides):
  config = configs.get_config(f"toy_gan:{arg}", overrides)
  task = tasks.get("toy")
  nets = task.networks(config)
  txs = {n: state_lib.make_optimizer(config, n, config.total_steps)[0] for n in nets}
  init = state_lib.make_init_fn(task, config, nets, txs, task.batch_spec(config),
                                state_lib.initial_weights(task, config), config.seed)
  return config, task, nets, txs, jax.jit(init)()


def test_gan_step_equals_hand_written_update():
  # Plain SGD: its update is linear in the gradient, so the comparison is tight (Adam's first step,
  # lr * g / (|g| + eps), turns rounding differences of near-zero gradients into large ones).
  sgd = {f"optim.{n}.{k}": v for n in ("generator", "discriminator")
         for k, v in (("name", "sgd"), ("lr", 0.1), ("b1", 0.0))}
  config, task, nets, txs, state = toy_setup(**{"gan_start.below": None, **sgd})  # GAN weight on from step 0.
  players = task.players(config, nets)
  batch = {"source": jax.random.uniform(jax.random.PRNGKey(3), (8, 16, 16, 3))}
  new_state, metrics = jax.jit(make_train_step(players, txs))(jax.device_get(state), batch, {})

  step_rng = jax.random.fold_in(state.rng, 0)
  # Generator player: gradients w.r.t. the generator only, NumPy Adam.
  g_ctx = LossContext(batch_stats=state.batch_stats, frozen={}, batch=batch,
                      rng=jax.random.fold_in(step_rng, 0), step=jnp.int32(0), weights=state.weights,
                      carry={}, train=True)
  (g_loss, g_aux), g_grads = jax.jit(jax.value_and_grad(
      lambda p: players[0].loss_fn({**state.params, "generator": p}, g_ctx), has_aux=True))(
          state.params["generator"])
  new_g = jax.tree.map(lambda p, g: np.asarray(p) - 0.1 * np.asarray(g), state.params["generator"], g_grads)
  # Discriminator player: sees the updated generator, the generator's output as carry, NumPy Adam.
  d_ctx = g_ctx._replace(rng=jax.random.fold_in(step_rng, 1), carry={"fake": g_aux.carry["fake"]},
                         batch_stats={**state.batch_stats, **g_aux.batch_stats})
  (d_loss, d_aux), d_grads = jax.jit(jax.value_and_grad(
      lambda p: players[1].loss_fn({"generator": new_g, "discriminator": p}, d_ctx), has_aux=True))(
          state.params["discriminator"])
  new_d = jax.tree.map(lambda p, g: np.asarray(p) - 0.1 * np.asarray(g), state.params["discriminator"],
                       d_grads)

  chex.assert_trees_all_close(jax.device_get(new_state.params), {"generator": new_g, "discriminator": new_d},
                              atol=1e-6, rtol=0)
  chex.assert_trees_all_close(jax.device_get(new_state.batch_stats["generator"]),
                              jax.device_get(g_aux.batch_stats["generator"]), atol=1e-7)
  assert int(new_state.step) == 1
  np.testing.assert_allclose(metrics["generator/loss"], g_loss, rtol=1e-6)
  np.testing.assert_allclose(metrics["generator/l1"], g_aux.terms["l1"], rtol=1e-6)
  np.testing.assert_allclose(metrics["generator/loss"], g_aux.terms["l1"] + 0.01 * g_aux.terms["gan"],
                             rtol=1e-6)
  np.testing.assert_allclose(metrics["discriminator/loss"], d_loss, rtol=1e-6)
  grad_norm = math.sqrt(sum(float(np.sum(np.square(g))) for g in jax.tree.leaves(g_grads)))
  np.testing.assert_allclose(metrics["grad_norm/generator"], grad_norm, rtol=1e-5)
  assert bool(metrics[FINITE])


def test_nan_term_clears_the_finite_flag_and_eval_step_is_pure():
  config, task, nets, txs, state = toy_setup("runlocal,nan_at=1")
  players = task.players(config, nets)
  batch = {"source": jnp.full((8, 16, 16, 3), 0.5)}
  terms, images = jax.jit(make_eval_step(players, max_images=2))(state, batch, {})
  assert set(images) == {"generator/input", "generator/output", "generator/target"}
  chex.assert_shape(images["generator/output"], (2, 16, 16, 3))
  assert np.isnan(terms["generator/l1"])  # The toy's NaN switch keys on ctx.step + 1 == 1.
  _, metrics = jax.jit(make_train_step(players, txs))(state, batch, {})
  assert not bool(metrics[FINITE])
  assert np.isnan(metrics["generator/l1"]) and np.isfinite(metrics["discriminator/real"])


def test_toy_target_is_box_blur_then_colour_mix():
  x = np.random.default_rng(0).random((2, 7, 9, 3)).astype(np.float32)
  expected = scipy.ndimage.uniform_filter(x, size=(1, 3, 3, 1), mode="nearest") @ toy.MIX
  np.testing.assert_allclose(np.asarray(toy.make_target(jnp.asarray(x))), expected, atol=1e-6)


def test_toy_init_scales_and_weight_schedule():
  config, task, nets, _, state = toy_setup()
  kernel = np.asarray(state.params["generator"]["Conv_0"]["kernel"])  # fan_in 3*3*3 = 27
  assert np.abs(kernel).max() <= math.sqrt(3 / 27) + 1e-7 and kernel.std() > 0.15
  np.testing.assert_array_equal(state.params["generator"]["BatchNorm_0"]["scale"], 1.0)
  np.testing.assert_array_equal(state.batch_stats["generator"]["BatchNorm_0"]["var"], 1.0)
  assert state_lib.initial_weights(task, config) == {"l1": 1.0, "gan": 0.0, "features": 1.0}
  metric = config.gan_start.metric
  weights = {"l1": 1.0, "gan": 0.0, "features": 1.0}
  assert task.update_weights(config, dict(weights), 50, {metric: 0.2})["gan"] == 0.0
  assert task.update_weights(config, dict(weights), 50, {metric: 0.01})["gan"] == 0.01


def test_optimizer_schedules_clipping_and_errors():
  def settings(**kw):
    config = ml_collections.ConfigDict({"optim": {"g": kw}})
    return state_lib.make_optimizer(config, "g", total_steps=100)

  _, schedule = settings(lr=1e-3, warmup_steps=10, decay="cosine")
  assert float(schedule(5)) == pytest.approx(5e-4)
  assert float(schedule(10)) == pytest.approx(1e-3)
  assert float(schedule(55)) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 45 / 90)), rel=1e-5)
  _, schedule = settings(lr=1.0, decay="step", decay_steps=30, decay_rate=0.5)
  assert [float(schedule(s)) for s in (0, 29, 30, 61)] == [1.0, 1.0, 0.5, 0.25]

  tx, _ = settings(name="sgd", lr=0.1, momentum=0.0, grad_clip_norm=1.0)
  params = {"w": jnp.zeros(2)}
  updates, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], [-0.06, -0.08], rtol=1e-6)  # Clipped to norm 1, times -lr.

  with pytest.raises(ConfigError, match=r"config\.optim\.g\.name: unknown optimiser 'lamb'"):
    settings(name="lamb")
  with pytest.raises(ConfigError, match=r"config\.optim\.d is missing.*have: g"):
    state_lib.make_optimizer(ml_collections.ConfigDict({"optim": {"g": {}}}), "d", 10)


def test_make_mesh_and_parameter_sharding_rule():
  cfg = lambda shape, axes=("data",): ml_collections.ConfigDict({"shape": shape, "axes": axes})  # noqa: E731
  assert dict(mesh_lib.make_mesh(cfg((-1,))).shape) == {"data": 8}
  assert dict(mesh_lib.make_mesh(cfg((-1, 2), ("data", "model"))).shape) == {"data": 4, "model": 2}
  assert dict(mesh_lib.make_mesh(cfg((2,))).shape) == {"data": 2}  # A subset (with a warning).
  with pytest.raises(ConfigError, match=r"needs 16 devices, only 8 available"):
    mesh_lib.make_mesh(cfg((16,)))
  with pytest.raises(ConfigError, match=r"must contain 'data'"):
    mesh_lib.make_mesh(cfg((8,), ("model",)))
  with pytest.raises(ConfigError, match=r"at most one -1"):
    mesh_lib.make_mesh(cfg((-1, -1), ("data", "model")))
  with pytest.raises(ConfigError, match=r"8 devices are not divisible by 3"):
    mesh_lib.make_mesh(cfg((-1, 3), ("data", "model")))

  mesh = mesh_lib.make_mesh(cfg((-1,)))
  tree = {"big": jax.ShapeDtypeStruct((3, 16, 24), jnp.float32),
          "odd": jax.ShapeDtypeStruct((9, 9), jnp.float32),
          "small": jax.ShapeDtypeStruct((8,), jnp.float32)}
  specs = jax.tree.map(lambda s: tuple(s.spec), mesh_lib.param_sharding(tree, mesh, min_size=64))
  assert specs == {"big": (None, None, "data"), "odd": (), "small": ()}
  specs = jax.tree.map(lambda s: tuple(s.spec), mesh_lib.param_sharding(tree, mesh, min_size=None))
  assert specs == {"big": (), "odd": (), "small": ()}

  local = {"x": np.arange(16 * 3, dtype=np.float32).reshape(16, 3)}
  batch = mesh_lib.global_batch(local, mesh)
  assert batch["x"].shape == (16, 3) and len(batch["x"].addressable_shards) == 8
  np.testing.assert_array_equal(np.asarray(batch["x"]), local["x"])


def random_source(batch_size=4, process_index=0, process_count=1, seed=0):
  spec = {"image": jax.ShapeDtypeStruct((2, 2, 3), jnp.float32), "label": jax.ShapeDtypeStruct((), jnp.int32),
          "frame": jax.ShapeDtypeStruct((2, 2, 3), jnp.uint8)}
  data = ml_collections.ConfigDict({"kind": "random", "num_threads": 1, "prefetch": 2})
  return data_source.make_data_source(data, sampler="any", spec=spec, batch_size=batch_size, seed=seed,
                                      process_index=process_index, process_count=process_count)


def test_random_source_is_deterministic_process_sharded_and_resumable():
  single = random_source(batch_size=8)
  batches = [next(single.train) for _ in range(3)]
  chex.assert_shape(batches[0]["image"], (8, 2, 2, 3))
  assert batches[0]["image"].dtype == np.float32 and batches[0]["label"].dtype == np.int32
  assert 0.0 <= batches[0]["image"].min() and batches[0]["image"].max() < 1.0
  assert set(np.unique(np.concatenate([b["label"] for b in batches]))) == {0, 1}
  frames = np.concatenate([b["frame"] for b in batches])
  assert frames.dtype == np.uint8 and frames.min() < 20 and frames.max() > 235
  # Example i is rng([seed, split, i]) drawing the keys in sorted order: independent of the batching.
  rng = np.random.default_rng([0, 0, 9])
  rng.integers(0, 256, (2, 2, 3))  # "frame"
  expected = rng.random((2, 2, 3), dtype=np.float32)  # "image"
  np.testing.assert_array_equal(batches[1]["image"][1], expected)
  # Two processes' halves make up the single-process global batch, in process order.
  halves = [random_source(batch_size=4, process_index=p, process_count=2) for p in range(2)]
  for b in batches:
    parts = [next(h.train) for h in halves]
    np.testing.assert_array_equal(np.concatenate([p["image"] for p in parts]), b["image"])
  # The iterator position round-trips through get_state/set_state.
  source = random_source(batch_size=8)
  next(source.train)
  position = source.train.get_state()
  after = next(source.train)
  fresh = random_source(batch_size=8)
  fresh.train.set_state(position)
  np.testing.assert_array_equal(next(fresh.train)["image"], after["image"])
  # The held-out split differs from training and restarts on every call.
  first_eval = next(single.eval())
  assert not np.array_equal(first_eval["image"], batches[0]["image"])
  np.testing.assert_array_equal(next(single.eval())["image"], first_eval["image"])


def test_corpus_source_seam(monkeypatch, tmp_path):
  spec = {"face": jax.ShapeDtypeStruct((4, 4, 3), jnp.float32)}
  data = ml_collections.ConfigDict({"kind": "corpus", "root": None, "cache_dir": str(tmp_path),
                                    "num_threads": 1, "prefetch": 2})
  monkeypatch.setitem(sys.modules, "talkjax.data.samplers", None)  # As long as nobody has written it.
  with pytest.raises(data_source.DataPipelineMissingError, match=r"talkjax\.data\.samplers .*kind='random'"):
    data_source.make_data_source(data, sampler="wav2lip", spec=spec, batch_size=2, seed=0)

  calls = {}
  fake_samplers = types.ModuleType("talkjax.data.samplers")
  def make_sampler(sampler, **kwargs):
    calls.setdefault("make_sampler", []).append(
        (sampler, kwargs["root"], kwargs["split"], kwargs["batch_size"]))
    return data_source.random_dataset(spec, kwargs["batch_size"], kwargs["seed"], kwargs["split"])
  fake_samplers.make_sampler = make_sampler
  fake_embedded = types.ModuleType("talkjax.data.embedded")
  def dataset_root(data_config, progress=False):
    calls["dataset_root"] = (data_config.get("cache_dir"), progress, data_config.get("preset"))
    return str(tmp_path / "corpus")
  fake_embedded.dataset_root = dataset_root
  monkeypatch.setitem(sys.modules, "talkjax.data.samplers", fake_samplers)
  monkeypatch.setitem(sys.modules, "talkjax.data.embedded", fake_embedded)
  source = data_source.make_data_source(data, sampler="wav2lip", spec=spec, batch_size=2, seed=0)
  chex.assert_shape(next(source.train)["face"], (2, 4, 4, 3))
  assert calls["dataset_root"] == (str(tmp_path), True, None)   # the data config as given
  assert ("wav2lip", str(tmp_path / "corpus"), "train", 2) in calls["make_sampler"]

  with pytest.raises(ConfigError, match=r"config\.data\.root = '/no/such/dir': no such directory"):
    data_source.make_data_source(ml_collections.ConfigDict({"kind": "corpus", "root": "/no/such/dir"}),
                                 sampler="wav2lip", spec=spec, batch_size=2, seed=0)
  with pytest.raises(ConfigError, match=r"unknown data source 'lmdb'; valid: corpus, random"):
    data_source.make_data_source(ml_collections.ConfigDict({"kind": "lmdb"}), sampler="x", spec=spec,
                                 batch_size=2, seed=0)


def test_task_registry(monkeypatch):
  assert "toy" in tasks.list_tasks()
  assert tasks.get("toy") is toy
  with pytest.raises(ConfigError, match=r"unknown task 'dck'; available tasks: .*toy"):
    tasks.get("dck")
  broken = types.ModuleType("talkjax.tasks.broken")
  broken.sampler = lambda config: "x"
  monkeypatch.setitem(sys.modules, "talkjax.tasks.broken", broken)
  monkeypatch.setattr(tasks, "list_tasks", lambda: ["broken", "toy"])
  with pytest.raises(ConfigError, match=r"lacks required function\(s\): batch_spec, networks, init, players"):
    tasks.get("broken")


def test_image_grid_console_line_and_throughput():
  a = np.zeros((3, 2, 2, 3), np.float32)
  b = np.ones((3, 2, 2, 1), np.float32) * 2.0  # Grey, clipped to 1.
  grid = log_lib.image_grid({"a": a, "b": b}, max_rows=2, pad=1)
  chex.assert_shape(grid, (2 * 3 + 1, 2 * 3 + 1, 3))
  np.testing.assert_array_equal(grid[1:3, 4:6], 1.0)  # Row 0, column "b".
  np.testing.assert_array_equal(grid[4:6, 1:3], 0.0)  # Row 1, column "a".
  assert grid[0].sum() == 0 and grid[:, 3].sum() == 0  # Padding.
  with pytest.raises(ValueError, match=r"image 'c': expected \(N, H, W, 1 or 3\)"):
    log_lib.image_grid({"c": np.zeros((2, 4, 4, 6))})
  assert log_lib.group_images({"generator/input": 1, "generator/output": 2, "quality/frames": 3}) == {
      "generator": {"input": 1, "output": 2}, "quality": {"frames": 3}}
  line = log_lib.console_line(120, 2000, {"generator/loss": 0.123456}, 8.5, 221.2)
  assert line == "step 120/2000 | generator/loss 0.1235 | 8.50 steps/s | ETA 0:03:41"
  assert log_lib.console_line(1, 10, {}, float("nan"), float("nan")).endswith("ETA ?")
