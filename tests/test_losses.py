"""talkjax.losses against the PyTorch formulas of pix2pixHD / IP_LAP and plain NumPy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn as tnn

from talkjax import losses
from talkjax.errors import ConfigError
from talkjax.models import vgg19 as vgg
from third_party import convert

_RNG = np.random.default_rng(0)


def _t(x):
  return torch.from_numpy(np.ascontiguousarray(x))


def _nchw(x):
  return _t(np.asarray(x).transpose(0, 3, 1, 2))


def test_l1_and_mse_match_numpy():
  a, b = _RNG.normal(size=(2, 5, 4, 3)), _RNG.normal(size=(2, 5, 4, 3))
  np.testing.assert_allclose(losses.l1(a, b), np.mean(np.abs(a - b)), rtol=1e-6)
  np.testing.assert_allclose(losses.mse(a, b), np.mean((a - b) ** 2), rtol=1e-6)
  with pytest.raises(ValueError, match=r"l1: shapes differ: \(2, 5, 4, 3\) vs \(2, 5, 4\)"):
    losses.l1(a, b[..., 0])


def test_bce_matches_torch_including_clamped_extremes():
  p = np.concatenate([_RNG.uniform(0.01, 0.99, 10), [0.0, 1.0, 1e-30]]).astype(np.float32)
  t = np.concatenate([_RNG.integers(0, 2, 10), [1, 0, 1]]).astype(np.float32)
  ref = tnn.BCELoss()(_t(p), _t(t)).item()
  assert np.isfinite(ref)
  np.testing.assert_allclose(losses.bce(jnp.asarray(p), jnp.asarray(t)), ref, rtol=1e-6)
  grads = jax.grad(losses.bce)(jnp.asarray(p), jnp.asarray(t))
  assert np.all(np.isfinite(grads)), grads  # saturated probabilities must not poison training with NaN
  # scalar target broadcast
  np.testing.assert_allclose(losses.bce(jnp.asarray(p), 1.0), tnn.BCELoss()(_t(p), torch.ones(13)).item(),
                             rtol=1e-6)


def test_bce_with_logits_matches_torch_and_is_stable():
  x = np.concatenate([_RNG.normal(size=10) * 3, [-200.0, 200.0, 0.0]]).astype(np.float32)
  t = np.concatenate([_RNG.uniform(size=10), [1.0, 0.0, 0.5]]).astype(np.float32)
  ref = tnn.BCEWithLogitsLoss()(_t(x), _t(t)).item()
  np.testing.assert_allclose(losses.bce_with_logits(jnp.asarray(x), jnp.asarray(t)), ref, rtol=1e-6)


def _d_outputs(num_d=2, n_layers=3, seed=0):
  rng = np.random.default_rng(seed)
  return [[rng.normal(size=(2, 9 - i - j, 8 - i, 4 if j < n_layers + 1 else 1)).astype(np.float32)
           for j in range(n_layers + 2)] for i in range(num_d)]


def _torch_lsgan(outputs, real):
  # pix2pixHD GANLoss(use_lsgan=True).__call__ on a list of scales
  total = 0.0
  for scale in outputs:
    pred = _t(scale[-1])
    total = total + tnn.MSELoss()(pred, torch.full_like(pred, 1.0 if real else 0.0))
  return float(total)


def test_lsgan_losses_match_pix2pixhd():
  real, fake = _d_outputs(seed=1), _d_outputs(seed=2)
  np.testing.assert_allclose(losses.lsgan_g_loss(fake), _torch_lsgan(fake, True), rtol=1e-6)
  np.testing.assert_allclose(losses.lsgan_d_loss(real, fake),
                             0.5 * (_torch_lsgan(real, True) + _torch_lsgan(fake, False)), rtol=1e-6)
  # one scale as a list of layers, and a bare score map
  np.testing.assert_allclose(losses.lsgan_loss(fake[0], False), np.mean(fake[0][-1] ** 2), rtol=1e-6)
  np.testing.assert_allclose(losses.lsgan_loss(fake[1][-1], True), np.mean((fake[1][-1] - 1) ** 2), rtol=1e-6)


def test_bce_gan_loss_sums_scales():
  fake = _d_outputs(seed=3)
  ref = sum(tnn.BCEWithLogitsLoss()(_t(s[-1]), torch.ones(s[-1].shape)).item() for s in fake)
  np.testing.assert_allclose(losses.bce_gan_loss(fake, True), ref, rtol=1e-6)
  probs = [[jax.nn.sigmoid(x) for x in s] for s in fake]
  np.testing.assert_allclose(losses.bce_gan_loss(probs, True, from_logits=False), ref, rtol=1e-5)


@pytest.mark.parametrize("num_d,n_layers", [(2, 3), (3, 2)])
def test_feature_matching_matches_pix2pixhd_loop(num_d, n_layers):
  fake, real = _d_outputs(num_d, n_layers, seed=4), _d_outputs(num_d, n_layers, seed=5)
  lambda_feat = 10.0
  ref = 0.0
  feat_weights, d_weights = 4.0 / (n_layers + 1), 1.0 / num_d
  for i in range(num_d):
    for j in range(len(fake[i]) - 1):
      ref += d_weights * feat_weights * tnn.L1Loss()(_t(fake[i][j]), _t(real[i][j])).item() * lambda_feat
  got = losses.feature_matching_loss(fake, real, weight=lambda_feat)
  np.testing.assert_allclose(got, ref, rtol=1e-6)
  # gradients reach the fake features only (pix2pixHD detaches the real ones)
  g_fake, g_real = jax.jit(jax.grad(losses.feature_matching_loss, argnums=(0, 1)))(fake, real)
  assert all(float(jnp.abs(g).sum()) == 0.0 for s in g_real for g in s)
  assert float(jnp.abs(g_fake[0][0]).sum()) > 0.0
  assert float(jnp.abs(g_fake[0][-1]).sum()) == 0.0  # the patch score is not a matched feature
  with pytest.raises(ValueError, match="same, non-zero number of scales"):
    losses.feature_matching_loss(fake, real[:1])


def _torch_gram(x_nchw):
  # IP_LAP PerceptualLoss.compute_gram
  b, ch, h, w = x_nchw.size()
  f = x_nchw.view(b, ch, w * h)
  return f.bmm(f.transpose(1, 2)) / (h * w * ch)


def test_gram_and_style_loss_match_iplap():
  fa = {"relu1_1": _RNG.normal(size=(2, 6, 5, 4)).astype(np.float32),
        "relu2_1": _RNG.normal(size=(2, 3, 3, 8)).astype(np.float32)}
  fb = {k: _RNG.normal(size=v.shape).astype(np.float32) for k, v in fa.items()}
  g = losses.gram_matrix(jnp.asarray(fa["relu1_1"]))
  np.testing.assert_allclose(g, _torch_gram(_nchw(fa["relu1_1"])).numpy(), rtol=1e-5, atol=1e-7)
  ref = sum(tnn.L1Loss()(_torch_gram(_nchw(fa[k])), _torch_gram(_nchw(fb[k]))).item() for k in fa)
  np.testing.assert_allclose(losses.style_loss(fa, fb), ref, rtol=1e-5)
  np.testing.assert_allclose(losses.style_loss(fa, fb, {"relu2_1": 2.0}),
                             2.0 * tnn.L1Loss()(_torch_gram(_nchw(fa["relu2_1"])),
                                                _torch_gram(_nchw(fb["relu2_1"]))).item(), rtol=1e-5)


def test_perceptual_loss_weights():
  fa = {k: _RNG.normal(size=(1, 4, 4, 3)).astype(np.float32) for k in losses.PIX2PIXHD_VGG_WEIGHTS}
  fb = {k: _RNG.normal(size=(1, 4, 4, 3)).astype(np.float32) for k in losses.PIX2PIXHD_VGG_WEIGHTS}
  l1s = {k: np.mean(np.abs(fa[k] - fb[k])) for k in fa}
  np.testing.assert_allclose(losses.perceptual_loss(fa, fb), sum(l1s.values()), rtol=1e-6)
  np.testing.assert_allclose(losses.perceptual_loss(fa, fb, losses.PIX2PIXHD_VGG_WEIGHTS),
                             sum(w * l1s[k] for k, w in zip(fa, [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0])),
                             rtol=1e-6)
  with pytest.raises(ConfigError, match=r"layer\(s\) \['relu9_9'\] not in the feature dicts"):
    losses.perceptual_loss(fa, fb, {"relu9_9": 1.0})


@pytest.mark.parametrize("hw", [(16, 12), (15, 11)])
def test_downsample_half_matches_torch_interpolate(hw):
  x = _RNG.normal(size=(2, *hw, 3)).astype(np.float32)
  ref = F.interpolate(_nchw(x), mode="bilinear", scale_factor=0.5, align_corners=False,
                      recompute_scale_factor=True).permute(0, 2, 3, 1).numpy()
  got = losses.downsample_half(jnp.asarray(x))
  assert got.shape == ref.shape == (2, hw[0] // 2, hw[1] // 2, 3)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


_CFG_E = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]


def _torch_vgg_features():
  torch.manual_seed(0)
  layers, c = [], 3
  for v in _CFG_E:
    if v == "M":
      layers.append(tnn.MaxPool2d(2, 2))
    else:
      conv = tnn.Conv2d(c, v, 3, padding=1)
      tnn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
      tnn.init.uniform_(conv.bias, -0.1, 0.1)
      layers += [conv, tnn.ReLU()]
      c = v
  return tnn.Sequential(*layers).eval()


_IPLAP_NAMES = {1: "relu1_1", 6: "relu2_1", 11: "relu3_1", 20: "relu4_1", 29: "relu5_1"}


def _torch_iplap_perceptual(net, inp, target, num_scales, style_weight):
  """IP_LAP's PerceptualLoss.forward (l1, layer weights 1, input assumed [-1, 1])."""
  mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
  std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
  inp, target = ((inp + 1) / 2 - mean) / std, ((target + 1) / 2 - mean) / std
  loss, style = 0.0, 0.0
  for scale in range(num_scales):
    fi, ft, x, y = {}, {}, inp, target
    for idx, layer in enumerate(net):
      x, y = layer(x), layer(y)
      if idx in _IPLAP_NAMES:
        fi[_IPLAP_NAMES[idx]], ft[_IPLAP_NAMES[idx]] = x, y
    for k in _IPLAP_NAMES.values():
      loss = loss + tnn.L1Loss()(fi[k], ft[k])
      if scale == 0:
        style = style + tnn.L1Loss()(_torch_gram(fi[k]), _torch_gram(ft[k]))
    if scale != num_scales - 1:
      inp, target = (F.interpolate(v, mode="bilinear", scale_factor=0.5, align_corners=False,
                                   recompute_scale_factor=True) for v in (inp, target))
  return float(loss + style * style_weight)


