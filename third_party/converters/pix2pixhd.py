"""pix2pixHD MultiscaleDiscriminator -> ``talkjax.models.pix2pixhd`` (kind ``pix2pixhd_disc``).

Layout (pix2pixHD ``define_D(..., getIntermFeat=True)``, also IP_LAP's ``models/pix2pixHD_disc.py``):
``scale{k}_layer{j}.0.weight`` / ``.0.bias`` for conv ``j`` of scale ``k``; the instance norm has no
parameters. The structure (number of scales, layers, width, input channels) is read from the keys
and shapes: ``infer_config(state_dict)`` returns it, to build the matching module with
``talkjax.models.pix2pixhd.build(**infer_config(sd))``. The norm type cannot be read from the file
(instance norm without affine has no weights); it is the module's ``norm`` attribute.
Batch-norm discriminators (``norm='batch'``) and ``getIntermFeat=False`` checkpoints are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from talkjax.errors import CheckpointError
from talkjax.models import pix2pixhd as p2p
from third_party.convert import Converter
from third_party.converters.torch_io import StateDictReader, conv_kernel

_KEY = re.compile(r"^scale(\d+)_layer(\d+)\.(\d+)\.(\w+)$")


def infer_config(sd: Mapping[str, np.ndarray], source: str = "<state_dict>") -> dict:
  """Reads ``in_channels``, ``ndf``, ``n_layers`` and ``num_d`` from a discriminator state dict."""
  scales, layers = set(), set()
  for k in sd:
    m = _KEY.match(k)
    if m:
      scales.add(int(m.group(1)))
      layers.add(int(m.group(2)))
      if m.group(3) != "0":
        raise CheckpointError(f"{source}: {k}: parameters inside the norm layer (a batch-norm "
                              "discriminator?); only norm='instance' (affine=False) or 'none' is supported")
  if not scales:
    hint = ""
    if any(re.match(r"^layer\d+\.\d+\.", k) for k in sd):
      hint = (" (this looks like a getIntermFeat=False discriminator, 'layer{i}.{n}.weight'; "
              "re-create it with getIntermFeat=True)")
    raise CheckpointError(f"{source}: no pix2pixHD discriminator keys 'scale{{i}}_layer{{j}}.0.weight' "
                          f"found{hint}; first keys: {sorted(sd)[:5]}")
  first = sd.get("scale0_layer0.0.weight")
  if first is None or np.ndim(first) != 4:
    raise CheckpointError(f"{source}: scale0_layer0.0.weight is missing or not a 4-D conv weight")
  num_d = max(scales) + 1
  n_layers = max(layers) - 1
  if n_layers < 1:
    raise CheckpointError(f"{source}: found only layers {sorted(layers)}; a discriminator has "
                          "n_layers + 2 >= 3 layers per scale")
  return {"in_channels": int(np.shape(first)[1]), "ndf": int(np.shape(first)[0]),
          "n_layers": n_layers, "num_d": num_d}


def convert(sd: Mapping[str, np.ndarray], source: str = "<state_dict>") -> dict:
  """Maps a pix2pixHD MultiscaleDiscriminator state dict onto Flax params (strict)."""
  cfg = infer_config(sd, source)
  widths = p2p.layer_features(cfg["ndf"], cfg["n_layers"])
  r = StateDictReader(sd, source)
  params = {}
  for k in range(cfg["num_d"]):
    in_ch = cfg["in_channels"]
    for j, out_ch in enumerate(widths):
      name = f"scale{k}_layer{j}"
      w = r.take(f"{name}.0.weight", (out_ch, in_ch, p2p.KERNEL, p2p.KERNEL))
      b = r.take(f"{name}.0.bias", (out_ch,))
      params[name] = {"kernel": np.ascontiguousarray(conv_kernel(w)), "bias": b}
      in_ch = out_ch
  r.finish()
  return {"params": params}


def example_inputs(batch_size: int = 1, in_channels: int = 3, **unused_overrides) -> tuple:
  rng = np.random.default_rng(0)
  return (rng.uniform(0.0, 1.0, (batch_size, 64, 64, in_channels)).astype(np.float32),)


CONVERTERS = {
    "pix2pixhd_disc": Converter(
        build=p2p.build,
        convert=convert,
        example_inputs=example_inputs,
        infer_overrides=infer_config,
        inputs_doc=("x (N, H, W, in_channels) float32 NHWC, in the range/channel order the discriminator "
                    "was trained on (IP_LAP: BGR in [0, 1], 3 channels). Returns outputs[scale][layer], "
                    "full resolution first; outputs[i][-1] is the (N, h, w, 1) patch score."),
    ),
}
