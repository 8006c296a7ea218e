"""The seam between the trainer and the data pipeline.

The trainer calls :func:`make_data_source` once and gets a per-process training iterator (which must
offer grain's ``get_state()``/``set_state()`` so checkpoints record the data position) and a factory
of fresh held-out iterators for evaluation. Each process receives only its own part of every global
batch: examples ``[p * b, (p + 1) * b)`` of global batch ``g`` for process ``p`` with ``b`` examples
per process; the trainer assembles global arrays with ``jax.make_array_from_process_local_data``.

``config.data.kind`` selects the source:

* ``"random"``: deterministic random arrays shaped like the task's ``batch_spec`` (a Grain
  ``MapDataset``, so iterator positions checkpoint and restore exactly). Example ``i`` of split
  ``s`` is drawn from ``numpy.random.default_rng([seed, s, i])``: floats uniform in [0, 1), uint8
  uniform in [0, 255] (images), other integers and booleans from {0, 1}. For engine tests, benchmarks
  and tasks on synthetic inputs.
* ``"corpus"``: the talking-face data pipeline. ``config.data.root`` names a preprocessed dataset;
  None means the embedded synthetic corpus, generated and preprocessed into a cache directory on
  first use. It calls ``talkjax.data.samplers.make_sampler(...)`` (and, for the embedded corpus,
  ``talkjax.data.embedded.ensure_corpus(...)``): see :func:`_corpus_source` for the exact calls.
"""

from __future__ import annotations

import importlib
import os
from typing import Callable, Iterator, NamedTuple

from absl import logging
import grain
import jax
import ml_collections
import numpy as np

from talkjax.errors import ConfigError, TalkjaxError

_SPLITS = {"train": 0, "eval": 1}


class DataPipelineMissingError(TalkjaxError, NotImplementedError):
  """A data source the config asks for needs a part of talkjax.data that does not exist yet."""


class DataSource(NamedTuple):
  """Per-process training iterator and a factory of fresh held-out iterators."""
  train: Iterator[dict[str, np.ndarray]]
  eval: Callable[[], Iterator[dict[str, np.ndarray]]]


def make_data_source(data_config: ml_collections.ConfigDict, *, sampler: str,
                     spec: dict[str, jax.ShapeDtypeStruct], batch_size: int, seed: int,
                     process_index: int | None = None, process_count: int | None = None) -> DataSource:
  """Builds the data source ``data_config.kind`` names.

  Args:
    data_config: ``config.data``.
    sampler: the task's sampler name (``task.sampler(config)``).
    spec: the task's per-example ``batch_spec``.
    batch_size: examples per batch on *this process*.
    seed: the run's seed (shuffling and random data).
    process_index, process_count: default to JAX's.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  kind = data_config.get("kind", "corpus")
  read_options = grain.ReadOptions(num_threads=int(data_config.get("num_threads", 2)),
                                   prefetch_buffer_size=int(data_config.get("prefetch", 4)))
  if kind == "random":
    def dataset(split: str) -> grain.IterDataset:
      return random_dataset(spec, batch_size, seed, split, process_index, process_count).to_iter_dataset(
          read_options)
    return DataSource(train=iter(dataset("train")), eval=lambda: iter(dataset("eval")))
  if kind == "corpus":
    return _corpus_source(data_config, sampler=sampler, spec=spec, batch_size=batch_size, seed=seed,
                          process_index=process_index, process_count=process_count,
                          read_options=read_options)
  raise ConfigError(f"config.data.kind: unknown data source {kind!r}; valid: corpus, random")


def random_dataset(spec: dict[str, jax.ShapeDtypeStruct], batch_size: int, seed: int, split: str,
                   process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """An endless ``MapDataset`` of this process's random batches (see the module docstring)."""
  split_id = _SPLITS[split]
  global_batch = batch_size * process_count

  def example(index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, split_id, index])
    out = {}
    for key in sorted(spec):
      shape, dtype = tuple(spec[key].shape), np.dtype(spec[key].dtype)
      if np.issubdtype(dtype, np.floating):
        out[key] = rng.random(shape, dtype=np.float32).astype(dtype)
      elif dtype == np.uint8:  # Images.
        out[key] = rng.integers(0, 256, shape).astype(dtype)
      else:
        out[key] = rng.integers(0, 2, shape).astype(dtype)
    return out

  def make_batch(batch_index: int) -> dict[str, np.ndarray]:
    first = batch_index * global_batch + process_index * batch_size
    examples = [example(first + j) for j in range(batch_size)]
    return {k: np.stack([e[k] for e in examples]) for k in spec}

  # Indexed by global batch number, so the stream is the same for any process count and resumable
  # from the iterator's position alone.
  return grain.MapDataset.range(2**62).map(make_batch)


