"""Talkjax's one place for Orbax: checkpoints of variables and of training state.

Everything that touches ``orbax.checkpoint`` goes through this module, so an Orbax API migration is
a one-file change. Orbax writes into a temporary directory and renames it when the save is complete,
so a crash mid-save never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import os
from typing import Any

from absl import logging
import grain
import grain.checkpoint  # noqa: F401  (registers the iterator-state handler with Orbax)
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


# --------------------------------------------------------------------------------------------------
# Training checkpoints.
#
# Layout: ``<directory>/<step>/state`` (the train state: params, batch stats, optimizer state, step,
# rng, loss weights) and ``<directory>/<step>/data/process_<i>-of-<n>.json`` (each process's data
# iterator position). Orbax writes a step into ``<step>.orbax-checkpoint-tmp*`` and renames it once
# every item is complete, so a step directory under its final name is always whole; temporary
# directories left by a crash are ignored by ``latest_step``/``restore`` and removed on the next start.

_STATE = "state"
_DATA = "data"


def _is_iterator_checkpointable(iterator: Any) -> bool:
  return iterator is not None and hasattr(iterator, "get_state") and hasattr(iterator, "set_state")


class TrainCheckpointer:
  """Periodic, asynchronous, keep-last-K training checkpoints in one directory.

  Every process of a multi-process run must create it and call ``save``/``restore`` at the same
  steps (Orbax synchronises them). Use as a context manager or call :meth:`close`.

  Args:
    directory: where step directories live (created if missing).
    keep: how many of the most recent checkpoints to keep (older ones are deleted).
    keep_period: additionally keep every checkpoint whose step is a multiple of this (None: none).
    async_save: write in a background thread; :meth:`save` returns once the arrays are copied off
      the devices, so the next training step can reuse (donate) their buffers.
  """

  def __init__(self, directory: str | os.PathLike[str], *, keep: int = 3, keep_period: int | None = None,
               async_save: bool = True):
    if keep < 1:
      raise CheckpointError(f"{directory}: keep must be >= 1, got {keep}")
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, keep_period=keep_period, create=True, cleanup_tmp_directories=True,
        enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options)
    # Orbax removes a crashed run's temporary step directories in a background thread and waits for
    # it only before its first save; a run that only restores (or a test looking at the directory)
    # could see them. Wait here, so they are gone when the checkpointer is ready.
    wait_for_cleanup = getattr(self._manager, "_maybe_await_cleanup_tmp_directory", None)
    if wait_for_cleanup is not None:
      wait_for_cleanup()

  def __enter__(self) -> "TrainCheckpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or None if there is none."""
    self._manager.reload()
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Steps of all complete checkpoints, ascending."""
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: PyTree, data_iterator: Any = None, *, force: bool = True) -> bool:
    """Starts saving ``state`` (and ``data_iterator``'s position) as checkpoint ``step``.

    Returns whether a save was started (False if a checkpoint for ``step`` already exists).
    """
    if step in self._manager.all_steps():
      return False
    items = {_STATE: ocp.args.StandardSave(state)}
    if _is_iterator_checkpointable(data_iterator):
      items[_DATA] = grain.checkpoint.CheckpointSave(data_iterator)
    return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, target: PyTree, *, step: int | None = None, data_iterator: Any = None) -> PyTree:
    """Restores checkpoint ``step`` (default: the latest) onto ``target``'s structure and shardings.

    Args:
      target: a tree like the saved state whose leaves are ``jax.ShapeDtypeStruct`` with the
        shardings wanted now (any mesh/device count: arrays are resharded on read) or arrays.
      step: which checkpoint; None for the latest.
      data_iterator: if given, its position is restored in place from the checkpoint. When the
        checkpoint was written by a different number of processes the position cannot be mapped
        and a warning is logged instead (the iterator starts from its current position).

    Raises:
      CheckpointError: no checkpoint, or one that does not match ``target``.
    """
    if step is None:
      step = self.latest_step()
      if step is None:
        raise CheckpointError(f"{self.directory}: no complete checkpoint to restore")
    elif step not in self.all_steps():
      raise CheckpointError(f"{self.directory}: no checkpoint for step {step} (have {self.all_steps()})")
    try:
      args = ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(target)})
      state = self._manager.restore(step, args=args)
    except Exception as e:  # Orbax raises many types for mismatched trees.
      raise CheckpointError(f"{self.directory}/{step}: cannot restore the train state "
                            f"({type(e).__name__}: {e})") from e
    if _is_iterator_checkpointable(data_iterator):
      self._restore_data(step, data_iterator)
    return state[_STATE]

  def _restore_data(self, step: int, data_iterator: Any) -> None:
    data_dir = os.path.join(self.directory, str(step), _DATA)
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    if not os.path.exists(os.path.join(data_dir, name)):
      found = sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else []
      logging.warning("%s: no data iterator position for %s (found %s); the data stream restarts from "
                      "its beginning", data_dir, name, found or "none")
      return
    self._manager.restore(step, args=ocp.args.Composite(
        **{_DATA: grain.checkpoint.CheckpointRestore(data_iterator)}))

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are committed."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases Orbax's resources."""
    self._manager.wait_until_finished()
    self._manager.close()


def load_train_state(directory: str | os.PathLike[str], step: int | None = None) -> PyTree:
  """Reads a training checkpoint's state as nested dicts of NumPy arrays (no target needed).

  Handy for inspection and export; the trainer itself restores with :class:`TrainCheckpointer`.
  """
  path = os.path.abspath(os.fspath(directory))
  if not os.path.isdir(path):
    raise CheckpointError(f"{path}: no such checkpoint directory")
  options = ocp.CheckpointManagerOptions(read_only=True)
  # The data-iterator item gets its handler too, so reading the metadata does not warn about it.
  handlers = {_STATE: ocp.StandardCheckpointHandler(), _DATA: grain.checkpoint.CheckpointHandler()}
  with ocp.CheckpointManager(path, options=options, item_handlers=handlers) as manager:
    if step is None:
      step = manager.latest_step()
    if step is None or step not in manager.all_steps():
      raise CheckpointError(f"{path}: no complete checkpoint for step {step} "
                            f"(have {sorted(manager.all_steps())})")
    try:
      # Read every array onto one local device, whatever mesh and process count wrote it.
      device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
      target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                            manager.item_metadata(step)[_STATE])
      restored = manager.restore(step, args=ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(target)}))
    except Exception as e:
      raise CheckpointError(f"{path}/{step}: not a readable train state ({type(e).__name__}: {e})") from e
  return jax.tree.map(np.asarray, restored[_STATE])


def export_network(directory: str | os.PathLike[str], network: str, output: str | os.PathLike[str], *,
                   step: int | None = None, overwrite: bool = False) -> str:
  """Writes one trained network of a training checkpoint as a variables directory.

  The result loads with :func:`load_variables`, so a network trained by one config (e.g. a SyncNet
  expert) can be a frozen auxiliary network of another. Returns the output path.
  """
  state = load_train_state(directory, step)
  params = state.get("params", {})
  if network not in params:
    raise CheckpointError(f"{directory}: no network {network!r} in the checkpoint "
                          f"(networks: {', '.join(sorted(params)) or 'none'})")
  variables = {"params": params[network]}
  stats = state.get("batch_stats", {}).get(network)
  if stats:
    variables["batch_stats"] = stats
  return save_variables(output, variables, overwrite=overwrite)
