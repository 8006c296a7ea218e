"""Dynamic convolution: per-sample kernels and biases emitted by a hypernetwork.

Paper 001 (Ye et al., "Audio-Driven Talking Face Video Generation with Dynamic Convolution
Kernels", TMM 2022, sections III-IV): the middle layers of a U-Net have no learned kernels of their
own; a fully connected network maps the audio feature of each frame to that frame's kernels
(1x1 in all their experiments, so each DCK layer is a per-frame Cin x Cout matrix), applied as a
grouped convolution. Paper 000 (Tang et al., section 3.1.2, DACN) applies the same idea to the
landmark transformer's token stream (a 1-D convolution over time whose weights come from the
audio/pose/reference features).

:func:`dynamic_conv` is the functional op for any number of spatial dims (1-D token sequences,
2-D maps, ...). It folds the batch into the channel axis and runs one grouped convolution
(``feature_group_count = B``), which is exactly a per-sample ``lax.conv`` with no Python loop; 1x1
kernels at stride 1 become a single einsum. :class:`DynamicConv` owns the hypernetwork.

Initialisation of the hypernetwork's output layer (the papers are silent): the generated kernel is
``K(c) = K0 + W h(c)``. The head's bias ``K0`` is a static kernel drawn like a LeCun-normal conv
kernel, variance ``1/fan_in`` with ``fan_in = prod(kernel_size) * Cin``; the head's weights have
variance ``dynamic_init_scale / (d_h * fan_in)`` (the "hyperfan-in" rule of Chang et al., ICLR
2020), so for conditioning of unit mean square (He-initialised ReLU layers preserve it) the
conditioned term ``W h(c)`` also has variance ``1/fan_in`` (about two thirds of it varies from
sample to sample; the rest is the mean of the ReLU features). The generated kernel thus starts at
He-normal scale ``2/fan_in``, half of it from the conditioning, so activations neither blow up nor
vanish through a stack of DCK layers and the audio drives the kernel from the first step.
Generated biases start at zero (the bias head is zero-initialised), like a static conv's bias.
Conditioning far from unit scale should be normalised first (or ``dynamic_init_scale`` adjusted).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from talkjax.nn.ops import ArgumentError, ShapeError, check_rank

__all__ = ["dynamic_conv", "DynamicConv"]

_SPATIAL = "DHW"


def _tuple(v: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
  if isinstance(v, (int, np.integer)):
    return (int(v),) * n
  v = tuple(int(i) for i in v)
  if len(v) != n:
    raise ArgumentError(f"dynamic_conv: {name} needs {n} values (one per spatial dim), got {v}")
  return v


def _padding(padding: Any, n: int) -> str | list[tuple[int, int]]:
  if isinstance(padding, str):
    if padding.upper() not in ("SAME", "VALID"):
      raise ArgumentError(f"dynamic_conv: padding must be 'SAME', 'VALID', an int or pairs, got {padding!r}")
    return padding.upper()
  if isinstance(padding, (int, np.integer)):
    return [(int(padding), int(padding))] * n
  padding = list(padding)
  if len(padding) != n:
    raise ArgumentError(f"dynamic_conv: padding needs {n} entries, got {padding}")
  return [(int(p), int(p)) if isinstance(p, (int, np.integer)) else (int(p[0]), int(p[1])) for p in padding]


def dynamic_conv(x: jnp.ndarray, kernels: jnp.ndarray, biases: jnp.ndarray | None = None,
                 stride: int | Sequence[int] = 1, padding: Any = "SAME",
                 dilation: int | Sequence[int] = 1) -> jnp.ndarray:
  """Convolves each sample with its own kernel: ``out[b] = conv(x[b], kernels[b]) + biases[b]``.

  Args:
    x: ``(B, *spatial, Cin)`` (channels last; 1 to 3 spatial dims).
    kernels: ``(B, *kernel_size, Cin, Cout)`` (per-sample HWIO).
    biases: ``(B, Cout)`` or ``None``.
    stride, dilation: int or one per spatial dim.
    padding: ``"SAME"``, ``"VALID"``, an int (PyTorch-style symmetric padding) or one int/pair per dim.

  Returns:
    ``(B, *out_spatial, Cout)`` in the result dtype of ``x`` and ``kernels``.
  """
  n = x.ndim - 2
  if n < 1 or n > 3:
    raise ShapeError(f"dynamic_conv: input must be (B, *spatial, Cin) with 1-3 spatial dims, "
                     f"got {tuple(x.shape)}")
  if kernels.ndim != n + 3 or kernels.shape[0] != x.shape[0] or kernels.shape[-2] != x.shape[-1]:
    raise ShapeError(f"dynamic_conv: kernels must be (B, *kernel_size, Cin, Cout) = ({x.shape[0]}, "
                     f"{n} kernel dims, {x.shape[-1]}, Cout) for input {tuple(x.shape)}, "
                     f"got {tuple(kernels.shape)}")
  b, cin, cout = x.shape[0], x.shape[-1], kernels.shape[-1]
  if biases is not None and biases.shape != (b, cout):
    raise ShapeError(f"dynamic_conv: biases must be (B, Cout) = {(b, cout)}, got {tuple(biases.shape)}")
  strides = _tuple(stride, n, "stride")
  dilations = _tuple(dilation, n, "dilation")
  pads = _padding(padding, n)
  ksize = kernels.shape[1:-2]
  pointwise = (all(k == 1 for k in ksize) and all(s == 1 for s in strides)
               and (pads in ("SAME", "VALID") or all(p == (0, 0) for p in pads)))
  if pointwise:
    out = jnp.einsum("b...i,bio->b...o", x, kernels.reshape(b, cin, cout))
  else:
    # Fold the batch into channels: one grouped conv with B groups == B independent convs.
    lhs = jnp.moveaxis(x, 0, -2).reshape((1,) + x.shape[1:-1] + (b * cin,))
    rhs = jnp.moveaxis(kernels, 0, -2).reshape(ksize + (cin, b * cout))
    sp = _SPATIAL[-n:]
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, (f"N{sp}C", f"{sp}IO", f"N{sp}C"))
    out = lax.conv_general_dilated(lhs, rhs, window_strides=strides, padding=pads, rhs_dilation=dilations,
                                   dimension_numbers=dn, feature_group_count=b)
    out = jnp.moveaxis(out.reshape(out.shape[1:-1] + (b, cout)), -2, 0)
  if biases is not None:
    out = out + biases.reshape((b,) + (1,) * n + (cout,)).astype(out.dtype)
  return out


def _static_kernel_init(fan_in: int):
  """LeCun-normal (truncated, variance 1/fan_in) for the head's bias, i.e. the static kernel K0."""
  # 0.8796 = std of a standard normal truncated to [-2, 2]; divide it out as variance_scaling does.
  std = np.sqrt(1.0 / fan_in) / 0.87962566103423978

  def init(key, shape, dtype=jnp.float32):
    return (jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32) * std).astype(dtype)
  return init


