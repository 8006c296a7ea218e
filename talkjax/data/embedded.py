"""The embedded corpus: the synthetic talking-face corpus, generated and preprocessed once, cached.

Training without ``config.data.root`` uses it: ``ensure_corpus(cache_dir, preset=...)`` returns the
root of a preprocessed dataset (``talkjax.data.samplers.make_sampler(root=...)``), building it on
first use::

  <cache_dir>/corpus-<preset>-<hash>/raw/     synthetic mp4 tree with sidecars (make_corpus, pairs)
  <cache_dir>/corpus-<preset>-<hash>/data/    the dataset (preprocess, landmarks from the sidecars)
  <cache_dir>/corpus-<preset>-<hash>.lock     held while building

``<hash>`` covers the preset's parameters and the source code of the generator and of the
preprocessing (``talkjax/data/synthetic/*.py``, ``preprocess.py``, ``records.py``, the crop rules),
so a change to any of them builds a new corpus instead of reusing a stale one. Builds are
serialised by an ``flock`` on the lock file (a second process waits, then finds the corpus ready);
the dataset is preprocessed into ``data.partial`` and renamed to ``data`` when complete, so a
crashed build is never mistaken for a finished one (and resumes where it stopped: both stages are
resumable). The default cache is ``$TALKJAX_CACHE`` or ``~/.cache/talkjax``.

Presets (speakers x clip pairs x seconds; held-out speakers by ``eval_fraction``):

=================  ===================  ======  =======  =========  ============================
preset             clips                video   IP_LAP   face crop  frames (minutes), build time
=================  ===================  ======  =======  =========  ============================
runlocal           6 x 4 pairs x 3 s    128 px  128 px   128 px     3,600 (2.4 min), ~1 min
runlocal_excerpts  12 x 2 pairs x 3 s   128 px  128 px   128 px     3,600 (2.4 min), ~1 min
default            32 x 16 pairs x 4 s  256 px  128 px   256 px     102,400 (68 min)
=================  ===================  ======  =======  =========  ============================

``runlocal_excerpts`` cuts every clip's speech from a longer utterance (``make_corpus(excerpts=True)``):
clips do not all start and end in silence, so the two clips of a pair are independent in mouth
opening (in ``runlocal`` the shared closed-mouth ends correlate them, r ~ 0.3), which the lip-sync
acceptance figures need; it also holds out two speakers instead of one.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import sys
from typing import Any

from talkjax import fileio
from talkjax.data import preprocess as pre
from talkjax.errors import ConfigError

logger = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, Any]] = {
    "runlocal": dict(speakers=6, clips=4, duration=3.0, video_size=128, size=128, face_size=128, seed=0,
                     eval_fraction=0.2, excerpts=False),
    # The same number of frames as runlocal from twice the speakers (2 held out), each clip's speech
    # an excerpt of longer speech: the lip-sync tasks (DCK pairs, the SyncNet expert).
    "runlocal_excerpts": dict(speakers=12, clips=2, duration=3.0, video_size=128, size=128, face_size=128,
                              seed=0, eval_fraction=0.2, excerpts=True),
    "default": dict(speakers=32, clips=16, duration=4.0, video_size=256, size=128, face_size=256, seed=0,
                    eval_fraction=0.1, excerpts=False),
}


def default_cache_dir() -> str:
  return os.environ.get("TALKJAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "talkjax")


def _code_hash() -> str:
  here = os.path.dirname(os.path.abspath(__file__))
  files = sorted(glob.glob(os.path.join(here, "synthetic", "*.py")))
  files += [os.path.join(here, "preprocess.py"), os.path.join(here, "records.py"),
            os.path.join(os.path.dirname(here), "faces", "crops.py")]
  h = hashlib.sha256()
  for path in files:
    h.update(os.path.relpath(path, here).encode())
    with open(path, "rb") as f:
      h.update(f.read())
  return h.hexdigest()


def corpus_params(preset: str = "default", **overrides) -> dict[str, Any]:
  """The generation and preprocessing parameters of ``preset`` with ``overrides`` applied."""
  if preset not in PRESETS:
    raise ConfigError(f"embedded corpus preset: unknown {preset!r}; valid: {', '.join(PRESETS)}")
  params = dict(PRESETS[preset])
  unknown = sorted(set(overrides) - set(params))
  if unknown:
    raise ConfigError(f"embedded corpus: unknown parameters {unknown}; valid: {', '.join(params)}")
  params.update(overrides)
  return params


def corpus_dir(cache_dir: str | None = None, preset: str = "default", **overrides) -> str:
  """Where ``ensure_corpus`` keeps this corpus (it may not exist yet)."""
  params = corpus_params(preset, **overrides)
  key = json.dumps({"params": params, "code": _code_hash(), "format": pre.FORMAT_VERSION}, sort_keys=True)
  digest = hashlib.sha256(key.encode()).hexdigest()[:12]
  return os.path.join(os.path.abspath(cache_dir or default_cache_dir()), f"corpus-{preset}-{digest}")


def dataset_root(data_config: Any, *, progress: bool = False) -> str:
  """The dataset a config's ``data`` section names: ``data.root``, else the embedded corpus.

  The embedded corpus is ``ensure_corpus(data.cache_dir, preset=data.preset, **data.corpus)``: the
  optional ``data.corpus`` mapping overrides the preset's parameters (e.g. ``speakers=12``), so one
  config can ask for more speakers without a new preset. Accepts a ConfigDict or a plain dict.
  """
  get = data_config.get
  root = get("root")
  if root:
    return os.path.abspath(os.path.expanduser(str(root)))
  overrides = get("corpus") or {}
  if hasattr(overrides, "to_dict"):
    overrides = overrides.to_dict()
  return ensure_corpus(get("cache_dir"), preset=get("preset") or "default", progress=progress, **dict(overrides))


def ensure_corpus(cache_dir: str | None = None, *, preset: str = "default", progress: bool = True,
                  workers: int | None = None, **overrides) -> str:
  """Returns the root of the embedded corpus's dataset, generating and preprocessing it if needed.

  Args:
    cache_dir: parent directory of cached corpora (default ``$TALKJAX_CACHE`` or ``~/.cache/talkjax``).
    preset: ``"runlocal"`` or ``"runlocal_excerpts"`` (about a minute to build on 2 cores), or ``"default"``
      (paper-scale configs).
    progress: print what is being built and show progress bars (stderr).
    workers: preprocessing worker processes (default: up to 4, one per CPU).
    **overrides: preset parameters to change (``speakers``, ``clips``, ``duration``, ``video_size``,
      ``size``, ``face_size``, ``seed``, ``eval_fraction``, ``excerpts``); tests use tiny corpora this way.
  """
  params = corpus_params(preset, **overrides)
  final = corpus_dir(cache_dir, preset, **overrides)
  data = os.path.join(final, "data")
  if os.path.exists(os.path.join(data, "index.json")):
    return data
  os.makedirs(final, exist_ok=True)
  with fileio.file_lock(final + ".lock"):
    if os.path.exists(os.path.join(data, "index.json")):  # another process built it meanwhile
      return data
    from talkjax.data import synthetic  # noqa: PLC0415  (only needed to build)

    num_clips = params["speakers"] * params["clips"] * 2
    message = (f"talkjax: building the embedded synthetic corpus (preset {preset!r}: {num_clips} clips of "
               f"{params['duration']:g} s at {params['video_size']} px) in {final}; this happens once")
    logger.info(message)
    if progress:
      print(message, file=sys.stderr, flush=True)
    raw = os.path.join(final, "raw")
    synthetic.make_corpus(raw, speakers=params["speakers"], clips=params["clips"], seed=params["seed"],
                          size=params["video_size"], pairs=True, duration=params["duration"],
                          excerpts=params["excerpts"], progress=progress)
    partial = data + ".partial"
    if workers is None:
      workers = min(4, os.cpu_count() or 1)
    index = pre.preprocess(raw, partial, landmarks="sidecar", size=params["size"],
                           face_size=params["face_size"], workers=workers,
                           eval_fraction=params["eval_fraction"], progress=progress)
    if index["skipped"]:
      raise RuntimeError(f"embedded corpus: {len(index['skipped'])} synthetic clip(s) failed to preprocess, "
                         f"e.g. {index['skipped'][0]}")
    os.remove(os.path.join(partial, ".lock"))
    os.rename(partial, data)
    if progress:
      print(f"talkjax: embedded corpus ready: {index['clips']} clips, {index['frames']} frames "
            f"({len(index['splits']['eval']['speakers'])} held-out speakers)", file=sys.stderr, flush=True)
    return data


def remove_corpus(cache_dir: str | None = None, preset: str = "default", **overrides) -> None:
  """Deletes a cached corpus (under its lock)."""
  final = corpus_dir(cache_dir, preset, **overrides)
  if os.path.exists(final):
    with fileio.file_lock(final + ".lock"):
      shutil.rmtree(final, ignore_errors=True)
