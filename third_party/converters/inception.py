"""pytorch-fid's InceptionV3 weights -> ``talkjax.models.inception.InceptionV3FID`` (kind ``inception_fid``).

Input: ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's release ``fid_weights``), a bare
state dict of torchvision's ``Inception3`` layout with 1008 classes and no auxiliary classifier:
``Conv2d_1a_3x3.conv.weight``, ``Conv2d_1a_3x3.bn.{weight,bias,running_mean,running_var}``, ...,
``Mixed_7c.branch_pool.bn.running_var``, ``fc.{weight,bias}``. Every key is mapped one to one (the
Flax module uses torchvision's names); the classifier ``fc`` (1008 x 2048) is checked and skipped
(FID uses pool3). The FID-specific pooling quirks live in the module, not in the weights.

torchvision's own ImageNet Inception (``inception_v3_google-*.pth``: 1000 classes, ``AuxLogits.*``)
has the same convolution shapes but is a different network: FID computed with it is not comparable
to published numbers, so it is refused.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np

from talkjax.errors import CheckpointError
from third_party.convert import Converter
from third_party.converters.wav2lip import BATCHNORM, CONV, convert_by_layer_map

FID_CLASSES = 1008


def layer_map(layer: tuple[str, ...]) -> tuple[str, str]:
  """("Mixed_5b", "branch1x1", "conv") -> ("Mixed_5b.branch1x1.conv", conv)."""
  kind = {"conv": CONV, "bn": BATCHNORM}.get(layer[-1])
  if kind is None:
    raise KeyError(layer)
  return ".".join(layer), kind


def _build(**overrides):
  from talkjax.models.inception import build  # pylint: disable=g-import-not-at-top
  return build(**overrides)


def _example_inputs(batch_size: int = 1, **overrides) -> tuple:
  del overrides  # 80x80 suits every variant (>= 75 without resizing)
  rng = np.random.default_rng(batch_size)
  return (rng.uniform(0.0, 1.0, (batch_size, 80, 80, 3)).astype(np.float32),)


@functools.lru_cache(maxsize=None)
def _shapes():
  import jax  # pylint: disable=g-import-not-at-top
  return jax.eval_shape(lambda: _build().init(jax.random.key(0), *_example_inputs(1)))


def convert(sd: Mapping[str, np.ndarray], source: str = "<state_dict>") -> dict:
  """Maps pytorch-fid's Inception state dict onto ``InceptionV3FID`` variables (strict)."""
  if any(k.startswith("AuxLogits.") for k in sd) or (
      "fc.weight" in sd and np.shape(sd["fc.weight"])[0] != FID_CLASSES):
    raise CheckpointError(
        f"{source}: this is torchvision's ImageNet Inception (auxiliary classifier / "
        f"{np.shape(sd.get('fc.weight', np.zeros((0,))))[0]} classes), not the FID Inception of "
        "pytorch-fid (pt_inception-2015-12-05-6726825d.pth, 1008 classes); FID computed with it would "
        "not be comparable to published numbers")
  sd = dict(sd)
  for key, shape in (("fc.weight", (FID_CLASSES, 2048)), ("fc.bias", (FID_CLASSES,))):
    if key in sd:
      if tuple(np.shape(sd[key])) != shape:
        raise CheckpointError(f"{source}: {key} has shape {tuple(np.shape(sd[key]))}, expected {shape}")
      del sd[key]   # the classifier is not part of the pool3 feature extractor
  return convert_by_layer_map(sd, source, _shapes(), layer_map)


CONVERTERS: dict[str, Converter] = {
    "inception_fid": Converter(
        build=_build,
        convert=convert,
        example_inputs=_example_inputs,
        inputs_doc=("__call__(images (N, H, W, 3) RGB float32 in [0, 1]): resized to 299x299 (PyTorch "
                    "bilinear, align_corners=False) and mapped to [-1, 1] inside; returns (N, 2048) "
                    "pool3 features (pytorch-fid's InceptionV3, block 3).")),
}
