"""Clips and corpora: planning, in-memory generation, and the on-disk LRS2-like tree.

A clip is planned (speaker, timed phones, head track: small, JSON-able) and then rendered (audio,
visemes, landmarks, frames: pure functions of the plan). Randomness is split by purpose so that
related clips share exactly what they should:

- speaker ``i`` of a corpus with seed ``s``: ``default_rng([s, 0, i])``;
- head track of clip ``j``: ``default_rng([s, 1, i, j])`` (shared by both clips of a pair);
- speech of clip ``j``, variant ``v`` (0, or 1 for the "b" clip of a pair): ``default_rng([s, 2, i, j, v])``.

Speech is a whole utterance by default (silence at both ends of every clip). With ``excerpts`` it is
a random ``duration``-long window of an utterance ``EXCERPT_SOURCE`` times as long, drawn from the
same generator after the utterance: clips then start and end anywhere (mid-word, mid-pause), and
the two clips of a pair no longer share a silence structure (closed mouths at both ends), which
would otherwise correlate their mouth openness by itself.

So clip ``j`` of a plain corpus equals clip ``j``'s "a" member in a paired corpus, and everything is
byte-for-byte reproducible from the seed.

On disk (``make_corpus``)::

  <root>/corpus.json                     generation settings (checked on re-runs)
  <root>/<speaker>/speaker.json          the speaker's face and voice parameters
  <root>/<speaker>/<clip>.mp4            H.264 video + AAC audio, 25 fps, 16 kHz
  <root>/<speaker>/<clip>.landmarks.npy  (T, 131, 2) float32 pixel coordinates (corner convention)
  <root>/<speaker>/<clip>.visemes.npy    (T, 3) float32 openness, width, roundness
  <root>/<speaker>/<clip>.json           seeds, speaker parameters, timed phones, head track, sizes

with ``<clip>`` = ``00000``, ... or ``00000_a`` / ``00000_b`` for pairs. The mp4 is written last
(atomically), so an mp4 that exists always has its sidecars; a clip (or pair) is finished when all
its files exist, and re-runs skip finished clips.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import tqdm

from talkjax import fileio
from talkjax.data.synthetic import face as face_lib
from talkjax.data.synthetic import motion, render, script, visemes, voice
from talkjax.data.synthetic.speakers import Speaker, sample_speaker
from talkjax.errors import ConfigError

FORMAT_VERSION = 1
FPS = 25.0
SAMPLE_RATE = 16000
DEFAULT_SIZE = 256
DEFAULT_DURATION = 4.0
MIN_SIZE, MAX_SIZE = 64, 1024
MIN_DURATION, MAX_DURATION = 1.0, 60.0
# x264 preset for corpus files: at a fixed CRF a faster preset costs file size, not quality.
VIDEO_PRESET = "veryfast"
EXCERPT_SOURCE = 3.0  # with ``excerpts``: the utterance a clip's speech is cut from, in clip lengths


class Clip(NamedTuple):
  """A rendered clip in memory.

  Attributes:
    frames: (T, S, S, 3) uint8 RGB.
    audio: (T * sample_rate / fps,) float32 in [-1, 1].
    landmarks: (T, 131, 2) float32 pixel coordinates (origin at the image's top-left corner).
    visemes: (T, 3) float32 openness, width, roundness in [0, 1].
  """
  frames: np.ndarray
  audio: np.ndarray
  landmarks: np.ndarray
  visemes: np.ndarray


@dataclasses.dataclass(frozen=True)
class ClipPlan:
  """Everything that defines a clip before rendering.

  Attributes:
    speaker: whose face and voice.
    segments: the timed phones covering the clip.
    track: head pose, blinks and gaze per frame.
    fps: video frame rate.
    sample_rate: audio sample rate.
    audio_seed: seed of the synthesiser's randomness (jitter, noise, level).
    seed: the seed tuple the plan was made from (for the metadata).
  """
  speaker: Speaker
  segments: tuple[script.Segment, ...]
  track: motion.HeadTrack
  fps: float
  sample_rate: int
  audio_seed: tuple[int, ...]
  seed: tuple[int, ...]

  @property
  def num_frames(self) -> int:
    return self.track.num_frames

  @property
  def num_samples(self) -> int:
    return int(round(self.num_frames * self.sample_rate / self.fps))


def _seed_tuple(seed: int | Sequence[int]) -> tuple[int, ...]:
  values = (seed,) if isinstance(seed, (int, np.integer)) else tuple(seed)
  if not values or any(int(v) < 0 for v in values):
    raise ConfigError(f"seed: expected a non-negative int or a non-empty tuple of them, got {seed!r}")
  return tuple(int(v) for v in values)


def speaker_for(seed: int, index: int) -> Speaker:
  """Speaker ``index`` of the corpus with seed ``seed`` (named ``spk<index:03d>``)."""
  return sample_speaker(np.random.default_rng([*_seed_tuple(seed), 0, int(index)]), name=f"spk{index:03d}")


def plan_clip(speaker: Speaker, seed: int | Sequence[int] = 0, duration: float = DEFAULT_DURATION,
              fps: float = FPS, sample_rate: int = SAMPLE_RATE, track: motion.HeadTrack | None = None,
              speech_variant: int = 0, excerpt: bool = False) -> ClipPlan:
  """Plans a clip: a random utterance and (unless given) a random head track.

  Args:
    speaker: the identity.
    seed: int or tuple of non-negative ints; the corpus uses (corpus seed, speaker, clip).
    duration: seconds; the clip has ``round(duration * fps)`` frames.
    fps, sample_rate: video and audio rates.
    track: a head track to reuse (pairs share one); its length sets the clip length.
    speech_variant: selects a different utterance for the same seed (0 for "a", 1 for "b").
    excerpt: the speech is a random window of a longer utterance instead of a whole one.
  """
  seed_t = _seed_tuple(seed)
  if track is None:
    num_frames = int(round(duration * fps))
    if num_frames < 1:
      raise ConfigError(f"duration: {duration} s is less than one frame at {fps} fps")
    a = speaker.appearance
    motion_rng = np.random.default_rng([*seed_t, 1])
    track = motion.sample_head_track(motion_rng, num_frames, fps, a.motion, a.blink_rate)
  clip_duration = track.num_frames / fps
  speech_rng = np.random.default_rng([*seed_t, 2, int(speech_variant)])
  if excerpt:
    source = script.random_utterance(speech_rng, EXCERPT_SOURCE * clip_duration, speaker.voice.rate)
    offset = float(speech_rng.uniform(0.0, (EXCERPT_SOURCE - 1.0) * clip_duration))
    segments = script.excerpt(source, offset, clip_duration)
  else:
    segments = script.random_utterance(speech_rng, clip_duration, speaker.voice.rate)
  audio_seed = tuple(int(v) for v in speech_rng.integers(0, 2**31, 4))
  return ClipPlan(speaker=speaker, segments=segments, track=track, fps=float(fps),
                  sample_rate=int(sample_rate), audio_seed=audio_seed, seed=seed_t)


def plan_pair(speaker: Speaker, seed: int | Sequence[int] = 0, duration: float = DEFAULT_DURATION,
              fps: float = FPS, sample_rate: int = SAMPLE_RATE, excerpt: bool = False
              ) -> tuple[ClipPlan, ClipPlan]:
  """Two clips of one speaker with the same head track, blinks and gaze but different speech."""
  a = plan_clip(speaker, seed, duration, fps, sample_rate, speech_variant=0, excerpt=excerpt)
  b = plan_clip(speaker, seed, duration, fps, sample_rate, track=a.track, speech_variant=1, excerpt=excerpt)
  return a, b


def clip_visemes(plan: ClipPlan) -> np.ndarray:
  """(T, 3) float32 viseme track sampled at the frame times ``t / fps``."""
  times = np.arange(plan.num_frames) / plan.fps
  return visemes.viseme_track(plan.segments, times, plan.speaker.appearance.articulation).astype(np.float32)


def clip_audio(plan: ClipPlan) -> np.ndarray:
  """(num_samples,) float32 speech."""
  rng = np.random.default_rng(list(plan.audio_seed))
  return voice.synthesize(plan.segments, plan.speaker.voice, plan.num_samples, rng, plan.sample_rate)


def _face(plan: ClipPlan, vis: np.ndarray) -> face_lib.FaceFrames:
  return face_lib.build_face(plan.speaker.appearance, vis, plan.track.blink, plan.track.gaze)


def clip_landmarks(plan: ClipPlan, size: int, vis: np.ndarray | None = None) -> np.ndarray:
  """(T, 131, 2) float32 landmarks in pixel coordinates of a ``size`` x ``size`` frame."""
  vis = clip_visemes(plan) if vis is None else vis
  lm = render.project(_face(plan, vis).landmarks, plan.track, size, plan.speaker.appearance)
  return lm.astype(np.float32)


def iter_clip_frames(plan: ClipPlan, size: int, vis: np.ndarray | None = None,
                     supersample: int | None = None) -> Iterator[np.ndarray]:
  """Yields the clip's (size, size, 3) uint8 frames one at a time (bounded memory)."""
  vis = clip_visemes(plan) if vis is None else vis
  return render.render_frames(_face(plan, vis), plan.track, plan.speaker.appearance, size, supersample)


def render_clip(plan: ClipPlan, size: int = DEFAULT_SIZE, supersample: int | None = None) -> Clip:
  """Renders a planned clip in memory."""
  _check_size(size)
  vis = clip_visemes(plan)
  frames = np.stack(list(iter_clip_frames(plan, size, vis, supersample)))
  return Clip(frames=frames, audio=clip_audio(plan), landmarks=clip_landmarks(plan, size, vis), visemes=vis)


def generate_clip(seed: int | Sequence[int] = 0, *, speaker: Speaker | int | None = None,
                  size: int = DEFAULT_SIZE, duration: float = DEFAULT_DURATION, fps: float = FPS,
                  sample_rate: int = SAMPLE_RATE, excerpt: bool = False) -> Clip:
  """One synthetic clip in memory: ``(frames, audio, landmarks, visemes)``.

  Args:
    seed: selects the speech and head motion.
    speaker: a ``Speaker``, or an int ``i`` for ``speaker_for(seed[0], i)`` (default 0). Clip ``j``
      of speaker ``i`` of the corpus with seed ``s`` is ``generate_clip((s, i, j), speaker=i)``.
    size: frame width and height in pixels.
    duration: seconds.
    fps, sample_rate: video and audio rates.
    excerpt: speech cut from a longer utterance (see ``plan_clip``).
  """
  _check_size(size)
  _check_duration(duration)
  seed_t = _seed_tuple(seed)
  if speaker is None or isinstance(speaker, (int, np.integer)):
    speaker = speaker_for(seed_t[0], int(speaker or 0))
  return render_clip(plan_clip(speaker, seed_t, duration, fps, sample_rate, excerpt=excerpt), size)


def generate_pair(seed: int | Sequence[int] = 0, *, speaker: Speaker | int | None = None,
                  size: int = DEFAULT_SIZE, duration: float = DEFAULT_DURATION, fps: float = FPS,
                  sample_rate: int = SAMPLE_RATE, excerpt: bool = False) -> tuple[Clip, Clip]:
  """Two clips sharing speaker, head motion and blinks, with different speech (see ``plan_pair``)."""
  _check_size(size)
  _check_duration(duration)
  seed_t = _seed_tuple(seed)
  if speaker is None or isinstance(speaker, (int, np.integer)):
    speaker = speaker_for(seed_t[0], int(speaker or 0))
  a, b = plan_pair(speaker, seed_t, duration, fps, sample_rate, excerpt=excerpt)
  return render_clip(a, size), render_clip(b, size)


# --------------------------------------------------------------------------------------------------
# On disk


def _check_size(size) -> None:
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE \
      or size % 2:
    raise ConfigError(f"size: expected an even number of pixels in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")


def _check_duration(duration) -> None:
  if not isinstance(duration, (int, float)) or not np.isfinite(duration) \
      or not MIN_DURATION <= duration <= MAX_DURATION:
    raise ConfigError(f"duration: expected seconds in [{MIN_DURATION}, {MAX_DURATION}], got {duration!r}")


def _check_count(name: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1 or value > 100_000:
    raise ConfigError(f"{name}: expected a positive integer (at most 100000), got {value!r}")


def clip_name(index: int, member: str | None = None) -> str:
  """File stem of clip ``index`` (``00003``), or of one member of a pair (``00003_a``)."""
  return f"{index:05d}" + (f"_{member}" if member else "")


def clip_files(stem: str) -> tuple[str, ...]:
  """All files of a clip, the mp4 last (the order they are written in)."""
  return (f"{stem}.landmarks.npy", f"{stem}.visemes.npy", f"{stem}.json", f"{stem}.mp4")


def _save_npy(path: str, array: np.ndarray) -> None:
  with fileio.atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.save(f, array, allow_pickle=False)


def _write_json(path: str, data) -> None:
  fileio.atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def _clip_metadata(plan: ClipPlan, size: int, member: str | None, clip_index: int) -> dict:
  return {
      "format_version": FORMAT_VERSION,
      "speaker": plan.speaker.name,
      "speaker_params": plan.speaker.to_dict(),
      "clip_index": clip_index,
      "pair_member": member,
      "seed": list(plan.seed),
      "fps": plan.fps,
      "sample_rate": plan.sample_rate,
      "size": size,
      "num_frames": plan.num_frames,
      "num_samples": plan.num_samples,
      "landmark_coordinates": "pixels, origin at the top-left image corner (pixel centres at +0.5)",
      "viseme_channels": list(visemes.CHANNELS),
      "segments": [[s.phone, s.part, round(s.start, 6), round(s.end, 6), round(s.stress, 4), s.word]
                   for s in plan.segments],
      "head_track": plan.track.to_dict(),
  }


_STALE_PARTIAL_S = 600.0


def _remove_stale_partials(directory: str, stem: str) -> None:
  """Deletes temporary files that a killed run left for this clip.

  Only files untouched for 10 minutes: a live writer (another process completing the same corpus)
  keeps its temporary file fresh, and must not lose it.
  """
  now = time.time()
  for name in clip_files(stem):
    for tmp in glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(name)}.*.partial*")):
      try:
        if now - os.path.getmtime(tmp) > _STALE_PARTIAL_S:
          os.remove(tmp)
      except FileNotFoundError:
        pass


def write_clips(directory: str, plans: Sequence[tuple[str, ClipPlan]], size: int, clip_index: int) -> int:
  """Writes clips (sidecars of all first, then the mp4s); returns the number of frames written."""
  from talkjax import video  # noqa: PLC0415  (keeps PyAV out of the in-memory path)

  rendered = []
  for stem, plan in plans:
    _remove_stale_partials(directory, stem)
    vis = clip_visemes(plan)
    base = os.path.join(directory, stem)
    _save_npy(base + ".landmarks.npy", clip_landmarks(plan, size, vis))
    _save_npy(base + ".visemes.npy", vis)
    member = stem.rsplit("_", 1)[1] if "_" in stem else None
    _write_json(base + ".json", _clip_metadata(plan, size, member, clip_index))
    rendered.append((base, plan, vis))
  frames = 0
  for base, plan, vis in rendered:
    frames += video.write_video(base + ".mp4", iter_clip_frames(plan, size, vis), plan.fps,
                                audio=clip_audio(plan), sr=plan.sample_rate, preset=VIDEO_PRESET)
  return frames


# Settings added after corpora were first written, with the value those corpora were made with.
_SETTING_DEFAULTS = {"excerpts": False}


def _settings(seed: int, size: int, pairs: bool, duration: float, excerpts: bool) -> dict:
  return {"generator": "talkjax.data.synthetic", "format_version": FORMAT_VERSION, "seed": int(seed),
          "size": int(size), "pairs": bool(pairs), "duration": float(duration), "fps": FPS,
          "sample_rate": SAMPLE_RATE, "excerpts": bool(excerpts)}


def _check_existing_settings(path: str, settings: dict) -> None:
  try:
    with open(path, encoding="utf-8") as f:
      existing = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path}: unreadable corpus settings ({e}); remove it or choose another output") from e
  existing = {**_SETTING_DEFAULTS, **existing}
  diff = {k: (existing.get(k), v) for k, v in settings.items() if existing.get(k) != v}
  if diff:
    listed = ", ".join(f"{k}: existing {a!r} vs requested {b!r}" for k, (a, b) in diff.items())
    raise ConfigError(f"{path}: this directory holds a corpus made with other settings ({listed}); "
                      "use the same settings to extend it, or another --output")


