"""LSE-D and LSE-C: lip-sync error as joonson's ``SyncNetInstance.evaluate`` computes it.

Scoring one clip of 224x224 face crops (BGR, 0..255) and its 16 kHz audio (:func:`score_crops`):

1. MFCCs of the int16-scaled audio with python_speech_features' defaults (``talkjax.metrics.mfcc``:
   13 coefficients every 10 ms, i.e. 4 per video frame at 25 fps).
2. ``n = min(frames, floor(samples / 640))``; windows ``v = 0 .. n - 6`` (``range(n - 5)``: the
   reference drops the last complete window, and so do we). Window ``v`` is video frames
   ``v .. v+4`` and MFCC steps ``4v .. 4v+19``.
3. SyncNet (``talkjax.models.syncnet_v2``) embeds each window: two 1024-d, unnormalised vectors.
4. The audio embeddings are zero-padded by ``vshift = 15`` on both sides; for each window the
   Euclidean distance ``||v_i - a_{i+k} + 1e-6||`` (PyTorch's ``pairwise_distance`` adds eps = 1e-6
   to the difference) to the 31 shifted audio embeddings, k = -15..15. The zero padding enters the
   distances at the clip's edges, as in the reference.
5. ``mdist`` = mean over windows (31 values). **LSE-D** = ``min(mdist)``; **LSE-C** =
   ``median(mdist) - min(mdist)``; AV offset = ``15 - argmin(mdist)`` frames.

A dataset's LSE-D / LSE-C are means over clips.

Crops (:func:`clip_crops`), two protocols, both resizing with OpenCV's ``cv2.resize`` (bilinear)
exactly as the reference does:

- ``crop="frame"``: Wav2Lip's ``calculate_scores_LRS.py``: the whole frame resized to 224x224, no
  face detection (for datasets whose videos are already face crops: LRS2, LRS3, LRW).
- ``crop="face"``: joonson's ``run_pipeline.py`` (Wav2Lip's ``calculate_scores_real_videos``),
  with **MediaPipe** (``talkjax.faces``) in place of S3FD: the face is tracked (gaps of up to 25
  frames bridged, like ``num_failed_det``), each continuous track longer than ``min_track`` frames
  (default 100, ``len > min_track``) whose mean face-box side exceeds ``min_face_size`` (100 px) is
  scored separately with its own slice of the audio; per track, box half-size ``s = max(w, h) / 2`` and
  centre are median-filtered over 13 frames (``scipy.signal.medfilt``, zero-padded ends as in the
  reference); the frame is padded by ``int(s * 1.8)`` pixels of grey 110 and the crop is rows
  ``[cy - s, cy + 1.8 s)`` and columns ``[cx - 1.4 s, cx + 1.4 s)`` (``crop_scale`` 0.4),
  truncated to integers, resized to 224x224. A clip's scores are the mean over its tracks.

Differences from the reference pipeline, all documented in BUILD_NOTES.md: the box comes from the
468-point MediaPipe mesh (forehead to chin, cheek to cheek) instead of S3FD's detector box; no scene
detection (generated clips are single shots; tracks are split only where the face is lost); frames
are used as decoded, without the reference's JPEG / XVID re-encoding round trips; audio resampling
(when the file is not 16 kHz) uses soxr instead of FFmpeg's resampler.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal

from talkjax.errors import ArgumentError, NoFaceError, ShapeError
from talkjax.metrics import mfcc as mfcc_lib
from talkjax.metrics import weights as weights_lib

VSHIFT = 15
WINDOW_FRAMES = 5
MFCC_PER_FRAME = 4
MFCC_STEPS = 20
SAMPLES_PER_FRAME = 640     # 16 kHz / 25 fps
CROP_SIZE = 224
CROP_SCALE = 0.4
MIN_TRACK = 100
MIN_FACE_SIZE = 100.0
NUM_FAILED_DET = 25
MEDFILT_KERNEL = 13
PAD_VALUE = 110
PAIRWISE_EPS = 1e-6
DEFAULT_BATCH = 20
CROP_MODES = ("face", "frame")


@dataclasses.dataclass(frozen=True)
class SyncScore:
  """Scores of one clip (or one face track).

  Attributes:
    lse_d: minimum over offsets of the mean embedding distance (lower is better).
    lse_c: median minus minimum of the mean distances (higher is better).
    offset: AV offset in frames (``vshift - argmin``; 0 = in sync).
    num_windows: 5-frame windows scored.
    mean_distances: ``(2 * vshift + 1,)`` mean distance at each offset, -vshift .. +vshift.
  """
  lse_d: float
  lse_c: float
  offset: int
  num_windows: int
  mean_distances: np.ndarray


@dataclasses.dataclass(frozen=True)
class ClipScore:
  """A clip's LSE: the mean over its scored face tracks (one track in ``crop="frame"`` mode)."""
  lse_d: float
  lse_c: float
  offset: float
  tracks: tuple[tuple[int, int], ...]
  track_scores: tuple[SyncScore, ...]