@pytest.fixture(scope="module")
def vgg_pair():
  net = _torch_vgg_features()
  variables = convert.convert_state_dict("vgg19", net.state_dict(), "features_only")
  return net, variables


def test_multiscale_perceptual_loss_matches_iplap(vgg_pair):
  net, variables = vgg_pair
  # IP_LAP passes [0, 1] images to a loss that assumes [-1, 1]: reproduce it with input_range="-1_1".
  pred = _RNG.uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
  target = np.clip(pred + _RNG.normal(scale=0.2, size=pred.shape), 0, 1).astype(np.float32)
  with torch.no_grad():
    ref_plain = _torch_iplap_perceptual(net, _nchw(pred), _nchw(target), 2, 0.0)
    ref_style = _torch_iplap_perceptual(net, _nchw(pred), _nchw(target), 2, 250.0)
  assert ref_style > ref_plain
  features_fn = functools.partial(vgg.VGG19Features(input_range="-1_1").apply, variables)

  @jax.jit
  def both(p, t):  # one compile; XLA shares the VGG passes of the two calls
    return (losses.multiscale_perceptual_loss(features_fn, p, t, num_scales=2),
            losses.multiscale_perceptual_loss(features_fn, p, t, num_scales=2, style_weight=250.0))

  got_plain, got_style = both(pred, target)
  assert got_plain.shape == got_style.shape == ()
  np.testing.assert_allclose(got_plain, ref_plain, rtol=2e-5)
  np.testing.assert_allclose(got_style, ref_style, rtol=2e-5)
  with pytest.raises(ConfigError, match="num_scales must be >= 1"):
    losses.multiscale_perceptual_loss(features_fn, pred, target, num_scales=0)


def test_multiscale_perceptual_loss_gradient_reaches_pred_only(vgg_pair):
  _, variables = vgg_pair
  features_fn = functools.partial(vgg.VGG19Features(input_range="0_1", layers=("relu1_1", "relu2_1")).apply,
                                  variables)
  pred = _RNG.uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)
  target = _RNG.uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)
  loss_fn = functools.partial(losses.multiscale_perceptual_loss, features_fn, num_scales=2,
                              style_weight=250.0)
  g_pred, g_target = jax.jit(jax.grad(loss_fn, argnums=(0, 1)))(pred, target)
  assert float(jnp.abs(g_target).sum()) == 0.0
  assert float(jnp.abs(g_pred).sum()) > 0.0
