"""Normalisation layers: instance norm, AdaIN, SPADE (NVlabs and IP_LAP forms), SPADE ResBlock.

All NHWC. Statistics are computed in float32 whatever the computation dtype (bf16 means/variances
over 64x64 maps lose too much); outputs are cast to ``dtype``. Convolutions use PyTorch-style
symmetric padding ``k // 2`` so converted weights give identical borders.

Parameter names mirror the PyTorch modules so converters map state dicts one to one (PyTorch conv
weights OIHW -> HWIO, Linear (out, in) -> (in, out)):

- :class:`AdaIN` = IP_LAP ``AdaINLayer``: ``mlp_shared`` (``mlp_shared.0``), ``mlp_gamma``, ``mlp_beta``.
- :class:`AdaINBlock` = IP_LAP ``AdaIN``: ``adain_layer_1``, ``conv_1``, ``adain_layer_2``, ``conv_2``.
- :class:`SPADE` = NVlabs ``SPADE``: ``mlp_shared`` (``mlp_shared.0``), ``mlp_gamma``, ``mlp_beta``.
- :class:`SPADEResBlock` = NVlabs ``SPADEResnetBlock``: ``conv_0``, ``conv_1``, ``conv_s``, ``norm_0``,
  ``norm_1``, ``norm_s`` (spectral norm, if the checkpoint used it, is folded into the weight by the
  converter: ``weight = weight_orig / sigma``).
- :class:`IPLAPSPADE` = IP_LAP ``SPADELayer``: ``conv1``, ``gamma``, ``beta``.
- :class:`IPLAPSPADEBlock` = IP_LAP ``SPADE``: ``spade_layer_1``, ``conv_1``, ``spade_layer_2``, ``conv_2``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from talkjax.nn.ops import ArgumentError, ShapeError, check_rank, resize_nearest

__all__ = ["instance_norm", "AdaIN", "AdaINBlock", "SPADE", "SPADEResBlock", "IPLAPSPADE", "IPLAPSPADEBlock"]


def instance_norm(x: jnp.ndarray, eps: float = 1e-5) -> jnp.ndarray:
  """Parameter-free instance norm over the spatial axes, like ``nn.InstanceNorm2d(affine=False)``.

  Per sample and channel: ``(x - mean) / sqrt(var + eps)`` with the biased variance and PyTorch's
  default ``eps = 1e-5``. Works for any rank ``(B, *spatial, C)``; float32 statistics.
  """
  if x.ndim < 3:
    raise ShapeError(f"instance_norm: input must be (B, *spatial, C), got shape {tuple(x.shape)}")
  axes = tuple(range(1, x.ndim - 1))
  y = x.astype(jnp.float32)
  mean = jnp.mean(y, axis=axes, keepdims=True)
  var = jnp.mean(jnp.square(y - mean), axis=axes, keepdims=True)
  return ((y - mean) * jnp.reciprocal(jnp.sqrt(var + eps))).astype(x.dtype)


def _conv(features: int, kernel_size: int, name: str, dtype: Any, param_dtype: Any, use_bias: bool = True):
  p = kernel_size // 2
  return nn.Conv(features, (kernel_size, kernel_size), padding=((p, p), (p, p)), use_bias=use_bias,
                 dtype=dtype, param_dtype=param_dtype, name=name)


def _check_pair(layer: str, x: jnp.ndarray, cond: jnp.ndarray) -> None:
  check_rank(f"{layer} input", x, 4, "B, H, W, C")
  check_rank(f"{layer} condition", cond, 4, "B, H, W, C")
  if cond.shape[0] != x.shape[0]:
    raise ShapeError(f"{layer}: condition batch {cond.shape[0]} != input batch {x.shape[0]}")


class AdaIN(nn.Module):
  """IP_LAP's AdaIN layer: ``instance_norm(x) * (1 + gamma(s)) + beta(s)``.

  ``gamma``/``beta`` come from an MLP on the style vector ``s`` (flattened per sample; IP_LAP: the
  512-d audio feature): ``Dense(hidden) + ReLU`` then two ``Dense(C)`` heads (Huang & Belongie 2017,
  in the SPADE-like ``1 + gamma`` form IP_LAP's renderer uses).
  """
  hidden: int = 128
  eps: float = 1e-5
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, style: jnp.ndarray) -> jnp.ndarray:
    """x: ``(B, H, W, C)``; style: ``(B, ...)`` (flattened to ``(B, D)``). Returns ``(B, H, W, C)``."""
    check_rank("AdaIN input", x, 4, "B, H, W, C")
    if style.ndim < 1 or style.shape[0] != x.shape[0]:
      raise ShapeError(f"AdaIN: style must be (B, ...) with B={x.shape[0]}, got {tuple(style.shape)}")
    c = x.shape[-1]
    s = style.reshape(style.shape[0], -1).astype(self.dtype)
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    actv = nn.relu(dense(self.hidden, "mlp_shared")(s))
    gamma = dense(c, "mlp_gamma")(actv)[:, None, None, :]
    beta = dense(c, "mlp_beta")(actv)[:, None, None, :]
    normalized = instance_norm(x, self.eps).astype(self.dtype)
    return normalized * (1 + gamma) + beta


class AdaINBlock(nn.Module):
  """IP_LAP's ``AdaIN`` block: AdaIN, LeakyReLU(0.2), conv 3x3, AdaIN, LeakyReLU(0.2), conv 3x3 (no skip)."""
  hidden: int = 128
  kernel_size: int = 3
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, style: jnp.ndarray) -> jnp.ndarray:
    c = x.shape[-1]
    for i in (1, 2):
      x = AdaIN(self.hidden, dtype=self.dtype, param_dtype=self.param_dtype,
                name=f"adain_layer_{i}")(x, style)
      x = nn.leaky_relu(x, 0.2)
      x = _conv(c, self.kernel_size, f"conv_{i}", self.dtype, self.param_dtype)(x)
    return x


