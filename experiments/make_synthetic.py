r"""Writes the synthetic talking-face corpus (LRS2-like tree of mp4 clips with ground-truth sidecars).

  python -m experiments.make_synthetic --output=/tmp/synthetic --speakers=3 --clips=2 --pairs

Layout: ``<output>/<speaker>/<clip>.mp4`` (H.264 + AAC, 25 fps, 16 kHz) with
``<clip>.landmarks.npy`` (T, 131, 2), ``<clip>.visemes.npy`` (T, 3) and ``<clip>.json``; see
``talkjax.data.synthetic.corpus``. Every output file is written atomically and the mp4 last, so an
interrupted run leaves no half clip; running the same command again skips finished clips.
"""

from __future__ import annotations

from absl import app, flags

from talkjax.data import synthetic

_OUTPUT = flags.DEFINE_string("output", None, "Root directory of the corpus (created if needed).")
_SPEAKERS = flags.DEFINE_integer("speakers", 4, "Number of speakers.")
_CLIPS = flags.DEFINE_integer("clips", 4, "Clips (or pairs, with --pairs) per speaker.")
_SEED = flags.DEFINE_integer("seed", 0, "Corpus seed: the same seed gives the same corpus.")
_SIZE = flags.DEFINE_integer("size", synthetic.DEFAULT_SIZE, "Frame width and height in pixels (even).")
_PAIRS = flags.DEFINE_bool(
    "pairs", False, "Write <clip>_a / <clip>_b pairs: same speaker, head motion and blinks; other speech.")
_DURATION = flags.DEFINE_float("duration", synthetic.DEFAULT_DURATION, "Seconds per clip.")
_EXCERPTS = flags.DEFINE_bool(
    "excerpts", False, "Cut each clip's speech from a longer utterance (clips need not start and end in "
    "silence; the clips of a pair are then independent in mouth opening).")
_WORKERS = flags.DEFINE_integer("workers", 1,
                                "Processes rendering clips in parallel (the output does not depend on it).")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bar.")
flags.mark_flag_as_required("output")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    paths = synthetic.make_corpus(_OUTPUT.value, speakers=_SPEAKERS.value, clips=_CLIPS.value,
                                  seed=_SEED.value, size=_SIZE.value, pairs=_PAIRS.value,
                                  duration=_DURATION.value, progress=not _QUIET.value, workers=_WORKERS.value,
                                  excerpts=_EXCERPTS.value)
  except ValueError as e:  # talkjax's bad-argument errors: one clear line, no traceback
    raise SystemExit(f"make_synthetic: error: {e}") from e
  print(f"{len(paths)} clips in {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
