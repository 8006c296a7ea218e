"""Device meshes, shardings and global batches for the trainer.

``config.mesh`` has ``shape`` (a tuple; one entry may be -1: "all remaining devices"), ``axes``
(names, one of which must be ``"data"``: the batch is split along it) and ``shard_params_min_size``
(None: every parameter replicated; an int: parameters and optimizer state with at least that many
elements are split along their largest dimension divisible by the data axis, a ZeRO-3/FSDP-style
rule that lets large models fit while the batch is still split over the same devices).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from absl import logging
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from talkjax.errors import ConfigError

PyTree = Any
DATA_AXIS = "data"


def make_mesh(mesh_config: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds the mesh ``config.mesh`` asks for over ``devices`` (default: all devices)."""
  devices = list(jax.devices() if devices is None else devices)
  shape = tuple(int(s) for s in mesh_config.shape)
  axes = tuple(str(a) for a in mesh_config.axes)
  if len(shape) != len(axes):
    raise ConfigError(f"config.mesh: shape {shape} and axes {axes} differ in length")
  if DATA_AXIS not in axes:
    raise ConfigError(f"config.mesh.axes must contain {DATA_AXIS!r} (the batch axis), got {axes}")
  if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise ConfigError(f"config.mesh.shape: positive sizes and at most one -1, got {shape}")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if len(devices) % known:
      raise ConfigError(f"config.mesh.shape {shape}: {len(devices)} devices are not divisible by {known}")
    shape = tuple(len(devices) // known if s == -1 else s for s in shape)
  size = math.prod(shape)
  if size > len(devices):
    raise ConfigError(f"config.mesh.shape {shape} needs {size} devices, only {len(devices)} available")
  if size < len(devices):
    if jax.process_count() > 1:
      raise ConfigError(f"config.mesh.shape {shape} uses {size} of {len(devices)} devices; "
                        "a multi-process run must use all of them")
    logging.warning("config.mesh.shape %s uses only %d of %d devices", shape, size, len(devices))
    devices = devices[:size]
  return Mesh(np.asarray(devices).reshape(shape), axes)


def data_size(mesh: Mesh) -> int:
  return mesh.shape[DATA_AXIS]


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data axis, everything else replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def param_sharding(abstract_tree: PyTree, mesh: Mesh, min_size: int | None) -> PyTree:
  """Shardings for parameters/optimizer state under the rule in the module docstring."""
  n = data_size(mesh)

  def rule(leaf):
    shape = getattr(leaf, "shape", ())
    if min_size is None or n == 1 or math.prod(shape) < min_size:
      return replicated(mesh)
    dims = [d for d in sorted(range(len(shape)), key=lambda d: -shape[d]) if shape[d] % n == 0]
    if not dims:
      return replicated(mesh)
    spec = [None] * len(shape)
    spec[dims[0]] = DATA_AXIS
    return NamedSharding(mesh, P(*spec))

  return jax.tree.map(rule, abstract_tree)


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each process's part of the batch into global arrays split over the data axis.

  Process ``p`` holds examples ``[p * b, (p + 1) * b)`` of the global batch, ``b`` being the
  per-process batch size.
  """
  sharding = batch_sharding(mesh)
  out = {}
  for key, value in local_batch.items():
    value = np.asarray(value)
    global_shape = (value.shape[0] * jax.process_count(),) + value.shape[1:]
    out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
  return out


def put_replicated(tree: PyTree, mesh: Mesh) -> PyTree:
  """Places host values (identical on every process) on every device of the mesh."""
  sharding = replicated(mesh)

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, tree)
