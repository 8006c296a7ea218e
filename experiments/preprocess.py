r"""Preprocesses talking-face video into ArrayRecord shards for the talkjax samplers.

  python -m experiments.preprocess --input=DIR_OR_LIST --output=DIR [--landmarks=mediapipe|sidecar]
      [--size=128] [--face_size=256] [--workers=N] [--eval_fraction=0.1]

``--input`` is an LRS2/HDTF-like tree of videos (or a text file listing them). Per clip: 25 fps
streaming decode, 16 kHz mono audio and its Wav2Lip mel, face landmarks (MediaPipe, or the synthetic
corpus's ``.landmarks.npy`` with ``--landmarks=sidecar``), IP_LAP crops at ``--size`` and loose face
crops at ``--face_size`` as JPEG, one record per face segment of at most ``--max_record_seconds``.
Bad clips are skipped with a reason; running the same command again resumes. Writes
``<output>/index.json`` (clips, frames, hours, splits, skipped clips, frames without a face). See
``talkjax.data.preprocess``.

The synthetic corpus end to end::

  python -m experiments.make_synthetic --output=/tmp/syn --speakers=3 --clips=2 --pairs --size=128
  python -m experiments.preprocess --input=/tmp/syn --output=/tmp/syn_data --landmarks=sidecar
"""

from __future__ import annotations

import logging as py_logging

from absl import app, flags

from talkjax.data import preprocess as pre

_INPUT = flags.DEFINE_string("input", None,
                              "Directory tree of videos, or a text file with one path per line.")
_OUTPUT = flags.DEFINE_string("output", None, "Dataset directory (created; re-runs resume it).")
_LANDMARKS = flags.DEFINE_enum("landmarks", "mediapipe", list(pre.LANDMARK_MODES),
                               "mediapipe: detect faces (real video); sidecar: read <clip>.landmarks.npy.")
_SIZE = flags.DEFINE_integer("size", 128, "Side of the IP_LAP crops (pixels).")
_FACE_SIZE = flags.DEFINE_integer("face_size", 256, "Side of the loose (DCK-style) face crops (pixels).")
_WORKERS = flags.DEFINE_integer("workers", 0, "Worker processes (0: in this process).")
_EVAL_FRACTION = flags.DEFINE_float("eval_fraction", 0.1, "Fraction of speakers held out for evaluation.")
_EVAL_SPEAKERS = flags.DEFINE_list("eval_speakers", None,
                                   "Explicit held-out speakers (overrides --eval_fraction).")
_MAX_RECORD = flags.DEFINE_float("max_record_seconds", pre.MAX_RECORD_SECONDS, "Longest record (seconds).")
_MIN_RECORD = flags.DEFINE_float("min_record_seconds", pre.MIN_RECORD_SECONDS,
                                 "Face segments shorter than this are dropped (seconds).")
_MAX_GAP = flags.DEFINE_integer("max_gap", pre.Settings.max_gap,
                                 "Longest faceless gap that is interpolated (frames).")
_QUALITY = flags.DEFINE_integer("jpeg_quality", pre.Settings.jpeg_quality, "JPEG quality of the crops.")
_RETRY = flags.DEFINE_bool("retry_skipped", False, "Process clips that an earlier run skipped again.")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bar.")
flags.mark_flags_as_required(["input", "output"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  py_logging.getLogger("talkjax").setLevel(py_logging.INFO)
  try:
    settings = pre.Settings(landmarks=_LANDMARKS.value, size=_SIZE.value, face_size=_FACE_SIZE.value,
                            max_record_seconds=_MAX_RECORD.value, min_record_seconds=_MIN_RECORD.value,
                            max_gap=_MAX_GAP.value, jpeg_quality=_QUALITY.value)
    index = pre.preprocess(_INPUT.value, _OUTPUT.value, settings=settings, workers=_WORKERS.value,
                           eval_fraction=_EVAL_FRACTION.value, eval_speakers=_EVAL_SPEAKERS.value,
                           retry_skipped=_RETRY.value, progress=not _QUIET.value)
  except ValueError as e:  # talkjax's bad-input errors: one clear line, no traceback
    raise SystemExit(f"preprocess: error: {e}") from e
  print(pre.describe(index))
  print(f"wrote {_OUTPUT.value}/index.json")


if __name__ == "__main__":
  app.run(main)
