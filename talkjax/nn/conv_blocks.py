"""Wav2Lip's convolution blocks (``models/conv.py`` in the PyTorch project), NHWC.

Three blocks, named after what they compute rather than after the PyTorch classes, and the two
PyTorch-equivalent layers they need (:class:`BatchNorm`, :class:`ConvTranspose`):

| talkjax | Wav2Lip (PyTorch) | computes |
| --- | --- | --- |
| :class:`ConvBNAct` | ``Conv2d`` | conv -> BatchNorm -> (+ input if ``residual``) -> activation |
| :class:`ConvTransposeBNAct` | ``Conv2dTranspose`` | transposed conv -> BatchNorm -> ReLU |
| :class:`ConvAct` | ``nonorm_Conv2d`` | conv -> LeakyReLU(0.01), no normalisation |

Padding is PyTorch-style: a symmetric number of zeros per spatial dimension (``int`` or one per
dimension), so layer tables copy over unchanged. The blocks work for any number of spatial
dimensions (``kernel_size=(3,)`` gives IP_LAP's ``Conv1d`` block); an ``int`` kernel means 2-D.

Normalisation is :class:`BatchNorm`, a PyTorch-exact BatchNorm (Flax's differs in the running
variance update). In training (``train=True``) it normalises with batch statistics and updates the
``batch_stats`` collection, which the caller must pass as mutable.

Initialisation follows PyTorch's defaults (:func:`torch_kernel_init`, :func:`torch_bias_init`) so
that training from scratch starts where the PyTorch projects start.

Submodule names (``conv``, ``conv_transpose``, ``bn``) are part of the checkpoint layout that
``third_party/converters`` maps PyTorch keys onto; do not rename them.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Dtype = Any
IntOrSeq = int | Sequence[int]

# PyTorch BatchNorm defaults (PyTorch's momentum is the weight of the *new* batch statistic).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.1

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "none")


def torch_kernel_init() -> nn.initializers.Initializer:
  """PyTorch's default conv/linear weight init, ``kaiming_uniform_(a=sqrt(5))``: U(+-1/sqrt(fan_in)).

  Flax kernels are (*spatial, in, out); fan_in is prod(spatial) * in, as in PyTorch. (For a
  transposed conv PyTorch's fan_in is prod(k) * C_out; :class:`ConvTranspose`'s (*k, C_out, C_in)
  layout gives the same number.)
  """
  return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int) -> nn.initializers.Initializer:
  """PyTorch's default bias init: U(+-1/sqrt(fan_in))."""
  bound = 1.0 / max(fan_in, 1) ** 0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _fan_in(kernel: Sequence[int], in_features: int) -> int:
  n = in_features
  for k in kernel:
    n *= k
  return n


