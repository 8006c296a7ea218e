"""talkjax.nn.dynamic_conv: the grouped-conv op equals a per-sample lax.conv; the hypernetwork module."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from talkjax.nn import DynamicConv, ShapeError, dynamic_conv


def _per_sample(x, kernels, biases, stride, padding):
  n = x.ndim - 2
  sp = "DHW"[-n:]
  outs = []
  for b in range(x.shape[0]):
    dn = lax.conv_dimension_numbers(x[b:b + 1].shape, kernels[b].shape, (f"N{sp}C", f"{sp}IO", f"N{sp}C"))
    pad = padding if isinstance(padding, str) else [(padding, padding)] * n
    y = lax.conv_general_dilated(x[b:b + 1], kernels[b], (stride,) * n, pad, dimension_numbers=dn,
                                 precision=lax.Precision.HIGHEST)
    outs.append(y + (0 if biases is None else biases[b]))
  return jnp.concatenate(outs)


@pytest.mark.parametrize("ksize,stride,padding", [((3, 3), 1, "SAME"), ((3, 3), 2, 1), ((1, 1), 1, "SAME"),
                                                  ((2, 3), 1, "VALID"), ((1, 1), 2, 0)])
def test_dynamic_conv_2d_equals_per_sample_conv(ksize, stride, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 8, 7, 4)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3,) + ksize + (4, 5)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
  out = jax.jit(dynamic_conv, static_argnums=(3, 4))(x, k, bias, stride, padding)
  ref = _per_sample(x, k, bias, stride, padding)
  chex.assert_equal_shape((out, ref))
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-4, rtol=1e-4)


def test_dynamic_conv_1d_tokens_and_pointwise_without_bias():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 9, 6)), jnp.float32)  # (B, T, d): paper 000's DACN case
  k = jnp.asarray(rng.normal(size=(2, 3, 6, 4)), jnp.float32)
  out = dynamic_conv(x, k, None, 1, 1)
  chex.assert_shape(out, (2, 9, 4))
  np.testing.assert_allclose(np.asarray(out), np.asarray(_per_sample(x, k, None, 1, 1)), atol=1e-4)
  # 1x1 (paper 001's DCK): each sample's map times its own Cin x Cout matrix.
  x2 = rng.normal(size=(2, 4, 4, 6)).astype(np.float32)
  k2 = rng.normal(size=(2, 1, 1, 6, 3)).astype(np.float32)
  ref = np.einsum("bhwi,bio->bhwo", x2, k2[:, 0, 0])
  np.testing.assert_allclose(np.asarray(dynamic_conv(jnp.asarray(x2), jnp.asarray(k2))), ref, atol=1e-5)


def test_dynamic_conv_module_matches_numpy_hypernetwork():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(2, 6, 6, 3)), jnp.float32)
  cond = jnp.asarray(rng.normal(size=(2, 10)), jnp.float32)
  layer = DynamicConv(features=4, kernel_size=3, hidden=(16, 8))
  shapes = jax.eval_shape(layer.init, jax.random.key(0), x, cond)
  variables = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.3, s.dtype), shapes)
  p = jax.tree.map(np.asarray, variables["params"])
  chex.assert_shape(p["hyper_0"]["kernel"], (10, 16))
  chex.assert_shape(p["kernel_head"]["kernel"], (8, 3 * 3 * 3 * 4))
  chex.assert_shape(p["bias_head"]["kernel"], (8, 4))
  out = jax.jit(layer.apply)(variables, x, cond)
  chex.assert_shape(out, (2, 6, 6, 4))
  h = np.asarray(cond)
  for name in ("hyper_0", "hyper_1"):
    h = np.maximum(h @ p[name]["kernel"] + p[name]["bias"], 0)
  kernels = (h @ p["kernel_head"]["kernel"] + p["kernel_head"]["bias"]).reshape(2, 3, 3, 3, 4)
  biases = h @ p["bias_head"]["kernel"] + p["bias_head"]["bias"]
  ref = _per_sample(x, jnp.asarray(kernels), jnp.asarray(biases), 1, "SAME")
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-4, rtol=1e-4)


def test_initial_kernels_have_he_scale_half_from_the_conditioning():
  cin, cout, fan_in = 64, 64, 64  # 1x1: fan_in = Cin
  layer = DynamicConv(features=cout, kernel_size=1, hidden=(256,))
  cond = jax.random.normal(jax.random.key(1), (256, 128))
  x = jnp.zeros((256, 1, 1, cin))
  variables = jax.jit(layer.init)(jax.random.key(2), x, cond)

  p = variables["params"]
  h = jax.nn.relu(cond @ p["hyper_0"]["kernel"] + p["hyper_0"]["bias"])
  conditioned = np.asarray(h @ p["kernel_head"]["kernel"])  # the W h(c) term
  k = conditioned + np.asarray(p["kernel_head"]["bias"])     # + the static kernel K0
  assert abs(k.var() * fan_in - 2.0) < 0.3, k.var() * fan_in                         # He-normal scale
  assert abs(conditioned.var() * fan_in - 1.0) < 0.2, conditioned.var() * fan_in     # half of it conditioned
  # Variation across samples: Var(relu(z)) / E[relu(z)^2] = 1 - 1/pi of the conditioned variance.
  across = k.var(axis=0).mean() * fan_in
  assert abs(across - (1 - 1 / np.pi)) < 0.15, across
  np.testing.assert_array_equal(np.asarray(variables["params"]["bias_head"]["kernel"]), 0.0)


def test_bad_shapes_are_named():
  x = jnp.zeros((2, 4, 4, 3))
  with pytest.raises(ShapeError, match="kernels must be"):
    dynamic_conv(x, jnp.zeros((3, 3, 3, 3, 4)))
  with pytest.raises(ShapeError, match="biases must be"):
    dynamic_conv(x, jnp.zeros((2, 1, 1, 3, 4)), jnp.zeros((2, 5)))
  with pytest.raises(ShapeError, match="conditioning batch"):
    DynamicConv(4).init(jax.random.key(0), x, jnp.zeros((3, 8)))
