"""Tests of the DCK U-Net (paper 001): the model, its task (losses, evaluator, pre-trained audio network)
and its config variants.

Variables are filled from NumPy (shapes from ``jax.eval_shape`` of the real init) wherever the test
is about the forward computation, not the initialisation: XLA:CPU spends most of a small model's
compile time on the random initialisers, and these tests should stay fast on a 2-core machine.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import configs
from talkjax import checkpoints, tasks
from talkjax.errors import CheckpointError, ConfigError
from talkjax.models import dck_unet as dck
from talkjax.models.audio_encoder import AudioEncoder
from talkjax.nn.numpy_init import numpy_variables
from talkjax.tasks import dck_unet as dck_task
from talkjax.train import state as state_lib
from talkjax.train import step as step_lib

TINY = dict(down_features=(4, 8, 8), num_middle=2, hyper_hidden=(6,), audio_width_divisor=16)
S = 32


def inputs(b=3, seed=0):
  rng = np.random.default_rng(seed)
  face = rng.random((b, S, S, 3), dtype=np.float32)
  mel = rng.uniform(-4.0, 4.0, (b, 80, 16, 1)).astype(np.float32)
  return jnp.asarray(face), jnp.asarray(mel)


def build(**overrides):
  model = dck.DCKUNet(**{**TINY, **overrides})
  face, mel = inputs()
  abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), face, mel))
  return model, numpy_variables(abstract)


@pytest.fixture(scope="module")
def models():
  """The paper's model and the ablations, with jitted eval-mode forward passes."""
  out = {}
  for name, kw in {"dck": {}, "no_dck": {"fusion": "concat"}, "no_blend": {"blend": False},
                   "no_audio": {"use_audio": False}}.items():
    model, variables = build(**kw)
    out[name] = (model, variables, jax.jit(lambda v, f, m, model=model: model.apply(v, f, m)))
  return out


def test_shapes_and_dck_layer_layout(models):
  face, mel = inputs()
  for name, (model, variables, fwd) in models.items():
    out = fwd(variables, face, mel)
    chex.assert_shape(out.image, (3, S, S, 3))
    assert np.all((np.asarray(out.image) >= 0) & (np.asarray(out.image) <= 1)), name
    if name == "no_blend":
      assert out.attention is None and out.motion is None
    else:
      chex.assert_shape(out.attention, (3, S, S, 1))
      chex.assert_shape(out.motion, (3, S, S, 3))
  params = models["dck"][1]["params"]
  # A DCK layer: an FC network 512/16 -> 6 -> (1x1 kernel of 8 x 8 channels) + 8 biases, per frame.
  chex.assert_shape(params["middle_0"]["hyper_0"]["kernel"], (32, 6))
  chex.assert_shape(params["middle_0"]["kernel_head"]["kernel"], (6, 8 * 8))
  chex.assert_shape(params["middle_0"]["bias_head"]["kernel"], (6, 8))
  assert "kernel" not in params["middle_0"]  # no static kernel of its own
  # The ablation's audio map: 16 channels at the 4x4 bottleneck, fused by spatial attention.
  no_dck = models["no_dck"][1]["params"]
  chex.assert_shape(no_dck["audio_map"]["kernel"], (32, 4 * 4 * 16))
  chex.assert_shape(no_dck["middle_0"]["kernel"], (1, 1, 8, 8))


def test_upsample_modes_and_bad_input():
  face, mel = inputs(b=2)
  model, variables = build(upsample="after_conv", up_features=(8, 4, 4))
  out = model.apply(variables, face, mel)
  chex.assert_shape(out.image, (2, S, S, 3))
  with pytest.raises(ValueError, match=r"divisible by 8"):
    model.apply(variables, face[:, :30, :30], mel)
  with pytest.raises(ValueError, match=r"mel: expected \(2, 80, 16, 1\)"):
    model.apply(variables, face, mel[:, :, :8])
  with pytest.raises(ConfigError, match=r"fusion: unknown 'film'"):
    dck.DCKUNet(**{**TINY, "fusion": "film"}).init(jax.random.PRNGKey(0), face, mel)


