"""The generic generation pipeline: face video or photo + audio -> mp4, through a task's renderer.

Stages (timed separately and reported):

1. **Audio**: ``talkjax.audio.load`` (any format, any rate, stereo, or the audio of a video) and the
   Wav2Lip mel spectrogram. The output has ``round(seconds * fps)`` frames: its length follows the
   audio (within one frame), and the audio is muxed in.
2. **Faces** (decode + detection): one streaming pass over the face video at ``fps`` with the
   MediaPipe tracker (``talkjax.faces``), keeping only landmarks; a photo is one frame, held still.
   Frames past the ones the output needs are not read. Crop boxes as in preprocessing: the loose
   DCK-style box (``talkjax.data.preprocess.face_boxes``) or IP_LAP's box (``faces.ip_lap_boxes``).
3. **Looping**: a face video shorter than the audio plays forward, then backward, then forward...
   (``loop_indices``). Looping needs frames out of order, so the video's frames are kept in a
   disk-backed array (``np.memmap`` in a temporary directory, deleted afterwards) during the
   tracking pass; a video at least as long as the audio is simply decoded a second time.
4. **Chunks** of ``renderer.batch_size`` frames: crop, ``renderer.generate_chunk``, paste back
   (``"direct"`` cover, the DCK paper's, or ``"feather"``: a Gaussian-feathered mask), encode. Frames
   without a face pass through unchanged and are listed in the report. Memory holds one chunk of
   frames plus per-frame landmarks (about 1 kB a frame), whatever the input length.
5. **Output**: H.264 + AAC via ``talkjax.video.VideoWriter``, written to a temporary file and renamed
   when complete: a failure at any point leaves nothing at the output path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from talkjax import audio as audio_lib
from talkjax import checkpoints, faces, tasks
from talkjax import video as video_lib
from talkjax.errors import AudioError, CheckpointError, ConfigError, MediaError, NoFaceError
from talkjax.generate.hooks import PASTE_MODES, CropSpec, VideoContext, check_renderer

DEFAULT_FPS = 25.0
NUM_SAMPLE_CROPS = 25  # reference-frame candidates handed to Renderer.prepare
STAGES = ("audio", "decode", "detection", "crop", "generation", "paste", "encoding")


def loop_indices(num_output: int, num_source: int) -> np.ndarray:
  """Face-video frame for each output frame: 0, 1, ..., T-1, T-2, ..., 1, 0, 1, ... (back and forth).

  A single source frame (a photo) gives all zeros; ``T >= num_output`` gives ``0 .. num_output-1``.
  """
  if num_source < 1 or num_output < 0:
    raise ValueError(f"loop_indices: need num_source >= 1 and num_output >= 0, got {num_source}, {num_output}")
  i = np.arange(num_output, dtype=np.int64)
  if num_source == 1:
    return np.zeros_like(i)
  period = 2 * (num_source - 1)
  k = i % period
  return np.where(k < num_source, k, period - k)


@dataclasses.dataclass
class GenerationReport:
  """What :func:`generate` did.

  Attributes:
    output: the written mp4.
    num_frames: output frames.
    fps: output frame rate.
    audio_seconds: length of the driving audio.
    face_frames: frames of the face video used (1 for a photo).
    still: the face was a photo.
    looped: the face video was shorter than the audio and played back and forth.
    passthrough_frames: output frames written unchanged because their face-video frame had no face.
    faceless_source_frames: face-video frames without a (detected or interpolated) face.
    track_summary: the face tracker's summary.
    timings: seconds per stage (:data:`STAGES`) and ``total``.
    boxes: (face_frames, 4) crop boxes in source pixels (NaN where no face).
  """
  output: str
  num_frames: int
  fps: float
  audio_seconds: float
  face_frames: int
  still: bool
  looped: bool
  passthrough_frames: list[int]
  faceless_source_frames: list[int]
  track_summary: str
  timings: dict[str, float]
  boxes: np.ndarray | None = None

  @property
  def end_to_end_fps(self) -> float:
    return self.num_frames / max(self.timings.get("total", 0.0), 1e-9)

  def summary(self) -> str:
    total = max(self.timings.get("total", 0.0), 1e-9)
    split = ", ".join(f"{k} {self.timings.get(k, 0.0):.2f} s ({100 * self.timings.get(k, 0.0) / total:.0f}%)"
                      for k in STAGES)
    lines = [f"wrote {self.output}: {self.num_frames} frames at {self.fps:g} fps "
             f"({self.num_frames / self.fps:.2f} s; audio {self.audio_seconds:.2f} s)",
             f"face: {'photo (still pose)' if self.still else f'{self.face_frames} video frames'}"
             f"{', looped back and forth' if self.looped else ''}; {self.track_summary}",
             f"end to end {self.end_to_end_fps:.1f} frames/s in {total:.2f} s: {split}"]
    if self.passthrough_frames:
      shown = ", ".join(map(str, self.passthrough_frames[:12])) + (" ..." if len(self.passthrough_frames) > 12 else "")
      lines.append(f"{len(self.passthrough_frames)} output frame(s) had no face and passed through unchanged: "
                   f"{shown}")
    return "\n".join(lines)


class _Timer:
  def __init__(self):
    self.seconds = {k: 0.0 for k in STAGES}

  @contextlib.contextmanager
  def __call__(self, stage: str):
    t0 = time.perf_counter()
    try:
      yield
    finally:
      self.seconds[stage] += time.perf_counter() - t0


def _timed_frames(frames: Iterator[np.ndarray], timer: _Timer, stage: str = "decode") -> Iterator[np.ndarray]:
  """Yields from ``frames``, charging the time spent producing each frame to ``stage``."""
  while True:
    with timer(stage):
      try:
        frame = next(frames)
      except StopIteration:
        return
    yield frame


def _mel_windows(mel: np.ndarray, frames: np.ndarray, fps: float, offset: int) -> np.ndarray:
  """(n, 80, 16, 1) windows of output frames ``frames``, clamped as ``talkjax.audio.mel_windows``."""
  starts = audio_lib.mel_start(frames, fps, offset)
  starts = np.clip(starts, 0, mel.shape[1] - audio_lib.MEL_WINDOW)
  idx = starts[:, None] + np.arange(audio_lib.MEL_WINDOW)[None]
  return np.ascontiguousarray(np.moveaxis(mel[:, idx], 0, 1)[..., None], np.float32)


def _crop_boxes(spec: CropSpec, track: faces.FaceTrack) -> np.ndarray:
  """(T, 4) crop boxes in source pixels (NaN where no face), as preprocessing computes them."""
  if spec.kind == "ip_lap":
    return faces.ip_lap_boxes(track.landmarks, margin=spec.margin)
  from talkjax.data.preprocess import face_boxes
  boxes = np.full((track.num_frames, 4), np.nan, np.float32)
  if track.segments:
    boxes = face_boxes(track.landmarks, track.segments, track.frame_size, spec.scale)
  return boxes


def _masks(spec: CropSpec, paste: str):
  """A function ``crop_landmarks -> mask`` (None for direct paste)."""
  if paste == "direct":
    return lambda points: None
  if spec.mask == "ellipse":
    mask = faces.ellipse_mask(spec.size, feather=spec.feather)
    return lambda points: mask
  return lambda points: faces.landmark_mask(points, spec.size, region=spec.mask, feather=spec.feather)


class _FrameCache:
  """Face-video frames on disk (``np.memmap``), for random access when looping."""

  def __init__(self, directory: str, capacity: int, shape: tuple[int, int, int]):
    self.path = os.path.join(directory, "frames.u8")
    self.capacity, self.shape = int(capacity), tuple(shape)
    self.array = np.memmap(self.path, np.uint8, "w+", shape=(self.capacity,) + self.shape)
    self.count = 0

  def append(self, frame: np.ndarray) -> None:
    if frame.shape != self.shape:
      raise MediaError(self.path, f"frame {self.count} is {frame.shape}, the first was {self.shape}")
    self.array[self.count] = frame
    self.count += 1

  def __getitem__(self, i: int) -> np.ndarray:
    return np.asarray(self.array[i])


def _track(face: str, still_image: np.ndarray | None, limit: int, fps: float, cache_dir: str | None,
           timer: _Timer, progress: bool, tracker: faces.FaceTracker | None, total: int | None = None):
  """The tracking pass over at most ``limit`` frames. Returns (track, cache or None)."""
  cache = None
  if still_image is not None:
    frames: Iterator[np.ndarray] = iter([still_image])
  else:
    raw = (f.image for f in video_lib.iter_frames(face, fps=fps))
    frames = _timed_frames(_take(raw, limit), timer)

  def source():
    nonlocal cache
    for frame in frames:
      if cache_dir is not None:
        if cache is None:
          cache = _FrameCache(cache_dir, limit, frame.shape)
        with timer("decode"):
          cache.append(frame)
      yield frame

  t0 = time.perf_counter()
  decode_before = timer.seconds["decode"]
  try:
    track = faces.track_faces(source(), tracker=tracker, keep_mesh=False, progress=progress,
                              total=1 if still_image is not None else total)
  except ValueError as e:
    if isinstance(e, MediaError):
      raise
    raise MediaError(face, str(e)) from e
  timer.seconds["detection"] += time.perf_counter() - t0 - (timer.seconds["decode"] - decode_before)
  return track, cache


def _take(iterable, n: int):
  for i, item in enumerate(iterable):
    if i >= n:
      return
    yield item


def _probe_frames(face: str, fps: float) -> int | None:
  """Estimated number of frames of ``face`` at ``fps`` (None if unknown)."""
  try:
    info = video_lib.probe(face)
  except MediaError:
    raise
  except Exception:  # noqa: BLE001  (an estimate only: the real count comes from decoding)
    return None
  if not info.duration or not math.isfinite(info.duration):
    return None
  return int(math.ceil(info.duration * fps))


def generate(renderer: Any, face: str | os.PathLike[str], audio: str | os.PathLike[str],
             output: str | os.PathLike[str], *, fps: float = DEFAULT_FPS, paste: str | None = None,
             progress: bool = True, tracker: faces.FaceTracker | None = None, crf: int = 18,
             preset: str = "veryfast", work_dir: str | None = None) -> GenerationReport:
  """Renders ``face`` speaking ``audio`` into ``output`` (mp4) with ``renderer`` (a task's inference hook).

  Args:
    renderer: ``task.inference(config, variables)`` (see :mod:`talkjax.generate.hooks`).
    face: a face video (any format FFmpeg reads) or a photo (jpg/png/...).
    audio: any audio file, or a video whose audio to use.
    output: the mp4 to write (atomically).
    fps: output frame rate (the face video is resampled to it; the models are trained at 25 fps).
    paste: ``"direct"`` or ``"feather"`` (default: the renderer's ``crop.paste``).
    progress: tqdm progress bars on stderr.
    tracker: a ``talkjax.faces.FaceTracker`` to reuse (default: a new one).
    crf, preset: x264 settings of the output (quality 18 is visually lossless).
    work_dir: where the temporary frame cache of a looped video goes (default: the system's).

  Returns:
    A :class:`GenerationReport` (``report.summary()`` is printable).

  Raises:
    MediaError / AudioError / VideoError: a missing, unreadable or corrupt face or audio file.
    NoFaceError: no face in the photo or in any frame of the video.
  """
  check_renderer(renderer, type(renderer).__module__)
  spec: CropSpec = renderer.crop
  paste = spec.paste if paste is None else paste
  if paste not in PASTE_MODES:
    raise ConfigError(f"paste: expected one of {', '.join(PASTE_MODES)}, got {paste!r}")
  if not fps or fps <= 0:
    raise ConfigError(f"fps: must be positive, got {fps}")
  face, audio, output = os.fspath(face), os.fspath(audio), os.fspath(output)
  if not os.path.exists(face):
    raise MediaError(face, "face file not found")
  timer = _Timer()
  t_start = time.perf_counter()

  with timer("audio"):
    wav = audio_lib.load(audio)
    if len(wav) < audio_lib.HOP_LENGTH * audio_lib.MEL_WINDOW:
      raise AudioError(audio, f"audio of {len(wav) / audio_lib.SAMPLE_RATE:.3f} s is too short "
                       f"(at least {audio_lib.MEL_WINDOW / audio_lib.MEL_FPS:.1f} s)")
    mel = audio_lib.melspectrogram(wav)
  audio_seconds = len(wav) / audio_lib.SAMPLE_RATE
  num_output = max(1, int(round(audio_seconds * fps)))

  still_image = video_lib.load_image(face) if video_lib.is_image_file(face) else None
  temp = None
  try:
    cache_dir, estimate = None, None
    if still_image is None:
      estimate = _probe_frames(face, fps)
      if estimate is None or estimate < num_output + 2:  # looping likely: keep the frames on disk
        temp = tempfile.mkdtemp(prefix="talkjax-generate-", dir=work_dir)
        cache_dir = temp
    track, cache = _track(face, still_image, num_output, fps, cache_dir, timer, progress, tracker,
                          total=None if estimate is None else min(estimate, num_output))
    num_source = track.num_frames
    faces.require_face(track, face)
    boxes = _crop_boxes(spec, track)
    valid = np.all(np.isfinite(boxes), axis=1)
    if not valid.any():
      raise NoFaceError(face, f"no frame has a usable face box ({track.summary()})")
    crop_points = faces.to_crop_coords(track.landmarks, boxes, spec.size)
    indices = loop_indices(num_output, num_source)
    looped = still_image is None and num_source < num_output
    if looped and cache is None:
      # The estimate said the video was long enough, but it was not: decode it once more into a cache.
      temp = temp or tempfile.mkdtemp(prefix="talkjax-generate-", dir=work_dir)
      cache = _FrameCache(temp, num_source, (track.frame_size[0], track.frame_size[1], 3))
      for frame in _timed_frames(_take((f.image for f in video_lib.iter_frames(face, fps=fps)), num_source),
                                 timer):
        cache.append(frame)

    prepare = getattr(renderer, "prepare", None)
    if callable(prepare):
      prepare(_context(face, still_image, cache, fps, mel, indices, track, boxes, crop_points, valid, spec,
                       timer))

    report = _render(renderer, spec, paste, face, still_image, cache, fps, wav, mel, indices, boxes, crop_points,
                     valid, output, timer, progress, crf, preset)
  finally:
    if temp is not None:
      shutil.rmtree(temp, ignore_errors=True)
  timer.seconds["total"] = time.perf_counter() - t_start
  return GenerationReport(
      output=output, num_frames=num_output, fps=float(fps), audio_seconds=audio_seconds, face_frames=num_source,
      still=still_image is not None, looped=looped, passthrough_frames=report,
      faceless_source_frames=[int(i) for i in np.flatnonzero(~valid)], track_summary=track.summary(),
      timings=dict(timer.seconds), boxes=boxes)


def _source_frames(face, still_image, cache, indices, fps, timer) -> Iterator[np.ndarray]:
  """The face-video frame of every output frame, in output order."""
  if still_image is not None:
    for _ in indices:
      yield still_image
    return
  if cache is not None:
    for j in indices:
      with timer("decode"):
        frame = cache[int(j)]
      yield frame
    return
  # Not looped: output frame i shows frame i; decode again, streaming.
  stream = _timed_frames((f.image for f in video_lib.iter_frames(face, fps=fps)), timer)
  for i, frame in zip(indices, stream):
    del i
    yield frame


def _context(face, still_image, cache, fps, mel, indices, track, boxes, crop_points, valid, spec, timer):
  """The whole-video context for ``Renderer.prepare`` (samples crops evenly over the faced frames)."""
  candidates = np.flatnonzero(valid)
  picks = candidates[np.unique(np.linspace(0, len(candidates) - 1, min(NUM_SAMPLE_CROPS, len(candidates)))
                               .round().astype(int))]
  crops = []
  with timer("crop"):
    if still_image is not None:
      crops = [faces.crop(still_image, boxes[0], spec.size)]
    elif cache is not None:
      crops = [faces.crop(cache[int(j)], boxes[j], spec.size) for j in picks]
    else:
      wanted = set(int(j) for j in picks)
      for j, frame in enumerate(video_lib.iter_frames(face, fps=fps)):
        if j in wanted:
          crops.append(faces.crop(frame.image, boxes[j], spec.size))
        if j >= picks[-1]:
          break
  return VideoContext(num_frames=len(indices), fps=float(fps), mel=mel, source_indices=indices,
                      landmarks=track.landmarks, boxes=boxes, crop_landmarks=crop_points,
                      sample_indices=picks, sample_crops=np.stack(crops), still=still_image is not None)


def _render(renderer, spec, paste, face, still_image, cache, fps, wav, mel, indices, boxes, crop_points, valid,
            output, timer, progress, crf, preset) -> list[int]:
  """The chunked generation pass; returns the output frames that passed through unchanged."""
  mask_of = _masks(spec, paste)
  chunk = int(renderer.batch_size)
  passthrough: list[int] = []
  still_crop = None
  frames = _source_frames(face, still_image, cache, indices, fps, timer)
  bar = tqdm(total=len(indices), disable=not progress, desc="generate", unit="frame", file=sys.stderr)
  with video_lib.VideoWriter(output, fps, audio=wav, sr=audio_lib.SAMPLE_RATE, crf=crf, preset=preset) as writer:
    for start in range(0, len(indices), chunk):
      idx = indices[start:start + chunk]
      out_ids = np.arange(start, start + len(idx))
      batch = [next(frames) for _ in idx]
      if len(batch) != len(idx):
        raise MediaError(face, "the face video ended early on the second decode")
      has_face = valid[idx]
      crops = []
      with timer("crop"):
        for frame, j, ok in zip(batch, idx, has_face):
          if not ok:
            continue
          if still_image is not None:
            if still_crop is None:
              still_crop = faces.crop(still_image, boxes[0], spec.size)
            crops.append(still_crop)
          else:
            crops.append(faces.crop(frame, boxes[j], spec.size))
      generated = None
      if crops:
        with timer("generation"):
          generated = renderer.generate_chunk(
              np.stack(crops), crop_points[idx[has_face]].astype(np.float32),
              _mel_windows(mel, out_ids[has_face], fps, int(renderer.mel_offset)), out_ids[has_face])
          generated = np.asarray(generated)
        if generated.shape != (len(crops), spec.size, spec.size, 3):
          raise ConfigError(f"renderer.generate_chunk returned shape {generated.shape}, expected "
                            f"{(len(crops), spec.size, spec.size, 3)}")
      k = 0
      for frame, j, ok, i in zip(batch, idx, has_face, out_ids):
        if ok:
          with timer("paste"):
            mask = mask_of(crop_points[j])
            if mask is None:
              frame = faces.paste_direct(frame, generated[k], boxes[j])
            else:
              frame = faces.paste_blend(frame, generated[k], boxes[j], mask)
          k += 1
        else:
          passthrough.append(int(i))
        with timer("encoding"):
          writer.write(frame)
      bar.update(len(idx))
    with timer("encoding"):
      writer.close()
  bar.close()
  return passthrough


# --- Restoring a trained system ------------------------------------------------------------------


def _abstract_variables(task, config) -> dict:
  from talkjax.train.state import example_batch

  nets = task.networks(config)
  spec = task.batch_spec(config)
  return jax.eval_shape(lambda: task.init(config, nets, jax.random.PRNGKey(0), example_batch(spec)))


def load_variables(config: ml_collections.ConfigDict, workdir: str | os.PathLike[str],
                   step: int | None = None) -> dict:
  """Every network's ``{"params", "batch_stats"}`` from ``workdir``'s latest (or ``step``) checkpoint.

  Raises:
    CheckpointError: no checkpoint, or one whose networks do not match ``config``'s (the message
      lists the differences; usually the wrong ``--config`` variant).
  """
  workdir = os.path.abspath(os.path.expanduser(os.fspath(workdir)))
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise CheckpointError(f"{workdir}: no checkpoints/ directory (train with python -m experiments.train "
                          f"--config=... --workdir={workdir} first)")
  state = checkpoints.load_train_state(ckpt_dir, step)
  task = tasks.get(config.task)
  expected = _abstract_variables(task, config)
  out, problems = {}, []
  for name, want in expected.items():
    got = {"params": state.get("params", {}).get(name, {}), "batch_stats": state.get("batch_stats", {}).get(name, {})}
    want = {"params": want.get("params", {}), "batch_stats": want.get("batch_stats", {})}
    want_shapes = {jax.tree_util.keystr(p): tuple(v.shape) for p, v in jax.tree_util.tree_leaves_with_path(want)}
    got_shapes = {jax.tree_util.keystr(p): tuple(np.shape(v)) for p, v in jax.tree_util.tree_leaves_with_path(got)}
    problems += [f"{name}: missing {k}" for k in sorted(set(want_shapes) - set(got_shapes))]
    problems += [f"{name}: unexpected {k}" for k in sorted(set(got_shapes) - set(want_shapes))]
    problems += [f"{name}{k}: {got_shapes[k]} != {want_shapes[k]}" for k in sorted(set(want_shapes) & set(got_shapes))
                 if got_shapes[k] != want_shapes[k]]
    out[name] = got
  if problems:
    raise CheckpointError(f"{ckpt_dir}: the checkpoint does not match config {config.task!r} "
                          f"({len(problems)} difference(s): {'; '.join(problems[:6])}); was it trained with "
                          "another config variant? (see its config.json)")
  return out


def _model_diff(a: ml_collections.ConfigDict, b: dict) -> list[str]:
  def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
      if isinstance(v, dict):
        out.update(flat(v, f"{prefix}{k}."))
      else:
        out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out
  fa = flat(json.loads(a.to_json_best_effort()))
  fb = flat(b)
  return sorted(k for k in set(fa) | set(fb)
                if (k.startswith("model.") or k == "task") and fa.get(k) != fb.get(k))


def read_workdir_config(workdir: str | os.PathLike[str]) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (``<workdir>/config.json``)."""
  path = os.path.join(os.fspath(workdir), "config.json")
  if not os.path.exists(path):
    raise ConfigError(f"{workdir}: no config.json (not a training workdir?); pass the config explicitly")
  with open(path, encoding="utf-8") as f:
    return ml_collections.ConfigDict(json.load(f))


def load_renderer(workdir: str | os.PathLike[str], config: ml_collections.ConfigDict | None = None, *,
                  step: int | None = None, **kwargs):
  """Restores the trained system in ``workdir`` and returns its renderer (``task.inference``).

  Args:
    workdir: a training workdir (``checkpoints/`` and ``config.json``).
    config: the experiment config; None reads the workdir's ``config.json``. A config whose task or
      model differs from the one the workdir was trained with is an error naming the fields.
    step: which checkpoint (default: the latest).
    **kwargs: passed to ``task.inference`` (e.g. ``batch_size``).
  """
  trained = None
  if os.path.exists(os.path.join(os.fspath(workdir), "config.json")):
    trained = read_workdir_config(workdir)
  if config is None:
    if trained is None:
      raise ConfigError(f"{workdir}: no config.json; pass the config (--config=NAME[:ARGS])")
    config = trained
  elif trained is not None:
    diff = _model_diff(config, json.loads(trained.to_json_best_effort()))
    if diff:
      raise ConfigError(f"the config differs from the one {workdir} was trained with in {', '.join(diff[:8])}; "
                        "use the same --config variant (or omit --config to use the workdir's config.json)")
  task = tasks.get(config.task)
  if not callable(getattr(task, "inference", None)):
    raise ConfigError(f"task {config.task!r} has no inference hook (talkjax.generate.hooks): it cannot render video")
  if "landmark_workdir" in kwargs and not getattr(task, "TWO_STAGE", False):
    raise ConfigError(f"landmark_workdir: task {config.task!r} renders from audio directly; a landmark model "
                      "applies to the two-stage renderers only (iplap_renderer, gaussian_renderer, "
                      "lip_prior_renderer)")
  variables = load_variables(config, workdir, step)
  return check_renderer(task.inference(config, variables, **kwargs), config.task)


def generate_from_workdir(workdir: str | os.PathLike[str], face: str | os.PathLike[str],
                          audio: str | os.PathLike[str], output: str | os.PathLike[str], *,
                          config: ml_collections.ConfigDict | None = None, step: int | None = None,
                          batch_size: int | None = None, landmark_workdir: str | None = None,
                          **kwargs) -> GenerationReport:
  """:func:`load_renderer` then :func:`generate` (keyword arguments as there).

  ``landmark_workdir``: for two-stage renderers, the trained audio-to-landmark workdir (overrides
  ``config.inference.landmark_workdir``); an error for single-stage models.
  """
  extra = {} if batch_size is None else {"batch_size": int(batch_size)}
  if landmark_workdir:
    extra["landmark_workdir"] = os.fspath(landmark_workdir)
  renderer = load_renderer(workdir, config, step=step, **extra)
  return generate(renderer, face, audio, output, **kwargs)
