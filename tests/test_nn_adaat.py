"""talkjax.nn.adaat: the clean per-channel AdaAT against NumPy; DINet's 3-D quirk against PyTorch."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn as tnn

from talkjax.nn import AdaAT, ShapeError
from talkjax.nn import adaat_transform as _adaat_eager
from third_party.converters.torch_io import linear_kernel


adaat_transform = jax.jit(_adaat_eager, static_argnames=("align_corners", "dinet_compat"))


def _np_bilinear(img, px, py):
  """img (H, W); bilinear at float pixel (px, py), zeros outside, corner by corner."""
  h, w = img.shape
  x0, y0 = int(np.floor(px)), int(np.floor(py))
  out = 0.0
  for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
    for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
      if 0 <= xx < w and 0 <= yy < h:
        out += wx * wy * img[yy, xx]
  return out


def _np_adaat(x, scale, angle, trans, align_corners):
  b, h, w, c = x.shape
  out = np.zeros_like(x, dtype=np.float64)

  def norm(i, n):
    return 2 * i / (n - 1) - 1 if align_corners else (2 * i + 1) / n - 1

  def unnorm(g, n):
    return (g + 1) / 2 * (n - 1) if align_corners else ((g + 1) * n - 1) / 2
  for bi in range(b):
    for ci in range(c):
      s, th, (tx, ty) = scale[bi, ci], angle[bi, ci], trans[bi, ci]
      for i in range(h):
        for j in range(w):
          gx, gy = norm(j, w), norm(i, h)
          sx = s * (np.cos(th) * gx - np.sin(th) * gy) + tx
          sy = s * (np.sin(th) * gx + np.cos(th) * gy) + ty
          out[bi, i, j, ci] = _np_bilinear(x[bi, :, :, ci], unnorm(sx, w), unnorm(sy, h))
  return out


def _params(b, c, seed):
  rng = np.random.default_rng(seed)
  return (rng.uniform(0.5, 1.6, (b, c)).astype(np.float32),
          rng.uniform(-np.pi, np.pi, (b, c)).astype(np.float32),
          rng.uniform(-0.4, 0.4, (b, c, 2)).astype(np.float32))


@pytest.mark.parametrize("align_corners", [False, True])
def test_clean_adaat_matches_numpy(align_corners):
  x = np.random.default_rng(0).normal(size=(2, 6, 5, 3)).astype(np.float32)
  scale, angle, trans = _params(2, 3, 1)
  out = adaat_transform(jnp.asarray(x), jnp.asarray(scale), jnp.asarray(angle), jnp.asarray(trans),
                        align_corners=align_corners)
  chex.assert_shape(out, x.shape)
  np.testing.assert_allclose(np.asarray(out), _np_adaat(x, scale, angle, trans, align_corners), atol=1e-5)


def test_identity_and_quarter_turn():
  x = np.random.default_rng(2).normal(size=(1, 6, 6, 2)).astype(np.float32)
  ones, zeros = jnp.ones((1, 2)), jnp.zeros((1, 2))
  same = adaat_transform(jnp.asarray(x), ones, zeros, jnp.zeros((1, 2, 2)))
  np.testing.assert_allclose(np.asarray(same), x, atol=1e-5)
  # theta = pi/2 on a square map: output (x, y) reads input (-y, x), out[i, j] = in[j, W-1-i]
  # (np.rot90 per channel),
  # and a channel with theta = 0 stays put.
  turned = adaat_transform(jnp.asarray(x), ones, jnp.asarray([[np.pi / 2, 0.0]]), jnp.zeros((1, 2, 2)))
  np.testing.assert_allclose(np.asarray(turned)[0, :, :, 0], np.rot90(x[0, :, :, 0], k=1), atol=1e-5)
  np.testing.assert_allclose(np.asarray(turned)[0, :, :, 1], x[0, :, :, 1], atol=1e-5)


def _torch_dinet_sample(x_nchw, scale, angle, trans):
  """DINet's AdaAT sampling written out: (1, C, H, W) volume, align_corners=True grids, 3-D grid_sample."""
  b, c, h, w = x_nchw.shape
  lin = lambda n: 2 * (torch.arange(n, dtype=torch.float32) / (n - 1)) - 1
  gz, gy, gx = torch.meshgrid(lin(c), lin(h), lin(w), indexing="ij")
  cos, sin = torch.cos(angle)[:, :, None, None], torch.sin(angle)[:, :, None, None]
  s = scale[:, :, None, None]
  tx, ty = trans[:, :, None, None, 0], trans[:, :, None, None, 1]
  sx = (cos * gx - sin * gy) * s + tx
  sy = (sin * gx + cos * gy) * s + ty
  grid = torch.stack([sx, sy, gz.expand(b, -1, -1, -1)], -1)
  out = F.grid_sample(x_nchw[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
  return out[:, 0]


def test_dinet_compat_sampling_matches_torch():
  x = np.random.default_rng(3).normal(size=(2, 6, 5, 4)).astype(np.float32)
  scale, angle, trans = _params(2, 4, 4)
  out = adaat_transform(jnp.asarray(x), jnp.asarray(scale), jnp.asarray(angle), jnp.asarray(trans),
                        dinet_compat=True)
  ref = _torch_dinet_sample(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(scale),
                            torch.from_numpy(angle), torch.from_numpy(trans)).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)
  # The quirk is real: even the identity transform mixes channels (channel 0 comes out half zeros).
  ident = adaat_transform(jnp.asarray(x), jnp.ones((2, 4)), jnp.zeros((2, 4)), jnp.zeros((2, 4, 2)),
                          dinet_compat=True)
  assert np.abs(np.asarray(ident) - x).max() > 0.1


class TorchAdaAT(tnn.Module):
  """DINet's AdaAT parameter heads (written for this test), sampling as above."""

  def __init__(self, para, c):
    super().__init__()
    self.c = c
    self.commn_linear = tnn.Sequential(tnn.Linear(para, para), tnn.ReLU())
    self.scale = tnn.Linear(para, c)
    self.rotation = tnn.Linear(para, c)
    self.translation = tnn.Linear(para, 2 * c)

  def forward(self, x, code):
    h = self.commn_linear(code)
    scale = torch.sigmoid(self.scale(h)) * 2
    angle = torch.tanh(self.rotation(h)) * 3.14159
    trans = torch.tanh(self.translation(h)).view(x.shape[0], self.c, 2)
    return _torch_dinet_sample(x, scale, angle, trans)


def test_adaat_module_dinet_compat_matches_torch_with_converted_weights():
  torch.manual_seed(0)
  ref = TorchAdaAT(16, 4)
  params = {name: {"kernel": linear_kernel(m.weight.detach().numpy()), "bias": m.bias.detach().numpy()}
            for name, m in (("commn_linear", ref.commn_linear[0]), ("scale", ref.scale),
                            ("rotation", ref.rotation), ("translation", ref.translation))}
  x = np.random.default_rng(5).normal(size=(2, 6, 6, 4)).astype(np.float32)
  code = np.random.default_rng(6).normal(size=(2, 16)).astype(np.float32)
  layer = AdaAT(dinet_compat=True)
  chex.assert_trees_all_equal_shapes(jax.eval_shape(layer.init, jax.random.key(0), x, code)["params"],
                                     jax.tree.map(jnp.asarray, params))
  out = jax.jit(layer.apply)({"params": params}, jnp.asarray(x), jnp.asarray(code))
  chex.assert_shape(out, (2, 6, 6, 4))
  expected = ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(code))
  np.testing.assert_allclose(np.asarray(out), expected.detach().numpy().transpose(0, 2, 3, 1), atol=1e-5)
  # The clean layer with the same weights = NumPy AdaAT on the same predicted coefficients.
  h = np.maximum(code @ params["commn_linear"]["kernel"] + params["commn_linear"]["bias"], 0)
  head = lambda n: h @ params[n]["kernel"] + params[n]["bias"]
  scale, angle = 2 / (1 + np.exp(-head("scale"))), np.pi * np.tanh(head("rotation"))
  trans = np.tanh(head("translation")).reshape(2, 4, 2)
  clean = jax.jit(AdaAT().apply)({"params": params}, jnp.asarray(x), jnp.asarray(code))
  np.testing.assert_allclose(np.asarray(clean), _np_adaat(x, scale, angle, trans, False), atol=1e-5)


def test_bad_shapes_are_named():
  with pytest.raises(ShapeError, match="expected scale/angle"):
    _adaat_eager(jnp.zeros((1, 4, 4, 3)), jnp.ones((1, 2)), jnp.zeros((1, 3)), jnp.zeros((1, 3, 2)))
  with pytest.raises(ShapeError, match="code batch"):
    AdaAT().init(jax.random.key(0), jnp.zeros((2, 4, 4, 3)), jnp.zeros((3, 8)))
