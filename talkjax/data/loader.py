"""Reading preprocessed datasets and building Grain pipelines from the samplers.

- :class:`SegmentDataset`: random access to the segment records of one split of a dataset and to
  their frames (only the frames asked for are read and decoded). Picklable: ArrayRecord readers
  open lazily in each process.
- :func:`build_dataset`: an infinite, deterministic ``grain.MapDataset`` of this process's batches
  for a sampler (:mod:`talkjax.data.samplers`).
- :func:`to_iter_dataset` / :func:`make_iterator`: threads, prefetch and worker processes, with a
  checkpointable iterator (``get_state()`` / ``set_state()``).

Example stream: the sampler's eligible items (segments, or segment pairs) are shuffled per epoch
(a seeded permutation per epoch) and repeated forever; example ``i`` of the stream draws its random
choices (frames, references, labels, augmentations) from ``numpy.random.default_rng([seed, split,
i])``, so it is a pure function of ``(seed, split, i)``. Batches of ``b`` consecutive examples are
dealt to processes round robin: process ``p`` of ``P`` gets examples ``[g*P*b + p*b, g*P*b + (p+1)*b)``
of global batch ``g`` (what ``talkjax.train.data_source`` documents), so the global stream is the same
for any process count, and a restored iterator position is the whole data state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from typing import Any

from absl import flags
import grain
import numpy as np

from talkjax import audio as audio_lib
from talkjax.data import records, shards
from talkjax.errors import ConfigError, MediaError

SPLITS = ("train", "eval", "all")
_SPLIT_IDS = {"train": 0, "eval": 1, "all": 2}
CROPS = ("image", "face")


@dataclasses.dataclass(frozen=True)
class Segment:
  """A decoded segment record (see :mod:`talkjax.data.records`): ``meta`` and ``arrays``."""
  meta: dict[str, Any]
  arrays: dict[str, np.ndarray]

  @property
  def num_frames(self) -> int:
    return int(self.meta["num_frames"])

  def mel_window(self, t: int, offset: int = 0) -> np.ndarray:
    """(80, 16, 1) float32: the mel window of frame ``t`` (segment-relative) shifted by ``offset``.

    ``offset`` is in frames, the window starts at mel frame ``int(80 * (start + t + offset) / fps)``
    of the clip (Wav2Lip's rule). Raises ``ValueError`` when that window is not real audio.
    """
    s = int(audio_lib.mel_start(self.meta["start"] + t + offset, self.meta["fps"]))
    local = s - int(self.meta["mel_start"])
    mel = self.arrays["mel"]
    if s < 0 or s + audio_lib.MEL_WINDOW > self.meta["mel_total"] or local < 0 \
        or local + audio_lib.MEL_WINDOW > mel.shape[1]:
      raise ValueError(f"{self.meta['key']}: no full mel window for frame {t} with offset {offset}")
    return np.ascontiguousarray(mel[:, local:local + audio_lib.MEL_WINDOW, None])


def windows_ok(entry: dict, offsets: Sequence[int]) -> np.ndarray:
  """(T,) bool: frames of a segment (index entry) whose mel windows at all ``offsets`` are real audio."""
  if any(abs(o) > shards.MEL_MARGIN_FRAMES for o in offsets):
    raise ConfigError(f"mel offsets {list(offsets)}: at most {shards.MEL_MARGIN_FRAMES} frames either way "
                      "(what preprocessing keeps around each segment)")
  f = entry["start"] + np.arange(entry["num_frames"])
  ok = np.ones(entry["num_frames"], bool)
  for o in offsets:
    s = audio_lib.mel_start(f, shards.FPS, o)
    ok &= (s >= 0) & (s + audio_lib.MEL_WINDOW <= entry["mel_total"])
  return ok


class SegmentDataset:
  """The segments of one split of a preprocessed dataset, with random access to their frames.

  Args:
    root: the dataset directory (``index.json`` and ``shards/``).
    split: ``"train"``, ``"eval"`` (held-out speakers) or ``"all"``.
    eval_fraction, eval_speakers: re-split the speakers at load time (default: the split stored in
      ``index.json``); see ``shards.split_speakers``.
  """

  def __init__(self, root: str | os.PathLike[str], split: str = "train", *,
               eval_fraction: float | None = None, eval_speakers: Sequence[str] | None = None):
    if split not in SPLITS:
      raise ConfigError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    self.root = os.path.abspath(os.fspath(root))
    index = shards.load_index(self.root)
    speakers = index["speakers"]
    if eval_fraction is not None or eval_speakers is not None:
      fraction = index["eval_fraction"] if eval_fraction is None else eval_fraction
      speakers = shards.split_speakers(speakers, fraction, eval_speakers)
    self.split = split
    self.settings = index["settings"]
    self.segments: list[dict] = [s for s in index["segments"]
                                 if split == "all" or speakers[s["speaker"]] == split]
    for s in self.segments:
      if "mel_total" not in s:
        raise ConfigError(f"{self.root}: index.json lacks mel_total; preprocess the data again")
    self.speakers = sorted({s["speaker"] for s in self.segments})
    shard_files = [os.path.join(self.root, s["path"]) for s in index["shards"]]
    for path in shard_files:
      if not os.path.exists(path):
        raise MediaError(path, "shard listed in index.json is missing")
    offsets = np.concatenate([[0], np.cumsum([s["num_records"] for s in index["shards"]])]).astype(np.int64)
    # Global record keys of the segment records; frame t of segment i is key + 1 + t.
    self._keys = np.array([offsets[s["shard"]] + s["index"] for s in self.segments], np.int64)
    # "path[0:n]" tells grain the record count, so no file is opened until it is read.
    self._source = grain.sources.ArrayRecordDataSource(
        [f"{p}[0:{s['num_records']}]" for p, s in zip(shard_files, index["shards"])]) if shard_files else None

  def __len__(self) -> int:
    return len(self.segments)

  def __repr__(self) -> str:
    return f"SegmentDataset({self.root!r}, split={self.split!r}: {len(self)} segments)"

  def _read(self, key: int, what: str) -> records.Record:
    try:
      data = self._source[int(key)]
    except (RuntimeError, ValueError, OSError) as e:
      raise MediaError(self.root, f"cannot read {what} (record {key}): {e}") from e
    return records.decode(data, f"{self.root}: {what}")

  def segment(self, i: int) -> Segment:
    """Segment ``i`` of this split (its small arrays; no frames)."""
    entry = self.segments[i]
    rec = self._read(self._keys[i], f"segment {entry['key']}")
    if rec.kind != records.SEGMENT or rec.meta.get("key") != entry["key"]:
      raise MediaError(self.root, f"record of segment {entry['key']} holds {rec.kind} "
                       f"{rec.meta.get('key')!r} (index.json and shards disagree)")
    return Segment(meta=rec.meta, arrays=rec.arrays)

  def frames(self, i: int, ts: Sequence[int] | np.ndarray, crop: str = "image") -> np.ndarray:
    """(len(ts), S, S, 3) uint8 crops (``"image"``: IP_LAP crop, ``"face"``: loose crop) of segment ``i``."""
    if crop not in CROPS:
      raise ConfigError(f"crop: expected one of {', '.join(CROPS)}, got {crop!r}")
    entry = self.segments[i]
    side = int(self.settings["size" if crop == "image" else "face_size"])
    out = []
    for t in np.asarray(ts, np.int64).reshape(-1):
      if not 0 <= t < entry["num_frames"]:
        raise ValueError(f"{entry['key']}: frame {t} outside its {entry['num_frames']} frames")
      rec = self._read(self._keys[i] + 1 + t, f"frame {t} of {entry['key']}")
      if rec.kind != records.FRAME or rec.meta.get("t") != int(t):
        raise MediaError(self.root, f"frame record {t} of {entry['key']} is out of place (corrupt shard?)")
      out.append(records.decode_jpeg(rec.blobs[crop], f"{entry['key']} frame {t}", (side, side)))
    return np.stack(out)

  def pairs(self) -> list[tuple[int, int]]:
    """``(i_a, i_b)`` segment pairs of ``<name>_a`` / ``<name>_b`` clips covering the same frames."""
    groups: dict[tuple, dict[str, int]] = {}
    for i, s in enumerate(self.segments):
      if s.get("pair"):
        group, member = s["pair"]
        groups.setdefault((group, s["start"], s["num_frames"]), {})[member] = i
    return [(g["a"], g["b"]) for _, g in sorted(groups.items()) if "a" in g and "b" in g]


# ------------------------------------------------------------------------------------------------
# Pipelines


def _seed32(*parts) -> int:
  return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


# Length of the (endless) example stream: far more examples than any run draws.
STREAM_LENGTH = 2**62


class _Example:
  """Example ``i`` of the stream: item ``perm_e[i % n]`` of epoch ``e = i // n``, with its own rng.

  Epoch permutations are NumPy permutations seeded by ``(seed, split, sampler, e)``, cached for the
  two most recent epochs. (Grain's ``index_shuffle`` cycle-walks a large domain: ~10 ms per index for
  a few items, which would cost more than reading the example.)
  """

  def __init__(self, sampler, seed: int, split_id: int):
    self.sampler, self.seed, self.split_id = sampler, int(seed), int(split_id)
    self.num_items = sampler.num_items
    self._shuffle_seed = _seed32(seed, split_id, sampler.name)
    self._perms: dict[int, np.ndarray] = {}

  def __getstate__(self):
    state = self.__dict__.copy()
    state["_perms"] = {}
    return state

  def item(self, i: int) -> int:
    epoch, k = divmod(int(i), self.num_items)
    perm = self._perms.get(epoch)
    if perm is None:
      perm = np.random.default_rng([self._shuffle_seed, epoch]).permutation(self.num_items)
      # Replaced, not mutated in place: concurrent reader threads may hold the old dict.
      self._perms = {e: p for e, p in self._perms.items() if e == epoch - 1} | {epoch: perm}
    return int(perm[k])

  def __call__(self, i: int) -> dict[str, np.ndarray]:
    return self.sampler.example(self.item(i), np.random.default_rng([self.seed, self.split_id, int(i)]))


def build_dataset(sampler, *, batch_size: int, seed: int, process_index: int = 0,
                  process_count: int = 1) -> grain.MapDataset:
  """An infinite ``MapDataset`` of this process's batches (see the module docstring).

  Args:
    sampler: a sampler from :mod:`talkjax.data.samplers` (bound to a :class:`SegmentDataset`).
    batch_size: examples per batch on this process.
    seed: the run's seed.
    process_index, process_count: this process and how many share the global batch.
  """
  if batch_size < 1:
    raise ConfigError(f"batch_size: expected >= 1, got {batch_size}")
  if not 0 <= process_index < process_count:
    raise ConfigError(f"process_index {process_index} not in [0, process_count={process_count})")
  if seed < 0:
    raise ConfigError(f"seed: expected a non-negative integer, got {seed}")
  n = sampler.num_items
  if n == 0:
    raise ConfigError(f"sampler {sampler.name!r}: no usable segment in the {sampler.data.split!r} split of "
                      f"{sampler.data.root} ({len(sampler.data)} segments; it needs "
                      f"{sampler.requirement})")
  ds = grain.MapDataset.range(STREAM_LENGTH).map(_Example(sampler, seed, _SPLIT_IDS[sampler.data.split]))
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds[process_index::process_count]


def to_iter_dataset(ds: grain.MapDataset, *, num_threads: int = 2, prefetch: int = 4, num_workers: int = 0,
                    worker_buffer_size: int = 2) -> grain.IterDataset:
  """``ds`` as an ``IterDataset`` read by ``num_threads`` threads, in ``num_workers`` processes if > 0.

  Worker processes each take every ``num_workers``-th element and the parent interleaves them back
  in order, so the stream is the same for any ``num_workers`` (0 included).
  """
  if num_workers < 0 or num_threads < 0:
    raise ConfigError(f"num_workers ({num_workers}) and num_threads ({num_threads}) must be >= 0")
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
  if num_workers > 0:
    # grain 0.2.18's worker start reads an absl flag, which raises outside an absl app (pytest, notebooks)
    # until flags are parsed (google/grain#1355, fixed upstream): use the flags' defaults there.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                     per_worker_buffer_size=worker_buffer_size))
  return it


def make_iterator(ds: grain.MapDataset | grain.IterDataset, **kwargs) -> grain.DatasetIterator:
  """A checkpointable iterator (``get_state()`` / ``set_state()``) over ``ds``."""
  if isinstance(ds, grain.MapDataset):
    ds = to_iter_dataset(ds, **kwargs)
  elif kwargs:
    raise ConfigError(f"{sorted(kwargs)}: only for a MapDataset")
  return iter(ds)
