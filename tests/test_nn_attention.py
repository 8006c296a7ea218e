"""talkjax.nn.attention: encoder layers vs torch.nn.TransformerEncoder(Layer); cross-attention vs NumPy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn as tnn

from talkjax.nn import SpatialCrossAttention, TransformerEncoder, TransformerEncoderLayer
from talkjax.nn.ops import ShapeError
from third_party.converters.torch_io import conv_kernel, linear_kernel

D, HEADS, FF = 16, 4, 32


def _lin(m):
  return {"kernel": linear_kernel(m.weight.detach().numpy()), "bias": m.bias.detach().numpy()}


def _ln(m):
  return {"scale": m.weight.detach().numpy(), "bias": m.bias.detach().numpy()}


def _layer_params(layer):
  """The converter mapping documented in talkjax.nn.attention, applied to one PyTorch layer."""
  attn = layer.self_attn
  return {
      "self_attn": {"in_proj": {"kernel": attn.in_proj_weight.detach().numpy().T,
                                "bias": attn.in_proj_bias.detach().numpy()},
                    "out_proj": _lin(attn.out_proj)},
      "linear1": _lin(layer.linear1), "linear2": _lin(layer.linear2),
      "norm1": _ln(layer.norm1), "norm2": _ln(layer.norm2),
  }


def _torch_layer(seed):
  torch.manual_seed(seed)
  layer = tnn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.1, batch_first=True)
  with torch.no_grad():  # non-trivial LayerNorm affine parameters, so their mapping is tested too
    for norm in (layer.norm1, layer.norm2):
      norm.weight.uniform_(0.5, 1.5)
      norm.bias.uniform_(-0.5, 0.5)
  return layer.eval()


def _padding_mask():
  mask = np.zeros((2, 7), bool)
  mask[1, 5:] = True  # the second sequence has 2 padded tokens
  return mask


@pytest.mark.parametrize("with_mask", [False, True])
def test_encoder_layer_matches_torch(with_mask):
  ref = _torch_layer(0)
  x = np.random.default_rng(0).normal(size=(2, 7, D)).astype(np.float32)
  mask = _padding_mask() if with_mask else None
  layer = TransformerEncoderLayer(D, HEADS, FF, dropout=0.1)
  params = _layer_params(ref)
  chex.assert_trees_all_equal_shapes(jax.eval_shape(layer.init, jax.random.key(0), x)["params"],
                                     jax.tree.map(jnp.asarray, params))
  out = jax.jit(layer.apply)({"params": params}, jnp.asarray(x), None if mask is None else jnp.asarray(mask))
  chex.assert_shape(out, (2, 7, D))
  with torch.enable_grad():  # the reference (non-fast-path) kernel; the fast path zeroes padded rows
    expected = ref(torch.from_numpy(x), src_key_padding_mask=None if mask is None else torch.from_numpy(mask))
  expected = expected.detach().numpy()
  valid = ~mask if with_mask else np.ones((2, 7), bool)
  assert np.max(np.abs(np.asarray(out)[valid] - expected[valid])) < 1e-5
  if with_mask:  # padding really is ignored: changing padded tokens leaves the other outputs alone
    x2 = x.copy()
    x2[1, 5:] += 10.0
    out2 = jax.jit(layer.apply)({"params": params}, jnp.asarray(x2), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(out2)[valid], np.asarray(out)[valid], atol=1e-5)


def test_stacked_encoder_with_final_norm_matches_torch():
  torch.manual_seed(1)
  ref = tnn.TransformerEncoder(_torch_layer(1), num_layers=2, norm=tnn.LayerNorm(D),
                               enable_nested_tensor=False).eval()
  params = {f"layers_{i}": _layer_params(ref.layers[i]) for i in range(2)}
  params["norm"] = _ln(ref.norm)
  x = np.random.default_rng(1).normal(size=(2, 7, D)).astype(np.float32)
  mask = _padding_mask()
  enc = TransformerEncoder(2, D, HEADS, FF, final_norm=True)
  chex.assert_trees_all_equal_shapes(jax.eval_shape(enc.init, jax.random.key(0), x)["params"],
                                     jax.tree.map(jnp.asarray, params))
  out = jax.jit(enc.apply)({"params": params}, jnp.asarray(x), jnp.asarray(mask))
  with torch.enable_grad():
    expected = ref(torch.from_numpy(x), src_key_padding_mask=torch.from_numpy(mask)).detach().numpy()
  assert np.max(np.abs(np.asarray(out)[~mask] - expected[~mask])) < 1e-5


def test_dropout_only_in_training_and_fully_masked_rows_stay_finite():
  params = {"params": jax.tree.map(jnp.asarray, _layer_params(_torch_layer(2)))}
  x = jnp.asarray(np.random.default_rng(2).normal(size=(1, 5, D)), jnp.float32)
  layer = TransformerEncoderLayer(D, HEADS, FF, dropout=0.5)
  apply = jax.jit(layer.apply, static_argnames="deterministic")
  none, every = jnp.zeros((1, 5), bool), jnp.ones((1, 5), bool)
  a = apply(params, x, none, deterministic=True)
  b = apply(params, x, none, deterministic=True)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  t1 = apply(params, x, none, deterministic=False, rngs={"dropout": jax.random.key(1)})
  t2 = apply(params, x, none, deterministic=False, rngs={"dropout": jax.random.key(2)})
  assert np.abs(np.asarray(t1) - np.asarray(a)).max() > 1e-2
  assert np.abs(np.asarray(t1) - np.asarray(t2)).max() > 1e-2
  all_masked = apply(params, x, every, deterministic=True)
  assert np.all(np.isfinite(np.asarray(all_masked)))


def _np_cross_attention(x, ctx, p, mask=None, scaled=False):
  b, h, w, c = x.shape
  q = x.reshape(b, h * w, c) @ p["query"]["kernel"][0, 0] + p["query"]["bias"]
  ctx = ctx.reshape(b, -1, ctx.shape[-1])
  k = ctx @ p["key"]["kernel"][0, 0] + p["key"]["bias"]
  v = ctx @ p["value"]["kernel"][0, 0] + p["value"]["bias"]
  logits = np.einsum("bqd,bkd->bqk", q, k).astype(np.float64)
  if scaled:
    logits /= np.sqrt(q.shape[-1])
  if mask is not None:
    logits = np.where(mask[:, None, :], -np.inf, logits)
  wts = np.exp(logits - logits.max(-1, keepdims=True))
  wts /= wts.sum(-1, keepdims=True)
  return x + p["gamma"] * np.einsum("bqk,bkc->bqc", wts, v).reshape(b, h, w, c), wts


def _random_params(module, *args):
  rng = np.random.default_rng(3)
  shapes = jax.eval_shape(module.init, jax.random.key(0), *args)["params"]
  params = jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.4).astype(np.float32), shapes)
  params["gamma"] = np.float32(0.7)
  return params


@pytest.mark.parametrize("scaled", [False, True])
def test_cross_attention_over_a_feature_map_matches_numpy(scaled):
  rng = np.random.default_rng(4)
  x = rng.normal(size=(2, 4, 5, 6)).astype(np.float32)
  ctx = rng.normal(size=(2, 3, 2, 8)).astype(np.float32)   # an audio feature map: 6 spatial keys
  module = SpatialCrossAttention(qk_features=4, scaled=scaled)
  params = _random_params(module, x, ctx)
  chex.assert_shape(params["query"]["kernel"], (1, 1, 6, 4))
  chex.assert_shape(params["value"]["kernel"], (1, 1, 8, 6))
  out, state = jax.jit(lambda p, a, c: module.apply({"params": p}, a, c, mutable=["intermediates"]))(
      params, jnp.asarray(x), jnp.asarray(ctx))
  chex.assert_shape(out, x.shape)
  ref, wts = _np_cross_attention(x, ctx, params, scaled=scaled)
  np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)
  sown = np.asarray(state["intermediates"]["attention_weights"][0])
  chex.assert_shape(sown, (2, 20, 6))
  np.testing.assert_allclose(sown, wts, atol=1e-6)


def test_cross_attention_over_tokens_with_mask_and_identity_at_init():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
  tokens = rng.normal(size=(2, 5, 7)).astype(np.float32)  # (B, L, Ca) sequence
  mask = np.zeros((2, 5), bool)
  mask[0, 3:] = True
  module = SpatialCrossAttention()
  params = _random_params(module, x, tokens)
  out = jax.jit(module.apply)({"params": params}, jnp.asarray(x), jnp.asarray(tokens), jnp.asarray(mask))
  np.testing.assert_allclose(np.asarray(out), _np_cross_attention(x, tokens, params, mask)[0], atol=1e-5)
  # With its real initialiser gamma = 0: the block is the identity until it learns.
  variables = jax.jit(module.init)(jax.random.key(0), jnp.asarray(x), jnp.asarray(tokens))
  assert float(variables["params"]["gamma"]) == 0.0
  same = jax.jit(module.apply)(variables, jnp.asarray(x), jnp.asarray(tokens))
  np.testing.assert_array_equal(np.asarray(same), x)


def test_cross_attention_matches_torch_1x1_convs():
  """The 1x1 kernels are PyTorch Conv2d weights transposed (what a converter does)."""
  torch.manual_seed(6)
  convs = {n: tnn.Conv2d(i, o, 1) for n, i, o in (("query", 6, 4), ("key", 8, 4), ("value", 8, 6))}
  params = {n: {"kernel": conv_kernel(m.weight.detach().numpy()), "bias": m.bias.detach().numpy()}
            for n, m in convs.items()}
  params["gamma"] = np.float32(0.5)
  x = torch.randn(1, 6, 4, 4)
  a = torch.randn(1, 8, 2, 3)
  q = convs["query"](x).flatten(2).transpose(1, 2)
  k = convs["key"](a).flatten(2)
  v = convs["value"](a).flatten(2).transpose(1, 2)
  fused = torch.softmax(q @ k, -1) @ v
  expected = x + 0.5 * fused.transpose(1, 2).reshape(1, 6, 4, 4)
  nhwc = lambda t: jnp.asarray(t.numpy().transpose(0, 2, 3, 1))
  out = jax.jit(SpatialCrossAttention(qk_features=4).apply)({"params": params}, nhwc(x), nhwc(a))
  np.testing.assert_allclose(np.asarray(out), expected.detach().numpy().transpose(0, 2, 3, 1), atol=1e-5)


def test_bad_shapes_are_named():
  with pytest.raises(ShapeError, match="d_model"):
    TransformerEncoderLayer(D, HEADS).init(jax.random.key(0), jnp.zeros((1, 3, D + 1)))
  with pytest.raises(ShapeError, match="key_padding_mask"):
    TransformerEncoderLayer(D, HEADS).init(jax.random.key(0), jnp.zeros((1, 3, D)), jnp.zeros((1, 4), bool))
  with pytest.raises(ShapeError, match="context batch"):
    SpatialCrossAttention().init(jax.random.key(0), jnp.zeros((2, 3, 3, 4)), jnp.zeros((1, 5, 7)))
