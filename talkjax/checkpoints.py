"""Talkjax's one place for Orbax: checkpoints of variables and of training state.

Everything that touches ``orbax.checkpoint`` goes through this module, so an Orbax API migration is
a one-file change. Orbax writes into a temporary directory and renames it when the save is complete,
so a crash mid-save never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from talkjax.errors import CheckpointError

PyTree = Any


def _check_finite(tree: PyTree, what: str) -> None:
  bad = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    arr = np.asarray(leaf)
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
      bad.append(jax.tree_util.keystr(path))
  if bad:
    raise CheckpointError(f"{what}: non-finite (NaN or inf) values in {', '.join(bad[:10])}"
                          + (f" and {len(bad) - 10} more" if len(bad) > 10 else ""))


def save_variables(directory: str | os.PathLike[str], variables: PyTree, *,
                   overwrite: bool = False) -> str:
  """Saves a Flax variables tree (e.g. ``{"params": ..., "batch_stats": ...}``) to ``directory``.

  Refuses trees with NaN/inf values. Returns the absolute checkpoint path.
  """
  path = os.path.abspath(os.fspath(directory))
  _check_finite(variables, path)
  if os.path.exists(path):
    if not overwrite:
      raise CheckpointError(f"{path}: already exists (pass overwrite=True to replace it)")
  variables = jax.tree.map(np.asarray, variables)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, variables, force=overwrite)
  return path


def load_variables(directory: str | os.PathLike[str]) -> PyTree:
  """Loads a variables tree written by :func:`save_variables` (or ``third_party.convert``).

  Returns a nested dict of NumPy arrays. Raises :class:`CheckpointError` if the directory is
  missing or is not a complete Orbax checkpoint.
  """
  path = os.path.abspath(os.fspath(directory))
  if not os.path.isdir(path):
    raise CheckpointError(f"{path}: no such checkpoint directory")
  try:
    with ocp.StandardCheckpointer() as ckptr:
      tree = ckptr.restore(path)
  except Exception as e:  # Orbax raises many types for unreadable checkpoints.
    raise CheckpointError(f"{path}: not a readable Orbax checkpoint ({type(e).__name__}: {e})") from e
  tree = jax.tree.map(np.asarray, tree)
  _check_finite(tree, path)
  return tree
