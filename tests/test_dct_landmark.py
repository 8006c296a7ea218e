"""Paper 000's DCT landmark generator (talkjax.models.dct_landmark), its ablation and its losses."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_iplap_landmark import random_variables

from experiments import configs
from talkjax import landmarks as lm
from talkjax.models import dct_landmark, iplap_landmark
from talkjax.tasks import landmarks as task

TINY = dict(width_divisor=16, num_layers=1, num_heads=2, dim_feedforward=16, dacn_width=8, dacn_hidden=(8,))


def softmax(x, axis=-1):
  e = np.exp(x - x.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def layer_norm(x, p, eps=1e-5):
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def dense(x, p):
  return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def test_overlapping_block_indices():
  idx, valid = dct_landmark.overlapping_block_indices(12, 5, 2)
  assert idx.shape == (3, 9)
  np.testing.assert_array_equal(idx[0], [0, 0, 0, 1, 2, 3, 4, 5, 6])
  np.testing.assert_array_equal(valid[0], [False, False] + [True] * 7)
  np.testing.assert_array_equal(idx[1], np.arange(3, 12))
  assert valid[1].all()
  np.testing.assert_array_equal(idx[2], [8, 9, 10, 11, 11, 11, 11, 11, 11])  # 12..16 do not exist
  np.testing.assert_array_equal(valid[2], [True] * 4 + [False] * 5)


def test_overlapping_block_attention_matches_numpy():
  b, length, e, heads, block, halo = 2, 7, 8, 2, 3, 1
  layer = dct_landmark.OverlappingBlockAttention(heads, block, halo)
  x = np.random.default_rng(0).normal(size=(b, length, e)).astype(np.float32)
  params = random_variables(layer, (x,), seed=4)
  got = np.asarray(jax.jit(layer.apply)(params, x))
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
  q, k, v = np.split(dense(x.astype(np.float64), p["in_proj"]), 3, axis=-1)
  out = np.zeros((b, length, e))
  dh = e // heads
  for i in range(length):
    start = (i // block) * block
    keys = [j for j in range(start - halo, start + block + halo) if 0 <= j < length]
    for h in range(heads):
      sl = slice(h * dh, (h + 1) * dh)
      w = softmax(np.einsum("bd,bkd->bk", q[:, i, sl], k[:, keys, sl]) / np.sqrt(dh))
      out[:, i, sl] = np.einsum("bk,bkd->bd", w, v[:, keys, sl])
  np.testing.assert_allclose(got, dense(out, p["out_proj"]), atol=1e-5)


def test_dacn_layer_matches_numpy_and_follows_its_conditioning():
  layer = dct_landmark.DACNLayer(width=4, kernel_size=3, hidden=(5,), dim_feedforward=6, dropout=0.0)
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 6, 8)).astype(np.float32)
  cond = rng.normal(size=(2, 10)).astype(np.float32)
  variables = random_variables(layer, (x, cond), seed=2)
  apply = jax.jit(layer.apply)
  got = np.asarray(apply(variables, x, cond))
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  dc = p["dynamic_conv"]
  h = np.maximum(dense(cond.astype(np.float64), dc["hyper_0"]), 0)
  kernels = dense(h, dc["kernel_head"]).reshape(2, 3, 4, 4)   # (B, k, Cin, Cout), row-major
  biases = dense(h, dc["bias_head"])
  y = dense(x.astype(np.float64), p["down"])
  padded = np.pad(y, ((0, 0), (1, 1), (0, 0)))                 # SAME padding, 3 taps
  conv = np.stack([sum(np.einsum("bi,bio->bo", padded[:, t + j], kernels[:, j]) for j in range(3))
                   for t in range(6)], axis=1) + biases[:, None]
  y = dense(np.maximum(conv, 0), p["up"])
  x1 = layer_norm(x + y, p["norm1"])
  ff = dense(np.maximum(dense(x1, p["linear1"]), 0), p["linear2"])
  np.testing.assert_allclose(got, layer_norm(x1 + ff, p["norm2"]), atol=1e-4)
  # Other conditioning (e.g. other audio): other kernels, other output.
  assert np.abs(np.asarray(apply(variables, x, cond[::-1])) - got).mean() > 1e-3


@pytest.fixture(scope="module", params=[True, False], ids=["dacn", "no_dcf"])
def tiny(request):
  model = dct_landmark.DCTLandmarkGenerator(**TINY, use_dacn=request.param)
  inputs = iplap_landmark.example_inputs(2, num_frames=5, num_references=5, seed=1)
  return model, random_variables(model, inputs), inputs, jax.jit(model.apply)


def test_tiny_shapes_and_layout(tiny):
  model, variables, inputs, apply = tiny
  out = apply(variables, *inputs)
  chex.assert_shape(out, (2, 5, lm.NUM_CONTENT, 2))
  chex.assert_tree_all_finite(out)
  names = set(variables["params"])
  halves = {n for n in names if n.startswith(("sala_", "dacn_", "transformer"))}
  if model.use_dacn:
    assert halves == {"sala_0", "dacn_0"}
    chex.assert_shape(variables["params"]["dacn_0"]["dynamic_conv"]["kernel_head"]["kernel"], (8, 3 * 8 * 8))
    # The kernels are generated from the pooled audio, pose and reference embeddings (3 x 32).
    chex.assert_shape(variables["params"]["dacn_0"]["dynamic_conv"]["hyper_0"]["kernel"], (96, 8))
  else:
    assert halves == {"sala_0", "transformer"}
  # The SALA half works on d/2 = 16 channels; the alignment network on d = 32.
  chex.assert_shape(variables["params"]["sala_0"]["local_attn"]["in_proj"]["kernel"], (16, 48))
  chex.assert_shape(variables["params"]["align_2"]["kernel"], (32, 32))
  assert {"encoders", "modality", "lip_head", "jaw_head", "align_1", "align_norm"} <= names


def test_audio_and_references_change_the_prediction(tiny):
  _, variables, (mel, pose, ref_pose, ref_content), apply = tiny
  base = np.asarray(apply(variables, mel, pose, ref_pose, ref_content))
  lips = slice(lm.NUM_JAW, None)
  other_audio = np.asarray(apply(variables, -mel, pose, ref_pose, ref_content))
  assert np.abs(other_audio[:, :, lips] - base[:, :, lips]).mean() > 1e-4
  shifted = np.clip(ref_content + 0.3, 0, 1)
  assert np.abs(np.asarray(apply(variables, mel, pose, ref_pose, shifted)) - base).mean() > 1e-5


def test_dct_losses_match_numpy():
  rng = np.random.default_rng(0)
  pred = rng.uniform(0, 1, (3, 5, 57, 2)).astype(np.float32)
  gt = rng.uniform(0, 1, (3, 5, 57, 2)).astype(np.float32)
  lip_err, jaw_err = np.abs(pred - gt)[:, :, 17:], np.abs(pred - gt)[:, :, :17]
  expected_l1 = np.mean([lip_err[:, t].mean() + jaw_err[:, t].mean() for t in range(5)])
  np.testing.assert_allclose(float(task.region_l1_loss(pred, gt)), expected_l1, rtol=1e-5)
  cont = []
  for b in range(3):
    for t in range(4):
      for sl in (slice(17, 57), slice(0, 17)):
        d = (pred[b, t + 1, sl] - pred[b, t, sl]) - (gt[b, t + 1, sl] - gt[b, t, sl])
        cont.append(np.linalg.norm(d.ravel() + 1e-6))
  np.testing.assert_allclose(float(task.continuity_loss(pred, gt)), np.sum(cont) / 12, rtol=1e-5)
  # Moving every frame by the same offset costs continuity nothing (up to eps).
  assert float(task.continuity_loss(gt + 0.05, gt)) < 1e-4
  chex.assert_tree_all_finite(jax.grad(task.continuity_loss)(jnp.asarray(gt), jnp.asarray(gt)))
  with pytest.raises(ValueError, match="continuity_loss"):
    task.continuity_loss(pred[:, :, :40], gt[:, :, :40])


def test_configs_select_the_model_loss_and_ablation():
  full = configs.get_config("dct_landmark:runlocal")
  ablation = configs.get_config("dct_landmark:runlocal,no_dcf")
  assert full.model.use_dacn and not ablation.model.use_dacn
  diff = {k for k in full.model.keys() if full.model[k] != ablation.model[k]}
  assert diff == {"use_dacn"}
  assert dict(full.loss_weights) == {"region_l1": 1.0, "continuity": 1.0}
  assert full.data.num_references == 5 and configs.get_config("dct_landmark").batch_size == 32
  iplap = configs.get_config("iplap_landmark")
  assert dict(iplap.loss_weights) == {"l1": 1.0, "velocity": 1.0}
  assert iplap.batch_size == 128 and iplap.data.num_references == 15 and iplap.optim.generator.lr == 1e-4
  assert isinstance(task.make_model(full.model), dct_landmark.DCTLandmarkGenerator)
  assert isinstance(task.make_model(iplap.model), iplap_landmark.IPLAPLandmarkGenerator)
  spec = task.batch_spec(full)
  assert {k: v.shape for k, v in spec.items()} == {
      "pose": (5, 74, 2), "mel": (5, 80, 16, 1), "reference": (5, 131, 2), "target": (5, 57, 2)}


def test_landmark_metrics_and_baseline_by_hand():
  rng = np.random.default_rng(3)
  target = rng.uniform(0.2, 0.8, (2, 5, 57, 2))
  pose = rng.uniform(0.2, 0.8, (2, 5, 74, 2))
  reference = rng.uniform(0.2, 0.8, (2, 4, 131, 2))
  pred = target + 1.0 / 128          # one pixel off in x and y at 128 px
  m = task.landmark_metrics(pred, target, pose, reference, image_size=128)
  np.testing.assert_allclose(m["lip_l1_px"], 1.0, rtol=1e-9)
  np.testing.assert_allclose(m["jaw_l1_px"], 1.0, rtol=1e-9)
  np.testing.assert_allclose(m["lip_lmd_px"], np.sqrt(2), rtol=1e-9)
  np.testing.assert_allclose(m["openness_r"], 1.0, rtol=1e-9)   # a shift keeps the opening
  base = reference[:, :, 74:].mean(axis=1, keepdims=True)
  np.testing.assert_allclose(m["baseline_lip_l1_px"], np.abs(base - target)[:, :, 17:].mean() * 128,
                             rtol=1e-9)
  np.testing.assert_allclose(m["lip_l1_ratio"], 1.0 / m["baseline_lip_l1_px"], rtol=1e-9)
  assert task.pearson_r(np.arange(5), -np.arange(5)) == pytest.approx(-1.0)
  assert task.pearson_r(np.ones(5), np.arange(5)) == 0.0
