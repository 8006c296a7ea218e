"""torchvision VGG19 -> ``talkjax.models.vgg19.VGG19Features`` (kind ``vgg19``).

Accepts torchvision's ``vgg19().state_dict()`` (``features.{i}.weight/bias`` and
``classifier.{0,3,6}.weight/bias``) or a bare ``vgg19().features.state_dict()`` (``{i}.weight``).
The convs after relu5_1 (``features.30/32/34``) and the classifier are not part of the module: exactly
those keys are skipped; any other key that is not used is an error. ``vgg19_bn`` is a different
layout and is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from talkjax.errors import CheckpointError
from talkjax.models import vgg19 as vgg19_model
from third_party.convert import Converter
from third_party.converters.torch_io import StateDictReader, conv_kernel

# Present in a full torchvision checkpoint, deliberately unused (beyond relu5_1, and the classifier).
UNUSED_KEYS: tuple[str, ...] = tuple(
    [f"features.{i}.{p}" for i in (30, 32, 34) for p in ("weight", "bias")]
    + [f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")])

_BARE_KEY = re.compile(r"^\d+\.(weight|bias)$")


def _normalise_keys(sd: Mapping[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
  """Adds the ``features.`` prefix to a bare ``features`` state dict; refuses vgg19_bn."""
  if any(k.endswith("running_mean") for k in sd):
    raise CheckpointError(f"{source}: this looks like torchvision's vgg19_bn (BatchNorm running stats "
                          "found); only the plain vgg19 layout is supported")
  if not any(k.startswith("features.") for k in sd) and sd and all(_BARE_KEY.match(k) for k in sd):
    return {"features." + k: v for k, v in sd.items()}
  return dict(sd)


def convert(sd: Mapping[str, np.ndarray], source: str = "<state_dict>") -> dict:
  """Maps a torchvision vgg19 state dict onto ``VGG19Features`` params (strict)."""
  sd = _normalise_keys(sd, source)
  r = StateDictReader(sd, source)
  params = {}
  in_ch = 3
  for name, out_ch in vgg19_model.conv_channels().items():
    idx = vgg19_model.TORCHVISION_CONV_INDEX[name]
    w = r.take(f"features.{idx}.weight", (out_ch, in_ch, 3, 3))
    b = r.take(f"features.{idx}.bias", (out_ch,))
    params[name] = {"kernel": np.ascontiguousarray(conv_kernel(w)), "bias": b}
    in_ch = out_ch
  for key in UNUSED_KEYS:
    r.skip(key)
  r.finish()
  return {"params": params}


def example_inputs(batch_size: int = 1) -> tuple:
  rng = np.random.default_rng(0)
  return (rng.uniform(0.0, 1.0, (batch_size, 32, 32, 3)).astype(np.float32),)


CONVERTERS = {
    "vgg19": Converter(
        build=vgg19_model.build,
        convert=convert,
        example_inputs=example_inputs,
        inputs_doc=("images (N, H, W, 3) float32 RGB, NHWC, H and W >= 16; range set by the module's "
                    "input_range ('0_1' default for the converter's build, '-1_1' or 'raw'); ImageNet "
                    "mean/std normalisation happens inside the module. Returns {relu name: NHWC map}."),
    ),
}
