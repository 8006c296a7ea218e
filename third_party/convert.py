"""Convert published PyTorch checkpoints into talkjax (Flax) variables.

CLI::

  python -m third_party.convert --kind=wav2lip --input=wav2lip.pth --output=weights/wav2lip

writes an Orbax checkpoint readable with ``talkjax.checkpoints.load_variables``. Python API (used by
the parity tests)::

  module = module_for("wav2lip")                       # the Flax Linen module
  variables = convert_state_dict("wav2lip", state_dict)  # {"params": ..., "batch_stats": ...}

Files are read with ``torch.load(path, map_location="cpu", weights_only=True)``: a pickle that needs
code execution is refused. ``module.`` prefixes and ``state_dict``/``model`` wrappers are handled;
unknown, missing or mis-shaped keys raise an error that lists them all.

Each kind lives in a module of ``third_party.converters`` exporting ``CONVERTERS: dict[str, Converter]``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from talkjax.errors import CheckpointError

# kind -> module that implements it. A kind whose module is not written yet reports so clearly.
_KIND_MODULES: dict[str, str] = {
    "wav2lip": "third_party.converters.wav2lip",
    "wav2lip_syncnet": "third_party.converters.wav2lip",
    "wav2lip_disc": "third_party.converters.wav2lip",
    "syncnet_v2": "third_party.converters.syncnet_v2",
    "vgg19": "third_party.converters.vgg19",
    "gma": "third_party.converters.gma",
    "pix2pixhd_disc": "third_party.converters.pix2pixhd",
    "iplap_landmark": "third_party.converters.iplap",
    "iplap_renderer": "third_party.converters.iplap",
    "inception_fid": "third_party.converters.inception",
    "lpips_vgg": "third_party.converters.lpips",
    "lpips_alex": "third_party.converters.lpips",
}


@dataclasses.dataclass(frozen=True)
class Converter:
  """How one kind of PyTorch checkpoint maps onto a talkjax module.

  Attributes:
    build: ``build(**overrides) -> flax.linen.Module``.
    convert: ``convert(state_dict, source) -> variables`` (strict; raises CheckpointError).
    example_inputs: ``example_inputs(batch_size, **overrides) -> tuple`` of NumPy arrays for
      ``__call__`` of ``build(**overrides)``.
    inputs_doc: channel order, value range and layout the module expects (NHWC float32).
    infer_overrides: optional ``infer_overrides(state_dict, source) -> dict`` of ``build`` arguments
      read off a checkpoint whose architecture varies (e.g. a discriminator's number of scales), so
      the CLI builds and checks the module the file actually describes.
  """
  build: Callable[..., Any]
  convert: Callable[[Mapping[str, np.ndarray], str], dict]
  example_inputs: Callable[..., tuple]
  inputs_doc: str
  infer_overrides: Callable[[Mapping[str, np.ndarray], str], dict] | None = None


def _registry_entry(kind: str) -> Converter:
  if kind not in _KIND_MODULES:
    raise CheckpointError(f"unknown converter kind {kind!r}; valid kinds: {', '.join(sorted(_KIND_MODULES))}")
  name = _KIND_MODULES[kind]
  try:
    mod = importlib.import_module(name)
  except ModuleNotFoundError as e:
    if e.name == name:
      raise CheckpointError(f"converter kind {kind!r} is planned but not implemented yet ({name})") from e
    raise
  if kind not in mod.CONVERTERS:
    raise CheckpointError(f"converter kind {kind!r} is planned but not implemented yet in {name}")
  return mod.CONVERTERS[kind]


def available_kinds() -> list[str]:
  """Kinds whose converter is implemented."""
  out = []
  for kind in sorted(_KIND_MODULES):
    try:
      _registry_entry(kind)
    except CheckpointError:
      continue
    out.append(kind)
  return out


def module_for(kind: str, **overrides) -> Any:
  """Returns the Flax Linen module for ``kind`` (``overrides`` go to its constructor)."""
  return _registry_entry(kind).build(**overrides)


def convert_state_dict(kind: str, state_dict: Mapping[str, Any], source: str = "<state_dict>") -> dict:
  """Maps a PyTorch state dict (tensors or arrays; wrappers/prefixes allowed) to Flax variables."""
  from third_party.converters.torch_io import unwrap_state_dict  # pylint: disable=g-import-not-at-top
  sd = unwrap_state_dict(state_dict, source)
  return _registry_entry(kind).convert(sd, source)


def example_inputs(kind: str, batch_size: int = 1) -> tuple:
  """Random inputs of the right shapes for ``module_for(kind)``."""
  return _registry_entry(kind).example_inputs(batch_size)


def check_variables_fit(kind: str, variables: Mapping[str, Any], **overrides) -> None:
  """Raises CheckpointError unless ``variables`` has exactly the structure and shapes of
  ``module_for(kind, **overrides)``."""
  import jax  # pylint: disable=g-import-not-at-top
  entry = _registry_entry(kind)
  module = entry.build(**overrides)
  inputs = entry.example_inputs(1, **overrides)
  expected = jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs))
  exp = {jax.tree_util.keystr(p): tuple(x.shape) for p, x in jax.tree_util.tree_leaves_with_path(expected)}
  got = {jax.tree_util.keystr(p): tuple(np.shape(x)) for p, x in jax.tree_util.tree_leaves_with_path(variables)}
  problems = []
  if missing := sorted(set(exp) - set(got)):
    problems.append(f"missing {missing[:10]}")
  if extra := sorted(set(got) - set(exp)):
    problems.append(f"unexpected {extra[:10]}")
  if bad := [f"{k}: {got[k]} != {exp[k]}" for k in sorted(set(exp) & set(got)) if exp[k] != got[k]]:
    problems.append(f"mis-shaped {bad[:10]}")
  if problems:
    raise CheckpointError(f"converted variables for {kind!r} do not fit the module: " + "; ".join(problems))


def convert_file(kind: str, input_path: str, output_dir: str, overwrite: bool = False) -> str:
  """Reads ``input_path``, converts it, checks it fits the module, writes an Orbax checkpoint."""
  from talkjax import checkpoints  # pylint: disable=g-import-not-at-top
  from third_party.converters.torch_io import load_torch_file  # pylint: disable=g-import-not-at-top
  sd = load_torch_file(input_path)
  entry = _registry_entry(kind)
  variables = entry.convert(sd, os.fspath(input_path))
  overrides = entry.infer_overrides(sd, os.fspath(input_path)) if entry.infer_overrides else {}
  check_variables_fit(kind, variables, **overrides)
  return checkpoints.save_variables(output_dir, variables, overwrite=overwrite)


def main(argv: list[str]) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  del argv
  f = flags.FLAGS
  try:
    path = convert_file(f.kind, f.input, f.output, overwrite=f.overwrite)
  except CheckpointError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"wrote {f.kind} variables to {path}")


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top,g-multiple-import
  flags.DEFINE_string("kind", None, f"checkpoint kind: one of {', '.join(sorted(_KIND_MODULES))}")
  flags.DEFINE_string("input", None, "PyTorch checkpoint (.pth/.pt/.model/.tar or .safetensors)")
  flags.DEFINE_string("output", None, "output directory (Orbax checkpoint)")
  flags.DEFINE_bool("overwrite", False, "replace an existing output directory")
  flags.mark_flags_as_required(["kind", "input", "output"])
  app.run(main)
