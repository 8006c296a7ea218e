"""talkjax.nn.norms against hand-written PyTorch modules (NVlabs SPADE, IP_LAP SPADE/AdaIN) on random data.

Weights go from the PyTorch modules into Flax through the documented name mapping, so these tests
also pin down what a converter has to do.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn as tnn

from talkjax.nn import norms
from third_party.converters.torch_io import conv_kernel, linear_kernel

torch.manual_seed(0)


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def _nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def _conv_params(m):
  p = {"kernel": conv_kernel(m.weight.detach().numpy())}
  if m.bias is not None:
    p["bias"] = m.bias.detach().numpy()
  return p


def _linear_params(m):
  return {"kernel": linear_kernel(m.weight.detach().numpy()), "bias": m.bias.detach().numpy()}


# --- Hand-written PyTorch references -----------------------------------------------------------

class TorchAdaINLayer(tnn.Module):
  def __init__(self, c, d, hidden=128):
    super().__init__()
    self.mlp_shared = tnn.Sequential(tnn.Linear(d, hidden), tnn.ReLU())
    self.mlp_gamma = tnn.Linear(hidden, c)
    self.mlp_beta = tnn.Linear(hidden, c)

  def forward(self, x, s):
    n = F.instance_norm(x, eps=1e-5)
    a = self.mlp_shared(s.reshape(s.shape[0], -1))
    return n * (1 + self.mlp_gamma(a)[:, :, None, None]) + self.mlp_beta(a)[:, :, None, None]

  def flax_params(self):
    return {"mlp_shared": _linear_params(self.mlp_shared[0]), "mlp_gamma": _linear_params(self.mlp_gamma),
            "mlp_beta": _linear_params(self.mlp_beta)}


class TorchNVSPADE(tnn.Module):
  def __init__(self, c, label_nc, norm="instance", hidden=128):
    super().__init__()
    self.param_free_norm = (tnn.InstanceNorm2d(c, affine=False) if norm == "instance"
                            else tnn.BatchNorm2d(c, affine=False))
    self.mlp_shared = tnn.Sequential(tnn.Conv2d(label_nc, hidden, 3, padding=1), tnn.ReLU())
    self.mlp_gamma = tnn.Conv2d(hidden, c, 3, padding=1)
    self.mlp_beta = tnn.Conv2d(hidden, c, 3, padding=1)

  def forward(self, x, seg):
    seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
    a = self.mlp_shared(seg)
    return self.param_free_norm(x) * (1 + self.mlp_gamma(a)) + self.mlp_beta(a)

  def flax_params(self):
    return {"mlp_shared": _conv_params(self.mlp_shared[0]), "mlp_gamma": _conv_params(self.mlp_gamma),
            "mlp_beta": _conv_params(self.mlp_beta)}


class TorchSPADEResBlock(tnn.Module):
  def __init__(self, fin, fout, label_nc, hidden=16):
    super().__init__()
    fmid = min(fin, fout)
    self.learned = fin != fout
    self.conv_0 = tnn.Conv2d(fin, fmid, 3, padding=1)
    self.conv_1 = tnn.Conv2d(fmid, fout, 3, padding=1)
    self.norm_0 = TorchNVSPADE(fin, label_nc, hidden=hidden)
    self.norm_1 = TorchNVSPADE(fmid, label_nc, hidden=hidden)
    if self.learned:
      self.conv_s = tnn.Conv2d(fin, fout, 1, bias=False)
      self.norm_s = TorchNVSPADE(fin, label_nc, hidden=hidden)

  def forward(self, x, seg):
    xs = self.conv_s(self.norm_s(x, seg)) if self.learned else x
    dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
    dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
    return xs + dx

  def flax_params(self):
    p = {"conv_0": _conv_params(self.conv_0), "conv_1": _conv_params(self.conv_1),
         "norm_0": self.norm_0.flax_params(), "norm_1": self.norm_1.flax_params()}
    if self.learned:
      p["conv_s"] = _conv_params(self.conv_s)
      p["norm_s"] = self.norm_s.flax_params()
    return p


class TorchIPLAPSPADELayer(tnn.Module):
  def __init__(self, c, mod_c, hidden=256):
    super().__init__()
    self.conv1 = tnn.Conv2d(mod_c, hidden, 3, padding=1)
    self.gamma = tnn.Conv2d(hidden, c, 3, padding=1)
    self.beta = tnn.Conv2d(hidden, c, 3, padding=1)

  def forward(self, x, m):
    n = F.instance_norm(x, eps=1e-5)
    h = self.conv1(m)
    return n + n * self.gamma(h) + self.beta(h)

  def flax_params(self):
    return {k: _conv_params(getattr(self, k)) for k in ("conv1", "gamma", "beta")}


class TorchTwoStageBlock(tnn.Module):
  """IP_LAP's SPADE / AdaIN blocks: layer, LeakyReLU(0.2), conv 3x3, twice."""

  def __init__(self, c, make_layer, prefix):
    super().__init__()
    self.prefix = prefix
    self.layer_1, self.layer_2 = make_layer(), make_layer()
    self.conv_1 = tnn.Conv2d(c, c, 3, padding=1)
    self.conv_2 = tnn.Conv2d(c, c, 3, padding=1)

  def forward(self, x, m):
    x = self.conv_1(F.leaky_relu(self.layer_1(x, m), 0.2))
    return self.conv_2(F.leaky_relu(self.layer_2(x, m), 0.2))

  def flax_params(self):
    return {f"{self.prefix}_1": self.layer_1.flax_params(), f"{self.prefix}_2": self.layer_2.flax_params(),
            "conv_1": _conv_params(self.conv_1), "conv_2": _conv_params(self.conv_2)}


