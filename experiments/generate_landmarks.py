r"""Predicts talking-face landmarks for a face and an audio track with a trained landmark generator.

``python -m experiments.generate_landmarks --config=NAME[:ARGS] --workdir=DIR --face=VIDEO_OR_IMAGE \
    --audio=AUDIO [--output=DIR]``

Restores the latest checkpoint of a ``landmarks`` training workdir (``iplap_landmark`` or
``dct_landmark``), tracks the face (``talkjax.faces``: MediaPipe detection + mesh, 131 points) through
the face video at 25 fps or on the photo, and predicts the jaw and lips of every output frame from
the audio, the shown frame's pose landmarks and reference frames picked from the face video by lip
opening (IP_LAP's rule). The output has ``round(audio seconds * fps)`` frames; a face video shorter
than the audio plays back and forth, a photo gives a still pose.

Writes into ``--output`` (default ``<workdir>/landmarks/<face>__<audio>/``), each file atomically:

- ``landmarks.npy``      (N, 131, 2) float32, source-frame pixel coordinates (x, y);
- ``landmarks_crop.npy`` (N, 131, 2) float32, the same in [0, 1] of each frame's IP_LAP crop box;
- ``boxes.npy``          (N, 4) float32 crop boxes (x0, y0, x1, y1) in source pixels;
- ``source_frames.npy``  (N,) int64 face-video frame shown by each output frame;
- ``sketch.mp4``         IP_LAP's 125-edge sketch of every frame (``--sketch_size`` px) with the audio;
- ``info.json``          inputs, settings, reference frames, faceless frames, timings (written last).

``--config`` may be omitted (the workdir's ``config.json`` is used); ``--config.x.y=v`` overrides.
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags
import numpy as np

from experiments import cli

_CONFIG = flags.DEFINE_string("config", None, "NAME[:ARGS] of a landmarks config (default: the workdir's "
                              "config.json)")
_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir whose latest checkpoint to use.")
_FACE = flags.DEFINE_string("face", None, "Face video or photo.")
_AUDIO = flags.DEFINE_string("audio", None, "Driving audio (any format, or a video with audio).")
_OUTPUT = flags.DEFINE_string("output", None,
                               "Output directory (default: <workdir>/landmarks/<face>__<audio>).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_BATCH = flags.DEFINE_integer("batch_size", None, "Windows per model call (default: config.infer).")
_FPS = flags.DEFINE_float("fps", 25.0, "Output frame rate (the models are trained at 25 fps).")
_SKETCH = flags.DEFINE_integer("sketch_size", 256, "Side of the sketch video in pixels.")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress bars.")
flags.mark_flags_as_required(["workdir", "face", "audio"])


def default_output(workdir: str, face: str, audio: str) -> str:
  stem = lambda p: os.path.splitext(os.path.basename(os.fspath(p)))[0]  # noqa: E731
  return os.path.join(os.fspath(workdir), "landmarks", f"{stem(face)}__{stem(audio)}")


def _track_face(face: str, num_frames: int, fps: float, progress: bool):
  """Tracks the face through the first ``num_frames`` frames of a video, or on a photo."""
  from talkjax import faces  # pylint: disable=g-import-not-at-top
  from talkjax import video as video_lib  # pylint: disable=g-import-not-at-top
  from talkjax.errors import MediaError  # pylint: disable=g-import-not-at-top
  still = video_lib.is_image_file(face)

  def first_frames():
    # Frames past the ones the output shows are never decoded; the decoder is closed either way.
    stream = video_lib.iter_frames(face, fps=fps)
    try:
      for _, frame in zip(range(num_frames), stream):
        yield frame.image
    finally:
      stream.close()

  frames = iter([video_lib.load_image(face)]) if still else first_frames()
  try:
    track = faces.track_faces(frames, keep_mesh=False, progress=progress and not still,
                              total=1 if still else None)
  except ValueError as e:
    if isinstance(e, MediaError):
      raise
    raise MediaError(face, str(e)) from e
  return faces.require_face(track, face), still


def _save_npy(path: str, array: np.ndarray) -> None:
  from talkjax import fileio  # pylint: disable=g-import-not-at-top
  with fileio.atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.save(f, array)


def generate_landmarks(workdir: str, face: str, audio: str, output: str | None = None, *, config=None,
                       step: int | None = None, batch_size: int | None = None, fps: float = 25.0,
                       sketch_size: int = 256, progress: bool = True) -> dict:
  """Runs the whole command (see the module docstring); returns the ``info.json`` contents.

  Raises:
    MediaError / AudioError / VideoError: missing, unreadable or unsuitable face or audio file.
    NoFaceError: no face on the photo or in any frame of the video.
    CheckpointError / ConfigError: no usable checkpoint, or a config that does not match it.
  """
  from talkjax import audio as audio_lib  # pylint: disable=g-import-not-at-top
  from talkjax import fileio  # pylint: disable=g-import-not-at-top
  from talkjax import landmarks as lm  # pylint: disable=g-import-not-at-top
  from talkjax import video as video_lib  # pylint: disable=g-import-not-at-top
  from talkjax.errors import ConfigError, MediaError  # pylint: disable=g-import-not-at-top
  from talkjax.generate import loop_indices  # pylint: disable=g-import-not-at-top
  from talkjax.models import landmark_inference  # pylint: disable=g-import-not-at-top

  face, audio, workdir = os.fspath(face), os.fspath(audio), os.fspath(workdir)
  if not fps or fps <= 0:
    raise ConfigError(f"fps: must be positive, got {fps}")
  if sketch_size < 16:
    raise ConfigError(f"sketch_size: must be >= 16 pixels, got {sketch_size}")
  if not os.path.exists(face):
    raise MediaError(face, "face file not found")
  output = default_output(workdir, face, audio) if output is None else os.fspath(output)
  timings: dict[str, float] = {}
  t0 = time.perf_counter()
  overrides = {} if batch_size is None else {"batch_size": int(batch_size)}
  predictor = landmark_inference.load_predictor(workdir, config, step=step, **overrides)
  timings["load"] = time.perf_counter() - t0

  t = time.perf_counter()
  wav = audio_lib.load(audio)
  if len(wav) < audio_lib.HOP_LENGTH * audio_lib.MEL_WINDOW:
    raise MediaError(audio, f"audio of {len(wav) / audio_lib.SAMPLE_RATE:.3f} s is too short "
                     f"(at least {audio_lib.MEL_WINDOW / audio_lib.MEL_FPS:.1f} s)")
  mel = audio_lib.melspectrogram(wav)
  seconds = len(wav) / audio_lib.SAMPLE_RATE
  num_frames = max(1, int(round(seconds * fps)))
  timings["audio"] = time.perf_counter() - t

  t = time.perf_counter()
  track, still = _track_face(face, num_frames, fps, progress)
  source = loop_indices(num_frames, track.num_frames)
  timings["faces"] = time.perf_counter() - t

  t = time.perf_counter()
  result = predictor.predict_track(mel, track.landmarks, source, fps=fps, progress=progress)
  timings["prediction"] = time.perf_counter() - t

  t = time.perf_counter()
  os.makedirs(output, exist_ok=True)
  _save_npy(os.path.join(output, "landmarks.npy"), result.landmarks)
  _save_npy(os.path.join(output, "landmarks_crop.npy"), result.normalized)
  _save_npy(os.path.join(output, "boxes.npy"), result.boxes)
  _save_npy(os.path.join(output, "source_frames.npy"), result.source_indices)
  sketches = (lm.draw_sketch(points, sketch_size) for points in result.normalized)
  video_lib.write_video(os.path.join(output, "sketch.mp4"), sketches, fps, audio=wav,
                        sr=audio_lib.SAMPLE_RATE, preset="veryfast")
  timings["writing"] = time.perf_counter() - t
  timings["total"] = time.perf_counter() - t0
  info = {
      "face": os.path.abspath(face), "audio": os.path.abspath(audio), "workdir": os.path.abspath(workdir),
      "model": predictor.model.__class__.__name__, "fps": float(fps), "num_frames": int(num_frames),
      "audio_seconds": seconds, "still": bool(still), "face_frames": int(track.num_frames),
      "looped": bool(not still and track.num_frames < num_frames),
      "reference_frames": [int(i) for i in result.reference_indices],
      "faceless_output_frames": [int(i) for i in result.filled_frames],
      "track": track.summary(), "crop_margin_px": predictor.margin, "timings_s": timings,
      "files": ["landmarks.npy", "landmarks_crop.npy", "boxes.npy", "source_frames.npy", "sketch.mp4"],
  }
  fileio.atomic_write_text(os.path.join(output, "info.json"), json.dumps(info, indent=2) + "\n")
  info["output"] = output
  return info


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from talkjax.train.logging import quiet_library_logs  # pylint: disable=g-import-not-at-top
  quiet_library_logs()
  with cli.exit_on_error():
    config = cli.resolve_config(_CONFIG.value, _WORKDIR.value)
    info = generate_landmarks(_WORKDIR.value, _FACE.value, _AUDIO.value, _OUTPUT.value, config=config,
                              step=_STEP.value, batch_size=_BATCH.value, fps=_FPS.value,
                              sketch_size=_SKETCH.value, progress=not _QUIET.value)
  n, total = info["num_frames"], info["timings_s"]["total"]
  print(f"wrote {n} frames of landmarks ({n / info['fps']:.2f} s; audio {info['audio_seconds']:.2f} s) "
        f"to {info['output']} in {total:.1f} s")
  print(f"face: {'photo (still pose)' if info['still'] else str(info['face_frames']) + ' video frames'}"
        f"{', looped back and forth' if info['looped'] else ''}; {info['track']}")
  if info["faceless_output_frames"]:
    print(f"{len(info['faceless_output_frames'])} output frame(s) showed a face-video frame without a face; "
          "they use the nearest frame's pose")


if __name__ == "__main__":
  cli.run(main)