def _import_data_module(name: str, needed_for: str):
  try:
    return importlib.import_module(name)
  except ModuleNotFoundError as e:
    if e.name and name.startswith(e.name):
      raise DataPipelineMissingError(
          f"config.data.kind='corpus' needs {name} ({needed_for}), which does not exist yet; "
          "train on config.data.kind='random' meanwhile") from e
    raise


def _corpus_source(data_config, *, sampler, spec, batch_size, seed, process_index, process_count,
                   read_options) -> DataSource:
  """The talking-face corpus through talkjax.data (written by the data pipeline's owners).

  Contract expected from ``talkjax.data``:
    ``talkjax.data.embedded.dataset_root(data_config, *, progress) -> str`` generates the
    embedded synthetic corpus of ``data_config.preset`` (with the ``data_config.corpus`` overrides)
    and preprocesses it to ArrayRecord under ``data_config.cache_dir`` unless already there
    (idempotent, atomic), returning the dataset root.
    ``talkjax.data.samplers.make_sampler(sampler, *, root, split, batch_size, seed, process_index,
    process_count, options) -> grain.MapDataset | grain.IterDataset`` of per-process batches (dicts
    of NumPy arrays with the keys of the task's batch_spec, leading axis ``batch_size``).
  """
  samplers = _import_data_module("talkjax.data.samplers", "the ArrayRecord readers and Grain samplers")
  root = data_config.get("root")
  if root is None:
    embedded = _import_data_module("talkjax.data.embedded", "the embedded synthetic corpus cache")
    cache_dir = data_config.get("cache_dir") or embedded.default_cache_dir()
    # Process 0 builds the cache once; the others wait for it, then find it ready.
    if process_index == 0:
      logging.info("config.data.root is None: using the embedded synthetic corpus in %s "
                   "(generated on first use)", cache_dir)
      root = embedded.dataset_root(data_config, progress=True)
    if process_count > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices("talkjax embedded corpus ready")
    if process_index != 0:
      root = embedded.dataset_root(data_config)
  elif not os.path.isdir(root):
    raise ConfigError(f"config.data.root = {root!r}: no such directory")
  options = data_config.to_dict()

  def dataset(split: str):
    ds = samplers.make_sampler(sampler, root=root, split=split, batch_size=batch_size, seed=seed,
                               process_index=process_index, process_count=process_count, options=options)
    if isinstance(ds, grain.MapDataset):
      ds = ds.to_iter_dataset(read_options)
    return ds

  return DataSource(train=iter(dataset("train")), eval=lambda: iter(dataset("eval")))


def check_batch(batch: dict, spec: dict[str, jax.ShapeDtypeStruct], batch_size: int, sampler: str) -> None:
  """Raises ConfigError if a batch lacks keys of the task's spec or has other shapes."""
  missing = sorted(set(spec) - set(batch))
  if missing:
    raise ConfigError(f"data sampler {sampler!r} yields no {', '.join(missing)}, which the task needs "
                      f"(it yields {', '.join(sorted(batch))})")
  wrong = [f"{k}: {np.shape(batch[k])} != {(batch_size,) + tuple(spec[k].shape)}" for k in sorted(spec)
           if np.shape(batch[k]) != (batch_size,) + tuple(spec[k].shape)]
  if wrong:
    raise ConfigError(f"data sampler {sampler!r} yields batches the task does not expect: {'; '.join(wrong)}")
