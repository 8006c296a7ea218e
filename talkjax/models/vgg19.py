"""VGG19 feature extractor (relu1_1 .. relu5_1) for perceptual and style losses.

The layout is torchvision's ``vgg19().features`` (configuration "E") up to ``relu5_1`` (index 29):
thirteen 3x3 convolutions with ReLU and four 2x2 max-pools. Convert torchvision weights with
``python -m third_party.convert --kind=vgg19``; the layers after relu5_1 and the classifier are not
part of this module.

Input normalisation is part of the module, because getting it wrong silently degrades every loss
built on it. ``input_range`` says what the caller passes:

* ``"0_1"``:  RGB in [0, 1]; the module applies ImageNet mean/std (what torchvision expects).
* ``"-1_1"``: RGB in [-1, 1]; the module maps to [0, 1] first, then applies mean/std. IP_LAP's
  perceptual loss always does this mapping although its renderer works on [0, 1] images (cv2
  frames, so BGR too); to reproduce IP_LAP's loss values exactly, pass its [0, 1] BGR images
  unchanged with ``input_range="-1_1"``.
* ``"raw"``:  no normalisation at all (pix2pixHD's own ``VGGLoss`` feeds its [-1, 1] images so).

Images are NHWC float, channel order RGB (torchvision's weights were trained on RGB).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from talkjax.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_RANGES = ("0_1", "-1_1", "raw")

# (name, output channels) of each conv, in order; "pool" marks a 2x2/2 max-pool. Names follow the
# relu they feed: conv3_2 -> relu3_2.
_PLAN: tuple[tuple[str, int] | str, ...] = (
    ("conv1_1", 64), ("conv1_2", 64), "pool",
    ("conv2_1", 128), ("conv2_2", 128), "pool",
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), "pool",
    ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512), ("conv4_4", 512), "pool",
    ("conv5_1", 512),
)

CONV_NAMES: tuple[str, ...] = tuple(p[0] for p in _PLAN if p != "pool")
RELU_NAMES: tuple[str, ...] = tuple("relu" + n[len("conv"):] for n in CONV_NAMES)
# The five layers perceptual losses use (pix2pixHD, IP_LAP, SPADE, ...).
DEFAULT_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# Index of each conv inside torchvision's ``vgg19().features`` nn.Sequential.
TORCHVISION_CONV_INDEX: dict[str, int] = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7,
    "conv3_1": 10, "conv3_2": 12, "conv3_3": 14, "conv3_4": 16,
    "conv4_1": 19, "conv4_2": 21, "conv4_3": 23, "conv4_4": 25, "conv5_1": 28,
}


def _pools_before() -> dict[str, int]:
  counts, pools = {}, 0
  for step in _PLAN:
    if step == "pool":
      pools += 1
    else:
      counts[step[0]] = pools
  return counts


_POOLS_BEFORE = _pools_before()


def conv_channels() -> dict[str, int]:
  """Output channels of each conv of the module, by name."""
  return {p[0]: p[1] for p in _PLAN if p != "pool"}


class VGG19Features(nn.Module):
  """VGG19 ``features`` up to relu5_1; returns ``{layer_name: NHWC feature map}``.

  Attributes:
    input_range: ``"0_1"``, ``"-1_1"`` or ``"raw"``; see the module docstring. No default on
      purpose: the range is the most common silent bug in perceptual losses.
    layers: which relu outputs to return (any of ``RELU_NAMES``); the network stops after the
      deepest one requested.
    dtype: computation dtype (parameters stay float32).
  """
  input_range: str
  layers: Sequence[str] = DEFAULT_LAYERS
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """Computes the requested relu features.

    Args:
      images: ``(N, H, W, 3)`` RGB float in the range given by ``input_range``. H and W must be at
        least 16 for relu5_1 (four 2x2 pools).

    Returns:
      ``{name: (N, h, w, C)}`` for each name in ``layers``.
    """
    if self.input_range not in INPUT_RANGES:
      raise ConfigError(f"VGG19Features.input_range must be one of {INPUT_RANGES}, got {self.input_range!r}")
    wanted = tuple(self.layers)
    if not wanted:
      raise ConfigError("VGG19Features.layers is empty; ask for at least one of " + ", ".join(RELU_NAMES))
    unknown = [n for n in wanted if n not in RELU_NAMES]
    if unknown:
      raise ConfigError(f"VGG19Features.layers: unknown layer(s) {unknown}; valid: {', '.join(RELU_NAMES)}")
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"VGG19Features: images must be (N, H, W, 3) RGB, got shape {tuple(images.shape)}")
    deepest = max(RELU_NAMES.index(n) for n in wanted)
    pools_needed = _POOLS_BEFORE[CONV_NAMES[deepest]]
    if min(images.shape[1:3]) < 2 ** pools_needed:
      raise ValueError(f"VGG19Features: images of size {tuple(images.shape[1:3])} are too small for "
                       f"{RELU_NAMES[deepest]} ({pools_needed} 2x2 pools need at least "
                       f"{2 ** pools_needed} px)")

    x = jnp.asarray(images, self.dtype)
    if self.input_range == "-1_1":
      x = (x + 1.0) * 0.5
    if self.input_range != "raw":
      x = (x - jnp.asarray(IMAGENET_MEAN, self.dtype)) / jnp.asarray(IMAGENET_STD, self.dtype)

    out = {}
    n_done = 0
    for step in _PLAN:
      if step == "pool":
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")  # floor mode, like torch
        continue
      name, features = step
      x = nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=name)(x)
      x = nn.relu(x)
      relu = "relu" + name[len("conv"):]
      if relu in wanted:
        out[relu] = x
      n_done += 1
      if n_done > deepest:
        break
    return {n: out[n] for n in wanted}


def build(**overrides) -> VGG19Features:
  """The converter's factory: all five perceptual layers, ``input_range="0_1"`` unless overridden."""
  kwargs: dict[str, Any] = {"input_range": "0_1", "layers": DEFAULT_LAYERS}
  kwargs.update(overrides)
  return VGG19Features(**kwargs)
