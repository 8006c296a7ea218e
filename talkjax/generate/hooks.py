"""The per-task inference hook: what a trainable system gives the generation pipeline.

A task module (``talkjax/tasks/<name>.py``) that can render video defines::

  def inference(config, variables) -> Renderer

``variables`` maps each of the task's network names to ``{"params": ..., "batch_stats": ...}``
(restored from the workdir's latest training checkpoint by :mod:`talkjax.generate.pipeline`). The
returned object must have:

``crop``: a :class:`CropSpec`
  How the pipeline cuts faces out of the face video and pastes the results back: the loose
  DCK-style box (``"loose"``, exactly the preprocessing's face crop, so the model sees at inference
  what it saw in training) or IP_LAP's landmark box with a margin (``"ip_lap"``: 128 px, +-25 px at
  inference), the crop size, and the default paste-back (``"direct"`` cover or ``"feather"``).

``mel_offset``: int
  The mel-window offset in frames the model was trained with (``talkjax.audio.mel_windows``).

``batch_size``: int
  Frames per :meth:`generate_chunk` call (the pipeline's chunk size).

``prepare(context: VideoContext) -> None`` (optional)
  Called once before the first chunk with the whole-video context: the face video's landmarks
  (source and crop coordinates), a sample of its crops (reference frames), the whole mel
  spectrogram, and which face-video frame each output frame shows. Two-stage systems predict
  landmarks for the whole audio here and choose their reference frames.

``generate_chunk(crops, crop_landmarks, mel_windows, frame_indices) -> crops``
  ``crops`` (B, S, S, 3) uint8 RGB face crops of the frames to render, ``crop_landmarks``
  (B, 131, 2) float32 their landmarks in crop pixels, ``mel_windows`` (B, 80, 16, 1) float32 the
  driving audio's windows (already offset by ``mel_offset``), ``frame_indices`` (B,) int64 the
  output frame numbers (for models that look at neighbouring frames). Returns (B, S, S, 3) uint8
  crops. ``B <= batch_size``; the last chunk may be shorter.

Detection/tracking, crop boxes, chunking, looping, paste-back, encoding and timing stay in the
pipeline, so every system gets them the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import numpy as np

from talkjax.errors import ConfigError

CROP_KINDS = ("loose", "ip_lap")
PASTE_MODES = ("direct", "feather")
MASKS = ("ellipse", "face", "lower")


@dataclasses.dataclass(frozen=True)
class CropSpec:
  """Face crop and paste-back settings of a renderer.

  Attributes:
    kind: ``"loose"`` (``talkjax.data.preprocess.face_boxes``: pose-landmark box x ``scale``, size
      constant per shot, smoothed centre) or ``"ip_lap"`` (131-point box +- ``margin`` px, square).
    size: crop side in pixels the model works at.
    scale: loose crop side / face size (the preprocessing's ``face_scale``).
    margin: IP_LAP margin in source pixels (25 at inference).
    paste: default paste-back, ``"direct"`` (cover the box) or ``"feather"`` (blend with a
      Gaussian-feathered mask).
    mask: feathered mask shape: ``"ellipse"``, ``"face"`` (hull of the 131 points) or ``"lower"``.
    feather: Gaussian sigma of the mask as a fraction of the crop side.
  """
  kind: str = "loose"
  size: int = 256
  scale: float = 1.5
  margin: int = 25
  paste: str = "direct"
  mask: str = "ellipse"
  feather: float = 0.05

  def __post_init__(self):
    if self.kind not in CROP_KINDS:
      raise ConfigError(f"CropSpec.kind: unknown {self.kind!r}; valid: {', '.join(CROP_KINDS)}")
    if self.paste not in PASTE_MODES:
      raise ConfigError(f"CropSpec.paste: unknown {self.paste!r}; valid: {', '.join(PASTE_MODES)}")
    if self.mask not in MASKS:
      raise ConfigError(f"CropSpec.mask: unknown {self.mask!r}; valid: {', '.join(MASKS)}")
    if self.size < 8 or self.scale <= 0 or self.margin < 0 or self.feather < 0:
      raise ConfigError(f"CropSpec: need size >= 8, scale > 0, margin >= 0, feather >= 0; got {self}")


@dataclasses.dataclass
class VideoContext:
  """Whole-video information handed to ``Renderer.prepare``.

  Attributes:
    num_frames: output frames (follows the audio).
    fps: output frame rate.
    mel: (80, M) the driving audio's whole mel spectrogram.
    source_indices: (num_frames,) which face-video frame each output frame shows (looping applied).
    landmarks: (T, 131, 2) face-video landmarks in source pixels (NaN where no face).
    boxes: (T, 4) crop boxes in source pixels (NaN where no face).
    crop_landmarks: (T, 131, 2) the landmarks in crop pixels.
    sample_indices: (K,) face-video frames of ``sample_crops`` (evenly spread over the frames with
      a face).
    sample_crops: (K, S, S, 3) uint8 crops of those frames (candidate reference frames).
    still: True when the face is a single photo.
  """
  num_frames: int
  fps: float
  mel: np.ndarray
  source_indices: np.ndarray
  landmarks: np.ndarray
  boxes: np.ndarray
  crop_landmarks: np.ndarray
  sample_indices: np.ndarray
  sample_crops: np.ndarray
  still: bool


@runtime_checkable
class Renderer(Protocol):
  """What ``task.inference(config, variables)`` returns (see the module docstring)."""
  crop: CropSpec
  mel_offset: int
  batch_size: int

  def generate_chunk(self, crops: np.ndarray, crop_landmarks: np.ndarray, mel_windows: np.ndarray,
                     frame_indices: np.ndarray) -> np.ndarray:
    ...


def check_renderer(renderer: Any, task_name: str) -> Any:
  """Raises ConfigError unless ``renderer`` honours the contract (attributes and methods)."""
  missing = [a for a in ("crop", "mel_offset", "batch_size") if not hasattr(renderer, a)]
  if not callable(getattr(renderer, "generate_chunk", None)):
    missing.append("generate_chunk()")
  if missing:
    raise ConfigError(f"task {task_name!r}: inference() returned an object without {', '.join(missing)}")
  if not isinstance(renderer.crop, CropSpec):
    raise ConfigError(f"task {task_name!r}: renderer.crop must be a talkjax.generate.CropSpec")
  if int(renderer.batch_size) < 1:
    raise ConfigError(f"task {task_name!r}: renderer.batch_size must be >= 1, got {renderer.batch_size}")
  return renderer
