"""ArrayRecord shards of a preprocessed dataset: atomic commits, manifests, the directory lock.

Layout of a dataset directory::

  <root>/settings.json                           preprocessing settings (checked on re-runs)
  <root>/shards/part-<run>-<n>.array_record      records (``group_size:1``, uncompressed: JPEG does
                                                 not compress and random access stays one read)
  <root>/shards/part-<run>-<n>.json              the shard's manifest: its clips and segments
  <root>/index.json                              everything a loader needs (built from the manifests)
  <root>/.work/, <root>/.lock                    scratch space and the lock of a running preprocess

Commit protocol: a shard is written under a temporary name, flushed, fsynced and renamed into place;
then its manifest is written atomically. Only a manifest makes a shard trusted: a crash between the
two leaves a shard without a manifest, which the next run deletes (its clips are processed again).
Within a shard each segment record is followed by its ``num_frames`` frame records
(:mod:`talkjax.data.records`), so a segment at position ``k`` has frame ``t`` at ``k + 1 + t``.

Also here, because readers need them without the preprocessing machinery: :func:`load_index` and
the held-out speaker split :func:`split_speakers`.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from array_record.python import array_record_module

from talkjax import fileio
from talkjax.errors import ConfigError, MediaError

FORMAT_VERSION = 1
FPS = 25.0
# Mel frames kept beyond a segment's ends, in video frames, so windows shifted by up to this many
# frames (Wav2Lip's -1, IP_LAP's centred -2) are exact at segment boundaries inside a long clip.
MEL_MARGIN_FRAMES = 3
SHARD_DIR = "shards"
WORK_DIR = ".work"
LOCK_FILE = ".lock"
WRITER_OPTIONS = "group_size:1,uncompressed"
MANIFEST_VERSION = 1


def write_json(path: str, data: Any) -> None:
  fileio.atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str) -> Any:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise
  except (OSError, ValueError) as e:
    raise MediaError(path, f"unreadable JSON ({e})") from e


class RecordFileWriter:
  """Appends records to one ArrayRecord file; counts records and bytes."""

  def __init__(self, path: str):
    self.path = path
    self._writer = array_record_module.ArrayRecordWriter(path, WRITER_OPTIONS)
    self.num_records = 0
    self.num_bytes = 0

  def write(self, record: bytes) -> int:
    """Appends ``record``; returns its position in the file."""
    self._writer.write(record)
    self.num_records += 1
    self.num_bytes += len(record)
    return self.num_records - 1

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


def iter_records(path: str) -> Iterator[bytes]:
  """Reads every record of an ArrayRecord file in order, one at a time."""
  reader = array_record_module.ArrayRecordReader(path)
  try:
    for i in range(reader.num_records()):
      yield reader.read([i])[0]
  finally:
    reader.close()


def num_records(path: str) -> int:
  reader = array_record_module.ArrayRecordReader(path)
  try:
    return int(reader.num_records())
  finally:
    reader.close()


class ShardWriter:
  """Collects finished clips into shards and commits them (see the module docstring).

  ``add_clip(report, segments, records_path)`` copies a clip's records (written by a worker to its
  own scratch file) into the open shard; ``commit()`` makes everything added so far durable. Shards
  are committed automatically once they hold ``max_bytes`` or ``max_seconds`` have passed since the
  last commit, which bounds the work a crash can lose.
  """

  def __init__(self, root: str, run_id: str, *, max_bytes: int = 256 << 20, max_seconds: float = 120.0):
    self.directory = os.path.join(root, SHARD_DIR)
    os.makedirs(self.directory, exist_ok=True)
    self.run_id = run_id
    self.max_bytes = int(max_bytes)
    self.max_seconds = float(max_seconds)
    self._count = 0
    self._writer: RecordFileWriter | None = None
    self._tmp: str | None = None
    self._clips: list[dict] = []
    self._segments: list[dict] = []
    self._last_commit = time.monotonic()
    self.committed: list[str] = []

  def _name(self) -> str:
    return f"part-{self.run_id}-{self._count:05d}"

  def add_clip(self, report: dict, segments: Sequence[dict] = (), records_path: str | None = None) -> None:
    """Adds one clip: its report (also for skipped clips) and its segments' records.

    Args:
      report: the clip's JSON report.
      segments: JSON entries of its segments, each with ``position``: the segment record's index
        in ``records_path``.
      records_path: the worker's scratch ArrayRecord file (deleted once copied), or None.
    """
    entries = []
    if records_path is not None and segments:
      if self._writer is None:
        self._tmp = os.path.join(self.directory, f".{self._name()}.partial.array_record")
        self._writer = RecordFileWriter(self._tmp)
      base = self._writer.num_records
      for record in iter_records(records_path):
        self._writer.write(record)
      for seg in segments:
        entry = dict(seg)
        entry["index"] = base + int(entry.pop("position"))
        entries.append(entry)
    if records_path is not None:
      with contextlib.suppress(FileNotFoundError):
        os.remove(records_path)
    self._clips.append(report)
    self._segments.extend(entries)
    full = self._writer is not None and self._writer.num_bytes >= self.max_bytes
    if full or time.monotonic() - self._last_commit >= self.max_seconds:
      self.commit()

  def commit(self) -> str | None:
    """Renames the open shard into place and writes its manifest; returns the manifest path."""
    if not self._clips:
      return None
    name = self._name()
    shard = None
    count = 0
    if self._writer is not None:
      count = self._writer.num_records
      self._writer.close()
      self._writer = None
      with open(self._tmp, "rb+") as f:
        os.fsync(f.fileno())
      shard = name + ".array_record"
      os.replace(self._tmp, os.path.join(self.directory, shard))
      self._tmp = None
    manifest = os.path.join(self.directory, name + ".json")
    write_json(manifest, {"manifest_version": MANIFEST_VERSION, "shard": shard, "num_records": count,
                          "clips": self._clips, "segments": self._segments})
    self.committed.append(manifest)
    self._count += 1
    self._clips, self._segments = [], []
    self._last_commit = time.monotonic()
    return manifest

  def abort(self) -> None:
    """Drops everything not yet committed (the open shard is deleted)."""
    if self._writer is not None:
      self._writer.close()
      self._writer = None
    if self._tmp is not None:
      with contextlib.suppress(FileNotFoundError):
        os.remove(self._tmp)
      self._tmp = None
    self._clips, self._segments = [], []


def load_manifests(root: str) -> list[dict]:
  """The trusted manifests of ``root`` in commit order (each with ``name``: its file name).

  A manifest whose shard is missing or holds a different number of records is not trusted.
  """
  out = []
  for path in sorted(glob.glob(os.path.join(glob.escape(root), SHARD_DIR, "part-*.json"))):
    manifest = read_json(path)
    shard = manifest.get("shard")
    if shard is not None:
      shard_path = os.path.join(root, SHARD_DIR, shard)
      try:
        ok = num_records(shard_path) == int(manifest.get("num_records", -1))
      except (OSError, RuntimeError, ValueError):
        ok = False
      if not ok:
        continue
    manifest["name"] = os.path.basename(path)
    out.append(manifest)
  return out


def remove_untrusted(root: str) -> list[str]:
  """Deletes shards without a manifest and partial files left by a crashed run; returns them."""
  directory = os.path.join(root, SHARD_DIR)
  removed = []
  if not os.path.isdir(directory):
    return removed
  manifests = {os.path.splitext(n)[0] for n in os.listdir(directory) if n.endswith(".json")}
  for name in os.listdir(directory):
    path = os.path.join(directory, name)
    orphan = name.endswith(".array_record") and os.path.splitext(name)[0] not in manifests
    if name.startswith(".") or orphan:
      os.remove(path)
      removed.append(path)
  return removed


@contextlib.contextmanager
def locked(root: str, *, wait: bool = False) -> Iterator[None]:
  """Holds ``<root>/.lock`` (an exclusive ``flock``) for the block.

  Args:
    root: the dataset directory (created if needed).
    wait: block until the lock is free instead of failing.

  Raises:
    ConfigError: another process holds the lock and ``wait`` is false.
  """
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, LOCK_FILE), "a+") as f:
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError as e:
      raise ConfigError(f"{root}: another process is writing this dataset (it holds {LOCK_FILE})") from e
    try:
      yield
    finally:
      fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------------
# Index and splits


def _speaker_hash(speaker: str) -> float:
  return int.from_bytes(hashlib.sha256(speaker.encode("utf-8")).digest()[:8], "big") / 2.0**64


def split_speakers(speakers: Iterable[str], eval_fraction: float = 0.1,
                   eval_speakers: Iterable[str] | None = None) -> dict[str, str]:
  """Deterministic held-out split by speaker: ``{speaker: "train" | "eval"}``.

  Args:
    speakers: all speakers.
    eval_fraction: a speaker is held out when ``sha256(name)`` (as a fraction of 2**64) is below
      this; with two or more speakers and a fraction in (0, 1), at least one speaker lands in each
      split (the lowest / highest hashes).
    eval_speakers: explicit held-out speakers (overrides ``eval_fraction``).
  """
  names = sorted(set(speakers))
  if eval_speakers is not None:
    held = set(eval_speakers)
    return {s: "eval" if s in held else "train" for s in names}
  if not 0.0 <= eval_fraction <= 1.0:
    raise ConfigError(f"eval_fraction: expected a fraction in [0, 1], got {eval_fraction}")
  hashes = {s: _speaker_hash(s) for s in names}
  split = {s: "eval" if hashes[s] < eval_fraction else "train" for s in names}
  if len(names) >= 2 and 0.0 < eval_fraction < 1.0:
    if "eval" not in split.values():
      split[min(names, key=hashes.get)] = "eval"
    if "train" not in split.values():
      split[max(names, key=hashes.get)] = "train"
  return split



def load_index(root: str | os.PathLike[str]) -> dict:
  """Reads ``<root>/index.json``; ``ConfigError`` if ``root`` is not a preprocessed dataset."""
  root = os.fspath(root)
  path = os.path.join(root, "index.json")
  if not os.path.exists(path):
    raise ConfigError(f"{root}: not a preprocessed talkjax dataset (no index.json); run "
                      "python -m experiments.preprocess --input=... --output=" + root)
  index = read_json(path)
  if index.get("format_version") != FORMAT_VERSION:
    raise ConfigError(f"{path}: dataset format {index.get('format_version')!r}, this talkjax reads "
                      f"{FORMAT_VERSION}; preprocess the data again")
  return index
