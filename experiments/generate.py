r"""Renders a talking face: ``python -m experiments.generate --config=NAME[:ARGS] --workdir=DIR \
    --face=VIDEO_OR_IMAGE --audio=AUDIO --output=OUT.mp4 [--blend=direct|feather]``; the two-stage
renderers also take ``--landmark_workdir=DIR`` (a trained ``iplap_landmark`` / ``dct_landmark``).

Restores the latest checkpoint of a training workdir (``python -m experiments.train``) and renders
the face video (looped back and forth when shorter than the audio) or photo (still pose) speaking
the audio (any format, or the audio track of a video). Frames without a face pass through
unchanged. ``--config`` may be omitted: the workdir's ``config.json`` is used; ``--config.x.y=v``
overrides fields as in training. Prints end-to-end frames/s and the time per stage (decode,
detection, crop, generation, paste-back, encoding). The mp4 appears only when complete.
"""


from absl import app, flags

from experiments import cli, configs

_CONFIG = flags.DEFINE_string("config", None, "NAME[:ARGS], one of: " + ", ".join(configs.list_configs())
                              + " (default: the workdir's config.json)")
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir whose latest checkpoint to use.")
_FACE = flags.DEFINE_string("face", None, "Face video or photo.")
_AUDIO = flags.DEFINE_string("audio", None, "Driving audio (any format, or a video with audio).")
_OUTPUT = flags.DEFINE_string("output", None, "Output mp4 (written atomically).")
_BLEND = flags.DEFINE_enum("blend", None, ["direct", "feather"],
                           "Paste-back: direct cover or a feathered mask (default: the model's).")
_LANDMARKS = flags.DEFINE_string("landmark_workdir", None,
                                 "Two-stage renderers: the trained audio-to-landmark workdir (iplap_landmark "
                                 "or dct_landmark; default: config.inference.landmark_workdir).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BATCH = flags.DEFINE_integer("batch_size", None, "Frames per generator call (default: config.infer).")
_FPS = flags.DEFINE_float("fps", 25.0, "Output frame rate (the face video is resampled to it).")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bars.")
flags.mark_flags_as_required(["workdir", "face", "audio", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from talkjax import generate
  from talkjax.train.logging import quiet_library_logs
  quiet_library_logs()
  with cli.exit_on_error():
    config = cli.resolve_config(_CONFIG.value, _WORKDIR.value)
    report = generate.generate_from_workdir(
        _WORKDIR.value, _FACE.value, _AUDIO.value, _OUTPUT.value, config=config, step=_STEP.value,
        batch_size=_BATCH.value, landmark_workdir=_LANDMARKS.value, paste=_BLEND.value, fps=_FPS.value,
        progress=not _QUIET.value)
  print(report.summary())


if __name__ == "__main__":
  cli.run(main)
