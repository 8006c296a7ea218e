"""Data for talkjax: the synthetic talking-face corpus (``talkjax.data.synthetic``), preprocessing to
ArrayRecord, Grain loaders and samplers, and the embedded-corpus cache.

- ``talkjax.data.synthetic``: the generated corpus (mp4 + landmark/viseme sidecars, ``_a``/``_b`` pairs).
- ``talkjax.data.preprocess`` (``python -m experiments.preprocess``): video -> ArrayRecord shards of
  clip segments (IP_LAP and loose face crops as JPEG, landmarks, boxes, mel), ``index.json``.
- ``talkjax.data.records`` / ``talkjax.data.shards``: the record format (named arrays, no pickle)
  and the shard/manifest/index layout with atomic commits.
- ``talkjax.data.loader``: ``SegmentDataset`` (random access) and Grain pipelines (deterministic,
  sharded by process, worker processes, checkpointable iterators).
- ``talkjax.data.samplers``: ``make_sampler(name, root=..., ...)`` for ``wav2lip``, ``syncnet``,
  ``dck_pairs``, ``landmarks`` and ``renderer``; each class documents its batch keys and shapes.
- ``talkjax.data.embedded``: ``ensure_corpus(cache_dir, preset=...)``, the synthetic corpus built and
  preprocessed once into a cache, used when a config names no data.

Typical use::

  from talkjax import data
  root = data.ensure_corpus(preset="runlocal")          # or a directory made by experiments.preprocess
  batches = data.make_sampler("renderer", root=root, split="train", batch_size=16, seed=0, image_size=128)
  it = data.make_iterator(batches)                       # it.get_state() / it.set_state(state)
  batch = next(it)                                       # {"target": (16, 128, 128, 3) uint8, ...}

The names below are imported on first use, so ``import talkjax.data.synthetic`` stays light (the
preprocessing entry point is ``talkjax.data.preprocess.preprocess``: the name ``preprocess`` here is
the module).
"""

import importlib

_EXPORTS = {
    "ensure_corpus": "talkjax.data.embedded",
    "SegmentDataset": "talkjax.data.loader",
    "Segment": "talkjax.data.loader",
    "build_dataset": "talkjax.data.loader",
    "make_iterator": "talkjax.data.loader",
    "to_iter_dataset": "talkjax.data.loader",
    "Settings": "talkjax.data.preprocess",
    "find_clips": "talkjax.data.preprocess",
    "SAMPLERS": "talkjax.data.samplers",
    "make_sampler": "talkjax.data.samplers",
    "sampler": "talkjax.data.samplers",
    "load_index": "talkjax.data.shards",
    "split_speakers": "talkjax.data.shards",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  module = _EXPORTS.get(name)
  if module is None:
    raise AttributeError(f"module 'talkjax.data' has no attribute {name!r}")
  value = getattr(importlib.import_module(module), name)
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(_EXPORTS))