def _write_task(root: str, seed: int, size: int, pairs: bool, duration: float, excerpts: bool, i: int,
                j: int) -> int:
  """Writes clip (or pair) ``j`` of speaker ``i``; returns the frames written. Runs in workers too."""
  spk = speaker_for(seed, i)
  directory = os.path.join(root, f"spk{i:03d}")
  os.makedirs(directory, exist_ok=True)
  if pairs:
    a, b = plan_pair(spk, (seed, i, j), duration, excerpt=excerpts)
    plans = [(clip_name(j, "a"), a), (clip_name(j, "b"), b)]
  else:
    plans = [(clip_name(j), plan_clip(spk, (seed, i, j), duration, excerpt=excerpts))]
  return write_clips(directory, plans, size, j)


def make_corpus(output: str | os.PathLike[str], speakers: int = 4, clips: int = 4, seed: int = 0,
                size: int = DEFAULT_SIZE, pairs: bool = False, duration: float = DEFAULT_DURATION,
                progress: bool = True, workers: int = 1, excerpts: bool = False) -> list[str]:
  """Writes (or completes) a synthetic corpus; returns the paths of all its mp4 files.

  The output is a pure function of (seed, size, pairs, duration, excerpts) and the clip's indices: the same
  bytes whatever ``workers`` is, whether the run is fresh or resumed, and in which order clips
  are made. Several processes may complete the same directory at once (they write identical files
  by atomic renames), although they then duplicate work.

  Args:
    output: root directory (created if needed).
    speakers: number of speakers (``spk000`` ...).
    clips: clips per speaker (pairs per speaker with ``pairs``).
    seed: corpus seed.
    size: frame size in pixels (square).
    pairs: write ``<clip>_a`` / ``<clip>_b`` pairs sharing head motion, with different speech.
    duration: seconds per clip.
    progress: show a progress bar on stderr.
    workers: processes rendering clips in parallel (1 = in this process).
    excerpts: each clip's speech is a random window of a longer utterance (see the module docstring).

  Raises:
    ConfigError: a bad argument, or ``output`` holds a corpus made with other settings.
  """
  _check_count("speakers", speakers)
  _check_count("clips", clips)
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
  _check_size(size)
  _check_duration(duration)
  if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or not 1 <= workers <= 256:
    raise ConfigError(f"workers: expected an integer in [1, 256], got {workers!r}")
  root = os.fspath(output)
  if os.path.exists(root) and not os.path.isdir(root):
    raise ConfigError(f"output: {root} exists and is not a directory")
  os.makedirs(root, exist_ok=True)
  settings = _settings(seed, size, pairs, duration, excerpts)
  settings_path = os.path.join(root, "corpus.json")
  if os.path.exists(settings_path):
    _check_existing_settings(settings_path, settings)
  else:
    _write_json(settings_path, settings)

  members = ("a", "b") if pairs else (None,)
  paths: list[str] = []
  todo: list[tuple[int, int]] = []
  for i in range(speakers):
    directory = os.path.join(root, f"spk{i:03d}")
    for j in range(clips):
      stems = [clip_name(j, m) for m in members]
      paths.extend(os.path.join(directory, s + ".mp4") for s in stems)
      if not all(os.path.exists(os.path.join(directory, f)) for s in stems for f in clip_files(s)):
        todo.append((i, j))
  for i in sorted({i for i, _ in todo}):
    speaker_json = os.path.join(root, f"spk{i:03d}", "speaker.json")
    if not os.path.exists(speaker_json):
      _write_json(speaker_json, speaker_for(seed, i).to_dict())

  bar = tqdm.tqdm(total=len(todo), unit="clip", desc="synthetic corpus", file=sys.stderr,
                  disable=not progress, dynamic_ncols=True)
  frames, start = 0, time.perf_counter()

  def done(n: int) -> None:
    nonlocal frames
    frames += n
    bar.update(1)
    bar.set_postfix(fps=f"{frames / max(time.perf_counter() - start, 1e-9):.0f}")

  try:
    if workers == 1 or len(todo) <= 1:
      for i, j in todo:
        done(_write_task(root, seed, size, pairs, duration, excerpts, i, j))
    else:
      # "spawn": callers (trainers) have JAX's threads running, which fork() would not carry over safely.
      context = multiprocessing.get_context("spawn")
      with concurrent.futures.ProcessPoolExecutor(min(workers, len(todo)), mp_context=context) as pool:
        futures = [pool.submit(_write_task, root, seed, size, pairs, duration, excerpts, i, j) for i, j in todo]
        try:
          for future in concurrent.futures.as_completed(futures):
            done(future.result())
        except BaseException:
          for future in futures:
            future.cancel()
          raise
  finally:
    bar.close()
  return paths


def find_clips(root: str | os.PathLike[str]) -> list[str]:
  """Sorted paths of the finished clips (mp4 and all sidecars present) under a corpus root."""
  out = []
  for mp4 in sorted(glob.glob(os.path.join(glob.escape(os.fspath(root)), "*", "*.mp4"))):
    directory, stem = os.path.dirname(mp4), os.path.basename(mp4)[:-4]
    if all(os.path.exists(os.path.join(directory, f)) for f in clip_files(stem)):
      out.append(mp4)
  return out


def find_pairs(root: str | os.PathLike[str]) -> list[tuple[str, str]]:
  """Sorted (``_a``, ``_b``) mp4 paths of the finished pairs under a corpus root."""
  clips = set(find_clips(root))
  pairs = []
  for path in sorted(clips):
    if path.endswith("_a.mp4") and path[:-6] + "_b.mp4" in clips:
      pairs.append((path, path[:-6] + "_b.mp4"))
  return pairs