def _cv2():
  try:
    import cv2  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("LSE crops are resized with OpenCV's cv2.resize, as the reference pipeline does: "
                      "pip install opencv-python-headless") from e
  return cv2


@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply(module, method: str, variables, x):
  # Module and method are static (Linen modules hash by their fields), so every scorer built for
  # the same module shares one compilation per batch shape.
  return module.apply(variables, x, method=method)


class SyncNetScorer:
  """Holds a ``syncnet_v2`` module and its variables; embeds windows in fixed-size jitted batches.

  Args:
    variables: Flax variables of ``talkjax.models.syncnet_v2.SyncNetV2`` (``third_party.convert
      --kind=syncnet_v2`` of joonson's ``syncnet_v2.model``).
    batch_size: windows per device call (the last batch is padded, so one compilation serves all).
    module: the module (default: ``SyncNetV2()``).
  """

  def __init__(self, variables: Any, batch_size: int = DEFAULT_BATCH, module: Any = None):
    if batch_size < 1:
      raise ArgumentError(f"batch_size: must be >= 1, got {batch_size}")
    if module is None:
      from talkjax.models.syncnet_v2 import SyncNetV2  # pylint: disable=g-import-not-at-top
      module = SyncNetV2()
    self.module = module
    self.variables = jax.tree.map(jnp.asarray, variables)
    self.batch_size = int(batch_size)
    self._face = functools.partial(_apply, module, "embed_face")
    self._audio = functools.partial(_apply, module, "embed_audio")

  @classmethod
  def from_weights_dir(cls, weights_dir: str | os.PathLike[str], **kwargs) -> SyncNetScorer:
    """Loads ``<weights_dir>/syncnet_v2``; MissingWeightsError naming the file and convert command."""
    return cls(weights_lib.load(weights_lib.SYNCNET_V2, weights_dir, "LSE-C/LSE-D"), **kwargs)

  def _run(self, fn, windows: np.ndarray) -> np.ndarray:
    n = windows.shape[0]
    pad = (-n) % self.batch_size
    if pad:
      windows = np.concatenate([windows, np.zeros((pad,) + windows.shape[1:], windows.dtype)])
    out = [np.asarray(fn(self.variables, jnp.asarray(windows[i:i + self.batch_size])))
           for i in range(0, windows.shape[0], self.batch_size)]
    return np.concatenate(out)[:n]

  def embed_video(self, crops: np.ndarray, num_windows: int) -> np.ndarray:
    """``(T, 224, 224, 3)`` BGR 0..255 crops -> ``(num_windows, 1024)`` embeddings of frames v..v+4."""
    out = []
    for start in range(0, num_windows, self.batch_size):
      stop = min(num_windows, start + self.batch_size)
      windows = np.stack([crops[v:v + WINDOW_FRAMES] for v in range(start, stop)]).astype(np.float32)
      out.append(self._run(self._face, windows))
    return np.concatenate(out)

  def embed_mfcc(self, mfcc: np.ndarray, num_windows: int) -> np.ndarray:
    """``(M, 13)`` MFCCs -> ``(num_windows, 1024)`` embeddings of steps 4v..4v+19."""
    windows = np.stack([mfcc[MFCC_PER_FRAME * v:MFCC_PER_FRAME * v + MFCC_STEPS].T
                        for v in range(num_windows)])
    return self._run(self._audio, windows[..., None].astype(np.float32))


