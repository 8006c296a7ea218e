"""LPIPS (Zhang et al. 2018, ``lpips`` 0.1.4, version 0.1): VGG16 / AlexNet features + linear heads.

``LPIPS(net)(in0, in1)`` computes, for images ``(N, H, W, 3)`` **RGB in [-1, 1]** (lpips' own
convention; ``lpips.im2tensor`` maps uint8 with ``x / 127.5 - 1``):

1. the scaling layer ``(x - shift) / scale``, shift ``(-0.030, -0.088, -0.188)``, scale
   ``(0.458, 0.448, 0.450)`` (ImageNet statistics re-expressed for [-1, 1] inputs);
2. five feature maps of the backbone, as lpips slices torchvision's ``features``:
   - ``vgg``: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (64, 128, 256, 512, 512 channels);
   - ``alex``: relu1..relu5 (64, 192, 384, 256, 256 channels);
3. each map unit-normalised over channels, ``f / (sqrt(sum f^2) + 1e-10)``;
4. squared difference of the two images' maps, a learned 1x1 conv to one channel (no bias, the
   "lin" heads, non-negative weights), mean over the spatial positions;
5. sum over the five layers -> ``(N,)`` distances.

Backbones keep torchvision's conv layout (convert torchvision's ``vgg16``/``alexnet`` ImageNet
state dicts); the heads come from lpips' ``weights/v0.1/{vgg,alex}.pth``
(``third_party.convert --kind=lpips_vgg|lpips_alex``). Max pools are floor-mode (torchvision).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

NETS = ("vgg", "alex")
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10

# (flax name, torchvision features index, out channels, kernel, stride, padding); "pool" marks a
# max pool (VGG 2x2/2, AlexNet 3x3/2); "tap" marks the end of one lpips slice (a returned map).
VGG16_PLAN: tuple = (
    ("conv1_1", 0, 64), ("conv1_2", 2, 64), "tap", "pool",
    ("conv2_1", 5, 128), ("conv2_2", 7, 128), "tap", "pool",
    ("conv3_1", 10, 256), ("conv3_2", 12, 256), ("conv3_3", 14, 256), "tap", "pool",
    ("conv4_1", 17, 512), ("conv4_2", 19, 512), ("conv4_3", 21, 512), "tap", "pool",
    ("conv5_1", 24, 512), ("conv5_2", 26, 512), ("conv5_3", 28, 512), "tap",
)
ALEXNET_PLAN: tuple = (
    ("conv1", 0, 64, 11, 4, 2), "tap", "pool",
    ("conv2", 3, 192, 5, 1, 2), "tap", "pool",
    ("conv3", 6, 384, 3, 1, 1), "tap",
    ("conv4", 8, 256, 3, 1, 1), "tap",
    ("conv5", 10, 256, 3, 1, 1), "tap",
)
CHANNELS = {"vgg": (64, 128, 256, 512, 512), "alex": (64, 192, 384, 256, 256)}
# The smallest input each backbone accepts (every layer keeps at least one pixel).
MIN_SIZE = {"vgg": 16, "alex": 31}


def plan(net: str) -> tuple:
  if net not in NETS:
    raise ValueError(f"LPIPS net must be one of {NETS}, got {net!r}")
  return VGG16_PLAN if net == "vgg" else ALEXNET_PLAN


def conv_specs(net: str) -> list[tuple[str, int, int, int, int, int]]:
  """``(name, torchvision index, out channels, kernel, stride, padding)`` of each conv, in order."""
  out = []
  for step in plan(net):
    if isinstance(step, tuple):
      name, idx, ch, *rest = step
      k, s, p = rest if rest else (3, 1, 1)
      out.append((name, idx, ch, k, s, p))
  return out


class Backbone(nn.Module):
  """torchvision VGG16 / AlexNet ``features`` returning lpips' five ReLU maps (NHWC)."""
  net: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> list[jax.Array]:
    taps = []
    specs = {s[0]: s for s in conv_specs(self.net)}
    for step in plan(self.net):
      if step == "tap":
        taps.append(x)
      elif step == "pool":
        window = 2 if self.net == "vgg" else 3
        x = nn.max_pool(x, (window, window), strides=(2, 2), padding="VALID")
      else:
        name, _, ch, k, s, p = specs[step[0]]
        x = nn.Conv(ch, (k, k), strides=(s, s), padding=((p, p), (p, p)), dtype=self.dtype, name=name)(x)
        x = nn.relu(x)
    return taps


def _unit_normalise(f: jax.Array) -> jax.Array:
  f = f.astype(jnp.float32)
  return f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + NORM_EPS)


class LPIPS(nn.Module):
  """The LPIPS v0.1 distance; see the module docstring.

  Attributes:
    net: ``"vgg"`` or ``"alex"`` (lpips' default and the most common in papers).
    dtype: backbone computation dtype (normalisation and heads run in float32).
  """
  net: str = "alex"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, in0: jax.Array, in1: jax.Array) -> jax.Array:
    """Two ``(N, H, W, 3)`` RGB batches in [-1, 1] -> ``(N,)`` LPIPS distances."""
    plan(self.net)
    if in0.shape != in1.shape or in0.ndim != 4 or in0.shape[-1] != 3:
      raise ValueError(f"LPIPS: expected two (N, H, W, 3) RGB batches of equal shape, got "
                       f"{tuple(in0.shape)} and {tuple(in1.shape)}")
    if min(in0.shape[1:3]) < MIN_SIZE[self.net]:
      raise ValueError(f"LPIPS({self.net}): images must be at least {MIN_SIZE[self.net]}x"
                       f"{MIN_SIZE[self.net]}, got {in0.shape[2]}x{in0.shape[1]}")
    n = in0.shape[0]
    x = jnp.concatenate([in0, in1], axis=0).astype(jnp.float32)
    x = (x - jnp.asarray(SHIFT, jnp.float32)) / jnp.asarray(SCALE, jnp.float32)
    feats = Backbone(self.net, dtype=self.dtype, name="backbone")(x.astype(self.dtype))
    total = jnp.zeros((n,), jnp.float32)
    for k, f in enumerate(feats):
      f = _unit_normalise(f)
      diff = jnp.square(f[:n] - f[n:])
      w = self.param(f"lin{k}", nn.initializers.uniform(1.0), (f.shape[-1],), jnp.float32)
      total = total + jnp.mean(jnp.einsum("nhwc,c->nhw", diff, w, precision=jax.lax.Precision.HIGHEST),
                               axis=(1, 2))
    return total


def build(**overrides) -> LPIPS:
  return LPIPS(**overrides)
