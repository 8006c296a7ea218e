"""Shared losses: L1/MSE/BCE, LSGAN and pix2pixHD feature matching, VGG perceptual and style losses.

Conventions (all match the PyTorch code the papers build on, see tests/test_losses.py):

* Every reduction is a mean over all elements (``nn.L1Loss`` / ``nn.MSELoss`` / ``nn.BCELoss``
  defaults); sums happen only across scales and layers, as in pix2pixHD and IP_LAP.
* Discriminator outputs are pix2pixHD's nested lists, ``outputs[scale][layer]`` with the patch score
  last (``talkjax.models.pix2pixhd``); a single array, or one list of layers, is one scale.
* In target-vs-prediction losses the *second* argument is the target: no gradient flows into it
  (PyTorch's ``.detach()`` in pix2pixHD's feature matching and IP_LAP's perceptual loss).
* VGG feature dicts map layer names (``"relu1_1"`` ...) to NHWC maps, as returned by
  ``talkjax.models.vgg19.VGG19Features``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from talkjax.errors import ConfigError

Array = jnp.ndarray
# pix2pixHD's VGGLoss layer weights; IP_LAP weights every layer 1.
PIX2PIXHD_VGG_WEIGHTS: dict[str, float] = {
    "relu1_1": 1.0 / 32, "relu2_1": 1.0 / 16, "relu3_1": 1.0 / 8, "relu4_1": 1.0 / 4, "relu5_1": 1.0}
IPLAP_VGG_WEIGHTS: dict[str, float] = {
    "relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 1.0, "relu4_1": 1.0, "relu5_1": 1.0}


def _check_same_shape(a: Array, b: Array, what: str) -> None:
  if jnp.shape(a) != jnp.shape(b):
    raise ValueError(f"{what}: shapes differ: {tuple(jnp.shape(a))} vs {tuple(jnp.shape(b))}")


# --- Elementwise losses ------------------------------------------------------------------------

def l1(pred: Array, target: Array) -> Array:
  """Mean absolute error (``nn.L1Loss()``)."""
  _check_same_shape(pred, target, "l1")
  return jnp.mean(jnp.abs(pred - target))


def mse(pred: Array, target: Array) -> Array:
  """Mean squared error (``nn.MSELoss()``)."""
  _check_same_shape(pred, target, "mse")
  return jnp.mean(jnp.square(pred - target))


def bce(probs: Array, targets: Array | float) -> Array:
  """Binary cross-entropy on probabilities, exactly ``nn.BCELoss()``.

  As in PyTorch each log term is clamped at -100, so a probability of exactly 0 or 1 gives a large
  but finite loss (Wav2Lip's SyncNet loss applies BCE to a cosine similarity that can reach 1).
  """
  return jnp.mean(bce_terms(probs, targets))


def bce_terms(probs: Array, targets: Array | float) -> Array:
  """Element-wise ``nn.BCELoss(reduction="none")``, with finite gradients at probabilities 0 and 1."""
  targets = jnp.broadcast_to(jnp.asarray(targets, probs.dtype), probs.shape)
  return -(targets * clamped_log(probs) + (1.0 - targets) * clamped_log(1.0 - probs))


def clamped_log(x: Array) -> Array:
  """``max(log x, -100)`` with finite gradients at x = 0 (a plain clamp gives inf * 0 = NaN there).

  Below float32's smallest normal number the value is -100 (PyTorch would give log of the denormal,
  between -87 and -103); above it this is exactly PyTorch's clamp.
  """
  ok = x > 1e-38
  return jnp.where(ok, jnp.maximum(jnp.log(jnp.where(ok, x, 1.0)), -100.0), -100.0)


def bce_with_logits(logits: Array, targets: Array | float) -> Array:
  """Binary cross-entropy on logits, numerically stable (``nn.BCEWithLogitsLoss()``)."""
  targets = jnp.broadcast_to(jnp.asarray(targets, logits.dtype), logits.shape)
  # max(x, 0) - x*t + log(1 + exp(-|x|))
  return jnp.mean(jnp.maximum(logits, 0.0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits))))


# --- GAN losses --------------------------------------------------------------------------------

def _final_outputs(outputs: Any) -> list[Array]:
  """The patch-score map of each scale, from any of the accepted discriminator output forms."""
  if hasattr(outputs, "shape"):  # a jax or NumPy array: one scale, its score map
    return [outputs]
  if not isinstance(outputs, Sequence) or len(outputs) == 0:
    raise ValueError("discriminator outputs must be an array or a non-empty list, got "
                     f"{type(outputs).__name__}")
  if isinstance(outputs[0], Sequence):
    return [scale[-1] for scale in outputs]
  return [outputs[-1]]


def lsgan_loss(outputs: Any, target_is_real: bool) -> Array:
  """pix2pixHD's ``GANLoss(use_lsgan=True)``: sum over scales of MSE(final map, 1 or 0)."""
  target = 1.0 if target_is_real else 0.0
  return sum(jnp.mean(jnp.square(p - target)) for p in _final_outputs(outputs))


