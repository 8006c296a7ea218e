"""LPIPS: torchvision backbone + lpips' linear heads -> ``talkjax.models.lpips_nets.LPIPS``.

Kinds ``lpips_vgg`` and ``lpips_alex``. LPIPS needs two files:

- the **backbone**: torchvision's ImageNet state dict (``vgg16-397923af.pth`` /
  ``alexnet-owt-7be5be79.pth``: ``features.{i}.weight/bias``; ``classifier.*`` is skipped), a bare
  ``features`` state dict (``{i}.weight``), or a whole ``lpips.LPIPS`` module's state dict
  (``net.slice{s}.{i}.*`` + ``lin{k}.model.1.weight``; saved with ``torch.save(m.state_dict())``);
- the **heads** (``lin0`` .. ``lin4``, ``(1, C, 1, 1)`` 1x1 convs): lpips 0.1.4's
  ``weights/v0.1/{vgg,alex}.pth``. They are taken from the backbone file when it carries them,
  else from the file given to :func:`convert_files` / this module's CLI (``--heads``), else from the
  ``lpips`` package when it is installed (its data files are read; lpips itself is not imported,
  it needs torchvision). Otherwise the conversion fails naming the file it needs.

CLI (``third_party.convert`` works too when the heads can be found without ``--heads``)::

  python -m third_party.converters.lpips --net=alex --backbone=alexnet-owt-7be5be79.pth \\
      --heads=lpips/weights/v0.1/alex.pth --output=weights/lpips_alex
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Mapping

import numpy as np

from talkjax.errors import CheckpointError
from third_party.convert import Converter
from third_party.converters import torch_io

NUM_HEADS = 5
_LPIPS_SLICE_KEY = re.compile(r"^net\.slice\d+\.(\d+)\.(weight|bias)$")
_BARE_KEY = re.compile(r"^\d+\.(weight|bias)$")
# ``lin{k}`` and, in a whole LPIPS module's state dict, its ModuleList alias ``lins.{k}``.
_HEAD_KEY = re.compile(r"^lin(?:s\.)?(\d)\.model\.[01]\.weight$")


def installed_heads_path(net: str) -> str | None:
  """``<site-packages>/lpips/weights/v0.1/<net>.pth`` if the lpips package is installed, else None."""
  try:
    spec = importlib.util.find_spec("lpips")
  except (ImportError, ValueError):
    return None
  if spec is None or not spec.submodule_search_locations:
    return None
  for folder in spec.submodule_search_locations:
    path = os.path.join(folder, "weights", "v0.1", f"{net}.pth")
    if os.path.isfile(path):
      return path
  return None


def split_state_dict(sd: Mapping[str, np.ndarray]) -> tuple[dict, dict, list[str]]:
  """-> (backbone ``{features index: {weight, bias}}``, heads ``{k: array}``, unknown keys)."""
  backbone: dict[int, dict[str, np.ndarray]] = {}
  heads: dict[int, np.ndarray] = {}
  unknown = []
  for key, value in sd.items():
    m = _HEAD_KEY.match(key)
    if m:
      k = int(m.group(1))
      if k in heads and not np.array_equal(heads[k], value):
        unknown.append(f"{key} (differs from the other copy of head {k})")
      heads[k] = value
      continue
    for pattern in (_LPIPS_SLICE_KEY, _BARE_KEY, re.compile(r"^features\.(\d+)\.(weight|bias)$")):
      m = pattern.match(key)
      if m:
        idx = int(m.group(1)) if pattern is not _BARE_KEY else int(key.split(".")[0])
        backbone.setdefault(idx, {})[key.rsplit(".", 1)[1]] = value
        break
    else:
      if key.startswith(("classifier.", "scaling_layer.")):
        continue   # torchvision's classifier; lpips' constant scaling buffers (checked by value below)
      unknown.append(key)
  return backbone, heads, unknown


def convert_parts(net: str, sd: Mapping[str, np.ndarray], source: str,
                  heads_sd: Mapping[str, np.ndarray] | None = None, heads_source: str = "") -> dict:
  """Strict conversion of a backbone state dict (+ heads) into ``LPIPS(net)`` params."""
  from talkjax.models import lpips_nets  # pylint: disable=g-import-not-at-top
  backbone, heads, unknown = split_state_dict(sd)
  if "scaling_layer.shift" in sd and not np.allclose(np.ravel(sd["scaling_layer.shift"]), lpips_nets.SHIFT):
    raise CheckpointError(f"{source}: scaling_layer.shift {np.ravel(sd['scaling_layer.shift'])} is not "
                          f"lpips' {lpips_nets.SHIFT}")
  if not heads:
    if heads_sd is None:
      path = installed_heads_path(net)
      if path is None:
        raise CheckpointError(
            f"{source}: has no LPIPS heads (lin0..lin4) and none were given; LPIPS needs lpips 0.1.4's "
            f"weights/v0.1/{net}.pth: pass it with python -m third_party.converters.lpips --net={net} "
            f"--backbone={source} --heads=<path to {net}.pth> --output=..., or install the lpips "
            "package (pip install --no-deps lpips==0.1.4) so it is found automatically")
      heads_sd, heads_source = torch_io.load_torch_file(path), path
    _, heads, head_unknown = split_state_dict(heads_sd)
    if head_unknown or not heads:
      raise CheckpointError(f"{heads_source}: not an LPIPS heads file (expected lin0..lin4.model.1.weight; "
                            f"found {sorted(heads_sd)[:8]})")
  problems = []
  if unknown:
    problems.append(f"unknown keys: {', '.join(sorted(unknown))}")
  params: dict = {"backbone": {}}
  in_ch = 3
  specs = lpips_nets.conv_specs(net)
  expected_idx = {s[1] for s in specs}
  for name, idx, ch, k, _, _ in specs:
    layer = backbone.get(idx, {})
    w, b = layer.get("weight"), layer.get("bias")
    if w is None or b is None:
      problems.append(f"missing features.{idx}.{'weight' if w is None else 'bias'} ({name})")
      in_ch = ch
      continue
    if tuple(np.shape(w)) != (ch, in_ch, k, k) or tuple(np.shape(b)) != (ch,):
      problems.append(f"features.{idx} ({name}): expected weight {(ch, in_ch, k, k)} and bias {(ch,)}, "
                      f"found {tuple(np.shape(w))} and {tuple(np.shape(b))}")
    else:
      kernel = torch_io.conv_kernel(np.asarray(w, np.float32))
      params["backbone"][name] = {"kernel": np.ascontiguousarray(kernel), "bias": np.asarray(b, np.float32)}
    in_ch = ch
  if beyond := sorted(i for i in backbone if i not in expected_idx):
    problems.append(f"unexpected backbone layers features.{beyond} (is this the other network?)")
  for kk, ch in enumerate(lpips_nets.CHANNELS[net]):
    h = heads.get(kk)
    if h is None or tuple(np.shape(h)) != (1, ch, 1, 1):
      problems.append(f"head lin{kk}: expected weight (1, {ch}, 1, 1), found "
                      f"{None if h is None else tuple(np.shape(h))} ({heads_source or source})")
    else:
      params[f"lin{kk}"] = np.asarray(h, np.float32).reshape(ch)
  if extra := sorted(k for k in heads if k >= NUM_HEADS):
    problems.append(f"unexpected heads lin{extra} (SqueezeNet's LPIPS has 7; only vgg/alex are supported)")
  if problems:
    raise CheckpointError(f"{source}: does not match LPIPS({net}): " + " | ".join(problems))
  leaves = [(f"backbone.{n}.{p}", v) for n, d in params["backbone"].items() for p, v in d.items()]
  leaves += [(f"lin{k}", params[f"lin{k}"]) for k in range(NUM_HEADS)]
  for path_name, arr in leaves:
    if not np.all(np.isfinite(arr)):
      raise CheckpointError(f"{source}: non-finite (NaN or inf) weights in {path_name}")
  return {"params": params}


def convert_files(net: str, backbone_path: str, heads_path: str | None = None) -> dict:
  """Reads the backbone (and optional heads) file safely and converts them."""
  sd = torch_io.load_torch_file(backbone_path)
  heads = torch_io.load_torch_file(heads_path) if heads_path else None
  return convert_parts(net, sd, backbone_path, heads, heads_path or "")


def _build(net: str):
  def build(**overrides):
    from talkjax.models.lpips_nets import LPIPS  # pylint: disable=g-import-not-at-top
    return LPIPS(**{"net": net, **overrides})
  return build


def _example_inputs(batch_size: int = 1, **overrides) -> tuple:
  del overrides  # 64x64 suits both backbones
  rng = np.random.default_rng(batch_size)
  a = rng.uniform(-1.0, 1.0, (batch_size, 64, 64, 3)).astype(np.float32)
  return a, np.clip(a + rng.normal(0, 0.1, a.shape), -1, 1).astype(np.float32)


def _converter(net: str) -> Converter:
  return Converter(
      build=_build(net),
      convert=lambda sd, source: convert_parts(net, sd, source),
      example_inputs=_example_inputs,
      inputs_doc=(f"__call__(in0, in1): two (N, H, W, 3) RGB batches in [-1, 1] (lpips' range; uint8 "
                  f"x / 127.5 - 1), H, W >= {16 if net == 'vgg' else 31}; returns (N,) LPIPS v0.1 "
                  f"distances with the {net} backbone."))


CONVERTERS: dict[str, Converter] = {"lpips_vgg": _converter("vgg"), "lpips_alex": _converter("alex")}


def main(argv: list[str]) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from talkjax import checkpoints  # pylint: disable=g-import-not-at-top
  from third_party import convert  # pylint: disable=g-import-not-at-top
  del argv
  f = flags.FLAGS
  try:
    variables = convert_files(f.net, f.backbone, f.heads)
    convert.check_variables_fit(f"lpips_{f.net}", variables)
    path = checkpoints.save_variables(f.output, variables, overwrite=f.overwrite)
  except CheckpointError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"wrote lpips_{f.net} variables to {path}")


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top,g-multiple-import
  flags.DEFINE_enum("net", None, ["vgg", "alex"], "LPIPS backbone")
  flags.DEFINE_string("backbone", None, "torchvision vgg16/alexnet state dict (or a whole LPIPS state dict)")
  flags.DEFINE_string("heads", None, "lpips weights/v0.1/<net>.pth (default: from the backbone file, "
                      "else the installed lpips package)")
  flags.DEFINE_string("output", None, "output directory (Orbax checkpoint)")
  flags.DEFINE_bool("overwrite", False, "replace an existing output directory")
  flags.mark_flags_as_required(["net", "backbone", "output"])
  app.run(main)