def test_blending_is_eq7_exactly(models):
  rng = np.random.default_rng(1)
  a, m, i = (rng.random((2, 4, 4, c), dtype=np.float32) for c in (1, 3, 3))
  np.testing.assert_array_equal(np.asarray(dck.blend(a, m, i)), a * m + (1.0 - a) * i)
  model, variables, fwd = models["dck"]
  face, mel = inputs()
  out = fwd(variables, face, mel)
  expected = np.asarray(out.attention) * np.asarray(out.motion) + (1.0 - np.asarray(out.attention)) * np.asarray(face)
  np.testing.assert_allclose(np.asarray(out.image), expected, rtol=0, atol=1e-6)
  # Where the mask is ~0 the input passes through; where ~1 the motion image replaces it.
  att = np.asarray(out.attention)[..., 0]
  assert att.min() < att.max()


def test_dck_kernels_come_from_the_audio(models):
  model, variables, fwd = models["dck"]
  face, mel = inputs()
  kernels = dck.dck_kernels(model, variables, face, mel)
  assert len(kernels) == 2
  chex.assert_shape(kernels, [(3, 8, 8), (3, 8, 8)])
  # Recompute layer 0's kernels by hand: FC(audio feature) -> Cin x Cout matrix (row-major HWIO).
  encoder = AudioEncoder(width_divisor=TINY["audio_width_divisor"])
  feats = encoder.apply({"params": variables["params"]["audio_encoder"],
                         "batch_stats": variables["batch_stats"]["audio_encoder"]}, mel).reshape(3, -1)
  p = variables["params"]["middle_0"]
  h = np.maximum(np.asarray(feats) @ p["hyper_0"]["kernel"] + p["hyper_0"]["bias"], 0.0)
  manual = (h @ p["kernel_head"]["kernel"] + p["kernel_head"]["bias"]).reshape(3, 8, 8)
  np.testing.assert_allclose(np.asarray(kernels[0]), manual, rtol=1e-5, atol=1e-5)
  # Different mel windows -> different kernels and frames; a frame's kernels depend only on its own
  # audio (changing frame 2's mel leaves frames 0 and 1 alone).
  assert np.abs(np.asarray(kernels[0][0] - kernels[0][1])).max() > 1e-3
  other = mel.at[2].set(-mel[2])
  out_a, out_b = fwd(variables, face, mel), fwd(variables, face, other)
  k_b = dck.dck_kernels(model, variables, face, other)
  np.testing.assert_array_equal(np.asarray(k_b[0][:2]), np.asarray(kernels[0][:2]))
  assert np.abs(np.asarray(k_b[0][2] - kernels[0][2])).max() > 1e-3
  np.testing.assert_allclose(np.asarray(out_b.image[:2]), np.asarray(out_a.image[:2]), atol=1e-6)
  assert np.abs(np.asarray(out_b.image[2] - out_a.image[2])).max() > 1e-4
  # The no_dck ablation also listens (through its fused audio map)...
  _, v_nd, fwd_nd = models["no_dck"]
  assert np.abs(np.asarray(fwd_nd(v_nd, face, mel).image - fwd_nd(v_nd, face, other).image)).max() > 1e-4
  # ...and the no_audio baseline cannot: identical kernels and frames whatever the mel.
  m0, v0, fwd0 = models["no_audio"]
  np.testing.assert_array_equal(np.asarray(fwd0(v0, face, mel).image), np.asarray(fwd0(v0, face, other).image))
  k0 = dck.dck_kernels(m0, v0, face, mel)[0]
  np.testing.assert_array_equal(np.asarray(k0[0]), np.asarray(k0[2]))
  with pytest.raises(ConfigError, match="no DCK layers"):
    dck.dck_kernels(models["no_dck"][0], v_nd, face, mel)


def _state(config, seed=0):
  """A step-0 TrainState of ``config`` with NumPy-filled variables (no random-initialiser compile)."""
  task = tasks.get(config.task)
  nets, spec = task.networks(config), task.batch_spec(config)
  abstract = jax.eval_shape(lambda: task.init(config, nets, jax.random.PRNGKey(0), state_lib.example_batch(spec)))
  variables = numpy_variables(abstract, seed)
  txs = {n: state_lib.make_optimizer(config, n, config.total_steps)[0] for n in nets}
  params = {n: variables[n]["params"] for n in nets}
  state = state_lib.TrainState(
      step=jnp.zeros((), jnp.int32), rng=jax.random.key_data(jax.random.PRNGKey(seed)), params=params,
      batch_stats={n: variables[n].get("batch_stats", {}) for n in nets},
      opt_state={n: txs[n].init(params[n]) for n in nets},
      weights={k: jnp.float32(v) for k, v in task.initial_weights(config).items()})
  return task, nets, spec, txs, state