def lsgan_d_loss(real_outputs: Any, fake_outputs: Any) -> Array:
  """Discriminator LSGAN loss, ``0.5 * (GANLoss(real, True) + GANLoss(fake, False))``.

  The 0.5 is pix2pixHD's and IP_LAP's (``loss_D = (loss_D_fake + loss_D_real) * 0.5``). Run the
  discriminator on ``stop_gradient(fake)`` (or differentiate only w.r.t. its parameters).
  """
  return 0.5 * (lsgan_loss(real_outputs, True) + lsgan_loss(fake_outputs, False))


def lsgan_g_loss(fake_outputs: Any) -> Array:
  """Generator LSGAN loss, ``GANLoss(fake, True)`` summed over scales."""
  return lsgan_loss(fake_outputs, True)


def bce_gan_loss(outputs: Any, target_is_real: bool, from_logits: bool = True) -> Array:
  """BCE GAN loss summed over scales (pix2pixHD's ``use_lsgan=False`` form).

  ``from_logits=False`` expects probabilities (pix2pixHD with ``use_sigmoid``; Wav2Lip's visual
  discriminator); ``True`` takes raw scores and is the stable choice for new models.
  """
  target = 1.0 if target_is_real else 0.0
  fn = bce_with_logits if from_logits else bce
  return sum(fn(p, target) for p in _final_outputs(outputs))


def feature_matching_loss(fake_outputs: Sequence[Sequence[Array]], real_outputs: Sequence[Sequence[Array]],
                          weight: float = 1.0) -> Array:
  """pix2pixHD's discriminator feature-matching loss.

  ``sum_i sum_j (1/num_D) * (4/(n_layers+1)) * L1(fake[i][j], real[i][j])`` over every layer but the
  last (the patch score) of every scale, times ``weight`` (pix2pixHD's ``lambda_feat``: 10 there;
  IP_LAP uses 2.5). ``n_layers + 1`` is the number of intermediate maps per scale. No gradient
  flows into ``real_outputs``.
  """
  if len(fake_outputs) != len(real_outputs) or not fake_outputs:
    raise ValueError(f"feature_matching_loss: fake and real outputs need the same, non-zero number of "
                     f"scales, got {len(fake_outputs)} and {len(real_outputs)}")
  num_d = len(fake_outputs)
  total = 0.0
  for i, (fake, real) in enumerate(zip(fake_outputs, real_outputs)):
    if hasattr(fake, "shape") or len(fake) != len(real) or len(fake) < 2:
      raise ValueError(f"feature_matching_loss: scale {i} needs matching lists of >= 2 layer outputs "
                       "(getIntermFeat=True form)")
    n_feat = len(fake) - 1
    for j in range(n_feat):
      _check_same_shape(fake[j], real[j], f"feature_matching_loss scale {i} layer {j}")
      total = total + (1.0 / num_d) * (4.0 / n_feat) * l1(fake[j], jax.lax.stop_gradient(real[j]))
  return total * weight


# --- VGG perceptual and style losses -----------------------------------------------------------

def _layer_weights(feats_a: Mapping[str, Array], feats_b: Mapping[str, Array],
                   weights: Mapping[str, float] | None, what: str) -> dict[str, float]:
  w = {k: 1.0 for k in feats_a} if weights is None else dict(weights)
  if not w:
    raise ConfigError(f"{what}: no layers to compare (empty weights)")
  missing = [k for k in w if k not in feats_a or k not in feats_b]
  if missing:
    raise ConfigError(f"{what}: layer(s) {missing} not in the feature dicts (have {sorted(feats_a)} and "
                      f"{sorted(feats_b)})")
  return w


def perceptual_loss(feats_a: Mapping[str, Array], feats_b: Mapping[str, Array],
                    weights: Mapping[str, float] | None = None) -> Array:
  """``sum_l weights[l] * L1(feats_a[l], feats_b[l])``; ``feats_b`` is the target.

  ``weights=None`` weights every layer of ``feats_a`` by 1 (IP_LAP); ``PIX2PIXHD_VGG_WEIGHTS`` gives
  pix2pixHD's 1/32 .. 1 ladder.
  """
  w = _layer_weights(feats_a, feats_b, weights, "perceptual_loss")
  total = 0.0
  for k, wk in w.items():
    _check_same_shape(feats_a[k], feats_b[k], f"perceptual_loss layer {k}")
    total = total + wk * l1(feats_a[k], jax.lax.stop_gradient(feats_b[k]))
  return total


