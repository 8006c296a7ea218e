"""LSE-style sync scoring with a Wav2Lip expert SyncNet (``SyncNet_color``) instead of joonson's SyncNet.

LSE-C / LSE-D (:mod:`talkjax.metrics.lse`) need joonson's ``syncnet_v2.model``, trained on real
faces (LRS2). On other data (the synthetic corpus, a new domain) an expert trained on that data
(``--config=syncnet``) is the better judge. This module scores a clip with such an expert the way
``SyncNetInstance.evaluate`` scores it with SyncNet, changing only what the expert forces:

1. Windows ``v = 0 .. n - 6`` with ``n = min(frames, frames covered by audio)`` (joonson's
   ``range(n - 5)``, which leaves out the last complete window; so do we). Window ``v`` is the
   lower halves of frames ``v .. v+4`` (``(48, 96, 15)``, BGR in [0, 1], the expert's input) and the
   **mel window** of frame ``v``, ``mel[:, s:s+16]`` with ``s = int(80 * v / fps)`` (the expert's own
   front end, :func:`talkjax.audio.melspectrogram`, instead of 13 MFCCs; the window the expert was
   trained with: it starts at the first of the 5 frames).
2. Each window gives a unit-norm audio and face embedding.
3. Audio embeddings are zero-padded by ``vshift = 15`` windows on each side; for each window the
   **cosine distance** ``1 - <v_i, a_{i+k}>`` to the 31 shifted audio embeddings, ``k = -15 .. 15``
   (joonson: Euclidean distance of unnormalised 1024-d vectors). The expert was trained with the
   cosine as its probability of sync, so the cosine is its natural distance; for unit vectors it is
   a monotone function of the Euclidean one (``||v - a||^2 = 2 (1 - cos)``). A zero-padded position
   has distance 1 (cosine 0), and, as in the reference, the padding enters the mean at the edges.
4. ``mdist`` = mean over windows (31 values); **LSE-D** = ``min(mdist)``, **LSE-C** =
   ``median(mdist) - min(mdist)`` (``torch.median``: the lower middle value), AV offset =
   ``vshift - argmin``: :func:`talkjax.metrics.lse.score_from_distances`, reused unchanged.

The numbers live on another scale than joonson's (distances in [0, 1] for ReLU embeddings) and
depend on the expert: compare them only between clips scored by the same expert.

Also here: :func:`sync_metrics` (in-sync vs off-sync accuracy, BCE, ROC AUC), the held-out
acceptance check of a trained expert (:func:`shift_test`, :func:`held_out_accuracy`) and its
command line::

  python -m talkjax.metrics.sync_expert --workdir=/tmp/syncnet_local [--shift=10] [--check]
  python -m talkjax.metrics.sync_expert --expert=DIR --data_root=DATASET --split=eval
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from talkjax import audio as audio_lib
from talkjax.errors import ArgumentError, CheckpointError, ConfigError, ShapeError
from talkjax.metrics.lse import SyncScore, score_from_distances

VSHIFT = 15
WINDOW_FRAMES = 5
SIZE = 96                          # the expert's face crops (lower half: 48 x 96)
HALF = SIZE - SIZE // 2
FPS = 25.0
SILENCE = -audio_lib.MAX_ABS_VALUE  # the mel value of digital silence (-4)
DEFAULT_BATCH = 64


# --- Inputs --------------------------------------------------------------------------------------------


def expert_face_input(frames: jax.Array, *, rgb: bool = True) -> jax.Array:
  """Frames of 5-frame windows -> the expert's face input ``(B, 48, 96, 15)``, BGR in [0, 1].

  Args:
    frames: ``(B, 5, H, W, 3)``: lower halves (``H == W - W // 2``) or whole square face crops
      (``H == W``; rows ``H // 2:`` are taken after resizing). uint8 (0..255) or float in [0, 1].
      Crops of another width than 96 are resized to 96 (bilinear, no antialiasing), as Wav2Lip
      resizes its face crops to 96 before taking the lower half.
    rgb: the frames are RGB (talkjax's convention; the expert's layout is cv2's BGR, so the channels
      are reversed). False if they are BGR already.

  Returns:
    float32 ``(B, 48, 96, 15)``; channel ``3 * t + c`` is colour ``c`` (BGR) of frame ``t``.
  """
  if frames.ndim != 5 or frames.shape[1] != WINDOW_FRAMES or frames.shape[-1] != 3:
    raise ShapeError(f"frames: expected (B, {WINDOW_FRAMES}, H, W, 3), got shape {tuple(frames.shape)}")
  b, t, h, w, _ = frames.shape
  if h != w and h != w - w // 2:
    raise ShapeError(f"frames: expected square crops or their lower halves (H = W - W//2), got {h}x{w}")
  x = frames.astype(jnp.float32)
  if jnp.issubdtype(frames.dtype, jnp.integer):
    x = x / 255.0
  if h == w:
    if w != SIZE:
      x = jax.image.resize(x, (b, t, SIZE, SIZE, 3), "bilinear", antialias=False)
    x = x[:, :, SIZE // 2:]
  elif w != SIZE:
    x = jax.image.resize(x, (b, t, HALF, SIZE, 3), "bilinear", antialias=False)
  if rgb:
    x = x[..., ::-1]
  # (B, T, 48, 96, 3) -> (B, 48, 96, T, 3) -> frame-major channels.
  return jnp.transpose(x, (0, 2, 3, 1, 4)).reshape(b, HALF, SIZE, 3 * t)


def lower_halves(crops: np.ndarray) -> np.ndarray:
  """``(T, S, S, 3)`` uint8 square face crops -> ``(T, 48, 96, 3)`` uint8 lower halves.

  Resized to 96x96 with PIL's bilinear filter first when ``S != 96`` (what the ``syncnet`` sampler
  does with the stored crops), then rows 48.. are kept.
  """
  crops = np.asarray(crops)
  if crops.ndim != 4 or crops.shape[1] != crops.shape[2] or crops.shape[-1] != 3:
    raise ShapeError(f"crops: expected (T, S, S, 3) square face crops, got shape {crops.shape}")
  if crops.dtype != np.uint8:
    raise ShapeError(f"crops: expected uint8, got {crops.dtype}")
  if crops.shape[1] != SIZE:
    from PIL import Image  # pylint: disable=g-import-not-at-top
    crops = np.stack([np.asarray(Image.fromarray(c).resize((SIZE, SIZE), Image.BILINEAR)) for c in crops])
  return np.ascontiguousarray(crops[:, SIZE // 2:])


# --- The expert ----------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply(module, method: str, variables, x):
  return module.apply(variables, x, method=method)


@functools.partial(jax.jit, static_argnums=(0,))
def _apply_faces(module, variables, frames):
  return module.apply(variables, expert_face_input(frames), method="embed_face")


class Expert:
  """A Wav2Lip expert SyncNet and its variables; embeds windows in fixed-size jitted batches.

  Args:
    module: a :class:`talkjax.models.wav2lip.SyncNetColor`.
    variables: its ``params`` and ``batch_stats`` (eval mode: running statistics are used).
    batch_size: windows per device call (the last batch is padded: one compilation per method).
  """

  def __init__(self, module: Any, variables: Any, batch_size: int = DEFAULT_BATCH):
    if batch_size < 1:
      raise ArgumentError(f"batch_size: must be >= 1, got {batch_size}")
    self.module = module
    self.variables = jax.tree.map(jnp.asarray, variables)
    self.batch_size = int(batch_size)

  def _run(self, fn, windows: np.ndarray) -> np.ndarray:
    n = windows.shape[0]
    pad = (-n) % self.batch_size
    if pad:
      windows = np.concatenate([windows, np.zeros((pad,) + windows.shape[1:], windows.dtype)])
    out = [np.asarray(fn(self.variables, jnp.asarray(windows[i:i + self.batch_size])))
           for i in range(0, windows.shape[0], self.batch_size)]
    return np.concatenate(out)[:n].astype(np.float64)

  def embed_faces(self, frames: np.ndarray) -> np.ndarray:
    """``(N, 5, 48, 96, 3)`` RGB lower halves (uint8 or [0, 1]) -> ``(N, D)`` unit embeddings."""
    frames = np.asarray(frames)
    if frames.ndim != 5 or frames.shape[1:] != (WINDOW_FRAMES, HALF, SIZE, 3):
      raise ShapeError(f"faces: expected (N, {WINDOW_FRAMES}, {HALF}, {SIZE}, 3) lower halves, "
                       f"got {frames.shape}")
    return self._run(functools.partial(_apply_faces, self.module), frames)

  def embed_mels(self, mels: np.ndarray) -> np.ndarray:
    """``(N, 80, 16, 1)`` mel windows -> ``(N, D)`` unit embeddings."""
    mels = np.asarray(mels, np.float32)
    if mels.ndim != 4 or mels.shape[1:] != (audio_lib.NUM_MELS, audio_lib.MEL_WINDOW, 1):
      raise ShapeError(f"mels: expected (N, 80, 16, 1) windows, got {mels.shape}")
    return self._run(functools.partial(_apply, self.module, "embed_audio"), mels)

  def probabilities(self, frames: np.ndarray, mels: np.ndarray) -> np.ndarray:
    """The expert's probability of sync, ``cos(audio, face)`` clipped to [0, 1], per window."""
    v, a = self.embed_faces(frames), self.embed_mels(mels)
    return np.clip(np.sum(_unit(v) * _unit(a), axis=-1), 0.0, 1.0)


def _unit(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _divisor_of(variables: Any, keys: tuple[str, ...], layer: str) -> int:
  """``d`` of a SyncNetColor branch whose first conv (``params/<keys>``) has ``32 // d`` outputs."""
  try:
    kernel = variables["params"]
    for key in keys:
      kernel = kernel[key]
    features = int(np.shape(kernel)[-1])
  except (KeyError, TypeError, IndexError) as e:
    raise CheckpointError("not the variables of a Wav2Lip expert SyncNet (SyncNetColor): no "
                          f"params/{'/'.join(keys)}") from e
  if features < 1 or 32 % features:
    raise CheckpointError(f"SyncNetColor variables with {features} {layer} features: not 32 // d")
  return 32 // features


def width_divisor_of(variables: Any) -> int:
  """The ``width_divisor`` a SyncNetColor variables tree was built with (first conv: 32 // d outputs)."""
  return _divisor_of(variables, ("face_encoder_0", "conv", "kernel"), "first-layer")


def audio_width_divisor_of(variables: Any) -> int:
  """The audio branch's divisor of SyncNetColor variables (its first conv: 32 // d outputs)."""
  return _divisor_of(variables, ("audio_encoder", "block_0", "conv", "kernel"), "first audio-layer")


def expert_module(variables: Any) -> Any:
  """The :class:`~talkjax.models.wav2lip.SyncNetColor` that ``variables`` belong to (its widths are
  implied by the shapes: a converted ``lipsync_expert.pth``, an exported ``syncnet`` run, any reduced
  variant)."""
  from talkjax.models.wav2lip import SyncNetColor  # pylint: disable=g-import-not-at-top
  d, a = width_divisor_of(variables), audio_width_divisor_of(variables)
  return SyncNetColor(width_divisor=d, audio_width_divisor=None if a == d else a)


def load_expert(path: str | os.PathLike[str], batch_size: int = DEFAULT_BATCH) -> Expert:
  """An :class:`Expert` from a variables directory: ``python -m talkjax.tasks.syncnet`` (export of a
  ``syncnet`` run) or ``third_party.convert --kind=wav2lip_syncnet`` (``lipsync_expert.pth``)."""
  from talkjax import checkpoints  # pylint: disable=g-import-not-at-top
  variables = checkpoints.load_variables(path)
  try:
    module = expert_module(variables)
  except CheckpointError as e:
    raise CheckpointError(f"{path}: {e}") from e
  expected = jax.eval_shape(functools.partial(module.init, train=False), jax.random.PRNGKey(0),
                            jnp.zeros((1, 80, 16, 1)), jnp.zeros((1, HALF, SIZE, 3 * WINDOW_FRAMES)))
  got = {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(variables)}
  want = {jax.tree_util.keystr(k): tuple(v.shape) for k, v in jax.tree_util.tree_leaves_with_path(expected)}
  if got != want:
    diff = sorted(set(got) ^ set(want)) + sorted(k for k in set(got) & set(want) if got[k] != want[k])
    raise CheckpointError(f"{path}: does not fit SyncNetColor(width_divisor={module.width_divisor}, "
                          f"audio_width_divisor={module.audio_width_divisor}): "
                          f"{', '.join(diff[:8])}{' ...' if len(diff) > 8 else ''}")
  return Expert(module, variables, batch_size)


# --- Scoring ----------------------------------------------------------------------------------------------


def cosine_distances(video_emb: np.ndarray, audio_emb: np.ndarray, vshift: int = VSHIFT) -> np.ndarray:
  """``(V, 2 * vshift + 1)``: ``d[i, k] = 1 - cos(v_i, a_{i + k - vshift})``, 1 outside ``0 .. V-1``.

  Zero-padding the audio embeddings (joonson's ``calc_pdist``) gives a cosine of 0 there.
  """
  v = np.asarray(video_emb, np.float64)
  a = np.asarray(audio_emb, np.float64)
  if v.shape != a.shape or v.ndim != 2:
    raise ShapeError(f"cosine_distances: video {v.shape} and audio {a.shape} embeddings must be equal (V, D)")
  if vshift < 0:
    raise ArgumentError(f"vshift: must be >= 0, got {vshift}")
  padded = np.pad(_unit(a), ((vshift, vshift), (0, 0)))
  win = 2 * vshift + 1
  shifted = np.lib.stride_tricks.sliding_window_view(padded, (win, a.shape[1]))[:v.shape[0], 0]  # (V, win, D)
  return 1.0 - np.einsum("vd,vkd->vk", _unit(v), shifted)


def num_windows(num_frames: int, mel_frames: int, frame0: int = 0, mel0: int = 0, fps: float = FPS) -> int:
  """Windows scored: ``min(frames, frames covered by audio) - 5`` (joonson's rule; may be <= 0).

  A frame ``f`` is covered when its mel window ``[s, s + 16)``, ``s = int(80 * (frame0 + f) / fps) -
  mel0``, lies inside the ``mel_frames`` available, so window ``v`` (frames ``v .. v+4``) has audio.
  """
  f = np.arange(num_frames)
  s = audio_lib.mel_start(frame0 + f, fps) - mel0
  ok = (s >= 0) & (s + audio_lib.MEL_WINDOW <= mel_frames)
  valid = int(np.argmin(ok)) if not ok.all() else num_frames   # leading run of covered windows
  return min(num_frames, valid + WINDOW_FRAMES - 1) - WINDOW_FRAMES


def score_windows(expert: Expert, faces: np.ndarray, mel: np.ndarray, *, frame0: int = 0, mel0: int = 0,
                  fps: float = FPS, vshift: int = VSHIFT, name: str = "clip") -> SyncScore:
  """Scores a clip's lower halves against its mel spectrogram (see the module docstring).

  Args:
    expert: the expert.
    faces: ``(T, 48, 96, 3)`` RGB lower halves (uint8, or float in [0, 1]) at ``fps``.
    mel: ``(80, M)`` Wav2Lip mel spectrogram; ``mel[:, j]`` is mel frame ``mel0 + j`` of the audio
      whose frame 0 is video frame ``-frame0`` (a segment of a longer clip: ``frame0`` = its first
      frame in the clip, ``mel0`` = the clip mel frame its mel starts at).
    vshift: offsets searched on each side.
    name: names the clip in errors.
  """
  faces = np.asarray(faces)
  if faces.ndim != 4 or faces.shape[1:] != (HALF, SIZE, 3):
    raise ShapeError(f"{name}: faces must be (T, {HALF}, {SIZE}, 3) lower halves, got {faces.shape}")
  mel = np.asarray(mel, np.float32)
  if mel.ndim != 2 or mel.shape[0] != audio_lib.NUM_MELS:
    raise ShapeError(f"{name}: mel must be (80, M), got {mel.shape}")
  if not np.all(np.isfinite(mel)):
    raise ArgumentError(f"{name}: mel has NaN/inf values")
  n = num_windows(faces.shape[0], mel.shape[1], frame0, mel0, fps)
  if n < 1:
    raise ArgumentError(f"{name}: needs at least {WINDOW_FRAMES + 1} frames with audio; got "
                        f"{faces.shape[0]} frames and {mel.shape[1]} mel frames")
  starts = audio_lib.mel_start(frame0 + np.arange(n), fps) - mel0
  mels = np.stack([mel[:, s:s + audio_lib.MEL_WINDOW] for s in starts])[..., None]
  windows = np.lib.stride_tricks.sliding_window_view(faces, WINDOW_FRAMES, axis=0)[:n]  # (n, 48, 96, 3, 5)
  windows = np.ascontiguousarray(np.moveaxis(windows, -1, 1))
  video = expert.embed_faces(windows)
  audio = expert.embed_mels(mels)
  return score_from_distances(cosine_distances(video, audio, vshift), vshift)


def score_clip(expert: Expert, faces: np.ndarray, audio: np.ndarray, *, fps: float = FPS,
               vshift: int = VSHIFT, name: str = "clip") -> SyncScore:
  """Scores lower halves ``(T, 48, 96, 3)`` against 16 kHz mono ``audio`` (mel computed here)."""
  audio = np.asarray(audio)
  if audio.ndim != 1:
    raise ShapeError(f"{name}: audio must be 1-D 16 kHz mono, got shape {audio.shape}")
  return score_windows(expert, faces, audio_lib.melspectrogram(audio), fps=fps, vshift=vshift, name=name)


def shift_mel(mel: np.ndarray, frames: int, fps: float = FPS) -> np.ndarray:
  """The mel spectrogram of the audio delayed by ``frames`` video frames (negative: advanced).

  Columns move by ``round(80 * frames / fps)`` (exact at 25 fps for a multiple of 5 frames: 10 frames
  = 32 mel frames = 6400 samples); the vacated columns are digital silence (-4), the audio that
  leaves the clip is dropped, the length stays.
  """
  mel = np.asarray(mel, np.float32)
  d = int(round(audio_lib.MEL_FPS * frames / fps))
  out = np.full_like(mel, SILENCE)
  m = mel.shape[1]
  if 0 <= d < m:
    out[:, d:] = mel[:, :m - d]
  elif -m < d < 0:
    out[:, :m + d] = mel[:, -d:]
  return out


# --- Classification metrics -------------------------------------------------------------------------------


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """Area under the ROC curve: P(a random positive outranks a random negative), ties counting 1/2."""
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels) > 0.5
  n_pos, n_neg = int(labels.sum()), int((~labels).sum())
  if not n_pos or not n_neg:
    return float("nan")
  _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
  # Mid-ranks of tied groups: rank of a value = (number below) + (ties + 1) / 2.
  below = np.concatenate([[0], np.cumsum(counts)[:-1]])
  ranks = below[inverse] + (counts[inverse] + 1) / 2.0
  return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def sync_metrics(p: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
  """In-sync vs off-sync classification by the probability ``p``.

  Returns ``accuracy`` (``p > threshold`` predicts in sync), ``balanced_accuracy`` (mean of the
  per-class accuracies), ``bce`` (``nn.BCELoss``: logs clamped at -100), ``auc``, the mean
  probability of the in-sync (``p_in_sync``) and off-sync (``p_off_sync``) examples, and
  ``num_pairs``, the count behind them (the accuracy's standard error is sqrt(acc (1 - acc) / n)).
  """
  p = np.asarray(p, np.float64).reshape(-1)
  y = np.asarray(labels).reshape(-1) > 0.5
  if p.shape != y.shape or not p.size:
    raise ShapeError(f"sync_metrics: {p.shape} probabilities and {y.shape} labels")
  pred = p > threshold
  q = np.clip(p, 0.0, 1.0)
  with np.errstate(divide="ignore"):
    log_p, log_1mp = np.maximum(np.log(q), -100.0), np.maximum(np.log1p(-q), -100.0)
  nan = float("nan")
  tpr = float(np.mean(pred[y])) if y.any() else nan
  tnr = float(np.mean(~pred[~y])) if (~y).any() else nan
  return {"accuracy": float(np.mean(pred == y)), "balanced_accuracy": 0.5 * (tpr + tnr),
          "bce": float(-np.mean(np.where(y, log_p, log_1mp))), "auc": roc_auc(p, y),
          "p_in_sync": float(np.mean(p[y])) if y.any() else nan,
          "p_off_sync": float(np.mean(p[~y])) if (~y).any() else nan, "num_pairs": float(p.size)}


# --- Held-out acceptance ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Clip:
  """A clip (or segment) to score: lower halves and the mel spectrogram around them.

  ``mel[:, j]`` is mel frame ``mel0 + j`` of the source clip, whose video frame ``frame0`` is
  ``faces[0]`` (see :func:`score_windows`).
  """
  key: str
  faces: np.ndarray
  mel: np.ndarray
  frame0: int = 0
  mel0: int = 0
  fps: float = FPS


def load_clips(root: str | os.PathLike[str], split: str = "eval", max_clips: int | None = None) -> list[Clip]:
  """Every segment of a split of a preprocessed dataset (``talkjax.data``) as a :class:`Clip`.

  Frames are the IP_LAP crops (what the ``syncnet`` sampler trains on), resized to 96 px.
  """
  from talkjax.data import loader  # pylint: disable=g-import-not-at-top
  data = loader.SegmentDataset(root, split)
  if not len(data):
    raise ArgumentError(f"{root}: the {split!r} split has no segments")
  out = []
  for i in range(len(data) if not max_clips else min(max_clips, len(data))):
    seg = data.segment(i)
    crops = data.frames(i, range(seg.num_frames), "image")
    out.append(Clip(key=seg.meta["key"], faces=lower_halves(crops), mel=np.asarray(seg.arrays["mel"]),
                    frame0=int(seg.meta["start"]), mel0=int(seg.meta["mel_start"]),
                    fps=float(seg.meta["fps"])))
  return out


@dataclasses.dataclass(frozen=True)
class ShiftReport:
  """Ground truth vs audio delayed by ``shift`` frames, per clip."""
  shift: int
  keys: tuple[str, ...]
  truth: tuple[SyncScore, ...]
  shifted: tuple[SyncScore, ...]

  def summary(self) -> dict[str, float]:
    t, s = self.truth, self.shifted
    return {
        "lse_c": float(np.mean([x.lse_c for x in t])), "lse_d": float(np.mean([x.lse_d for x in t])),
        "offset_abs": float(np.mean([abs(x.offset) for x in t])),
        "lse_c_shifted": float(np.mean([x.lse_c for x in s])),
        "lse_d_shifted": float(np.mean([x.lse_d for x in s])),
        "offset_shifted": float(np.mean([x.offset for x in s])),
        "clips_better": float(np.mean([a.lse_c > b.lse_c for a, b in zip(t, s)])),
        "num_clips": float(len(t)),
    }

  def table(self) -> str:
    rows = [f"{'clip':<28} {'LSE-C':>7} {'LSE-D':>7} {'off':>4} | {'LSE-C':>7} {'LSE-D':>7} {'off':>4}  "
            f"(audio +{self.shift} frames)"]
    for k, a, b in zip(self.keys, self.truth, self.shifted):
      rows.append(f"{k:<28} {a.lse_c:7.4f} {a.lse_d:7.4f} {a.offset:4d} | {b.lse_c:7.4f} {b.lse_d:7.4f} "
                  f"{b.offset:4d}{'' if a.lse_c > b.lse_c else '  <-- not better'}")
    return "\n".join(rows)


def shift_test(expert: Expert, clips: Sequence[Clip], shift: int = 10, vshift: int = VSHIFT) -> ShiftReport:
  """Scores every clip with its own audio and with the audio delayed by ``shift`` frames."""
  if not clips:
    raise ArgumentError("shift_test: no clips")
  truth, shifted = [], []
  for c in clips:
    kw = dict(frame0=c.frame0, mel0=c.mel0, fps=c.fps, vshift=vshift, name=c.key)
    truth.append(score_windows(expert, c.faces, c.mel, **kw))
    shifted.append(score_windows(expert, c.faces, shift_mel(c.mel, shift, c.fps), **kw))
  return ShiftReport(shift=int(shift), keys=tuple(c.key for c in clips), truth=tuple(truth),
                     shifted=tuple(shifted))


def held_out_accuracy(expert: Expert, root: str | os.PathLike[str], *, split: str = "eval",
                      num_batches: int = 8, batch_size: int = 64, seed: int = 0, min_shift: int = 5,
                      threshold: float = 0.5) -> dict[str, float]:
  """:func:`sync_metrics` of the expert on ``num_batches`` batches of the ``syncnet`` sampler (the
  stream the ``sync`` evaluator of a training run with the same seed sees)."""
  from talkjax.data import samplers  # pylint: disable=g-import-not-at-top
  ds = samplers.make_sampler("syncnet", root=os.fspath(root), split=split, batch_size=batch_size, seed=seed,
                             image_size=SIZE, min_shift=min_shift)
  ps, ys = [], []
  for i in range(num_batches):
    b = ds[i]
    ps.append(expert.probabilities(b["faces"], b["mel"]))
    ys.append(b["label"])
  return sync_metrics(np.concatenate(ps), np.concatenate(ys), threshold)


def main(argv: Sequence[str] | None = None) -> int:
  """The acceptance check of a trained expert on held-out clips (see the module docstring)."""
  import argparse  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(prog="python -m talkjax.metrics.sync_expert", description=(
      "Held-out check of a Wav2Lip-style expert: sync accuracy, and LSE-C/LSE-D with the expert on every "
      "clip of a split, with the true audio and with the audio delayed by --shift frames."))
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--expert", help="variables directory (exported or converted expert)")
  src.add_argument("--workdir", help="a syncnet training run (its latest checkpoint, or --step)")
  p.add_argument("--step", type=int, default=None)
  p.add_argument("--data_root", default=None, help="preprocessed dataset (default: the embedded corpus)")
  p.add_argument("--preset", default="runlocal_excerpts", help=(
      "embedded corpus preset when neither --data_root nor a --workdir (whose config names its data) is given"))
  p.add_argument("--split", default="eval")
  p.add_argument("--shift", type=int, default=10)
  p.add_argument("--vshift", type=int, default=VSHIFT)
  p.add_argument("--max_clips", type=int, default=0)
  p.add_argument("--accuracy_batches", type=int, default=8, help="0: skip the accuracy")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", default=None, help="also write the figures here")
  p.add_argument("--check", action="store_true",
                 help="exit 1 unless accuracy >= 0.9 and every clip's LSE-C beats its shifted version")
  args = p.parse_args(argv)

  from talkjax import fileio  # pylint: disable=g-import-not-at-top
  from talkjax.errors import TalkjaxError  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.ERROR)   # Orbax's warnings about reading a run read-only
  try:
    if args.workdir:
      expert = _expert_from_run(args.workdir, args.step)
    else:
      expert = load_expert(args.expert)
    root = args.data_root
    if root is None:
      from talkjax.data import embedded  # pylint: disable=g-import-not-at-top
      root = embedded.dataset_root(_run_data_config(args.workdir) or {"preset": args.preset})
    out: dict[str, Any] = {}
    if args.accuracy_batches > 0:
      out.update({f"sync/{k}": v for k, v in held_out_accuracy(
          expert, root, split=args.split, num_batches=args.accuracy_batches, seed=args.seed).items()})
    report = shift_test(expert, load_clips(root, args.split, args.max_clips or None), args.shift, args.vshift)
  except TalkjaxError as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    return 1
  out.update({f"lse/{k}": v for k, v in report.summary().items()})
  print(report.table())
  print(json.dumps(out, indent=2))
  if args.json:
    per_clip = [{"clip": k, "lse_c": a.lse_c, "lse_d": a.lse_d, "offset": a.offset, "lse_c_shifted": b.lse_c,
                 "lse_d_shifted": b.lse_d, "offset_shifted": b.offset}
                for k, a, b in zip(report.keys, report.truth, report.shifted)]
    fileio.atomic_write_text(args.json, json.dumps({"summary": out, "clips": per_clip}, indent=2) + "\n")
  if args.check:
    acc = out.get("sync/accuracy", 1.0)
    n = out.get("sync/num_pairs", 0.0)
    error = f" +- {np.sqrt(acc * (1 - acc) / n):.3f} on {n:.0f} pairs" if n else ""
    ok = acc >= 0.9 and out["lse/clips_better"] == 1.0
    print(f"acceptance: {'PASS' if ok else 'FAIL'} (held-out accuracy {acc:.3f}{error}, needs >= 0.9; clips "
          f"whose LSE-C beats the shifted audio's: {out['lse/clips_better']:.0%}, needs 100%)")
    return 0 if ok else 1
  return 0


def _run_data_config(workdir: str | None) -> dict | None:
  """The ``data`` section of a training run's ``config.json`` (None without a workdir or that file)."""
  path = os.path.join(os.path.abspath(workdir), "config.json") if workdir else None
  if not path or not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)["data"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ConfigError(f"{path}: unreadable run config ({e}); pass --data_root or --preset") from e


def _expert_from_run(workdir: str, step: int | None) -> Expert:
  """The ``syncnet`` network of a training run's checkpoint."""
  from talkjax import checkpoints  # pylint: disable=g-import-not-at-top
  state = checkpoints.load_train_state(os.path.join(os.path.abspath(workdir), "checkpoints"), step)
  if "syncnet" not in state.get("params", {}):
    raise CheckpointError(f"{workdir}: no 'syncnet' network in the checkpoint (not a syncnet run?)")
  variables = {"params": state["params"]["syncnet"], "batch_stats": state["batch_stats"]["syncnet"]}
  return Expert(expert_module(variables), variables)


if __name__ == "__main__":
  sys.exit(main())
