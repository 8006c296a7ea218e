"""Preprocessing talking-face video into ArrayRecord shards (``python -m experiments.preprocess``).

Per clip (any file FFmpeg reads, any frame rate):

1. Audio: the first audio stream, 16 kHz mono, Wav2Lip mel (``talkjax.audio``). No audio stream ->
   the clip is skipped. Frames past the end of the audio are dropped.
2. Faces: ``landmarks="mediapipe"`` tracks the face with ``talkjax.faces`` (detection, 468-point
   mesh, tracking, gap filling) on a first streaming decode at 25 fps; ``"sidecar"`` reads the
   synthetic corpus's ``<clip>.landmarks.npy`` (one decode only). Interior gaps of at most
   ``max_gap`` frames are interpolated; longer gaps (and faceless frames at either end) split the
   clip into face segments. Segments shorter than ``min_record_seconds`` are dropped (reported);
   longer than ``max_record_seconds`` are cut into equal parts, one record each.
3. Crops, from the landmarks of the whole clip: the IP_LAP crop (bounding box of the 131 points
   +-5 px, square) at ``size``, and a loose face crop at ``face_size`` for DCK-style models, computed
   from the 74 *pose* points only (eyebrows, eyes, nose, face sides: they do not move with speech,
   so the ``_a``/``_b`` clips of a synthetic pair get identical boxes and the crop does not
   breathe with the jaw), constant in size per face segment and smoothed (``faces.loose_boxes``).
4. A second streaming decode crops each frame and encodes both crops to JPEG as it goes, so memory
   holds one frame and one segment's small arrays, never a clip's frames (a 10-minute 1080p video
   is fine).

Records are written by the worker to a scratch file and copied by the parent into shards, committed
atomically (:mod:`talkjax.data.shards`); ``index.json`` is rebuilt at the end of every run. A bad clip
(missing/corrupt file, no audio, no face, a sidecar that does not match) is logged and reported in
``index.json["skipped"]`` with its reason; it never stops the run, and re-runs do not retry it unless
``retry_skipped``. Finished clips are never redone: re-running the same command resumes.

**Record length.** Segments are cut at ``max_record_seconds`` (default 10 s = 250 frames): a sampler
reads the segment record (landmarks, boxes, mel: ~0.3 MB for 10 s) and then only the frames it uses
(~10-30 kB each), and every reference frame it may want lies within 10 s of the target. Shorter
records would limit how far references can come from; longer ones make segment reads (mostly mel)
larger for no benefit.

**Held-out split.** By speaker: ``split_speakers`` puts a speaker in ``eval`` when a hash of its name
falls below ``eval_fraction`` (so adding speakers never moves existing ones), with at least one eval
and one train speaker when there are two or more. The speaker of a clip is its directory relative
to the input root (LRS2: the video id; the synthetic corpus: ``spk003``), or for files directly in
the root the file name without a trailing ``_<number>`` / ``_a`` / ``_b`` (HDTF: ``WDA_BarackObama``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import logging
import math
import multiprocessing
import os
import re
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from talkjax import audio as audio_lib
from talkjax import faces
from talkjax import landmarks as lm
from talkjax import video as video_lib
from talkjax.data import records
from talkjax.data import shards
from talkjax.data.shards import (  # noqa: F401  (re-exported)
    FORMAT_VERSION, FPS, MEL_MARGIN_FRAMES, load_index, split_speakers)
from talkjax.errors import ConfigError, MediaError, NoFaceError

logger = logging.getLogger(__name__)

MAX_RECORD_SECONDS = 10.0
MIN_RECORD_SECONDS = 1.0
# The 131-point box is centred this many (pose-box long sides) below the pose-point box, and its long
# side is the pose box's (measured: 0.245 / 1.02 on the synthetic face, 0.256 / 1.00 on a real mesh).
FACE_CENTRE_SHIFT = 0.25
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".flv"})
LANDMARK_MODES = ("mediapipe", "sidecar")


@dataclasses.dataclass(frozen=True)
class Settings:
  """What determines the records of a clip (checked against ``settings.json`` on re-runs).

  Attributes:
    landmarks: ``"mediapipe"`` (real video) or ``"sidecar"`` (``<clip>.landmarks.npy``).
    size: side of the IP_LAP crop in pixels.
    face_size: side of the loose face crop in pixels.
    max_record_seconds: longest record; longer face segments are cut into equal parts.
    min_record_seconds: shorter face segments are dropped.
    max_gap: longest run of faceless frames that is interpolated (frames).
    margin: IP_LAP crop margin around the landmarks (pixels).
    face_scale: loose crop side / long side of the face (eyebrows to chin).
    jpeg_quality: JPEG quality of the stored crops.
  """
  landmarks: str = "mediapipe"
  size: int = 128
  face_size: int = 256
  max_record_seconds: float = MAX_RECORD_SECONDS
  min_record_seconds: float = MIN_RECORD_SECONDS
  max_gap: int = faces.tracker.DEFAULT_MAX_GAP
  margin: int = faces.IP_LAP_TRAIN_MARGIN
  face_scale: float = 1.5
  jpeg_quality: int = records.DEFAULT_JPEG_QUALITY

  def validate(self) -> Settings:
    if self.landmarks not in LANDMARK_MODES:
      raise ConfigError(f"landmarks: expected one of {', '.join(LANDMARK_MODES)}, got {self.landmarks!r}")
    for name in ("size", "face_size"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 2048:
        raise ConfigError(f"{name}: expected an integer number of pixels in [16, 2048], got {value!r}")
    if not 0 < self.min_record_seconds <= self.max_record_seconds:
      raise ConfigError(f"min_record_seconds/max_record_seconds: need 0 < min <= max, got "
                        f"{self.min_record_seconds} and {self.max_record_seconds}")
    if self.max_gap < 0 or self.margin < 0 or self.face_scale <= 0:
      raise ConfigError("max_gap and margin must be >= 0 and face_scale > 0")
    if not 1 <= self.jpeg_quality <= 100:
      raise ConfigError(f"jpeg_quality: expected 1..100, got {self.jpeg_quality}")
    return self

  @property
  def max_frames(self) -> int:
    return max(1, int(round(self.max_record_seconds * FPS)))

  @property
  def min_frames(self) -> int:
    return max(1, int(math.ceil(self.min_record_seconds * FPS - 1e-9)))

  def to_json(self) -> dict:
    return {"format_version": FORMAT_VERSION, "fps": FPS, **dataclasses.asdict(self)}


# ------------------------------------------------------------------------------------------------
# Finding clips


@dataclasses.dataclass(frozen=True)
class ClipSource:
  """One input clip: absolute ``path``, ``clip`` id (relative path, no extension), ``speaker``, and
  ``pair`` = (group, "a"|"b") when both ``<name>_a`` and ``<name>_b`` exist."""
  path: str
  clip: str
  speaker: str
  pair: tuple[str, str] | None = None


_PAIR = re.compile(r"^(.+)_([ab])$")
_TAKE = re.compile(r"^(.+?)(?:_\d+|_[ab])$")


def _speaker_of(rel_parent: str, stem: str) -> str:
  if rel_parent:
    return rel_parent
  m = _TAKE.match(stem)
  return m.group(1) if m else stem


def find_clips(input_spec: str | os.PathLike[str] | Sequence[str]) -> list[ClipSource]:
  """Lists the clips of an input: a directory tree, a text file of paths, or a list of paths.

  A directory is walked recursively for video files (sorted, hidden entries skipped). A text file
  lists one path per line (blank lines and ``#`` comments ignored; relative paths are relative to
  the list file). Clip ids are paths relative to the directory (or to the common parent of the
  listed files' directories; if they all sit in one directory, to its parent, so that directory
  names their speaker), without extension.

  Raises:
    ConfigError: the input does not exist or holds no video.
  """
  if isinstance(input_spec, (str, os.PathLike)):
    spec = os.fspath(input_spec)
    if os.path.isdir(spec):
      root = os.path.abspath(spec)
      paths = []
      for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        paths.extend(os.path.join(directory, f) for f in sorted(files)
                     if not f.startswith(".") and os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS)
    elif os.path.isfile(spec):
      base = os.path.dirname(os.path.abspath(spec))
      with open(spec, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
      paths = [os.path.abspath(os.path.join(base, p)) for p in lines if p and not p.startswith("#")]
      root = None
    else:
      raise ConfigError(f"input: {spec} is neither a directory nor a list file")
  else:
    paths = [os.path.abspath(os.fspath(p)) for p in input_spec]
    root = None
  if not paths:
    raise ConfigError(f"input: no video files ({', '.join(sorted(VIDEO_EXTENSIONS))}) in {input_spec}")
  if root is None:
    parents = {os.path.dirname(p) for p in paths}
    root = os.path.commonpath(sorted(parents))
    if len(parents) == 1:  # files of one directory: that directory names the speaker
      root = os.path.dirname(root)
  seen: dict[str, str] = {}
  clips = []
  for path in paths:
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    clip = os.path.splitext(rel)[0]
    if clip in seen:
      raise ConfigError(f"input: {path} and {seen[clip]} have the same clip id {clip!r}")
    seen[clip] = path
    parent, stem = os.path.split(clip)
    clips.append((path, clip, parent, stem))
  out = []
  for path, clip, parent, stem in clips:
    pair = None
    m = _PAIR.match(stem)
    if m:
      other = f"{parent}/{m.group(1)}_{'b' if m.group(2) == 'a' else 'a'}".lstrip("/")
      if other in seen:
        pair = (f"{parent}/{m.group(1)}".lstrip("/"), m.group(2))
    out.append(ClipSource(path=path, clip=clip, speaker=_speaker_of(parent, stem), pair=pair))
  return out


# ------------------------------------------------------------------------------------------------
# One clip


def face_boxes(landmarks: np.ndarray, segments: Sequence[tuple[int, int]], frame_size: tuple[int, int],
               scale: float = 1.5) -> np.ndarray:
  """Loose (DCK-style) face crop boxes from the pose points only; (T, 4), NaN outside segments.

  The face box is estimated from the 74 pose points (which do not move with speech): same long side
  as their bounding box, centred ``FACE_CENTRE_SHIFT`` long sides lower (the chin is not a pose
  point). ``faces.loose_boxes`` then scales it, holds its size per segment and smooths its centre.
  """
  pose = np.asarray(landmarks, np.float64)[:, lm.POSE_SLICE]
  lo, hi = pose.min(axis=1), pose.max(axis=1)
  side = (hi - lo).max(axis=-1)
  centre = 0.5 * (lo + hi)
  centre[:, 1] += FACE_CENTRE_SHIFT * side
  corners = np.stack([centre - 0.5 * side[:, None], centre + 0.5 * side[:, None]], axis=1)
  return faces.loose_boxes(corners, scale=scale, segments=segments, frame_size=frame_size)


def _split_segments(segments: Sequence[tuple[int, int]], settings: Settings):
  parts, dropped = [], []
  for s, e in segments:
    n = e - s
    if n < settings.min_frames:
      dropped.append((s, e))
      continue
    k = -(-n // settings.max_frames)
    edges = [s + (n * i) // k for i in range(k + 1)]
    parts.extend(zip(edges[:-1], edges[1:]))
  return parts, dropped


def _sidecar(path: str, suffix: str) -> str:
  return os.path.splitext(path)[0] + suffix


def _load_sidecar_landmarks(path: str) -> np.ndarray:
  side = _sidecar(path, ".landmarks.npy")
  if not os.path.exists(side):
    raise MediaError(side, "landmark sidecar not found (use --landmarks=mediapipe for real video)")
  try:
    points = np.load(side, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise MediaError(side, f"unreadable landmark sidecar: {e}") from e
  if points.ndim != 3 or points.shape[1:] != (lm.NUM_POINTS, 2) \
      or not np.issubdtype(points.dtype, np.floating):
    raise MediaError(side, f"expected (T, {lm.NUM_POINTS}, 2) float landmarks, "
                     f"got {points.dtype} {points.shape}")
  return points.astype(np.float32)


def _frames(path: str) -> Iterable[np.ndarray]:
  return (f.image for f in video_lib.iter_frames(path, fps=FPS))


def _index_list(mask: np.ndarray) -> list[int]:
  return [int(i) for i in np.flatnonzero(mask)]


def process_clip(source: ClipSource, settings: Settings, records_path: str,
                 tracker: faces.FaceTracker | None = None) -> tuple[dict, list[dict]]:
  """Preprocesses one clip into ``records_path`` (an ArrayRecord file).

  Returns:
    ``(report, segments)``: the clip's JSON report and one JSON entry per segment record (with its
    ``position`` in ``records_path``).

  Raises:
    MediaError (AudioError, VideoError, NoFaceError): the clip is unusable; the message says why.
  """
  start_time = time.perf_counter()
  path = source.path
  if not os.path.exists(path):
    raise MediaError(path, "file not found")
  wav = audio_lib.load(path)
  mel = audio_lib.melspectrogram(wav)
  mel_total = int(mel.shape[1])
  audio_frames = int(math.ceil(len(wav) * FPS / audio_lib.SAMPLE_RATE - 1e-6))
  detector_runs = 0
  if settings.landmarks == "sidecar":
    points = _load_sidecar_landmarks(path)
    info = video_lib.probe(path)
    frame_size = (info.height, info.width)
    detected = np.all(np.isfinite(points.reshape(len(points), -1)), axis=1)
    interpolated, segments = faces.plan_gaps(detected, settings.max_gap)
    points = faces.interpolate_gaps(points, detected, interpolated)
  else:
    if tracker is None:
      tracker = faces.FaceTracker()
    track = faces.track_faces(_frames(path), tracker=tracker, max_gap=settings.max_gap, keep_mesh=False)
    points, detected, interpolated = track.landmarks, track.detected, track.interpolated
    segments, frame_size, detector_runs = track.segments, track.frame_size, track.detector_runs
  num_video = int(len(points))
  if not np.any(detected):
    raise NoFaceError(path, f"no face detected in any of its {num_video} frames")
  usable = min(num_video, audio_frames)
  segments = [(s, min(e, usable)) for s, e in segments if s < usable]
  parts, dropped = _split_segments(segments, settings)
  if not parts:
    raise NoFaceError(path, f"no stretch of {settings.min_frames}+ frames with a face and audio "
                      f"(face segments {list(segments)}, {usable} frames with audio)")
  visemes = None
  viseme_path = _sidecar(path, ".visemes.npy")
  if os.path.exists(viseme_path):
    visemes = np.load(viseme_path, allow_pickle=False).astype(np.float32)
    if visemes.ndim != 2 or visemes.shape[0] < parts[-1][1]:
      raise MediaError(viseme_path, f"expected ({num_video}, C) visemes, got {visemes.shape}")

  tight = faces.ip_lap_boxes(points, margin=settings.margin)
  loose = face_boxes(points, segments, frame_size, settings.face_scale)
  tight_points = faces.to_crop_coords(points, tight, settings.size)
  loose_points = faces.to_crop_coords(points, loose, settings.face_size)

  writer = shards.RecordFileWriter(records_path)
  entries: list[dict] = []
  try:
    part_i, decoded = 0, 0
    start, stop = parts[0]
    key = ""
    for f, frame in enumerate(_frames(path)):
      decoded = f + 1
      if part_i < len(parts) and f == start:
        key = f"{source.clip}#{part_i:03d}"
        entries.append(_segment_entry(source, key, part_i, start, stop, mel_total, writer.num_records))
        writer.write(_segment_record(source, settings, key, part_i, start, stop, frame_size, mel, mel_total,
                                     tight_points, tight, loose_points, loose, interpolated, visemes))
      if part_i < len(parts) and start <= f < stop:
        quality = settings.jpeg_quality
        writer.write(records.encode(records.FRAME, {"key": key, "t": f - start}, blobs={
            "image": records.encode_jpeg(faces.crop(frame, tight[f], settings.size), quality),
            "face": records.encode_jpeg(faces.crop(frame, loose[f], settings.face_size), quality),
        }))
        if f + 1 == stop:
          part_i += 1
          if part_i < len(parts):
            start, stop = parts[part_i]
      if part_i == len(parts) and settings.landmarks == "mediapipe":
        break  # the frame count is known from the first pass
    if part_i < len(parts) or (settings.landmarks == "sidecar" and decoded != num_video):
      raise MediaError(path, f"decoded {decoded} frames, but the landmarks cover {num_video}")
  finally:
    writer.close()

  valid = detected | interpolated
  report = {
      "clip": source.clip, "source": path, "speaker": source.speaker, "status": "ok",
      "landmarks": settings.landmarks, "frames": num_video, "audio_frames": audio_frames,
      "frames_used": int(sum(e - s for s, e in parts)), "detected": int(detected.sum()),
      "interpolated": int(interpolated.sum()), "missing": int((~valid).sum()),
      "missing_frames": _index_list(~valid), "interpolated_frames": _index_list(interpolated),
      "segments": [list(s) for s in segments], "records": [list(p) for p in parts],
      "dropped_segments": [list(d) for d in dropped], "detector_runs": int(detector_runs),
      "seconds": round(time.perf_counter() - start_time, 3),
  }
  return report, entries


def _segment_entry(source: ClipSource, key: str, index: int, start: int, stop: int, mel_total: int,
                   position: int) -> dict:
  return {"key": key, "clip": source.clip, "speaker": source.speaker, "segment": index, "start": start,
          "num_frames": stop - start, "mel_total": mel_total,
          "pair": list(source.pair) if source.pair else None, "position": position}


def _segment_record(source, settings, key, index, start, stop, frame_size, mel, mel_total, tight_points,
                    tight, loose_points, loose, interpolated, visemes) -> bytes:
  mel_lo = int(max(0, audio_lib.mel_start(start - MEL_MARGIN_FRAMES, FPS)))
  mel_hi = int(min(mel_total, audio_lib.mel_start(stop - 1 + MEL_MARGIN_FRAMES, FPS) + audio_lib.MEL_WINDOW))
  meta = {
      "key": key, "clip": source.clip, "source": source.path, "speaker": source.speaker, "segment": index,
      "start": start, "num_frames": stop - start, "fps": FPS, "frame_size": list(frame_size),
      "size": settings.size, "face_size": settings.face_size, "mel_start": mel_lo, "mel_total": mel_total,
      "landmark_source": settings.landmarks, "pair": list(source.pair) if source.pair else None,
  }
  arrays = {
      "landmarks": tight_points[start:stop], "boxes": tight[start:stop],
      "face_landmarks": loose_points[start:stop], "face_boxes": loose[start:stop],
      "interpolated": interpolated[start:stop], "mel": mel[:, mel_lo:mel_hi],
  }
  if visemes is not None:
    arrays["visemes"] = visemes[start:stop]
  return records.encode(records.SEGMENT, meta, arrays)


# ------------------------------------------------------------------------------------------------
# Workers

_worker_tracker: faces.FaceTracker | None = None


def _init_worker() -> None:
  global _worker_tracker
  _worker_tracker = None
  os.environ.setdefault("OMP_NUM_THREADS", "1")


def _run_task(source: ClipSource, settings: Settings, records_path: str,
              tracker: faces.FaceTracker | None = None) -> tuple[dict, list[dict], str | None]:
  """Runs :func:`process_clip`, turning any failure into a "skipped" report (never raises)."""
  global _worker_tracker
  try:
    if settings.landmarks == "mediapipe" and tracker is None:
      if _worker_tracker is None:
        _worker_tracker = faces.FaceTracker(num_threads=1)
      tracker = _worker_tracker
    report, segments = process_clip(source, settings, records_path, tracker)
    return report, segments, records_path
  except Exception as e:  # noqa: BLE001  (one bad clip must never stop the run)
    if not isinstance(e, (ValueError, OSError)):
      logger.error("unexpected error on %s:\n%s", source.path, traceback.format_exc())
    if os.path.exists(records_path):
      os.remove(records_path)
    reason = str(e) if isinstance(e, MediaError) else f"{type(e).__name__}: {e}"
    return ({"clip": source.clip, "source": source.path, "speaker": source.speaker, "status": "skipped",
             "reason": reason}, [], None)


# ------------------------------------------------------------------------------------------------
# The run


def _check_settings(root: str, settings: Settings) -> None:
  path = os.path.join(root, "settings.json")
  wanted = settings.to_json()
  if not os.path.exists(path):
    shards.write_json(path, wanted)
    return
  existing = shards.read_json(path)
  diff = {k: (existing.get(k), v) for k, v in wanted.items() if existing.get(k) != v}
  if diff:
    listed = ", ".join(f"{k}: existing {a!r} vs requested {b!r}" for k, (a, b) in sorted(diff.items()))
    raise ConfigError(f"{path}: this dataset was preprocessed with other settings ({listed}); use the same "
                      "settings to extend it, or another --output")


def _finished(manifests: list[dict], retry_skipped: bool) -> set[str]:
  done = set()
  for m in manifests:
    for c in m["clips"]:
      if c["status"] == "ok" or not retry_skipped:
        done.add(c["clip"])
  return done


def preprocess(input_spec: str | os.PathLike[str] | Sequence[str], output: str | os.PathLike[str], *,
               settings: Settings | None = None, workers: int = 0, eval_fraction: float = 0.1,
               eval_speakers: Sequence[str] | None = None, retry_skipped: bool = False,
               shard_bytes: int = 256 << 20, progress: bool = True, **setting_overrides) -> dict:
  """Preprocesses every clip of ``input_spec`` into the dataset at ``output``; returns its index.

  Args:
    input_spec: a directory tree, a text file listing paths, or a list of paths.
    output: the dataset directory (created; re-runs resume it).
    settings: record settings (default ``Settings()``), or pass fields as keyword arguments.
    workers: worker processes (0 or 1: in this process).
    eval_fraction, eval_speakers: the held-out speaker split (``split_speakers``); they only
      affect ``index.json`` and may change between runs.
    retry_skipped: process clips that earlier runs skipped again (e.g. after fixing the files).
    shard_bytes: shards are committed once they reach this size (and at least every 2 minutes).
    progress: show a progress bar (stderr).

  Returns:
    The dataset index (also written to ``<output>/index.json``).
  """
  if settings is None:
    settings = Settings(**setting_overrides)
  elif setting_overrides:
    raise ConfigError(f"pass settings or setting keywords, not both ({sorted(setting_overrides)})")
  settings.validate()
  if workers < 0:
    raise ConfigError(f"workers: expected >= 0, got {workers}")
  clips = find_clips(input_spec)
  root = os.path.abspath(os.fspath(output))
  if os.path.exists(root) and not os.path.isdir(root):
    raise ConfigError(f"output: {root} exists and is not a directory")
  with shards.locked(root):
    _check_settings(root, settings)
    removed = shards.remove_untrusted(root)
    if removed:
      logger.info("removed %d file(s) left by an interrupted run", len(removed))
    work = os.path.join(root, shards.WORK_DIR)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    done = _finished(shards.load_manifests(root), retry_skipped)
    todo = [c for c in clips if c.clip not in done]
    now = datetime.datetime.now(datetime.timezone.utc)
    run_id = now.strftime("%Y%m%d%H%M%S") + f"-{uuid.uuid4().hex[:6]}"  # sorts in commit order
    writer = shards.ShardWriter(root, run_id, max_bytes=shard_bytes)
    if len(todo) < len(clips):
      logger.info("%d of %d clips already done; processing %d", len(clips) - len(todo), len(clips), len(todo))
    try:
      _run(todo, settings, work, writer, workers, progress)
      writer.commit()
    except BaseException:
      writer.abort()
      raise
    finally:
      shutil.rmtree(work, ignore_errors=True)
    return build_index(root, eval_fraction=eval_fraction, eval_speakers=eval_speakers)


def _run(todo: list[ClipSource], settings: Settings, work: str, writer: shards.ShardWriter, workers: int,
         progress: bool) -> None:
  bar = tqdm(total=len(todo), unit="clip", desc="preprocess", file=sys.stderr, disable=not progress,
             dynamic_ncols=True)
  frames, skipped, t0 = 0, 0, time.perf_counter()

  def finish(result) -> None:
    nonlocal frames, skipped
    report, segments, records_path = result
    writer.add_clip(report, segments, records_path)
    if report["status"] == "ok":
      frames += report["frames_used"]
    else:
      skipped += 1
      logger.warning("skipped %s: %s", report["source"], report["reason"])
    bar.update(1)
    bar.set_postfix(frames_per_s=f"{frames / max(time.perf_counter() - t0, 1e-9):.0f}", skipped=skipped)

  def scratch(i: int) -> str:
    return os.path.join(work, f"clip-{i:07d}.array_record")

  try:
    if workers <= 1:
      tracker = faces.FaceTracker() if settings.landmarks == "mediapipe" and todo else None
      for i, source in enumerate(todo):
        finish(_run_task(source, settings, scratch(i), tracker))
      return
    ctx = multiprocessing.get_context("spawn")  # the parent may hold threads (JAX, TFLite): no fork
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
      pending: set[concurrent.futures.Future] = set()
      queue = iter(enumerate(todo))
      # A bounded number of clips in flight keeps scratch space and results small.
      for i, source in queue:
        pending.add(pool.submit(_run_task, source, settings, scratch(i)))
        if len(pending) >= 2 * workers:
          finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
          for fut in finished:
            finish(fut.result())
      for fut in concurrent.futures.as_completed(pending):
        finish(fut.result())
  finally:
    bar.close()


# ------------------------------------------------------------------------------------------------
# The index


def build_index(root: str, *, eval_fraction: float = 0.1, eval_speakers: Sequence[str] | None = None) -> dict:
  """Builds ``<root>/index.json`` from the trusted manifests (see the module docstring).

  Keys: ``format_version``, ``settings``, ``clips`` / ``records`` / ``frames`` / ``hours`` (usable
  data), ``skipped`` ([{clip, source, reason}]), ``splits`` ({train, eval}: speakers, clips, records,
  frames, hours), ``speakers`` ({speaker: split}), ``shards`` ([{path, num_records}]), ``segments``
  (one entry per segment record, sorted by key: key, clip, speaker, split, segment, start,
  num_frames, mel_total, pair, shard (index into ``shards``), index (record position in the shard)) and
  ``clip_reports`` (per clip: frames, detected/interpolated/missing counts, ``missing_frames``,
  ``interpolated_frames``, face ``segments``, ``records``, ``dropped_segments``).
  """
  manifests = shards.load_manifests(root)
  settings = shards.read_json(os.path.join(root, "settings.json"))
  reports: dict[str, dict] = {}
  segments: list[dict] = []
  shard_list: list[dict] = []
  for m in manifests:  # commit order: a later report of a clip (a retried skip) wins
    if m["shard"] is not None:
      shard_id = len(shard_list)
      shard_list.append({"path": f"{shards.SHARD_DIR}/{m['shard']}", "num_records": m["num_records"]})
      for seg in m["segments"]:
        segments.append({**seg, "shard": shard_id})
    for c in m["clips"]:
      reports[c["clip"]] = c
  ok_clips = {c for c, r in reports.items() if r["status"] == "ok"}
  segments = sorted((s for s in segments if s["clip"] in ok_clips), key=lambda s: s["key"])
  speakers = sorted({reports[c]["speaker"] for c in ok_clips})
  split = split_speakers(speakers, eval_fraction, eval_speakers)

  def stats(segs: list[dict]) -> dict:
    frames = int(sum(s["num_frames"] for s in segs))
    return {"clips": len({s["clip"] for s in segs}), "records": len(segs), "frames": frames,
            "hours": round(frames / FPS / 3600.0, 6)}

  for seg in segments:
    seg["split"] = split[seg["speaker"]]
  index = {
      "format_version": FORMAT_VERSION, "settings": settings, **stats(segments),
      "eval_fraction": eval_fraction, "eval_speakers": sorted(eval_speakers) if eval_speakers else None,
      "speakers": split,
      "splits": {name: {"speakers": [s for s in speakers if split[s] == name],
                        **stats([s for s in segments if s["split"] == name])} for name in ("train", "eval")},
      "skipped": [{"clip": r["clip"], "source": r["source"], "reason": r["reason"]}
                  for c, r in sorted(reports.items()) if r["status"] != "ok"],
      "shards": shard_list,
      "segments": segments,
      "clip_reports": [r for _, r in sorted(reports.items()) if r["status"] == "ok"],
  }
  shards.write_json(os.path.join(root, "index.json"), index)
  return index


def describe(index: dict[str, Any]) -> str:
  """A few lines summarising an index (printed by the CLI)."""
  lines = [f"{index['clips']} clips, {index['records']} records, {index['frames']} frames "
           f"({index['hours'] * 60:.1f} min); {len(index['skipped'])} skipped"]
  for name, s in index["splits"].items():
    lines.append(f"  {name}: {len(s['speakers'])} speakers, {s['clips']} clips, {s['frames']} frames")
  for s in index["skipped"]:
    lines.append(f"  skipped {s['source']}: {s['reason']}")
  gaps = [r for r in index["clip_reports"] if r["missing"] or r["interpolated"]]
  for r in gaps:
    lines.append(f"  {r['clip']}: {r['missing']} frame(s) without a face {r['missing_frames'][:20]}, "
                 f"{r['interpolated']} interpolated, face segments {r['segments']}")
  return "\n".join(lines)
