"""Whole-track landmark prediction with a trained audio-to-landmark model (IP_LAP's or paper 000's).

The models predict T = 5 consecutive frames at a time. For a track of N output frames,
:meth:`LandmarkPredictor.predict_windows` slides a T-frame window over the frames (stride 1) and
gives frame ``f`` the prediction of the window that has it in its centre (start
``clip(f - T // 2, 0, N - T)``), so the first and last ``T // 2`` frames come from the first and last
windows instead of being copies (IP_LAP repeats its first output). A track shorter than T is
padded with its last frame. Windows run in batches of ``batch_size`` (one compiled shape), so memory
stays bounded for any length.

:meth:`LandmarkPredictor.predict_track` is what a two-stage generator calls: from the driving mel
spectrogram, the face video's landmarks (source pixels) and which face-video frame each output frame
shows, it builds each frame's IP_LAP crop box (131-point box +- ``margin`` px, square), normalises
the pose landmarks in it, picks the reference frames (IP_LAP's rule: :func:`select_references`),
predicts the jaw and lips, and maps everything back to source pixels.

Coordinate frames (:func:`apply_model`, used by training and inference alike): the models are
trained on landmarks normalised in each frame's IP_LAP crop box (``"crop"``, IP_LAP's convention).
That box is the bounding box of all 131 points, chin and lips included, so the normalised *pose*
points of a frame reveal where its chin is: the mouth opening leaks into the input (a linear map from
the pose points alone predicts the held-out opening at r = 0.95, see BUILD_NOTES.md), the model can
score well without listening, and at inference the source video's mouth leaks in instead. With
``normalization="pose"`` every frame's landmarks are re-expressed in a square box around its own pose
points (eyes, brows, nose, upper face contour: nothing that moves with the jaw) before the network,
and the predictions are mapped back to the crop, so the opening must come from the audio.

Offsets (``offset=True``): the network's output is added to a prior, :func:`reference_prior`: the
reference frames' jaw + lips, each moved so that its nose base sits where the target frame's does, and
averaged (in the frame the network sees). The network then predicts how each frame departs from the
speaker's average mouth rather than the absolute shape (heads zero-initialised: training starts at
the prior). Anchoring at the nose follows head turns, which move the mouth sideways in the pose box
(on the held-out synthetic speaker the prior's lip error is 1.1 px against 2.3 px for the unanchored
mean). IP_LAP and paper 000 regress absolute coordinates; at the CPU budget that regression stalls at
the population-mean shape and ignores the audio (BUILD_NOTES.md "landmarks" has the measurements), so
the ``runlocal`` configs predict offsets.

Typical use::

  predictor = load_predictor("/tmp/dct_lm_local")                  # a training workdir
  track = predictor.predict_track(mel, landmarks, source_indices)  # mel (80, M); landmarks (S, 131, 2)
  track.landmarks     # (N, 131, 2) source pixels: the face video's pose + predicted jaw and lips
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from talkjax import audio as audio_lib
from talkjax import landmarks as lm
from talkjax.errors import ConfigError, NoFaceError, ShapeError


NORMALIZATIONS = ("crop", "pose")


def pose_frame(pose: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The square box around each frame's pose points: centre ``(..., 1, 2)`` and side ``(..., 1, 1)``."""
  lo, hi = jnp.min(pose, axis=-2, keepdims=True), jnp.max(pose, axis=-2, keepdims=True)
  side = jnp.maximum(jnp.max(hi - lo, axis=-1, keepdims=True), 1e-6)
  return 0.5 * (lo + hi), side


def to_frame(points: jax.Array, centre: jax.Array, side: jax.Array) -> jax.Array:
  """Points -> coordinates in the box (its centre at 0.5, its side 1)."""
  return (points - centre) / side + 0.5


def from_frame(points: jax.Array, centre: jax.Array, side: jax.Array) -> jax.Array:
  """Inverse of :func:`to_frame`."""
  return (points - 0.5) * side + centre


