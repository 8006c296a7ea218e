"""Paper 004's lip-prior renderer: shapes, aggregation, ablations, lip averaging, audio dependence, task."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import configs
from talkjax import landmarks as lm
from talkjax import tasks
from talkjax.errors import ConfigError, ShapeError
from talkjax.generate import two_stage
from talkjax.generate.hooks import VideoContext
from talkjax.models import lip_prior_renderer as lpr
from talkjax.tasks import lip_prior
from talkjax.tasks import renderer as renderer_task

TINY = dict(width=4, features=8, spade_hidden=8, fusion_blocks=1, audio_width_divisor=16,
            num_lip_references=3)
B, S, N = 2, 16, 3


def inputs(seed=0):
  return tuple(jnp.asarray(a) for a in lpr.example_inputs(B, image_size=S, num_references=N, seed=seed))


@functools.lru_cache(maxsize=None)
def model_and_fn(**switches):
  """A tiny model, its variables and a jitted eval-mode apply taking explicit lip references."""
  model = lpr.build(**TINY, **switches)
  x = inputs()
  lips = lpr.lip_references(x[2], x[3], TINY["num_lip_references"])
  variables = jax.jit(lambda r: lpr.init_variables(model, r, *x, lip_images=lips[0], lip_sketches=lips[1]))(
      jax.random.key(0))

  @jax.jit
  def fn(variables, face, sketches, refs, ref_sketches, mel, lip_images, lip_sketches):
    return model.apply(variables, face, sketches, refs, ref_sketches, mel, lip_images=lip_images,
                       lip_sketches=lip_sketches)
  return model, variables, fn


def run(switches, variables=None, x=None, lips=None):
  _, default_vars, fn = model_and_fn(**switches)
  x = inputs() if x is None else x
  lips = lpr.lip_references(x[2], x[3], TINY["num_lip_references"]) if lips is None else lips
  return fn(default_vars if variables is None else variables, *x, *lips)


def leaf_shapes(tree):
  return {jax.tree_util.keystr(p): leaf.shape for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def abstract_variables(**switches):
  model = lpr.build(**TINY, **switches)
  return jax.eval_shape(model.init, jax.random.key(0), *inputs())


def test_shapes_ranges_and_zero_flow_aggregation():
  out = run({})
  chex.assert_shape(out.image, (B, S, S, 3))
  assert float(out.image.min()) >= 0.0 and float(out.image.max()) <= 1.0
  a = out.aligned
  chex.assert_shape([a.image, a.guide, a.features1, a.features2, a.flow, a.weight],
                    [(B, S, S, 3), (B, S, S, 6), (B, S, S, 2 * TINY["width"]),
                     (B, S // 2, S // 2, 2 * TINY["features"]), (B, N, S, S, 2), (B, N, S, S, 1)])
  # The flow head starts at zero: the aggregated image is the weighted mean of the unwarped references.
  np.testing.assert_array_equal(np.asarray(a.flow), 0.0)
  refs, w = np.asarray(inputs()[2], np.float64), np.asarray(a.weight, np.float64)
  expected = (refs * w).sum(1) / (w.sum(1) + lpr.WEIGHT_EPS)
  np.testing.assert_allclose(np.asarray(a.image), expected, rtol=1e-5, atol=1e-6)
  face = np.array(inputs()[0])
  face[:, S // 2:] = 0.0
  np.testing.assert_array_equal(np.asarray(a.guide[..., :3]), face)


def test_init_variables_rules():
  _, variables, _ = model_and_fn()
  p = variables["params"]
  np.testing.assert_array_equal(np.asarray(p["alignment"]["flow"]["kernel"]), 0.0)
  assert float(p["rendering"]["cross_attention"]["gamma"]) == 0.0
  np.testing.assert_array_equal(np.asarray(p["rendering"]["face_encoder"]["conv1_bn"]["scale"]), 1.0)
  stats = variables["batch_stats"]["rendering"]["face_encoder"]["conv1_bn"]
  np.testing.assert_array_equal(np.asarray(stats["var"]), 1.0)
  kernel = np.asarray(p["rendering"]["spade_1"]["conv_1"]["kernel"])  # (3, 3, 8, 8): fan_in 72
  assert abs(kernel.std() * np.sqrt(72) - 1.0) < 0.15
  shapes = leaf_shapes(abstract_variables())
  assert shapes == leaf_shapes(variables)


@pytest.mark.parametrize("switch,removed", [
    ("align", ("['alignment']",)),
    ("lip", ("['rendering']['lip_encoder']", "['rendering']['lip_fusion']")),
    ("audio", ("['rendering']['audio_encoder']", "['rendering']['cross_attention']")),
])
def test_each_ablation_removes_exactly_its_module(switch, removed):
  full = leaf_shapes(abstract_variables())
  ablated = leaf_shapes(abstract_variables(**{switch: False}))
  gone = set(full) - set(ablated)
  assert gone and all(any(k.split("]", 1)[1].startswith(r) for r in removed) for k in gone), sorted(gone)
  assert all(any(k.split("]", 1)[1].startswith(r) for k in gone) for r in removed)
  assert set(ablated) <= set(full)
  assert all(full[k] == ablated[k] for k in ablated)   # Everything else is the same, shapes included.
  model = lpr.build(**TINY, **{switch: False})
  out = jax.eval_shape(lambda v, *a: model.apply(v, *a), abstract_variables(**{switch: False}), *inputs())
  assert out.image.shape == (B, S, S, 3)
  assert (out.aligned is None) == (switch == "align")


def test_warped_stands_in_for_a_missing_alignment():
  image = jnp.ones((B, S, S, 3))
  np.testing.assert_array_equal(np.asarray(lpr.LipPriorOutput(image, None).warped.image), 0.0)
  aligned = lpr.AlignmentOutput(*(jnp.full((1,), float(i)) for i in range(6)))
  assert lpr.LipPriorOutput(image, aligned).warped is aligned


def test_lip_references_helpers():
  np.testing.assert_array_equal(lpr.lip_reference_indices(5, 5), [0, 1, 2, 3, 4])
  np.testing.assert_array_equal(lpr.lip_reference_indices(25, 5), [0, 6, 12, 18, 24])
  np.testing.assert_array_equal(lpr.lip_reference_indices(3, 5), [0, 0, 1, 2, 2])
  x = inputs()
  images, sketches = lpr.lip_references(x[2], x[3], 5)
  chex.assert_shape([images, sketches], [(B, 5, S, S, 3)] * 2)
  np.testing.assert_array_equal(np.asarray(images[:, :, :S // 2]), 0.0)
  np.testing.assert_array_equal(np.asarray(images[:, 3, S // 2:]), np.asarray(x[2][:, 2, S // 2:]))
  np.testing.assert_array_equal(np.asarray(sketches[:, 4, S // 2:]), np.asarray(x[3][:, 2, S // 2:]))


def test_lip_references_are_averaged_and_used():
  x = inputs()
  lips = lpr.lip_references(x[2], x[3], 3)
  base = np.asarray(run({}, lips=lips).image)
  perm = [2, 0, 1]
  permuted = np.asarray(run({}, lips=(lips[0][:, perm], lips[1][:, perm])).image)
  np.testing.assert_allclose(permuted, base, atol=1e-6)
  other = lpr.lip_references(*inputs(seed=7)[2:4], 3)
  changed = np.asarray(run({}, lips=other).image)
  assert np.abs(changed - base).max() > 1e-4
  # Without the lip module the lip references are ignored.
  np.testing.assert_array_equal(np.asarray(run({"lip": False}, lips=other).image),
                                np.asarray(run({"lip": False}, lips=lips).image))


def test_cross_attention_uses_the_audio():
  _, variables, _ = model_and_fn()
  x = inputs()
  other_mel = x[:4] + (jnp.flip(x[4], axis=1),)
  # gamma starts at 0 (SAGAN): the block is the identity until it learns.
  np.testing.assert_array_equal(np.asarray(run({}, x=other_mel).image), np.asarray(run({}, x=x).image))
  params = jax.tree_util.tree_map(lambda a: a, variables["params"])
  params["rendering"]["cross_attention"]["gamma"] = jnp.ones(())
  live = dict(variables, params=params)
  moved = np.asarray(run({}, live, x=other_mel).image) - np.asarray(run({}, live, x=x).image)
  assert np.abs(moved).max() > 1e-4
  # no_aud does not look at the mel at all.
  np.testing.assert_array_equal(np.asarray(run({"audio": False}, x=other_mel).image),
                                np.asarray(run({"audio": False}, x=x).image))


def test_audio_tokens_are_a_3x3_map():
  mel = jnp.zeros((B, 80, 16, 1))
  out = jax.eval_shape(lambda m: lpr.AudioTokens(4).init_with_output(jax.random.key(0), m)[0], mel)
  assert out.shape == (B, 3, 3, 64)


def test_bad_inputs_name_the_argument():
  model = lpr.build(**TINY)
  x = inputs()

  def trace(*args, **kwargs):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), *args, **kwargs))

  with pytest.raises(ShapeError, match=r"mel: expected \(B=2, 80, 16, 1\)"):
    trace(*x[:4], x[4][:, :, :8])
  with pytest.raises(ShapeError, match="ref_sketches"):
    trace(x[0], x[1], x[2], x[3][:, :2], x[4])
  with pytest.raises(ShapeError, match="give both or neither"):
    trace(*x, lip_images=x[2])
  with pytest.raises(ShapeError, match="must be even"):
    trace(x[0][:, :15], *x[1:])
  with pytest.raises(ShapeError, match="divisible by 4"):
    jax.eval_shape(lambda: lpr.build(**dict(TINY, features=6)).init(jax.random.key(0), *x))


def test_task_reference_split_and_config_checks():
  config = configs.get_config("lip_prior_renderer:runlocal")
  assert config.task == "lip_prior" and config.model.train_align_references == 2
  # The CPU budget: 640 steps (the family's 700 take 23 minutes for this model); steps=N still wins.
  assert (config.total_steps, config.eval_every, config.data.image_size) == (640, 320, 64)
  assert configs.get_config("lip_prior_renderer:runlocal,steps=30").total_steps == 30
  assert renderer_task.model_entry(config).build is lip_prior.build_model
  model = lip_prior.build_model(config)
  batch = renderer_task.to_inputs({k: jnp.zeros((1,) + v.shape, v.dtype)
                                   for k, v in renderer_task.batch_spec(config).items()})
  args, kwargs = lip_prior.model_inputs(model, batch, 2)
  assert args[2].shape[1] == 2 and kwargs["lip_images"].shape[1] == 3
  weights = lip_prior.initial_weights(configs.get_config("lip_prior_renderer:runlocal,no_ali"))
  assert weights["warp"] == 0.0 and weights["perceptual"] == 4.0 and weights["style"] == 1000.0
  full = lip_prior.initial_weights(configs.get_config("lip_prior_renderer"))
  assert (full["warp"], full["perceptual"], full["style"], full["gan"], full["feature_matching"]) == (
      2.5, 4.0, 1000.0, 0.25, 2.5)
  with pytest.raises(ConfigError, match="warmup_steps"):
    lip_prior.initial_weights(configs.get_config("lip_prior_renderer:no_ali", {"warmup_steps": 5}))
  with pytest.raises(ConfigError, match="train_align_references"):
    lip_prior.players(configs.get_config("lip_prior_renderer:runlocal", {"model.train_align_references": 4}),
                      {})


class _SameLandmarks:
  """A landmark predictor that returns the face video's own landmarks for every output frame."""

  def predict_track(self, mel, landmarks, source_indices, fps=25.0):
    del mel, fps
    return type("Track", (), {"landmarks": np.asarray(landmarks, np.float32)[source_indices]})()


