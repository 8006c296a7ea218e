r"""Evaluates generated talking-face videos against their references.

  python -m experiments.evaluate --generated=out/ --reference=data/test/ \
      --metrics=psnr,ssim,lmd,lse,fid,lpips --output=eval/ [--weights_dir=weights]

Matches videos by name (relative path without extension, else a unique file stem), reads both at
25 fps and pairs frames up to the shorter video (reference frames resized to the generated size),
writes ``metrics.csv`` (one row per video) and ``summary.json`` (dataset numbers, definitions,
settings, errors) into ``--output`` atomically, and prints a table. Every metric's exact definition:
``talkjax/metrics/*.py`` docstrings and BUILD_NOTES.md.

Learned metrics read converted weights from ``--weights_dir``: ``syncnet_v2/`` (LSE), ``inception_fid/``
(FID), ``lpips_alex/`` or ``lpips_vgg/`` (LPIPS). A metric whose weights are missing fails with a
message naming the file it needs and the convert command; the other metrics still run (exit status 1
when any metric failed).

Metrics: psnr, ssim, lpips, fid (frame metrics); lmd (M-LMD/F-LMD), lse (LSE-D/LSE-C), openness
(synthetic corpus: needs <reference>.landmarks.npy/.visemes.npy), vtcs (needs recognisers:
--vtcs_speech_to_text and --vtcs_lip_reader as module:function).
"""

import sys

from absl import app, flags, logging

from talkjax.errors import TalkjaxError
from talkjax.metrics import lse as lse_lib
from talkjax.metrics import registry, runner
from talkjax.metrics import weights as weights_lib

_GENERATED = flags.DEFINE_string("generated", None,
                                 "Directory of generated videos, or comma-separated files.")
_REFERENCE = flags.DEFINE_string("reference", None, "Directory of reference videos (omit for LSE only).")
_METRICS = flags.DEFINE_string("metrics", ",".join(registry.DEFAULT_METRICS),
                               "Comma-separated: " + ", ".join(registry.REGISTRY))
_OUTPUT = flags.DEFINE_string("output", None, "Directory for metrics.csv and summary.json.")
_WEIGHTS = flags.DEFINE_string("weights_dir", weights_lib.DEFAULT_WEIGHTS_DIR,
                               "Converted weights: <dir>/syncnet_v2, <dir>/inception_fid, <dir>/lpips_<net>.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Frames (or SyncNet windows) per device call.")
_LSE_CROP = flags.DEFINE_enum("lse_crop", "face", list(lse_lib.CROP_MODES),
                              "face: joonson's face-track crops (MediaPipe boxes); frame: whole frame "
                              "resized to 224 (Wav2Lip's calculate_scores_LRS, for face-crop datasets).")
_LSE_MIN_TRACK = flags.DEFINE_integer("lse_min_track", lse_lib.MIN_TRACK,
                                      "Face tracks must be longer than this many frames (joonson: 100).")
_LSE_MIN_FACE = flags.DEFINE_float("lse_min_face_size", lse_lib.MIN_FACE_SIZE,
                                   "Mean face-box side in pixels a track must exceed (joonson: 100).")
_LPIPS_NET = flags.DEFINE_enum("lpips_net", "alex", ["alex", "vgg"], "LPIPS backbone.")
_FID_METHOD = flags.DEFINE_enum("fid_method", "sqrtm", ["sqrtm", "eigh"],
                                "sqrtm: pytorch-fid's algorithm; eigh: faster, equal to numerical precision.")
_STT = flags.DEFINE_string("vtcs_speech_to_text", None, "module:function (audio, sample_rate) -> text.")
_LIP = flags.DEFINE_string("vtcs_lip_reader", None, "module:function (frames uint8 (T,H,W,3)) -> text.")
_VTCS_REDUCTION = flags.DEFINE_enum("vtcs_reduction", "paper", ["paper", "mean_abs"],
                                    "VTCS: ||d||_2 / N (paper's numbers) or mean |d|.")
_VTCS_SMOOTHING = flags.DEFINE_enum("vtcs_smoothing", "none", ["none", "add1"], "Sentence-BLEU smoothing.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.mark_flags_as_required(["generated", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from talkjax.train.logging import quiet_library_logs  # pylint: disable=g-import-not-at-top
  quiet_library_logs()  # Orbax logs every weights load at INFO
  try:
    names = registry.parse_metrics(_METRICS.value)
    matches, unmatched = runner.match(_GENERATED.value, _REFERENCE.value)
    options = registry.Options(
        weights_dir=_WEIGHTS.value, batch_size=_BATCH.value, lse_crop=_LSE_CROP.value,
        lse_min_track=_LSE_MIN_TRACK.value, lse_min_face_size=_LSE_MIN_FACE.value,
        lpips_net=_LPIPS_NET.value, fid_method=_FID_METHOD.value, speech_to_text=_STT.value,
        lip_reader=_LIP.value, vtcs_reduction=_VTCS_REDUCTION.value, vtcs_smoothing=_VTCS_SMOOTHING.value)
    result = runner.evaluate(matches, names, options, progress=_PROGRESS.value, unmatched=unmatched)
    csv_path, json_path = runner.write_outputs(result, _OUTPUT.value)
  except TalkjaxError as e:
    logging.error("%s: %s", type(e).__name__, e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(runner.format_table(result))
  print(f"wrote {csv_path} and {json_path}")
  for name, msg in result.errors.items():
    print(f"error: {name}: {msg}", file=sys.stderr)
  if result.errors:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
