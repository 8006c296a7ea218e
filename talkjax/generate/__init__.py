"""Face-video generation: any face video or photo + any audio -> an mp4 of that face speaking.

The pipeline (:mod:`talkjax.generate.pipeline`) is generic: face tracking and crop boxes, chunked
streaming, looping a short face video back and forth, paste-back, encoding with the driving audio,
timing. Each trainable system plugs in through a small per-task hook, ``task.inference(config,
variables)`` (:mod:`talkjax.generate.hooks`), which says how to crop and renders crops.

Typical use::

  from talkjax import generate
  report = generate.generate_from_workdir("/tmp/dck", face="face.mp4", audio="speech.wav",
                                          output="out.mp4", config="dck_unet:runlocal")
  print(report.summary())

or ``python -m experiments.generate --config=dck_unet --workdir=DIR --face=... --audio=... --output=...``.
"""

from talkjax.generate.hooks import CropSpec, Renderer, VideoContext, check_renderer

_PIPELINE = ("GenerationReport", "generate", "generate_from_workdir", "load_renderer", "load_variables",
             "loop_indices", "read_workdir_config")

__all__ = ["CropSpec", "Renderer", "VideoContext", "check_renderer", *_PIPELINE]


def __getattr__(name):
  # The pipeline pulls in face detection and video I/O; task modules import only the hook types.
  if name in _PIPELINE:
    from talkjax.generate import pipeline
    return getattr(pipeline, name)
  raise AttributeError(f"module 'talkjax.generate' has no attribute {name!r}")