class SPADE(nn.Module):
  """NVlabs SPADE (Park et al. 2019): ``norm(x) * (1 + gamma(m)) + beta(m)``, m the resized condition.

  The condition (segmentation map / sketch / warped features) is resized to ``x``'s size with
  PyTorch's nearest rule, passed through a shared ``conv(hidden) + ReLU``, then ``mlp_gamma`` and
  ``mlp_beta`` convs to ``C`` channels. ``norm`` is parameter-free: ``"instance"`` (NVlabs'
  ``spadeinstance3x3``) or ``"batch"`` (``spadebatch3x3``: BatchNorm without scale/bias, running
  statistics in ``batch_stats`` under ``param_free_norm``, PyTorch momentum 0.1).
  """
  hidden: int = 128
  kernel_size: int = 3
  norm: str = "instance"
  use_running_average: bool | None = None
  eps: float = 1e-5
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, segmap: jnp.ndarray, use_running_average: bool | None = None
               ) -> jnp.ndarray:
    """x: ``(B, H, W, C)``; segmap: ``(B, H', W', L)``. Returns ``(B, H, W, C)``."""
    _check_pair("SPADE", x, segmap)
    if self.norm == "instance":
      normalized = instance_norm(x, self.eps)
    elif self.norm == "batch":
      ura = nn.merge_param("use_running_average", self.use_running_average, use_running_average)
      normalized = nn.BatchNorm(use_running_average=ura, use_scale=False, use_bias=False, momentum=0.9,
                                epsilon=self.eps, dtype=jnp.float32, name="param_free_norm")(
                                    x.astype(jnp.float32))
    else:
      raise ArgumentError(f"SPADE: norm must be 'instance' or 'batch', got {self.norm!r}")
    c = x.shape[-1]
    m = resize_nearest(segmap, x.shape[1:3]).astype(self.dtype)
    actv = nn.relu(_conv(self.hidden, self.kernel_size, "mlp_shared", self.dtype, self.param_dtype)(m))
    gamma = _conv(c, self.kernel_size, "mlp_gamma", self.dtype, self.param_dtype)(actv)
    beta = _conv(c, self.kernel_size, "mlp_beta", self.dtype, self.param_dtype)(actv)
    return normalized.astype(self.dtype) * (1 + gamma) + beta


