"""InceptionV3 as pytorch-fid defines it for FID: pool3 features (2048-d) of the 2015-12-05 network.

This is ``pytorch_fid.inception.InceptionV3(output_blocks=[3])`` with ``use_fid_inception=True``:
torchvision's Inception3 layout (``BasicConv2d`` = conv without bias, BatchNorm eps 0.001, ReLU)
with pytorch-fid's FID-specific blocks, which reproduce TensorFlow's graph of the weights
``pt_inception-2015-12-05-6726825d.pth`` (convert with ``third_party.convert --kind=inception_fid``):

- ``FIDInceptionA`` (Mixed_5b/c/d), ``FIDInceptionC`` (Mixed_6b..e) and ``FIDInceptionE_1``
  (Mixed_7b): the pool branch averages over a 3x3 window *without* counting the zero padding
  (``count_include_pad=False``, TensorFlow's behaviour);
- ``FIDInceptionE_2`` (Mixed_7c): the pool branch is a 3x3 **max** pool (stride 1, pad 1), a quirk
  of the TF graph;
- Mixed_6a / Mixed_7a (InceptionB / D) are torchvision's.

Input handling, as pytorch-fid's ``forward``: images ``(N, H, W, 3)`` **RGB in [0, 1]** (float32);
``resize_input`` resizes them to 299x299 with PyTorch's ``F.interpolate(mode="bilinear",
align_corners=False)`` (no antialiasing: half-pixel centres, edge clamp), then ``normalize_input``
maps them to ``2 x - 1``. The network is fully convolutional: without resizing it accepts any size
of at least 75x75. Output: the global average pool of Mixed_7c, ``(N, 2048)``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax.nn.conv_blocks import BatchNorm

FID_SIZE = 299
FEATURES = 2048
MIN_SIZE = 75
BN_EPSILON = 1e-3

Pad = int | tuple[int, int]


def _pair(v: Pad) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


@functools.lru_cache(maxsize=32)
def torch_bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """``(out, in)`` float32 matrix of ``F.interpolate(bilinear, align_corners=False)`` along one axis.

  Source coordinate ``(dst + 0.5) * in / out - 0.5``, clamped below at 0; the upper neighbour is
  clamped to the last pixel. No antialiasing, also when shrinking (PyTorch's default).
  """
  # PyTorch computes the scale and the weights in float32 (its opmath type for float32 inputs) and
  # the source coordinate with a fused multiply-add (one rounding). The float64 product of two
  # float32 values is exact, so rounding it once to float32 reproduces the FMA and the weights
  # come out bit-identical (near 256 a float32 ulp is 3e-5, so this matters).
  scale = np.float64(np.float32(in_size) / np.float32(out_size))
  src = (scale * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
  src = np.maximum(src, np.float32(0.0))
  i0 = np.minimum(src.astype(np.int64), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  frac = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
  mat = np.zeros((out_size, in_size), np.float64)
  rows = np.arange(out_size)
  np.add.at(mat, (rows, i0), (np.float32(1.0) - frac).astype(np.float64))
  np.add.at(mat, (rows, i1), frac.astype(np.float64))
  return mat.astype(np.float32)


def resize_bilinear(images: jax.Array, height: int, width: int) -> jax.Array:
  """``(N, H, W, C)`` -> ``(N, height, width, C)`` exactly as PyTorch's bilinear interpolate."""
  rh = jnp.asarray(torch_bilinear_matrix(images.shape[1], height))
  rw = jnp.asarray(torch_bilinear_matrix(images.shape[2], width))
  x = jnp.einsum("oh,nhwc->nowc", rh, images, precision=jax.lax.Precision.HIGHEST)
  return jnp.einsum("pw,nowc->nopc", rw, x, precision=jax.lax.Precision.HIGHEST)


class BasicConv(nn.Module):
  """torchvision's ``BasicConv2d``: conv (no bias) -> BatchNorm(eps 0.001) -> ReLU. Inference only."""
  features: int
  kernel: Pad
  strides: Pad = 1
  padding: Pad = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    ph, pw = _pair(self.padding)
    x = nn.Conv(self.features, _pair(self.kernel), strides=_pair(self.strides),
                padding=((ph, ph), (pw, pw)), use_bias=False, dtype=self.dtype, name="conv")(x)
    return nn.relu(BatchNorm(epsilon=BN_EPSILON, dtype=self.dtype, name="bn")(x, train=False))


def _avg_pool_3x3(x):
  # TensorFlow's average pool: the zero padding is not counted in the mean.
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
  """``FIDInceptionA``: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool(no pad count)-1x1."""
  pool_features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv, dtype=self.dtype)
    b1 = c(64, 1, name="branch1x1")(x)
    b5 = c(64, 5, padding=2, name="branch5x5_2")(c(48, 1, name="branch5x5_1")(x))
    b3 = c(64, 1, name="branch3x3dbl_1")(x)
    b3 = c(96, 3, padding=1, name="branch3x3dbl_3")(c(96, 3, padding=1, name="branch3x3dbl_2")(b3))
    bp = c(self.pool_features, 1, name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """torchvision's ``InceptionB`` (Mixed_6a): 3x3/2 | 1x1-3x3-3x3/2 | maxpool 3x3/2."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv, dtype=self.dtype)
    b3 = c(384, 3, strides=2, name="branch3x3")(x)
    bd = c(64, 1, name="branch3x3dbl_1")(x)
    bd = c(96, 3, padding=1, name="branch3x3dbl_2")(bd)
    bd = c(96, 3, strides=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
  """``FIDInceptionC`` (Mixed_6b..e): factorised 7x7 branches; avgpool without pad count."""
  channels_7x7: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv, dtype=self.dtype)
    c7 = self.channels_7x7
    b1 = c(192, 1, name="branch1x1")(x)
    b7 = c(c7, 1, name="branch7x7_1")(x)
    b7 = c(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = c(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = c(c7, 1, name="branch7x7dbl_1")(x)
    bd = c(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = c(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = c(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = c(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = c(192, 1, name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """torchvision's ``InceptionD`` (Mixed_7a): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool 3x3/2."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv, dtype=self.dtype)
    b3 = c(320, 3, strides=2, name="branch3x3_2")(c(192, 1, name="branch3x3_1")(x))
    b7 = c(192, 1, name="branch7x7x3_1")(x)
    b7 = c(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = c(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = c(192, 3, strides=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
  """``FIDInceptionE_1`` (``pool="avg"``, Mixed_7b) / ``FIDInceptionE_2`` (``pool="max"``, Mixed_7c)."""
  pool: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = functools.partial(BasicConv, dtype=self.dtype)
    b1 = c(320, 1, name="branch1x1")(x)
    b3 = c(384, 1, name="branch3x3_1")(x)
    b3 = jnp.concatenate([c(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                          c(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    bd = c(448, 1, name="branch3x3dbl_1")(x)
    bd = c(384, 3, padding=1, name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([c(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                          c(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
    if self.pool == "avg":
      pooled = _avg_pool_3x3(x)
    else:  # the FID graph's max pool in the last block (stride 1, pad 1; PyTorch pads with -inf)
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    bp = c(192, 1, name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3FID(nn.Module):
  """pytorch-fid's InceptionV3 up to pool3; see the module docstring.

  Attributes:
    resize_input: resize to 299x299 (PyTorch bilinear, align_corners=False) first.
    normalize_input: map [0, 1] to [-1, 1] (``2x - 1``).
    dtype: computation dtype (BatchNorm and the output stay float32).

  Submodule names are torchvision's (``Conv2d_1a_3x3``, ``Mixed_5b.branch1x1``, ...), so the
  converter maps PyTorch keys one to one.
  """
  resize_input: bool = True
  normalize_input: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    """``(N, H, W, 3)`` RGB in [0, 1] -> ``(N, 2048)`` pool3 features."""
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"InceptionV3FID: images must be (N, H, W, 3) RGB in [0, 1], got "
                       f"{tuple(images.shape)}")
    x = jnp.asarray(images, jnp.float32)
    if self.resize_input:
      x = resize_bilinear(x, FID_SIZE, FID_SIZE)
    elif min(x.shape[1:3]) < MIN_SIZE:
      raise ValueError(f"InceptionV3FID: without resizing, images must be at least {MIN_SIZE}x{MIN_SIZE}, "
                       f"got {x.shape[2]}x{x.shape[1]}")
    if self.normalize_input:
      x = 2.0 * x - 1.0
    x = x.astype(self.dtype)
    c = functools.partial(BasicConv, dtype=self.dtype)
    x = c(32, 3, strides=2, name="Conv2d_1a_3x3")(x)
    x = c(32, 3, name="Conv2d_2a_3x3")(x)
    x = c(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_s2(x)
    x = c(80, 1, name="Conv2d_3b_1x1")(x)
    x = c(192, 3, name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_s2(x)
    x = InceptionA(32, dtype=self.dtype, name="Mixed_5b")(x)
    x = InceptionA(64, dtype=self.dtype, name="Mixed_5c")(x)
    x = InceptionA(64, dtype=self.dtype, name="Mixed_5d")(x)
    x = InceptionB(dtype=self.dtype, name="Mixed_6a")(x)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(c7, dtype=self.dtype, name=name)(x)
    x = InceptionD(dtype=self.dtype, name="Mixed_7a")(x)
    x = InceptionE("avg", dtype=self.dtype, name="Mixed_7b")(x)
    x = InceptionE("max", dtype=self.dtype, name="Mixed_7c")(x)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def build(**overrides) -> InceptionV3FID:
  """The converter's factory (pytorch-fid's defaults: resize and normalise)."""
  return InceptionV3FID(**overrides)


def layer_names() -> Sequence[str]:
  """Top-level layers in torchvision order (for documentation and tests)."""
  return ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
          "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
          "Mixed_7a", "Mixed_7b", "Mixed_7c")