def _batch(spec, b=4, seed=0):
  rng = np.random.default_rng(seed)
  out = {}
  for k, s in spec.items():
    if s.dtype == jnp.uint8:
      out[k] = rng.integers(0, 256, (b,) + s.shape).astype(np.uint8)
    elif k.endswith("landmarks"):
      out[k] = rng.uniform(0.2, 0.8, (b,) + s.shape).astype(np.float32)
    else:
      out[k] = rng.uniform(-4, 4, (b,) + s.shape).astype(np.float32)
  return out


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["", "no_dck", "no_blend", "no_audio"])
def test_every_variant_builds_and_trains_a_step(variant):
  config = configs.get_config(f"dck_unet:tiny{',' + variant if variant else ''}")
  assert config.model.fusion == ("concat" if variant == "no_dck" else "dck")
  assert config.model.blend == (variant != "no_blend") and config.model.use_audio == (variant != "no_audio")
  task, nets, spec, txs, state = _state(config)
  assert task.sampler(config) == "dck_pairs"
  before = jax.device_get(state.params)
  new, metrics = jax.jit(step_lib.make_train_step(task.players(config, nets), txs))(state, _batch(spec), {})
  metrics = jax.device_get(metrics)
  assert bool(metrics[step_lib.FINITE])
  assert ("generator/mask" in metrics) == (variant != "no_blend")
  for name in ("generator", "discriminator"):
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), before[name],
                         jax.device_get(new.params[name]))
    assert max(jax.tree.leaves(moved)) > 0, name
  # Training updates the generator's batch statistics (the audio encoder's too: it is trained here).
  assert not np.allclose(jax.device_get(new.batch_stats["generator"]["audio_encoder"]["block_0"]["bn"]["mean"]), 0)
  # The loss is what the paper's eq. (5) (+ the mask term) says it is.
  w = task.initial_weights(config)
  total = w["l1"] * metrics["generator/l1"] + w["gan"] * metrics["generator/gan"] + w["mask"] * metrics.get(
      "generator/mask", 0.0)
  np.testing.assert_allclose(metrics["generator/loss"], total, rtol=1e-5)
  np.testing.assert_allclose(metrics["discriminator/loss"],
                             0.5 * (metrics["discriminator/real"] + metrics["discriminator/fake"]), rtol=1e-5)


def test_pretrained_audio_encoder_is_loaded_and_can_stay_frozen(tmp_path):
  config = configs.get_config("dck_unet:tiny")
  encoder = AudioEncoder(width_divisor=config.model.audio_width_divisor)
  mel = jnp.zeros((1, 80, 16, 1))
  pretrained = numpy_variables(jax.eval_shape(lambda: encoder.init(jax.random.PRNGKey(0), mel)), seed=7)
  pretrained["batch_stats"] = jax.tree.map(lambda x: x + 0.5, pretrained["batch_stats"])
  # A converted Wav2Lip generator keeps its audio network under params/audio_encoder.
  path = checkpoints.save_variables(str(tmp_path / "wav2lip"), {
      "params": {"audio_encoder": pretrained["params"], "face_encoder": {"w": np.ones(3, np.float32)}},
      "batch_stats": {"audio_encoder": pretrained["batch_stats"]}})
  config = configs.get_config("dck_unet:tiny", {"model.audio_encoder_init": path,
                                                "model.freeze_audio_encoder": "true"})
  task, nets, spec, txs, state = _state(config)
  loaded = dck.load_audio_encoder(path, {"params": pretrained["params"], "batch_stats": pretrained["batch_stats"]})
  chex.assert_trees_all_close(loaded, (pretrained["params"], pretrained["batch_stats"]))
  # Frozen: a training step leaves the audio network's weights and statistics exactly alone.
  state = state.replace(params={**state.params, "generator": {**state.params["generator"],
                                                              "audio_encoder": pretrained["params"]}},
                        batch_stats={**state.batch_stats, "generator": {**state.batch_stats["generator"],
                                                                        "audio_encoder": pretrained["batch_stats"]}})
  gen_player = task.players(config, nets)[:1]
  new, _ = jax.jit(step_lib.make_train_step(gen_player, {"generator": txs["generator"]}))(state, _batch(spec), {})
  chex.assert_trees_all_equal(jax.device_get(new.params["generator"]["audio_encoder"]), pretrained["params"])
  chex.assert_trees_all_equal(jax.device_get(new.batch_stats["generator"]["audio_encoder"]),
                              pretrained["batch_stats"])
  assert not np.allclose(jax.device_get(new.params["generator"]["down_0"]["kernel"]),
                         state.params["generator"]["down_0"]["kernel"])
  # A file without an audio encoder, or one of another shape, is a clear error.
  other = checkpoints.save_variables(str(tmp_path / "other"), {"params": {"w": np.ones(3, np.float32)}})
  with pytest.raises(CheckpointError, match="holds no audio encoder"):
    dck.load_audio_encoder(other, {"params": pretrained["params"]})
  wide = AudioEncoder(width_divisor=8)
  wide_vars = numpy_variables(jax.eval_shape(lambda: wide.init(jax.random.PRNGKey(0), mel)))
  wide_path = checkpoints.save_variables(str(tmp_path / "wide"), wide_vars)
  with pytest.raises(CheckpointError, match="does not fit the DCK U-Net"):
    dck.load_audio_encoder(wide_path, {"params": pretrained["params"], "batch_stats": pretrained["batch_stats"]})