def _rand(*shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _init_and_check_tree(module, params, *args, **kwargs):
  """The Flax module's own parameter tree must have exactly the converted names and shapes."""
  own = jax.eval_shape(module.init, jax.random.key(0), *args, **kwargs)["params"]
  chex.assert_trees_all_equal_shapes(own, jax.tree.map(jnp.asarray, params))


# --- Tests -----------------------------------------------------------------------------------------

def test_instance_norm_matches_torch():
  x = _rand(2, 5, 6, 3) * 3 + 1
  out = norms.instance_norm(jnp.asarray(x))
  chex.assert_shape(out, x.shape)
  ref = tnn.InstanceNorm2d(3, affine=False)(_nchw(x))
  np.testing.assert_allclose(np.asarray(out), _nhwc(ref), atol=1e-5)
  # Biased variance and eps 1e-5: a 2-pixel map [a, b] normalises to exactly +-(|a-b|/2)/sqrt((a-b)^2/4+eps).
  two = norms.instance_norm(jnp.asarray([[[[0.0]], [[0.02]]]]))
  expected = 0.01 / np.sqrt(1e-4 + 1e-5)
  np.testing.assert_allclose(np.asarray(two).ravel(), [-expected, expected], rtol=1e-5)


def test_adain_matches_torch():
  x, s = _rand(2, 6, 6, 8), _rand(2, 1, 32, seed=1)  # IP_LAP passes the audio feature as (B, 1, 512)
  ref = TorchAdaINLayer(8, 32)
  params = ref.flax_params()
  _init_and_check_tree(norms.AdaIN(), params, jnp.asarray(x), jnp.asarray(s))
  out = norms.AdaIN().apply({"params": params}, jnp.asarray(x), jnp.asarray(s))
  chex.assert_shape(out, (2, 6, 6, 8))
  np.testing.assert_allclose(np.asarray(out), _nhwc(ref(_nchw(x), torch.from_numpy(s))), atol=1e-5)


def test_adain_block_matches_torch():
  x, s = _rand(2, 6, 6, 8), _rand(2, 32, seed=1)
  ref = TorchTwoStageBlock(8, lambda: TorchAdaINLayer(8, 32), "adain_layer")
  out = norms.AdaINBlock().apply({"params": ref.flax_params()}, jnp.asarray(x), jnp.asarray(s))
  np.testing.assert_allclose(np.asarray(out), _nhwc(ref(_nchw(x), torch.from_numpy(s))), atol=1e-5)


@pytest.mark.parametrize("seg_size", [8, 16, 5])
def test_nvlabs_spade_instance_matches_torch(seg_size):
  x, seg = _rand(2, 8, 8, 6), _rand(2, seg_size, seg_size, 3, seed=2)
  ref = TorchNVSPADE(6, 3, hidden=16)
  params = ref.flax_params()
  layer = norms.SPADE(hidden=16)
  _init_and_check_tree(layer, params, jnp.asarray(x), jnp.asarray(seg))
  out = layer.apply({"params": params}, jnp.asarray(x), jnp.asarray(seg))
  chex.assert_shape(out, (2, 8, 8, 6))
  np.testing.assert_allclose(np.asarray(out), _nhwc(ref(_nchw(x), _nchw(seg))), atol=1e-5)


def test_nvlabs_spade_batch_norm_train_and_eval_match_torch():
  x, seg = _rand(4, 6, 6, 5) * 2 + 0.5, _rand(4, 6, 6, 3, seed=3)
  ref = TorchNVSPADE(5, 3, norm="batch", hidden=16)
  layer = norms.SPADE(hidden=16, norm="batch")
  params = ref.flax_params()
  stats = {"param_free_norm": {"mean": np.zeros(5, np.float32), "var": np.ones(5, np.float32)}}
  out, updates = layer.apply({"params": params, "batch_stats": stats}, jnp.asarray(x), jnp.asarray(seg),
                             use_running_average=False, mutable=["batch_stats"])
  ref.train()
  np.testing.assert_allclose(np.asarray(out), _nhwc(ref(_nchw(x), _nchw(seg))), atol=1e-4)
  # Running mean follows PyTorch's momentum 0.1 (the variance differs: Flax keeps the biased one).
  np.testing.assert_allclose(np.asarray(updates["batch_stats"]["param_free_norm"]["mean"]),
                             ref.param_free_norm.running_mean.numpy(), atol=1e-6)
  ref.eval()
  stats = {"param_free_norm": {"mean": ref.param_free_norm.running_mean.numpy(),
                               "var": ref.param_free_norm.running_var.numpy()}}
  out = layer.apply({"params": params, "batch_stats": stats}, jnp.asarray(x), jnp.asarray(seg),
                    use_running_average=True)
  np.testing.assert_allclose(np.asarray(out), _nhwc(ref(_nchw(x), _nchw(seg))), atol=1e-4)


@pytest.mark.parametrize("fin,fout", [(6, 4), (4, 4)])
def test_spade_resblock_matches_torch(fin, fout):
  x, seg = _rand(2, 8, 8, fin), _rand(2, 16, 16, 3, seed=4)
  ref = TorchSPADEResBlock(fin, fout, 3, hidden=16)
  params = ref.flax_params()
  block = norms.SPADEResBlock(fout, hidden=16)
  _init_and_check_tree(block, params, jnp.asarray(x), jnp.asarray(seg))
  out = block.apply({"params": params}, jnp.asarray(x), jnp.asarray(seg))
  chex.assert_shape(out, (2, 8, 8, fout))
  np.testing.assert_allclose(np.asarray(out), _nhwc(ref(_nchw(x), _nchw(seg))), atol=1e-4)


def test_iplap_spade_layer_and_block_match_torch():
  x, m = _rand(2, 8, 8, 6), _rand(2, 8, 8, 5, seed=5)
  ref = TorchIPLAPSPADELayer(6, 5, hidden=12)
  params = ref.flax_params()
  _init_and_check_tree(norms.IPLAPSPADE(hidden=12), params, jnp.asarray(x), jnp.asarray(m))
  out = norms.IPLAPSPADE(hidden=12).apply({"params": params}, jnp.asarray(x), jnp.asarray(m))
  np.testing.assert_allclose(np.asarray(out), _nhwc(ref(_nchw(x), _nchw(m))), atol=1e-5)
  block = TorchTwoStageBlock(6, lambda: TorchIPLAPSPADELayer(6, 5, hidden=12), "spade_layer")
  out = norms.IPLAPSPADEBlock(hidden=12).apply({"params": block.flax_params()}, jnp.asarray(x),
                                               jnp.asarray(m))
  chex.assert_shape(out, (2, 8, 8, 6))
  np.testing.assert_allclose(np.asarray(out), _nhwc(block(_nchw(x), _nchw(m))), atol=1e-5)


def test_bf16_compute_dtype():
  x, m = jnp.asarray(_rand(1, 8, 8, 4)), jnp.asarray(_rand(1, 8, 8, 3, seed=6))
  variables = {"params": jax.tree.map(jnp.asarray, TorchNVSPADE(4, 3, hidden=8).flax_params())}
  shapes = jax.eval_shape(norms.SPADE(hidden=8, dtype=jnp.bfloat16).init, jax.random.key(0), x, m)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(shapes))  # parameters stay float32
  out = jax.jit(norms.SPADE(hidden=8, dtype=jnp.bfloat16).apply)(variables, x, m)
  assert out.dtype == jnp.bfloat16
  ref = jax.jit(norms.SPADE(hidden=8).apply)(variables, x, m)
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref), atol=0.1, rtol=0.05)


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match="condition batch"):
    norms.SPADE().init(jax.random.key(0), jnp.zeros((2, 4, 4, 3)), jnp.zeros((3, 4, 4, 1)))
  with pytest.raises(ValueError, match="norm must be"):
    norms.SPADE(norm="group").init(jax.random.key(0), jnp.zeros((2, 4, 4, 3)), jnp.zeros((2, 4, 4, 1)))
  with pytest.raises(ValueError, match="style must be"):
    norms.AdaIN().init(jax.random.key(0), jnp.zeros((2, 4, 4, 3)), jnp.zeros((3, 8)))