def test_two_stage_generation_hook_renders_crops():
  size = 32
  config = configs.get_config("lip_prior_renderer:runlocal", {
      "data.image_size": size, "model.width": 4, "model.features": 8, "model.spade_hidden": 8,
      "model.audio_width_divisor": 16, "inference.num_references": 4, "inference.batch_size": 4})
  task = tasks.get(config.task)
  assert task.inference is renderer_task.inference
  nets = task.networks(config)
  batch = {k: jnp.zeros((1,) + v.shape, v.dtype) for k, v in task.batch_spec(config).items()}
  shapes = jax.eval_shape(lambda: task.init(config, nets, jax.random.key(0), batch))
  rng = np.random.default_rng(0)

  def draw(path, s):
    if jax.tree_util.keystr(path).endswith("['var']"):
      return np.ones(s.shape, np.float32)
    return (rng.standard_normal(s.shape) * 0.1).astype(np.float32)
  variables = jax.tree_util.tree_map_with_path(draw, shapes)
  hook = task.inference(config, variables, predictor=_SameLandmarks())
  assert isinstance(hook, two_stage.TwoStageRenderer) and hook.crop.size == size
  points = rng.uniform(40, 80, (6, lm.NUM_POINTS, 2)).astype(np.float32)
  boxes = np.tile(np.array([[30.0, 30.0, 90.0, 90.0]], np.float32), (6, 1))
  crops = rng.integers(0, 256, (6, size, size, 3), np.uint8)
  hook.prepare(VideoContext(num_frames=6, fps=25.0, mel=np.zeros((80, 40), np.float32),
                            source_indices=np.arange(6), landmarks=points, boxes=boxes,
                            crop_landmarks=(points - 30.0) * (size / 60.0), sample_indices=np.arange(6),
                            sample_crops=crops, still=False))
  assert len(hook.references) == 4
  out = hook.generate_chunk(crops[:3], None, np.zeros((3, 80, 16, 1), np.float32), np.array([0, 1, 2]))
  assert out.shape == (3, size, size, 3) and out.dtype == np.uint8 and out.std() > 0
