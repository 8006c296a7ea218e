"""Two-stage generation for the landmark-to-face renderers: audio -> landmarks -> sketches -> faces.

The renderers of ``talkjax.tasks.renderer`` (IP_LAP's, paper 000's Gaussian one) plug into the generic
pipeline (:mod:`talkjax.generate.pipeline`) through :class:`TwoStageRenderer`, the task's inference
hook (:mod:`talkjax.generate.hooks`):

1. ``prepare`` (once, whole video): the landmark model of the landmark workdir predicts the jaw and
   lip landmarks of every output frame from the driving audio, the pose landmarks of the face-video
   frame it shows and reference landmark sets of the face video (:func:`load_landmark_predictor`);
   pose + predicted content, mapped into each frame's IP_LAP crop, are the driving landmarks.
   ``N`` reference frames are picked among the pipeline's sampled crops by lip openness
   (``talkjax.tasks.renderer.select_references``: sorted by inner-mouth opening, evenly spaced ranks
   from closed to open, IP_LAP's rule).
2. ``generate_chunk`` (streaming, ``batch_size`` frames at a time): the 5 sketches around each output
   frame (frames t-2 .. t+2 of the driving landmarks, clamped at the ends), the frame's crop (its
   upper half guides the renderer), the references and the centred mel window -> the face crop.

The pipeline then pastes each crop back with a Gaussian-feathered face mask (``CropSpec(paste="feather",
mask=config.inference.mask)``), skips faceless frames, loops short videos and encodes with the audio.

Choices (BUILD_NOTES.md): ``N = config.inference.num_references`` (default 5; IP_LAP uses 25, but the
flow module runs once per reference and frame, and the weighted aggregation generalises from the 3-5
references of training; 5 evenly spaced openness ranks cover closed to open mouths); crops are IP_LAP's
inference crops (131-point box +- ``config.inference.margin`` = 25 px, square).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from talkjax import landmarks as lm
from talkjax.errors import ConfigError
from talkjax.generate.hooks import CropSpec, VideoContext



def load_landmark_predictor(workdir: str, step: int | None = None, **kwargs):
  """The whole-track landmark predictor of a trained landmark workdir (``iplap_landmark``,
  ``dct_landmark``): ``talkjax.models.landmark_inference.load_predictor``."""
  from talkjax.models import landmark_inference  # pylint: disable=g-import-not-at-top
  return landmark_inference.load_predictor(os.fspath(workdir), step=step, **kwargs)


class TwoStageRenderer:
  """The inference hook of the landmark-to-face renderers (see the module docstring).

  Args:
    model: the renderer module (``talkjax.tasks.renderer.build_model``).
    forward: its registered ``ModelEntry.forward`` (default: IPLAPRenderer-like modules).
    variables: its ``{"params", "batch_stats"}``.
    predictor: an object with ``predict_track(mel, landmarks, source_indices, fps=...)`` returning
      ``.landmarks`` (N, 131, 2) in source pixels (``talkjax.models.landmark_inference``'s
      ``LandmarkPredictor``): the face video's pose points with predicted jaw and lips.
    image_size: the renderer's crop side.
    num_references: reference frames per output frame.
    margin: IP_LAP crop margin in source pixels (25 at inference).
    batch_size: frames per ``generate_chunk`` call (every call is padded to it: one compilation).
    mask, feather: paste-back mask (``"face"``, ``"lower"`` or ``"ellipse"``) and its Gaussian sigma
      as a fraction of the crop side.
  """

  mel_offset = -2  # The renderers are trained on the centred window (IP_LAP).

  def __init__(self, model, variables: dict, predictor, *, image_size: int, forward=None,
               num_references: int = 5, margin: int = 25, batch_size: int = 8, mask: str = "face",
               feather: float = 0.05):
    from talkjax.tasks import renderer as task  # pylint: disable=g-import-not-at-top
    if num_references < 1 or batch_size < 1:
      raise ConfigError(f"num_references and batch_size must be >= 1, got {num_references}, {batch_size}")
    self._task = task
    self.crop = CropSpec(kind="ip_lap", size=int(image_size), margin=int(margin), paste="feather", mask=mask,
                         feather=float(feather))
    self.batch_size = int(batch_size)
    self.num_references = int(num_references)
    self._predict = predictor
    self._variables = jax.tree.map(jnp.asarray, variables)
    self._render = jax.jit(task.make_render_fn(model, forward))
    self.driving: np.ndarray | None = None      # (num_frames, 131, 2) normalised to each frame's crop
    self.references: np.ndarray | None = None   # (N,) face-video frames used as references
    self._ref_crops = self._ref_points = self._ref_sketches = None

  def prepare(self, context: VideoContext) -> None:
    """Predicts the driving landmarks of every output frame and picks the reference frames."""
    size = self.crop.size
    picks = self._task.select_references(context.crop_landmarks[context.sample_indices], self.num_references)
    self.references = context.sample_indices[picks]
    self._ref_crops = np.asarray(context.sample_crops[picks], np.uint8)
    self._ref_points = np.asarray(context.crop_landmarks[self.references], np.float32) / size
    self._ref_sketches = lm.draw_sketches(self._ref_points, size)

    src = np.asarray(context.source_indices, np.int64)
    faced = np.all(np.isfinite(np.asarray(context.boxes, np.float64)), axis=1)
    if not faced.any():
      raise ConfigError("two-stage generation: no face-video frame has a face box")
    idx = np.flatnonzero(faced)
    # Frames without a face are passed through by the pipeline; their neighbours' sketch windows
    # still reach them, so they borrow the nearest faced frame (as the landmark predictor does).
    nearest = idx[np.abs(idx[None, :] - np.arange(len(faced))[:, None]).argmin(axis=1)]
    track = self._predict.predict_track(np.asarray(context.mel, np.float32), np.asarray(context.landmarks),
                                        src, fps=float(context.fps))
    predicted = np.asarray(track.landmarks, np.float32)
    if predicted.shape != (len(src), lm.NUM_POINTS, 2) or not np.all(np.isfinite(predicted)):
      raise ConfigError(f"landmark predictor returned {predicted.shape} (finite: "
                        f"{np.isfinite(predicted).all()}), expected finite {(len(src), lm.NUM_POINTS, 2)}")
    self.driving = lm.normalize_to_box(predicted, np.asarray(context.boxes)[nearest[src]]).astype(np.float32)

  def generate_chunk(self, crops: np.ndarray, crop_landmarks: np.ndarray, mel_windows: np.ndarray,
                     frame_indices: np.ndarray) -> np.ndarray:
    """Renders ``(B, S, S, 3)`` uint8 crops of output frames ``frame_indices``."""
    del crop_landmarks  # The driving landmarks replace the face video's own.
    if self.driving is None:
      raise ConfigError("TwoStageRenderer.generate_chunk called before prepare()")
    n = len(crops)
    pad = self.batch_size - n if n < self.batch_size else (-n) % self.batch_size
    idx = np.concatenate([np.asarray(frame_indices, np.int64), np.repeat(frame_indices[-1:], pad)])
    crops = np.concatenate([crops, np.repeat(crops[-1:], pad, axis=0)])
    mel = np.concatenate([mel_windows, np.repeat(mel_windows[-1:], pad, axis=0)])
    size = self.crop.size
    out = []
    for start in range(0, len(idx), self.batch_size):
      sl = slice(start, start + self.batch_size)
      b = len(idx[sl])
      batch = {"target": np.asarray(crops[sl], np.uint8),
               "sketches": self._task.sketch_windows(self.driving, size, idx[sl]),
               "references": np.repeat(self._ref_crops[None], b, axis=0),
               "reference_sketches": np.repeat(self._ref_sketches[None], b, axis=0),
               "mel": np.asarray(mel[sl], np.float32)}
      out.append(np.asarray(self._render(self._variables, batch)))
    images = np.concatenate(out)[:n]
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def make_renderer(config, variables: dict, *, landmark_workdir: str | None = None,
                  predictor=None, batch_size: int | None = None,
                  landmark_step: int | None = None) -> TwoStageRenderer:
  """``task.inference`` of the renderer task: the trained renderer + the landmark workdir's model.

  Args:
    config: the renderer's config (``config.inference``: num_references, margin, batch_size, mask,
      feather, landmark_workdir).
    variables: ``{"generator": {"params", "batch_stats"}, ...}`` restored by the pipeline.
    landmark_workdir: overrides ``config.inference.landmark_workdir``.
    predictor: a ready landmark predictor (see :class:`TwoStageRenderer`); wins over workdirs.
    batch_size: overrides ``config.inference.batch_size``.
    landmark_step: checkpoint step of the landmark workdir (default: its latest).
  """
  from talkjax.tasks import renderer as task  # pylint: disable=g-import-not-at-top
  inf = config.inference
  if predictor is None:
    workdir = landmark_workdir or inf.get("landmark_workdir")
    if not workdir:
      raise ConfigError("two-stage generation needs a trained landmark model: pass --landmark_workdir=DIR "
                        "(or --config.inference.landmark_workdir=DIR), a workdir of "
                        "`python -m experiments.train --config=iplap_landmark` or dct_landmark")
    if not os.path.isdir(workdir):
      raise ConfigError(f"landmark_workdir {workdir!r}: no such directory (a landmark model's training "
                        "workdir)")
    predictor = load_landmark_predictor(workdir, step=landmark_step)
  if "generator" not in variables:
    raise ConfigError(f"renderer variables have no 'generator' network (got {sorted(variables)})")
  return TwoStageRenderer(task.build_model(config), variables["generator"], predictor,
                          forward=task.model_entry(config).forward, image_size=int(config.data.image_size),
                          num_references=int(inf.num_references), margin=int(inf.margin),
                          batch_size=int(batch_size or inf.batch_size), mask=str(inf.mask),
                          feather=float(inf.feather))