def sync_distances(video_emb: np.ndarray, audio_emb: np.ndarray, vshift: int = VSHIFT) -> np.ndarray:
  """``(V, 2 * vshift + 1)`` distances of each video window to the shifted audio windows.

  ``d[i, k] = || v_i - a_{i + k - vshift} + 1e-6 ||`` with zero vectors outside ``0 .. V-1``
  (``calc_pdist`` of the reference: ``pad`` then ``pairwise_distance``).
  """
  v = np.asarray(video_emb, np.float64)
  a = np.asarray(audio_emb, np.float64)
  if v.shape != a.shape or v.ndim != 2:
    raise ShapeError(f"sync_distances: video {v.shape} and audio {a.shape} embeddings must be equal (V, D)")
  padded = np.pad(a, ((vshift, vshift), (0, 0)))
  win = 2 * vshift + 1
  shifted = np.lib.stride_tricks.sliding_window_view(padded, (win, a.shape[1]))[:, 0]  # (V, win, D)
  return np.linalg.norm(v[:, None, :] - shifted[:v.shape[0]] + PAIRWISE_EPS, axis=-1)


def score_from_distances(dists: np.ndarray, vshift: int = VSHIFT) -> SyncScore:
  """LSE-D, LSE-C and offset from the ``(V, 2 * vshift + 1)`` distance matrix."""
  mdist = dists.mean(axis=0)
  minidx = int(np.argmin(mdist))
  minval = float(mdist[minidx])
  median = float(np.sort(mdist)[(mdist.size - 1) // 2])   # torch.median: the lower middle value
  return SyncScore(lse_d=minval, lse_c=median - minval, offset=vshift - minidx,
                   num_windows=int(dists.shape[0]), mean_distances=mdist)


def num_windows(num_frames: int, num_samples: int) -> int:
  """Windows the reference scores: ``min(frames, floor(samples / 640)) - 5`` (may be <= 0)."""
  return min(int(num_frames), int(num_samples) // SAMPLES_PER_FRAME) - WINDOW_FRAMES


def score_crops(scorer: SyncNetScorer, crops: np.ndarray, audio: np.ndarray,
                vshift: int = VSHIFT, name: str = "clip") -> SyncScore:
  """Scores 224x224 BGR crops against their audio, exactly like ``SyncNetInstance.evaluate``.

  Args:
    scorer: the SyncNet.
    crops: ``(T, 224, 224, 3)`` BGR on the 0..255 scale (uint8 or float), 25 fps.
    audio: ``(N,)`` 16 kHz mono: int16 samples, or float in [-1, 1] (scaled to int16 values as
      FFmpeg's ``pcm_s16le`` encoder does; see ``mfcc.to_int16_scale``).
    vshift: offsets searched on each side (15 in every published number).
    name: names the clip in errors.

  Returns:
    The :class:`SyncScore`.
  """
  crops = np.asarray(crops)
  if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
    raise ShapeError(f"{name}: crops must be (T, {CROP_SIZE}, {CROP_SIZE}, 3) BGR, got {crops.shape}")
  samples = mfcc_lib.to_int16_scale(np.asarray(audio))
  n_win = num_windows(crops.shape[0], samples.shape[0])
  if n_win < 1:
    raise ArgumentError(f"{name}: LSE needs at least {WINDOW_FRAMES + 1} frames with audio "
                        f"({WINDOW_FRAMES + 1} x {SAMPLES_PER_FRAME} samples); got {crops.shape[0]} "
                        f"frames and {samples.shape[0]} samples")
  mfcc = mfcc_lib.mfcc(samples, mfcc_lib.SAMPLE_RATE)
  video_emb = scorer.embed_video(crops, n_win)
  audio_emb = scorer.embed_mfcc(mfcc, n_win)
  return score_from_distances(sync_distances(video_emb, audio_emb, vshift), vshift)


# --- Crops --------------------------------------------------------------------------------------

def _to_bgr_uint8(frame: np.ndarray, name: str) -> np.ndarray:
  arr = np.asarray(frame)
  if arr.ndim != 3 or arr.shape[-1] != 3:
    raise ShapeError(f"{name}: expected an (H, W, 3) RGB frame, got shape {arr.shape}")
  if arr.dtype != np.uint8:
    raise ShapeError(f"{name}: expected uint8 RGB frames, got dtype {arr.dtype}")
  return np.ascontiguousarray(arr[..., ::-1])


def frame_crop(frame_rgb: np.ndarray, name: str = "frame") -> np.ndarray:
  """``crop="frame"``: the whole RGB uint8 frame -> 224x224 BGR (``cv2.resize``, bilinear)."""
  cv2 = _cv2()
  return cv2.resize(_to_bgr_uint8(frame_rgb, name), (CROP_SIZE, CROP_SIZE))


def smooth_track_boxes(boxes: np.ndarray) -> np.ndarray:
  """Per-track ``(T, 4)`` xyxy boxes -> ``(T, 3)`` median-filtered ``(s, cx, cy)`` (13 frames)."""
  boxes = np.asarray(boxes, np.float64)
  s = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
  cx = (boxes[:, 0] + boxes[:, 2]) / 2
  cy = (boxes[:, 1] + boxes[:, 3]) / 2
  with warnings.catch_warnings():
    # Tracks shorter than the kernel are zero-padded, as in the reference; that is intended.
    warnings.filterwarnings("ignore", message="kernel_size exceeds volume extent")
    return np.stack([scipy.signal.medfilt(v, MEDFILT_KERNEL) for v in (s, cx, cy)], axis=1)


def face_crop(frame_rgb: np.ndarray, s: float, cx: float, cy: float, crop_scale: float = CROP_SCALE,
              name: str = "frame") -> np.ndarray:
  """joonson's crop of one frame around a face of half-size ``s`` centred at ``(cx, cy)`` -> 224 BGR."""
  cv2 = _cv2()
  img = _to_bgr_uint8(frame_rgb, name)
  pad = int(s * (1 + 2 * crop_scale))
  padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
  my, mx = cy + pad, cx + pad
  region = padded[int(my - s):int(my + s * (1 + 2 * crop_scale)),
                  int(mx - s * (1 + crop_scale)):int(mx + s * (1 + crop_scale))]
  if region.size == 0:
    raise ArgumentError(f"{name}: empty face crop (box half-size {s:.3g} at ({cx:.1f}, {cy:.1f}))")
  return cv2.resize(region, (CROP_SIZE, CROP_SIZE))


def face_tracks(track, *, min_track: int = MIN_TRACK,
                min_face_size: float = MIN_FACE_SIZE) -> list[tuple[int, int]]:
  """The ``(start, stop)`` segments of a :class:`talkjax.faces.FaceTrack` that the reference keeps.

  A segment is kept if it is longer than ``min_track`` frames and its mean face-box width or height
  exceeds ``min_face_size`` pixels (``run_pipeline.py``'s rules).
  """
  kept = []
  for start, stop in track.segments:
    if stop - start <= min_track:
      continue
    b = np.asarray(track.boxes[start:stop], np.float64)
    if max(np.mean(b[:, 2] - b[:, 0]), np.mean(b[:, 3] - b[:, 1])) > min_face_size:
      kept.append((int(start), int(stop)))
  return kept


def clip_crops(frames: Iterable[np.ndarray], *, crop: str = "face", track=None,
               segments: Sequence[tuple[int, int]] | None = None,
               crop_scale: float = CROP_SCALE) -> list[np.ndarray]:
  """Streams a clip's RGB uint8 frames into 224x224 BGR crops, one ``(T_k, 224, 224, 3)`` per track.

  Args:
    frames: the clip's frames at 25 fps (any iterable; each frame is used once).
    crop: ``"frame"`` (whole frame, one track covering the clip) or ``"face"``.
    track: for ``"face"``: the clip's :class:`talkjax.faces.FaceTrack` (its raw mesh ``boxes``).
    segments: for ``"face"``: the tracks to crop (default :func:`face_tracks` of ``track``).
    crop_scale: joonson's ``crop_scale``.
  """
  if crop not in CROP_MODES:
    raise ArgumentError(f"crop: expected one of {CROP_MODES}, got {crop!r}")
  if crop == "frame":
    out = [frame_crop(f, f"frame {t}") for t, f in enumerate(frames)]
    return [np.stack(out)] if out else []
  if track is None:
    raise ArgumentError("crop='face' needs the clip's face track (talkjax.faces.track_faces)")
  segments = face_tracks(track) if segments is None else list(segments)
  smoothed = {seg: smooth_track_boxes(track.boxes[seg[0]:seg[1]]) for seg in segments}
  owner = {}
  for seg in segments:
    for t in range(seg[0], seg[1]):
      owner.setdefault(t, []).append(seg)
  crops: dict[tuple[int, int], list[np.ndarray]] = {seg: [] for seg in segments}
  for t, f in enumerate(frames):
    for seg in owner.get(t, ()):
      s, cx, cy = smoothed[seg][t - seg[0]]
      crops[seg].append(face_crop(f, s, cx, cy, crop_scale, f"frame {t}"))
  for seg in segments:
    if len(crops[seg]) != seg[1] - seg[0]:
      raise ArgumentError(f"track {seg}: the clip ended after {seg[0] + len(crops[seg])} frames")
  return [np.stack(crops[seg]) for seg in segments]


def score_clip(scorer: SyncNetScorer, frames, audio: np.ndarray, *, crop: str = "face",
               track=None, min_track: int = MIN_TRACK, min_face_size: float = MIN_FACE_SIZE,
               crop_scale: float = CROP_SCALE, vshift: int = VSHIFT, name: str = "clip") -> ClipScore:
  """LSE of a clip from its RGB frames (25 fps) and 16 kHz audio, with either crop protocol.

  ``frames`` may be a re-iterable sequence or, with ``crop="face"`` and ``track`` given, any
  iterable. For ``crop="face"`` without ``track`` the face is tracked here (``frames`` must then be
  re-iterable: an array or a list).
  """
  audio = np.asarray(audio)
  if crop == "face":
    if track is None:
      from talkjax import faces  # pylint: disable=g-import-not-at-top
      track = faces.track_faces(frames, max_gap=NUM_FAILED_DET, smooth_window=1, keep_mesh=False)
    segments = face_tracks(track, min_track=min_track, min_face_size=min_face_size)
    if not segments:
      raise NoFaceError(name, f"no face track long enough for LSE: need a continuous face track of more "
                        f"than {min_track} frames with a mean box side over {min_face_size:g} px "
                        f"({track.summary()}); lower min_track / min_face_size for short clips")
  else:
    segments = None
  crops = clip_crops(frames, crop=crop, track=track, segments=segments, crop_scale=crop_scale)
  if not crops:
    raise ArgumentError(f"{name}: the clip has no frames")
  spans = tuple(segments) if segments is not None else ((0, crops[0].shape[0]),)
  scores = []
  for (start, stop), c in zip(spans, crops):
    # A track gets its own slice of the audio (the reference cuts it with ffmpeg -ss/-to).
    piece = audio if segments is None else audio[start * SAMPLES_PER_FRAME:stop * SAMPLES_PER_FRAME]
    scores.append(score_crops(scorer, c, piece, vshift, f"{name} frames {start}..{stop - 1}"))
  return ClipScore(lse_d=float(np.mean([s.lse_d for s in scores])),
                   lse_c=float(np.mean([s.lse_c for s in scores])),
                   offset=float(np.mean([s.offset for s in scores])),
                   tracks=spans, track_scores=tuple(scores))
