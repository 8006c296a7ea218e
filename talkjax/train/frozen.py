"""Loading the frozen auxiliary networks a task declares (``task.frozen(config)``)."""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections
import numpy as np

from talkjax import checkpoints
from talkjax.errors import CheckpointError, ConfigError
from talkjax.tasks import FrozenNet


def get_field(config: ml_collections.ConfigDict, dotted: str) -> Any:
  """``config.a.b.c`` for ``"a.b.c"``; ConfigError naming the field if it does not exist."""
  node = config
  for i, part in enumerate(dotted.split(".")):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
      raise ConfigError(f"config.{dotted} does not exist (no {'.'.join(dotted.split('.')[:i + 1])!r})")
    node = node[part]
  return node


def _hint(spec: FrozenNet, path: str) -> str:
  hints = []
  if spec.convert_kind:
    hints.append(f"convert the PyTorch checkpoint with `python -m third_party.convert "
                 f"--kind={spec.convert_kind} --input=FILE.pth --output={path}`")
  if spec.how_to_make:
    hints.append(spec.how_to_make)
  return ("; " + "; or ".join(hints)) if hints else ""


def _check_structure(name: str, path: str, loaded: Any, expected: Any) -> None:
  got = {jax.tree_util.keystr(p): np.shape(v) for p, v in jax.tree_util.tree_leaves_with_path(loaded)}
  want = {jax.tree_util.keystr(p): tuple(v.shape) for p, v in jax.tree_util.tree_leaves_with_path(expected)}
  problems = [f"missing {k}" for k in sorted(set(want) - set(got))]
  problems += [f"unexpected {k}" for k in sorted(set(got) - set(want))]
  problems += [f"{k}: shape {got[k]} != expected {want[k]}" for k in sorted(set(got) & set(want))
               if got[k] != want[k]]
  if problems:
    shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
    raise CheckpointError(f"{path}: does not match the frozen {name!r} network: {shown}")


def load_frozen(task: Any, config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Loads every configured frozen network of ``task``: ``{name: variables (NumPy)}``."""
  specs = list(task.frozen(config)) if hasattr(task, "frozen") else []
  out = {}
  for spec in specs:
    path = get_field(config, spec.field)
    if path is None:
      if spec.required:
        raise ConfigError(f"config.{spec.field} is not set: task {config.task!r} needs the frozen "
                          f"{spec.name!r} network as a variables directory{_hint(spec, 'DIR')}")
      continue
    path = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.isdir(path):
      raise CheckpointError(f"config.{spec.field} = {path!r}: no such variables directory (frozen "
                            f"{spec.name!r} network){_hint(spec, path)}")
    try:
      variables = checkpoints.load_variables(path)
    except CheckpointError as e:
      raise CheckpointError(f"config.{spec.field}: {e}") from e
    if spec.abstract is not None:
      _check_structure(spec.name, path, variables, spec.abstract())
    out[spec.name] = variables
  return out
