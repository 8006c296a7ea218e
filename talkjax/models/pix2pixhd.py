"""pix2pixHD's multi-scale PatchGAN discriminator, returning every layer for feature matching.

Each scale is an N-layer PatchGAN: 4x4 convs with padding 2 (pix2pixHD's ``ceil((4-1)/2)``), widths
``ndf * 2**j`` capped at 512, stride 2 for the first ``n_layers`` convs and 1 for the last two,
LeakyReLU(0.2) after all but the last conv, a parameter-free instance norm (eps 1e-5, biased
variance) after every conv except the first and the last. Scale ``i`` sees the input average-pooled
``i`` times (3x3, stride 2, padding 1, padding excluded from the average).

Output: a list over scales (full resolution first) of lists over layers (``n_layers + 2`` NHWC maps;
the last one, 1 channel, is the patch score). This is pix2pixHD's ``getIntermFeat=True`` form, the
one IP_LAP trains with (``num_d=2``, ``n_layers=3``, ``ndf=64``, instance norm, no sigmoid).

Parameter names copy pix2pixHD's ``scale{k}_layer{j}``, including its quirk that the *full-resolution*
output comes from the weights named ``scale{num_d-1}`` and the coarsest from ``scale0``, so a
converted checkpoint keeps its names. Input: NHWC float in the range and channel order the
discriminator was trained on (IP_LAP's: cv2 frames, i.e. BGR, in [0, 1], 3 channels).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from talkjax.errors import ConfigError

NORMS = ("instance", "none")
KERNEL = 4
PADDING = 2  # int(ceil((KERNEL - 1) / 2)) as in pix2pixHD
MAX_FEATURES = 512


def layer_features(ndf: int, n_layers: int) -> list[int]:
  """Output channels of layers ``0 .. n_layers + 1`` of one scale."""
  return [min(ndf * 2 ** j, MAX_FEATURES) for j in range(n_layers + 1)] + [1]


def instance_norm(x: jnp.ndarray, eps: float = 1e-5) -> jnp.ndarray:
  """Parameter-free instance norm over H, W (biased variance), like ``nn.InstanceNorm2d(affine=False)``."""
  xf = x.astype(jnp.float32)
  mean = jnp.mean(xf, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(xf - mean), axis=(1, 2), keepdims=True)
  return ((xf - mean) * jnp.reciprocal(jnp.sqrt(var + eps))).astype(x.dtype)


def downsample(x: jnp.ndarray) -> jnp.ndarray:
  """pix2pixHD's between-scale pooling: 3x3 average, stride 2, padding 1, ``count_include_pad=False``."""
  return nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), count_include_pad=False)


class MultiscaleDiscriminator(nn.Module):
  """pix2pixHD ``MultiscaleDiscriminator(getIntermFeat=True)``.

  Attributes:
    in_channels: channels of the input (3 for images; more when conditioning by concatenation).
    ndf: width of the first layer.
    n_layers: number of stride-2 convs (pix2pixHD's ``n_layers_D``).
    num_d: number of scales.
    norm: ``"instance"`` (pix2pixHD, IP_LAP) or ``"none"``.
    dtype: computation dtype (parameters stay float32; instance-norm statistics in float32).
  """
  in_channels: int = 3
  ndf: int = 64
  n_layers: int = 3
  num_d: int = 2
  norm: str = "instance"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> list[list[jnp.ndarray]]:
    """Runs every scale.

    Args:
      x: ``(N, H, W, in_channels)`` float.

    Returns:
      ``outputs[i][j]``: scale ``i`` (0 = full resolution), layer ``j`` (``n_layers + 2`` of them;
      ``outputs[i][-1]`` is the ``(N, h, w, 1)`` patch score map).
    """
    if self.norm not in NORMS:
      raise ConfigError(f"MultiscaleDiscriminator.norm must be one of {NORMS}, got {self.norm!r}")
    if self.num_d < 1 or self.n_layers < 1 or self.ndf < 1:
      raise ConfigError(f"MultiscaleDiscriminator: num_d, n_layers and ndf must be >= 1, got "
                        f"num_d={self.num_d}, n_layers={self.n_layers}, ndf={self.ndf}")
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ValueError(f"MultiscaleDiscriminator: input must be (N, H, W, {self.in_channels}), "
                       f"got shape {tuple(x.shape)}")
    widths = layer_features(self.ndf, self.n_layers)
    x = jnp.asarray(x, self.dtype)
    outputs = []
    for i in range(self.num_d):
      k = self.num_d - 1 - i  # pix2pixHD's naming: full resolution uses the last scale's weights
      h = x
      feats = []
      for j, width in enumerate(widths):
        stride = 2 if j < self.n_layers else 1
        h = nn.Conv(width, (KERNEL, KERNEL), strides=(stride, stride),
                    padding=((PADDING, PADDING), (PADDING, PADDING)), dtype=self.dtype,
                    name=f"scale{k}_layer{j}")(h)
        last = j == len(widths) - 1
        if 0 < j and not last and self.norm == "instance":
          h = instance_norm(h)
        if not last:
          h = nn.leaky_relu(h, 0.2)
        feats.append(h)
      outputs.append(feats)
      if i != self.num_d - 1:
        x = downsample(x)
    return outputs


def build(**overrides) -> MultiscaleDiscriminator:
  """The converter's factory: IP_LAP's configuration unless overridden."""
  kwargs: dict[str, Any] = {"in_channels": 3, "ndf": 64, "n_layers": 3, "num_d": 2, "norm": "instance"}
  kwargs.update(overrides)
  return MultiscaleDiscriminator(**kwargs)