class _NumpyInit:
  """Stands in for a network in ``task.init``: NumPy-filled variables, no initialiser compile."""

  def __init__(self, module, seed=0):
    self.module, self.seed = module, seed

  def init(self, rng, *args, **kwargs):
    del rng
    abstract = jax.eval_shape(lambda: self.module.init(jax.random.PRNGKey(0), *args, **kwargs))
    return numpy_variables(abstract, self.seed)


def test_task_init_puts_the_pretrained_values_in(tmp_path):
  config = configs.get_config("dck_unet:tiny")
  encoder = AudioEncoder(width_divisor=config.model.audio_width_divisor)
  pretrained = numpy_variables(jax.eval_shape(lambda: encoder.init(jax.random.PRNGKey(0), jnp.zeros((1, 80, 16, 1)))),
                            seed=3)
  path = checkpoints.save_variables(str(tmp_path / "enc"), pretrained)  # a bare AudioEncoder's variables
  config = configs.get_config("dck_unet:tiny", {"model.audio_encoder_init": path})
  task = tasks.get("dck_unet")
  nets = {k: _NumpyInit(v) for k, v in task.networks(config).items()}
  variables = task.init(config, nets, jax.random.PRNGKey(0), state_lib.example_batch(task.batch_spec(config)))
  chex.assert_trees_all_close(jax.device_get(variables["generator"]["params"]["audio_encoder"]),
                              pretrained["params"])
  chex.assert_trees_all_close(jax.device_get(variables["generator"]["batch_stats"]["audio_encoder"]),
                              pretrained["batch_stats"])
  fresh = task.init(configs.get_config("dck_unet:tiny"), nets, jax.random.PRNGKey(0),
                    state_lib.example_batch(task.batch_spec(config)))
  assert not np.allclose(fresh["generator"]["params"]["audio_encoder"]["block_0"]["conv"]["kernel"],
                         pretrained["params"]["block_0"]["conv"]["kernel"])


def test_pearson_and_openness_helpers():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=50), rng.normal(size=50)
  np.testing.assert_allclose(dck_task.pearson(a, b), np.corrcoef(a, b)[0, 1], rtol=1e-12)
  assert dck_task.pearson(a, np.full(50, 3.0)) == 0.0
  with pytest.raises(ValueError, match="equal length"):
    dck_task.pearson(a, b[:10])
  # The yardstick on a synthetic clip: the normalised landmarks of the samplers, scaled to pixels.
  from talkjax.data import synthetic
  frames, _, landmarks, visemes = synthetic.generate_clip(seed=(1, 0, 0), size=128, duration=1.0)
  measured = dck_task.openness(frames, landmarks / 128.0)
  assert dck_task.pearson(measured, visemes[:, 0]) > 0.9


def test_config_variants_and_errors():
  base = configs.get_config("dck_unet")
  assert base.model.image_size == base.data.image_size == 256 and base.model.num_middle == 4
  assert base.data.kind == "corpus" and base.data.root is None and base.data.preset == "default"
  local = configs.get_config("dck_unet:runlocal,no_dck")
  assert local.data.preset == "runlocal_excerpts" and local.model.image_size == 128 and local.model.fusion == "concat"
  with pytest.raises(ConfigError, match="unknown variant 'no_gan'"):
    configs.get_config("dck_unet:no_gan")
  bad = configs.get_config("dck_unet:tiny", {"data.image_size": 96})
  with pytest.raises(ConfigError, match="must equal config.model.image_size"):
    dck_task.batch_spec(bad)