def reference_prior(pose: jax.Array, reference: jax.Array) -> jax.Array:
  """The offset models' starting point: ``(B, T, 57, 2)`` jaw + lips of the references, each shifted so
  its nose base (``talkjax.landmarks.NOSE_BASE``) lands on the target frame's, averaged.

  Args:
    pose: (B, T, 74, 2) the target frames' pose points; reference: (B, Nl, 131, 2); one coordinate frame.
  """
  nose = list(lm.NOSE_BASE)
  ref_anchor = jnp.mean(reference[..., nose, :], axis=-2, keepdims=True)           # (B, Nl, 1, 2)
  shape = jnp.mean(reference[..., lm.CONTENT_SLICE, :] - ref_anchor, axis=-3)     # (B, 57, 2)
  return shape[..., None, :, :] + jnp.mean(pose[..., nose, :], axis=-2, keepdims=True)


def apply_model(model, variables: dict, mel: jax.Array, pose: jax.Array, reference: jax.Array, *,
                normalization: str = "crop", offset: bool = False, train: bool = False,
                rngs: dict | None = None):
  """Runs a landmark generator on crop-normalised landmarks; returns crop-normalised content.

  Args:
    model: ``IPLAPLandmarkGenerator`` or ``DCTLandmarkGenerator``.
    variables: its ``{"params", "batch_stats"}``.
    mel: (B, T, 80, 16, 1); pose: (B, T, 74, 2); reference: (B, Nl, 131, 2): landmarks in [0, 1] of
      each frame's IP_LAP crop (the ``landmarks`` sampler's arrays).
    normalization: ``"crop"`` (the network sees the crop coordinates, IP_LAP) or ``"pose"`` (each
      frame re-expressed in the box of its own pose points; see the module docstring).
    offset: the network predicts offsets from :func:`reference_prior` (module docstring).
    train: training mode (batch statistics updated, dropout with ``rngs["dropout"]``).

  Returns:
    (B, T, 57, 2) predicted jaw and lips in the target frames' crop coordinates, and with ``train``
    also the updated ``batch_stats``.
  """
  if normalization not in NORMALIZATIONS:
    raise ConfigError(f"normalization: expected one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
  if normalization == "pose":
    centre, side = pose_frame(pose)
    ref_centre, ref_side = pose_frame(reference[..., lm.POSE_SLICE, :])
    pose, reference = to_frame(pose, centre, side), to_frame(reference, ref_centre, ref_side)
  args = (mel, pose, reference[..., lm.POSE_SLICE, :], reference[..., lm.CONTENT_SLICE, :])
  if train:
    content, updates = model.apply(variables, *args, train=True, rngs=rngs, mutable=["batch_stats"])
  else:
    content, updates = model.apply(variables, *args, train=False), None
  if offset:
    content = content + reference_prior(pose, reference)
  if normalization == "pose":
    content = from_frame(content, centre, side)
  return (content, updates["batch_stats"]) if train else content


@dataclasses.dataclass(frozen=True)
class TrackLandmarks:
  """Predicted landmarks of every output frame.

  Attributes:
    landmarks: (N, 131, 2) float32 source-frame pixels: the shown face-video frame's pose points
      and the predicted jaw and lips.
    normalized: (N, 131, 2) float32 the same in [0, 1] of ``boxes`` (IP_LAP's crop coordinates).
    boxes: (N, 4) float32 the crop box of each output frame (its face-video frame's IP_LAP box).
    source_indices: (N,) int64 face-video frame shown by each output frame.
    reference_indices: (Nl,) int64 face-video frames used as references.
    filled_frames: (K,) int64 output frames whose face-video frame had no face; they borrowed the
      landmarks of the nearest frame with one.
  """
  landmarks: np.ndarray
  normalized: np.ndarray
  boxes: np.ndarray
  source_indices: np.ndarray
  reference_indices: np.ndarray
  filled_frames: np.ndarray


def window_plan(num_frames: int, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """How a track of ``num_frames`` frames is covered by ``window``-frame windows.

  Returns ``(starts, which, where)``: the window starts ``0 .. max(N - T, 0)``, and for each frame the
  window whose centre it is closest to and its position in that window. Frames past a short track's
  end (N < T) are covered by repeating its last frame.
  """
  if num_frames < 1 or window < 1:
    raise ConfigError(f"window_plan: need num_frames >= 1 and window >= 1, got {num_frames}, {window}")
  starts = np.arange(max(num_frames - window, 0) + 1, dtype=np.int64)
  f = np.arange(num_frames, dtype=np.int64)
  which = np.clip(f - window // 2, 0, starts[-1])
  return starts, which, f - which


def select_references(normalized: np.ndarray, count: int, valid: np.ndarray | None = None) -> np.ndarray:
  """IP_LAP's reference frames: frames sorted by inner-lip opening, ``count`` picks evenly spread.

  Args:
    normalized: (S, 131, 2) landmarks of the face video (any consistent coordinates).
    count: references wanted (frames repeat when the video has fewer usable frames).
    valid: (S,) frames that may be picked (default: those with finite landmarks).

  Returns:
    (count,) int64 frame indices, from the most closed to the most open mouth.
  """
  points = np.asarray(normalized, np.float64)
  if valid is None:
    valid = np.all(np.isfinite(points.reshape(len(points), -1)), axis=1)
  candidates = np.flatnonzero(valid)
  if len(candidates) == 0:
    raise NoFaceError("<landmarks>", "no frame with landmarks to take references from")
  order = candidates[np.argsort(lm.inner_mouth_opening(points[candidates]), kind="stable")]
  picks = np.linspace(0, len(order) - 1, count).astype(np.int64)   # torch.linspace + int(), as IP_LAP
  return order[picks]


def _nearest_valid(valid: np.ndarray) -> np.ndarray:
  """For every index, the nearest index where ``valid`` is True (ties: the earlier one)."""
  idx = np.flatnonzero(valid)
  pos = np.searchsorted(idx, np.arange(len(valid)))
  left = idx[np.clip(pos - 1, 0, len(idx) - 1)]
  right = idx[np.clip(pos, 0, len(idx) - 1)]
  i = np.arange(len(valid))
  return np.where(np.abs(i - left) <= np.abs(right - i), left, right)


@functools.lru_cache(maxsize=16)
def _jitted_apply(model, normalization: str, offset: bool):
  """One jitted eval-mode forward per (equal) model, shared by predictors of the same architecture."""

  def apply(variables, mel, pose, reference):
    return apply_model(model, variables, mel, pose, reference, normalization=normalization, offset=offset)

  return jax.jit(apply)


class LandmarkPredictor:
  """A trained landmark generator ready for inference (see the module docstring).

  Args:
    model: the Flax module (``talkjax.tasks.landmarks.make_model``).
    variables: its ``{"params": ..., "batch_stats": ...}``.
    num_frames: T, frames per window (the training windows').
    num_references: Nl.
    mel_offset: mel-window offset in frames the model was trained with (-2: centred).
    margin: crop margin in source pixels around the 131 points (training crops used 5).
    batch_size: windows per compiled call.
    normalization: the coordinate frame the model was trained in (:func:`apply_model`).
    offset: whether the model predicts offsets from :func:`reference_prior` (:func:`apply_model`).
  """

  def __init__(self, model, variables: dict, *, num_frames: int = 5, num_references: int = 15,
               mel_offset: int = -2, margin: float = 5.0, batch_size: int = 64, normalization: str = "crop",
               offset: bool = False):
    if num_frames < 1 or num_references < 1 or batch_size < 1:
      raise ConfigError(f"LandmarkPredictor: num_frames, num_references and batch_size must be >= 1, got "
                        f"{num_frames}, {num_references}, {batch_size}")
    if normalization not in NORMALIZATIONS:
      raise ConfigError(f"LandmarkPredictor: normalization must be one of {', '.join(NORMALIZATIONS)}, "
                        f"got {normalization!r}")
    self.model, self.num_frames, self.num_references = model, int(num_frames), int(num_references)
    self.mel_offset, self.margin, self.batch_size = int(mel_offset), float(margin), int(batch_size)
    self.normalization, self.offset = normalization, bool(offset)
    self.variables = jax.tree.map(jnp.asarray, {"params": variables["params"],
                                                "batch_stats": variables.get("batch_stats", {})})
    self._apply = _jitted_apply(model, normalization, self.offset)

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, variables: dict,
                  **overrides) -> "LandmarkPredictor":
    """Builds the predictor a ``landmarks`` task config describes (``overrides`` win)."""
    from talkjax.tasks import landmarks as task  # pylint: disable=g-import-not-at-top
    settings = task.inference_settings(config)
    settings.update(overrides)
    return cls(task.make_model(config.model), variables, **settings)

  def predict_windows(self, mel_windows: np.ndarray, pose: np.ndarray, reference: np.ndarray, *,
                      progress: bool = False) -> np.ndarray:
    """Content landmarks of every frame of a track, in its frames' crop coordinates.

    Args:
      mel_windows: (N, 80, 16, 1) each frame's mel window (already offset by ``mel_offset``).
      pose: (N, 74, 2) each frame's pose landmarks, normalised in its crop box.
      reference: (Nl, 131, 2) reference landmarks, each normalised in its own crop box.
      progress: show a progress bar.

    Returns:
      (N, 57, 2) float32: jaw then lips of each frame, normalised in its crop box.
    """
    mel_windows, pose = np.asarray(mel_windows, np.float32), np.asarray(pose, np.float32)
    reference = np.asarray(reference, np.float32)
    n = len(mel_windows)
    if mel_windows.shape[1:] != (80, 16, 1) or pose.shape != (n, lm.NUM_POSE, 2) or n < 1:
      raise ShapeError(f"predict_windows: expected mel_windows (N, 80, 16, 1) and pose (N, {lm.NUM_POSE}, 2) "
                       f"with N >= 1, got {mel_windows.shape} and {pose.shape}")
    if reference.shape != (self.num_references, lm.NUM_POINTS, 2):
      raise ShapeError(f"predict_windows: expected reference ({self.num_references}, {lm.NUM_POINTS}, 2), "
                       f"got {reference.shape}")
    for name, arr in (("mel_windows", mel_windows), ("pose", pose), ("reference", reference)):
      if not np.all(np.isfinite(arr)):
        raise ShapeError(f"predict_windows: {name} contains NaN or inf")
    t = self.num_frames
    starts, which, where = window_plan(n, t)
    frame_of = np.minimum(starts[:, None] + np.arange(t)[None], n - 1)   # (W, T), short tracks padded
    refs = np.broadcast_to(reference[None], (self.batch_size,) + reference.shape)
    out = np.zeros((len(starts), t, lm.NUM_CONTENT, 2), np.float32)
    bar = tqdm(total=len(starts), disable=not progress, desc="landmarks", unit="window", file=sys.stderr)
    for b0 in range(0, len(starts), self.batch_size):
      ids = frame_of[b0:b0 + self.batch_size]
      k = len(ids)
      pad = np.concatenate([ids, np.repeat(ids[-1:], self.batch_size - k, axis=0)])   # one compiled shape
      pred = self._apply(self.variables, mel_windows[pad], pose[pad], refs)
      out[b0:b0 + k] = np.asarray(jax.device_get(pred))[:k]
      bar.update(k)
    bar.close()
    return out[which, where]

  def predict_track(self, mel: np.ndarray, landmarks: np.ndarray, source_indices: np.ndarray, *,
                    fps: float = 25.0, reference_indices: np.ndarray | None = None,
                    progress: bool = False) -> TrackLandmarks:
    """Predicts the landmarks of every output frame of a two-stage generation.

    Args:
      mel: (80, M) the driving audio's Wav2Lip mel spectrogram (``talkjax.audio.melspectrogram``).
      landmarks: (S, 131, 2) the face video's landmarks in source pixels (NaN where no face).
      source_indices: (N,) the face-video frame each output frame shows (e.g. ``loop_indices``).
      fps: output frame rate (mel windows follow ``talkjax.audio.mel_windows``).
      reference_indices: face-video frames to use as references (default: :func:`select_references`).
      progress: show a progress bar.

    Raises:
      NoFaceError: no face-video frame has landmarks.
    """
    points = np.asarray(landmarks, np.float32)
    if points.ndim != 3 or points.shape[1:] != (lm.NUM_POINTS, 2):
      raise ShapeError(f"predict_track: landmarks must be (S, {lm.NUM_POINTS}, 2), got {points.shape}")
    source_indices = np.asarray(source_indices, np.int64)
    if source_indices.ndim != 1 or len(source_indices) == 0 or source_indices.min() < 0 \
        or source_indices.max() >= len(points):
      raise ShapeError(f"predict_track: source_indices must be N >= 1 indices into {len(points)} face-video "
                       f"frames, got shape {source_indices.shape}")
    from talkjax import faces  # pylint: disable=g-import-not-at-top  (detection stack: import when used)
    valid = np.all(np.isfinite(points.reshape(len(points), -1)), axis=1)
    if not valid.any():
      raise NoFaceError("<face video>", f"none of its {len(points)} frames has landmarks")
    nearest = _nearest_valid(valid)
    boxes = faces.ip_lap_boxes(points, margin=self.margin)
    normalized = lm.normalize_to_box(points, boxes)
    if reference_indices is None:
      reference_indices = select_references(normalized, self.num_references, valid)
    reference_indices = np.asarray(reference_indices, np.int64)
    if reference_indices.shape != (self.num_references,) or not valid[reference_indices].all():
      raise ShapeError(f"predict_track: reference_indices must be {self.num_references} frames with a face, "
                       f"got {reference_indices.tolist()}")
    shown = nearest[source_indices]                      # faceless frames borrow their nearest face
    mel_windows = audio_lib.mel_windows(mel, len(source_indices), fps, self.mel_offset)[..., None]
    content = self.predict_windows(mel_windows, normalized[shown, lm.POSE_SLICE],
                                   normalized[reference_indices], progress=progress)
    full = np.concatenate([normalized[shown, lm.POSE_SLICE], content], axis=1).astype(np.float32)
    out_boxes = boxes[shown]
    return TrackLandmarks(
        landmarks=lm.denormalize_from_box(full, out_boxes).astype(np.float32), normalized=full,
        boxes=out_boxes.astype(np.float32), source_indices=source_indices,
        reference_indices=reference_indices, filled_frames=np.flatnonzero(~valid[source_indices]))


def load_predictor(workdir: str | os.PathLike[str], config: ml_collections.ConfigDict | None = None, *,
                   step: int | None = None, **overrides: Any) -> LandmarkPredictor:
  """Restores the landmark generator trained in ``workdir`` (latest checkpoint, or ``step``).

  Args:
    workdir: a training workdir of a ``landmarks`` task (``checkpoints/``, ``config.json``).
    config: the experiment config; None reads the workdir's ``config.json``. A config whose task or
      model differs from the workdir's is an error naming the fields.
    step: which checkpoint.
    **overrides: :class:`LandmarkPredictor` settings (``batch_size``, ``margin``, ...).

  Raises:
    ConfigError: a config that does not match the workdir, or one that is not a landmarks task.
    CheckpointError: no checkpoint, or one that does not fit the model.
  """
  from talkjax.generate import pipeline  # pylint: disable=g-import-not-at-top
  workdir = os.fspath(workdir)
  trained = None
  if os.path.exists(os.path.join(workdir, "config.json")):
    trained = pipeline.read_workdir_config(workdir)
  if config is None:
    if trained is None:
      raise ConfigError(f"{workdir}: no config.json; pass the config (--config=NAME[:ARGS])")
    config = trained
  elif trained is not None:
    diff = _model_diff(config, trained)
    if diff:
      raise ConfigError(f"the config differs from the one {workdir} was trained with in "
                        f"{', '.join(diff[:8])}; use the same --config variant (or omit --config to use the "
                        "workdir's config.json)")
  if config.get("task") != "landmarks":
    raise ConfigError(f"config task {config.get('task')!r} is not an audio-to-landmark model "
                      "(task 'landmarks')")
  variables = pipeline.load_variables(config, workdir, step)
  return LandmarkPredictor.from_config(config, variables["generator"], **overrides)


def _model_diff(a: ml_collections.ConfigDict, b: ml_collections.ConfigDict) -> list[str]:
  """Dotted fields of ``task``, ``model.*`` and the window shapes that differ between two configs."""
  def flat(cfg):
    d = json.loads(cfg.to_json_best_effort())
    out = {"task": d.get("task")}
    out.update({f"model.{k}": v for k, v in (d.get("model") or {}).items()})
    for k in ("num_frames", "num_references"):
      out[f"data.{k}"] = (d.get("data") or {}).get(k)
    return out
  fa, fb = flat(a), flat(b)
  return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