def gram_matrix(x: Array) -> Array:
  """Channel Gram matrix of an NHWC map, ``F F^T / (H*W*C)`` -> ``(N, C, C)`` (IP_LAP's normalisation)."""
  if x.ndim != 4:
    raise ValueError(f"gram_matrix: expected an (N, H, W, C) feature map, got shape {tuple(x.shape)}")
  n, h, w, c = x.shape
  f = x.reshape(n, h * w, c).astype(jnp.float32)
  # HIGHEST: the style term is scaled by 250 in IP_LAP, so TF32 rounding on GPUs would show.
  g = jnp.einsum("npc,npd->ncd", f, f, precision=jax.lax.Precision.HIGHEST)
  return g / (h * w * c)


def style_loss(feats_a: Mapping[str, Array], feats_b: Mapping[str, Array],
               weights: Mapping[str, float] | None = None) -> Array:
  """``sum_l weights[l] * L1(gram(feats_a[l]), gram(feats_b[l]))``; ``feats_b`` is the target."""
  w = _layer_weights(feats_a, feats_b, weights, "style_loss")
  total = 0.0
  for k, wk in w.items():
    _check_same_shape(feats_a[k], feats_b[k], f"style_loss layer {k}")
    total = total + wk * l1(gram_matrix(feats_a[k]), gram_matrix(jax.lax.stop_gradient(feats_b[k])))
  return total


def downsample_half(x: Array) -> Array:
  """Bilinear 0.5x resize of NHWC images, as ``F.interpolate(scale_factor=0.5, mode='bilinear',
  align_corners=False, recompute_scale_factor=True)`` (no antialiasing; output ``floor(H/2)``)."""
  n, h, w, c = x.shape
  if h < 2 or w < 2:
    raise ValueError(f"downsample_half: images of size {(h, w)} are too small to halve")
  return jax.image.resize(x, (n, h // 2, w // 2, c), method="linear", antialias=False)


def multiscale_perceptual_loss(features_fn: Callable[[Array], Mapping[str, Array]], pred: Array,
                               target: Array, *, num_scales: int = 2,
                               weights: Mapping[str, float] | None = None, style_weight: float = 0.0) -> Array:
  """IP_LAP's ``PerceptualLoss(num_scales=2)``: perceptual L1 at several scales plus a Gram style term.

  ``loss = sum_s perceptual_loss(vgg(pred_s), vgg(target_s), weights)
          + style_weight * style_loss(vgg(pred_0), vgg(target_0))``
  with ``x_0 = x`` and ``x_{s+1} = downsample_half(x_s)``; the style term uses the full-resolution
  scale only and the same layers with weight 1, as IP_LAP does. IP_LAP's renderer uses
  ``style_weight=250`` for the generated image and 0 for the warped one.

  Args:
    features_fn: images -> VGG feature dict, e.g.
      ``functools.partial(VGG19Features(input_range="0_1").apply, vgg_variables)``.
      Downsampling happens before the VGG's input normalisation, which is affine per channel and so
      commutes with bilinear resizing (IP_LAP normalises first; the results agree to rounding).
    pred: ``(N, H, W, 3)`` generated images.
    target: ``(N, H, W, 3)`` ground truth (no gradient flows into it).
    num_scales: number of pyramid levels (IP_LAP: 2).
    weights: per-layer weights of the perceptual term; ``None``: every returned layer, weight 1.
    style_weight: weight of the Gram-matrix term; 0 skips it.

  Returns:
    The scalar loss.
  """
  if num_scales < 1:
    raise ConfigError(f"multiscale_perceptual_loss: num_scales must be >= 1, got {num_scales}")
  _check_same_shape(pred, target, "multiscale_perceptual_loss (pred vs target)")
  n = pred.shape[0]
  target = jax.lax.stop_gradient(target)
  total = 0.0
  for s in range(num_scales):
    # One VGG pass over pred and target together: half the kernel launches of two passes.
    feats = features_fn(jnp.concatenate([pred, target], axis=0))
    fa = {k: v[:n] for k, v in feats.items()}
    fb = {k: v[n:] for k, v in feats.items()}
    total = total + perceptual_loss(fa, fb, weights)
    if s == 0 and style_weight:
      layers = {k: 1.0 for k in (weights if weights is not None else fa)}
      total = total + style_weight * style_loss(fa, fb, layers)
    if s != num_scales - 1:
      pred, target = downsample_half(pred), downsample_half(target)
  return total