class SPADEResBlock(nn.Module):
  """NVlabs ``SPADEResnetBlock``: two SPADE -> LeakyReLU(0.2) -> conv 3x3 stages plus a shortcut.

  ``fmiddle = min(Cin, features)``; when ``Cin != features`` the shortcut is ``conv_s`` (1x1, no bias)
  after its own SPADE ``norm_s``, otherwise the identity.
  """
  features: int
  hidden: int = 128
  norm: str = "instance"
  use_running_average: bool | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, segmap: jnp.ndarray, use_running_average: bool | None = None
               ) -> jnp.ndarray:
    _check_pair("SPADEResBlock", x, segmap)
    fin = x.shape[-1]
    fmid = min(fin, self.features)
    ura = self.use_running_average if use_running_average is None else use_running_average
    spade = lambda name: SPADE(self.hidden, norm=self.norm, use_running_average=ura, dtype=self.dtype,
                               param_dtype=self.param_dtype, name=name)
    if fin != self.features:
      x_s = _conv(self.features, 1, "conv_s", self.dtype, self.param_dtype, use_bias=False)(
          spade("norm_s")(x, segmap))
    else:
      x_s = x.astype(self.dtype)
    dx = _conv(fmid, 3, "conv_0", self.dtype, self.param_dtype)(
        nn.leaky_relu(spade("norm_0")(x, segmap), 0.2))
    dx = _conv(self.features, 3, "conv_1", self.dtype, self.param_dtype)(
        nn.leaky_relu(spade("norm_1")(dx, segmap), 0.2))
    return x_s + dx


class IPLAPSPADE(nn.Module):
  """IP_LAP's ``SPADELayer``: ``n + n * gamma(h) + beta(h)``, ``n = instance_norm(x)``, ``h = conv1(m)``.

  Differs from NVlabs' form: the shared conv widens the condition to ``hidden`` = 256 channels with
  *no* ReLU. The condition is resized with PyTorch's nearest rule when its size differs (IP_LAP's
  callers do this themselves with ``F.interpolate(..., mode="nearest")``; the result is the same).
  """
  hidden: int = 256
  kernel_size: int = 3
  eps: float = 1e-5
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, modulation: jnp.ndarray) -> jnp.ndarray:
    _check_pair("IPLAPSPADE", x, modulation)
    c = x.shape[-1]
    m = resize_nearest(modulation, x.shape[1:3]).astype(self.dtype)
    h = _conv(self.hidden, self.kernel_size, "conv1", self.dtype, self.param_dtype)(m)
    gamma = _conv(c, self.kernel_size, "gamma", self.dtype, self.param_dtype)(h)
    beta = _conv(c, self.kernel_size, "beta", self.dtype, self.param_dtype)(h)
    n = instance_norm(x, self.eps).astype(self.dtype)
    return n * (1 + gamma) + beta


class IPLAPSPADEBlock(nn.Module):
  """IP_LAP's ``SPADE`` block: SPADE layer, LeakyReLU(0.2), conv 3x3, twice (no skip connection)."""
  hidden: int = 256
  kernel_size: int = 3
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, modulation: jnp.ndarray) -> jnp.ndarray:
    c = x.shape[-1]
    for i in (1, 2):
      x = IPLAPSPADE(self.hidden, self.kernel_size, dtype=self.dtype, param_dtype=self.param_dtype,
                     name=f"spade_layer_{i}")(x, modulation)
      x = nn.leaky_relu(x, 0.2)
      x = _conv(c, self.kernel_size, f"conv_{i}", self.dtype, self.param_dtype)(x)
    return x