class DynamicConv(nn.Module):
  """Convolution whose kernels and biases are generated per sample from a conditioning vector.

  Papers 001 (DCK: 1x1, conditioned on the Wav2Lip audio feature of each frame) and 000 (DACN).
  The hypernetwork is ``Dense(hidden[i]) + ReLU`` layers (``hyper_0``, ``hyper_1``, ...) followed by
  two heads: ``kernel_head`` emits ``prod(kernel_size) * Cin * Cout`` values reshaped row-major to
  ``(*kernel_size, Cin, Cout)`` (HWIO), ``bias_head`` emits ``Cout`` biases. See the module
  docstring for the initialisation.

  Attributes:
    features: output channels ``Cout``.
    kernel_size: int (square 2-D) or one size per spatial dim (``(k,)`` for token sequences).
    hidden: widths of the hypernetwork's hidden layers; ``()`` = a single linear head.
    strides, padding, dilation: as :func:`dynamic_conv`.
    use_bias: generate per-sample biases.
    dynamic_init_scale: variance of the conditioned part of the initial kernel, in units of 1/fan_in.
    dtype: computation dtype; param_dtype: parameter dtype.
  """
  features: int
  kernel_size: int | Sequence[int] = 1
  hidden: Sequence[int] = (256,)
  strides: int | Sequence[int] = 1
  padding: Any = "SAME"
  dilation: int | Sequence[int] = 1
  use_bias: bool = True
  dynamic_init_scale: float = 1.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def kernel_shape(self, in_features: int) -> tuple[int, ...]:
    ks = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
    return ks + (in_features, self.features)

  @nn.compact
  def __call__(self, x: jnp.ndarray, cond: jnp.ndarray) -> jnp.ndarray:
    """x: ``(B, *spatial, Cin)``; cond: ``(B, D)``. Returns ``(B, *out_spatial, features)``."""
    check_rank("DynamicConv conditioning", cond, 2, "B, D")
    kshape = self.kernel_shape(x.shape[-1])
    if x.ndim != len(kshape):
      raise ShapeError(f"DynamicConv: kernel_size {kshape[:-2]} needs a rank-{len(kshape)} input "
                       f"(B, *spatial, Cin), got {tuple(x.shape)}")
    if cond.shape[0] != x.shape[0]:
      raise ShapeError(f"DynamicConv: conditioning batch {cond.shape[0]} != input batch {x.shape[0]}")
    h = cond.astype(self.dtype)
    for i, width in enumerate(self.hidden):
      h = nn.relu(nn.Dense(width, kernel_init=nn.initializers.he_normal(), dtype=self.dtype,
                           param_dtype=self.param_dtype, name=f"hyper_{i}")(h))
    fan_in = int(np.prod(kshape[:-1]))
    kernel_head = nn.Dense(
        int(np.prod(kshape)), dtype=self.dtype, param_dtype=self.param_dtype, name="kernel_head",
        kernel_init=nn.initializers.variance_scaling(self.dynamic_init_scale / fan_in, "fan_in",
                                                     "truncated_normal"),
        bias_init=_static_kernel_init(fan_in))
    kernels = kernel_head(h).reshape((x.shape[0],) + kshape)
    biases = None
    if self.use_bias:
      biases = nn.Dense(self.features, kernel_init=nn.initializers.zeros, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="bias_head")(h)
    return dynamic_conv(x.astype(self.dtype), kernels, biases, self.strides, self.padding, self.dilation)