class BatchNorm(nn.Module):
  """BatchNorm over the last axis with PyTorch's ``BatchNorm{1,2,3}d`` semantics.

  Differs from ``flax.linen.BatchNorm`` where PyTorch training would diverge from it: the running
  variance is updated with the *unbiased* batch variance (``n/(n-1)``; Flax uses the biased one,
  which at Wav2Lip's 1x1 layers and small batches is a large difference), and a training batch
  with one value per channel is an error, as in PyTorch. Statistics are computed in float32. Under
  ``jax.jit`` with a batch-sharded input the mean is over the global batch (synchronised BN).

  Variables: params ``scale`` (PyTorch ``weight``), ``bias``; batch_stats ``mean``, ``var``
  (``running_mean``, ``running_var``).

  Attributes:
    momentum: PyTorch's momentum: ``running = (1 - momentum) * running + momentum * batch``.
    epsilon: added to the variance.
    dtype: output dtype.
  """
  momentum: float = BN_MOMENTUM
  epsilon: float = BN_EPSILON
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones_init(), (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (c,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    xf = x.astype(jnp.float32)
    if train:
      n = x.size // c
      if n < 2:
        raise ValueError(f"{self.name}: BatchNorm in training needs more than one value per channel, got "
                         f"input shape {tuple(x.shape)} (as PyTorch; use a larger batch)")
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(xf, axes)
      var = jnp.mean(jnp.square(xf - mean), axes)
      if not self.is_initializing():
        ra_mean.value = (1.0 - self.momentum) * ra_mean.value + self.momentum * mean
        ra_var.value = (1.0 - self.momentum) * ra_var.value + self.momentum * var * (n / (n - 1))
    else:
      mean, var = ra_mean.value, ra_var.value
    mul = scale * lax.rsqrt(var + self.epsilon)
    return ((xf - mean) * mul + bias).astype(self.dtype)


# Below this many output positions (batch x spatial) a convolution runs as im2col + GEMM on CPU.
GEMM_CONV_MAX_POSITIONS = 256


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None,
                         preferred_element_type=None):
  """``lax.conv_general_dilated`` that runs small-output convolutions as one GEMM on CPU.

  XLA:CPU's convolution is slow when there are few output positions and many weights (Wav2Lip's
  3x3 and 1x1 layers on 512 channels at 1x1..6x6: 2-5x slower than the same sums as a matrix
  product, because the weights are repacked for a handful of outputs). For a plain (undilated,
  ungrouped) channels-last convolution with at most :data:`GEMM_CONV_MAX_POSITIONS` output
  positions, CPU gets im2col + GEMM (same sums, ordered differently); everything else, and every
  other platform, gets ``lax.conv_general_dilated``. A drop-in ``nn.Conv(conv_general_dilated=...)``.
  """
  def xla(lhs, rhs):
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                    rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                    feature_group_count=feature_group_count, precision=precision,
                                    preferred_element_type=preferred_element_type)
  nd = lhs.ndim - 2
  if not 1 <= nd <= 3 or dimension_numbers is None:
    return xla(lhs, rhs)
  spatial = "DHW"[3 - nd:]
  channels_last = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == \
      lax.conv_dimension_numbers(lhs.shape, rhs.shape, (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
  plain = (channels_last and feature_group_count == 1 and not isinstance(padding, str)
           and all(d == 1 for d in (lhs_dilation or (1,) * nd))
           and all(d == 1 for d in (rhs_dilation or (1,) * nd)))
  if not plain:
    return xla(lhs, rhs)
  kernel = rhs.shape[:nd]
  out_spatial = [(d + lo + hi - k) // s + 1
                 for d, (lo, hi), k, s in zip(lhs.shape[1:-1], padding, kernel, window_strides)]
  positions = lhs.shape[0] * int(np.prod(out_spatial))
  if positions > GEMM_CONV_MAX_POSITIONS:
    return xla(lhs, rhs)

  def gemm(lhs, rhs):
    x = jnp.pad(lhs, [(0, 0)] + [tuple(p) for p in padding] + [(0, 0)])
    cols = [x[(slice(None),) + tuple(slice(t, t + s * (o - 1) + 1, s)
                                     for t, s, o in zip(taps, window_strides, out_spatial))]
            for taps in itertools.product(*(range(k) for k in kernel))]
    cols = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
    return jnp.dot(cols, rhs.reshape(-1, rhs.shape[-1]), precision=precision,
                   preferred_element_type=preferred_element_type)
  return lax.platform_dependent(lhs, rhs, cpu=gemm, default=xla)


def activation_fn(name: str, negative_slope: float = 0.01):
  """Returns the elementwise activation called ``name`` (one of :data:`ACTIVATIONS`)."""
  if name == "relu":
    return nn.relu
  if name == "leaky_relu":
    return lambda x: nn.leaky_relu(x, negative_slope)
  if name == "tanh":
    return jnp.tanh
  if name == "sigmoid":
    return nn.sigmoid
  if name == "none":
    return lambda x: x
  raise ValueError(f"activation: unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


def _as_tuple(value: IntOrSeq, ndim: int, what: str) -> tuple[int, ...]:
  if isinstance(value, int):
    return (value,) * ndim
  value = tuple(int(v) for v in value)
  if len(value) != ndim:
    raise ValueError(f"{what}: expected an int or {ndim} values, got {value}")
  return value


def _kernel_tuple(kernel_size: IntOrSeq) -> tuple[int, ...]:
  return (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(int(k) for k in kernel_size)


def _check_input(x: jax.Array, ndim: int, block: str) -> None:
  if x.ndim != ndim + 2:
    raise ValueError(f"{block}: input must be (N, *spatial[{ndim}], C), got shape {tuple(x.shape)}")


class ConvBNAct(nn.Module):
  """Conv -> BatchNorm -> optional residual add -> activation (Wav2Lip's ``Conv2d`` block).

  Attributes:
    features: output channels.
    kernel_size: ``int`` (square 2-D kernel) or one size per spatial dimension.
    strides: ``int`` or one stride per spatial dimension.
    padding: PyTorch-style symmetric zero padding, ``int`` or one value per spatial dimension.
    residual: add the block's input before the activation (needs stride 1, equal widths and a
      shape-preserving padding, as in Wav2Lip).
    activation: one of :data:`ACTIVATIONS`; Wav2Lip uses ReLU everywhere, IP_LAP ends its encoders
      with ``"tanh"``.
    dtype: computation dtype (parameters stay float32).
  """
  features: int
  kernel_size: IntOrSeq = 3
  strides: IntOrSeq = 1
  padding: IntOrSeq = 1
  residual: bool = False
  activation: str = "relu"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    kernel = _kernel_tuple(self.kernel_size)
    nd = len(kernel)
    _check_input(x, nd, self.name or "ConvBNAct")
    pad = _as_tuple(self.padding, nd, "padding")
    y = nn.Conv(self.features, kernel, strides=_as_tuple(self.strides, nd, "strides"),
                padding=[(p, p) for p in pad], dtype=self.dtype, kernel_init=torch_kernel_init(),
                bias_init=torch_bias_init(_fan_in(kernel, x.shape[-1])),
                conv_general_dilated=conv_general_dilated, name="conv")(x)
    y = BatchNorm(dtype=self.dtype, name="bn")(y, train=train)
    if self.residual:
      if y.shape != x.shape:
        raise ValueError(f"{self.name}: residual block changes the shape {tuple(x.shape)} -> "
                         f"{tuple(y.shape)}; a residual block needs stride 1 and equal widths")
      y = y + x
    return activation_fn(self.activation)(y)


class ConvAct(nn.Module):
  """Conv (with bias) -> activation, no normalisation (Wav2Lip's ``nonorm_Conv2d``).

  Attributes mean what they mean in :class:`ConvBNAct`; ``negative_slope`` is the LeakyReLU slope
  (Wav2Lip's discriminator: 0.01).
  """
  features: int
  kernel_size: IntOrSeq = 3
  strides: IntOrSeq = 1
  padding: IntOrSeq = 1
  activation: str = "leaky_relu"
  negative_slope: float = 0.01
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = _kernel_tuple(self.kernel_size)
    nd = len(kernel)
    _check_input(x, nd, self.name or "ConvAct")
    pad = _as_tuple(self.padding, nd, "padding")
    y = nn.Conv(self.features, kernel, strides=_as_tuple(self.strides, nd, "strides"),
                padding=[(p, p) for p in pad], dtype=self.dtype, kernel_init=torch_kernel_init(),
                bias_init=torch_bias_init(_fan_in(kernel, x.shape[-1])),
                conv_general_dilated=conv_general_dilated, name="conv")(x)
    return activation_fn(self.activation, self.negative_slope)(y)


def torch_conv_transpose_padding(kernel_size: Sequence[int], padding: Sequence[int],
                                 output_padding: Sequence[int]) -> list[tuple[int, int]]:
  """Explicit (low, high) padding that makes ``lax.conv_transpose`` equal PyTorch's ConvTranspose.

  ``lax.conv_transpose`` dilates the input by the stride and runs a stride-1 convolution over it
  with the given padding. PyTorch's ``ConvTranspose2d(k, s, p, output_padding=op)`` corresponds to
  padding the dilated input by ``k - 1 - p`` before and ``k - 1 - p + op`` after, which yields
  PyTorch's output size ``(n - 1) * s - 2p + k + op``.
  """
  out = []
  for k, p, op in zip(kernel_size, padding, output_padding):
    if p > k - 1:
      raise ValueError(f"padding {p} > kernel_size - 1 = {k - 1} is not supported for a transposed conv")
    out.append((k - 1 - p, k - 1 - p + op))
  return out


class ConvTranspose(nn.Module):
  """PyTorch-equivalent ``ConvTranspose{1,2,3}d`` (same output size and values), NHWC.

  The kernel is stored as the *forward* convolution it is the transpose of, ``(*k, C_out, C_in)``
  (what ``nn.ConvTranspose(transpose_kernel=True)`` expects); PyTorch stores ``(C_in, C_out, *k)``.

  Two equal computations, chosen per platform at lowering time (``lax.platform_dependent``):
  accelerators run ``lax.conv_transpose`` (input dilated by the stride, then a stride-1 conv with
  the padding from :func:`torch_conv_transpose_padding`); CPU runs :func:`conv_transpose_gemm`, one
  matrix product plus an overlap-add, which XLA:CPU executes 1-3x faster for Wav2Lip's decoder
  (its dilated convolutions multiply mostly inserted zeros; 1x1 -> 3x3 was 50x slower).
  """
  features: int
  kernel_size: IntOrSeq = 3
  strides: IntOrSeq = 1
  padding: IntOrSeq = 0
  output_padding: IntOrSeq = 0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = _kernel_tuple(self.kernel_size)
    nd = len(kernel)
    _check_input(x, nd, self.name or "ConvTranspose")
    strides = _as_tuple(self.strides, nd, "strides")
    pad = _as_tuple(self.padding, nd, "padding")
    opad = _as_tuple(self.output_padding, nd, "output_padding")
    for s, op in zip(strides, opad):
      if not 0 <= op < s:
        raise ValueError(f"{self.name}: output_padding {opad} must be smaller than the stride {strides} "
                         "(as in PyTorch)")
    w = self.param("kernel", torch_kernel_init(), kernel + (self.features, x.shape[-1]), jnp.float32)
    b = self.param("bias", torch_bias_init(_fan_in(kernel, self.features)), (self.features,), jnp.float32)
    x, w, b = nn.dtypes.promote_dtype(x, w, b, dtype=self.dtype)
    y = lax.platform_dependent(
        x, w, cpu=functools.partial(conv_transpose_gemm, strides=strides, padding=pad, output_padding=opad),
        default=functools.partial(conv_transpose_lax, strides=strides, padding=pad, output_padding=opad))
    return y + b


def conv_transpose_lax(x: jax.Array, w: jax.Array, strides: Sequence[int], padding: Sequence[int],
                       output_padding: Sequence[int]) -> jax.Array:
  """PyTorch ConvTranspose as ``lax.conv_transpose``; ``w``: (*k, C_out, C_in)."""
  kernel = w.shape[:-2]
  return lax.conv_transpose(x, w, tuple(strides), torch_conv_transpose_padding(kernel, padding, output_padding),
                            transpose_kernel=True)


def conv_transpose_gemm(x: jax.Array, w: jax.Array, strides: Sequence[int], padding: Sequence[int],
                        output_padding: Sequence[int]) -> jax.Array:
  """PyTorch ConvTranspose as one GEMM and an overlap-add (col2im), as oneDNN/cuDNN compute it.

  Every input pixel times the kernel gives a ``(*k, C_out)`` patch (one matrix product over all
  pixels, no zeros multiplied); the patch of pixel ``i`` lands at ``s*i - p + t`` for tap ``t``:
  each tap's slice is spread by the stride (``lax.pad`` interior padding) and the taps are summed,
  then ``padding`` is cropped and ``output_padding`` added on the high side.
  """
  n, *spatial, cin = x.shape
  kernel, cout = w.shape[:-2], w.shape[-2]
  nd = len(spatial)
  y = x.reshape(-1, cin) @ w.reshape(-1, cin).T                     # (n*prod(spatial), prod(k)*C_out)
  y = y.reshape(n, *spatial, *kernel, cout)
  full = [(d - 1) * s + k for d, s, k in zip(spatial, strides, kernel)]
  out = None
  zero = jnp.zeros((), y.dtype)
  for taps in itertools.product(*(range(k) for k in kernel)):
    part = y[(slice(None),) * (1 + nd) + taps]                        # (n, *spatial, C_out)
    config = [(0, 0, 0)] + [(t, f - t - (d - 1) * s - 1, s - 1)
                            for t, f, d, s in zip(taps, full, spatial, strides)] + [(0, 0, 0)]
    part = lax.pad(part, zero, config)
    out = part if out is None else out + part
  sizes = [(d - 1) * s - 2 * p + k + op
           for d, s, p, k, op in zip(spatial, strides, padding, kernel, output_padding)]
  out = jnp.pad(out, [(0, 0)] + [(0, max(0, p + o - f)) for p, o, f in zip(padding, sizes, full)] + [(0, 0)])
  return out[(slice(None),) + tuple(slice(p, p + o) for p, o in zip(padding, sizes))]


class ConvTransposeBNAct(nn.Module):
  """Transposed conv -> BatchNorm -> ReLU (Wav2Lip's ``Conv2dTranspose``), PyTorch output sizes.

  Attributes:
    features: output channels.
    kernel_size, strides, padding, output_padding: as ``torch.nn.ConvTranspose2d``.
    dtype: computation dtype.
  """
  features: int
  kernel_size: IntOrSeq = 3
  strides: IntOrSeq = 1
  padding: IntOrSeq = 0
  output_padding: IntOrSeq = 0
  activation: str = "relu"
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    y = ConvTranspose(self.features, self.kernel_size, self.strides, self.padding, self.output_padding,
                      dtype=self.dtype, name="conv_transpose")(x)
    y = BatchNorm(dtype=self.dtype, name="bn")(y, train=train)
    return activation_fn(self.activation)(y)
