"""The metrics the evaluator knows, by name, and the per-video context they read from.

Two kinds of metric:

- **frame metrics** (``psnr``, ``ssim``, ``lpips``, ``fid``) see the aligned (generated, reference)
  frames in chunks, all of them in one decoding pass: ``start(pair)``, ``update(gen, ref)``,
  ``finish() -> row values``;
- **video metrics** (``lmd``, ``lse``, ``openness``, ``vtcs``) get the whole :class:`VideoPair`
  (``video(pair) -> row values``), which decodes, tracks faces and loads audio lazily and caches
  what several metrics share (the generated video's face track serves both LMD and LSE).

Every metric's ``setup(options)`` loads what it needs (weights, recognisers) and raises a clear
error (``MissingWeightsError`` naming the file and the convert command) if something is missing;
the evaluator then reports that metric as failed and runs the others. ``summary(rows)`` turns the
per-video rows into dataset numbers (by default the mean over videos, NaN rows skipped).

Alignment: both videos are read at 25 fps (timestamp resampling), frame ``t`` of one is paired
with frame ``t`` of the other, and pairing stops at the shorter; reference frames are resized
(PIL bilinear, antialiased) to the generated size when the sizes differ, so every pixel and
landmark metric is measured at the generated video's size.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from PIL import Image

from talkjax.errors import ArgumentError, AudioError, ConfigError, MediaError, NoFaceError
from talkjax.metrics import fid as fid_lib
from talkjax.metrics import image as image_lib
from talkjax.metrics import lmd as lmd_lib
from talkjax.metrics import lse as lse_lib
from talkjax.metrics import openness as openness_lib
from talkjax.metrics import vtcs as vtcs_lib
from talkjax.metrics import weights as weights_lib

logger = logging.getLogger(__name__)

FPS = 25.0
SAMPLE_RATE = 16000


@dataclasses.dataclass
class Options:
  """Settings shared by the metrics (the evaluator's flags).

  Attributes:
    weights_dir: where converted weights live (``<weights_dir>/<kind>``).
    batch_size: frames (or windows) per device call.
    chunk: frames per decoding chunk of the aligned pass.
    lse_crop: ``"face"`` (joonson's face-track crops, MediaPipe boxes) or ``"frame"`` (whole frame).
    lse_min_track, lse_min_face_size: joonson's ``min_track`` / ``min_face_size``.
    lpips_net: ``"alex"`` or ``"vgg"``.
    fid_method: ``"sqrtm"`` (pytorch-fid's) or ``"eigh"`` (faster, same value to numerical precision).
    speech_to_text, lip_reader: VTCS recognisers (callables or ``"module:function"`` paths).
    vtcs_reduction: ``"paper"`` or ``"mean_abs"``; vtcs_smoothing: BLEU smoothing.
  """
  weights_dir: str = weights_lib.DEFAULT_WEIGHTS_DIR
  batch_size: int = 16
  chunk: int = 32
  lse_crop: str = "face"
  lse_min_track: int = lse_lib.MIN_TRACK
  lse_min_face_size: float = lse_lib.MIN_FACE_SIZE
  lpips_net: str = "alex"
  fid_method: str = "sqrtm"
  speech_to_text: Any = None
  lip_reader: Any = None
  vtcs_reduction: str = "paper"
  vtcs_smoothing: str = "none"


def _resize_rgb(frame: np.ndarray, height: int, width: int) -> np.ndarray:
  if frame.shape[:2] == (height, width):
    return frame
  return np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))


class VideoPair:
  """One generated video and its reference, read lazily (at 25 fps) and cached per property.

  Attributes:
    name: the match key (relative path without extension).
    generated, reference: file paths (``reference`` may be None for reference-free metrics).
  """

  def __init__(self, name: str, generated: str, reference: str | None, chunk: int = 32):
    self.name = name
    self.generated = generated
    self.reference = reference
    self.chunk = int(chunk)
    self.num_aligned: int | None = None
    self.num_generated: int | None = None
    self.num_reference: int | None = None
    self.size: tuple[int, int] | None = None            # (height, width) of the generated frames
    self.reference_size: tuple[int, int] | None = None
    self.audio_source: str | None = None

  # --- frames ---------------------------------------------------------------------------------
  def _frames(self, path: str) -> Iterator[np.ndarray]:
    from talkjax import video  # pylint: disable=g-import-not-at-top
    for f in video.iter_frames(path, fps=FPS):
      yield f.image

  def generated_frames(self, limit: int | None = None) -> Iterator[np.ndarray]:
    for t, f in enumerate(self._frames(self.generated)):
      if limit is not None and t >= limit:
        return
      yield f

  def reference_frames(self, limit: int | None = None) -> Iterator[np.ndarray]:
    """Reference frames resized to the generated size (after :meth:`aligned_chunks` ran)."""
    if self.reference is None:
      raise ArgumentError(f"{self.name}: this metric needs a reference video")
    h, w = self.size if self.size is not None else (None, None)
    for t, f in enumerate(self._frames(self.reference)):
      if limit is not None and t >= limit:
        return
      yield f if h is None else _resize_rgb(f, h, w)

  def aligned_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yields ``(gen, ref)`` chunks of aligned frames; sets the frame counts and sizes when done."""
    gen_it = self._frames(self.generated)
    ref_it = self._frames(self.reference) if self.reference is not None else None
    n_gen = n_ref = n = 0
    buf_g, buf_r = [], []
    while True:
      g = next(gen_it, None)
      r = next(ref_it, None) if ref_it is not None else None
      n_gen += g is not None
      n_ref += r is not None
      if g is None or (ref_it is not None and r is None):
        break
      if self.size is None:
        self.size = tuple(g.shape[:2])
      if g.shape[:2] != self.size:
        raise MediaError(self.generated, f"frame {n} is {g.shape[1]}x{g.shape[0]}, the first was "
                         f"{self.size[1]}x{self.size[0]}")
      buf_g.append(g)
      if r is not None:
        if self.reference_size is None:
          self.reference_size = tuple(r.shape[:2])
        buf_r.append(_resize_rgb(r, *self.size))
      n += 1
      if len(buf_g) == self.chunk:
        yield np.stack(buf_g), (np.stack(buf_r) if buf_r else None)
        buf_g, buf_r = [], []
    if buf_g:
      yield np.stack(buf_g), (np.stack(buf_r) if buf_r else None)
    # Count what the longer video has left (decode only) so the row reports both lengths.
    for it, which in ((gen_it, "g"), (ref_it, "r")):
      if it is None:
        continue
      for _ in it:
        if which == "g":
          n_gen += 1
        else:
          n_ref += 1
    self.num_aligned, self.num_generated = n, n_gen
    self.num_reference = n_ref if ref_it is not None else None
    if n == 0:
      raise MediaError(self.generated, "no frames to compare (one of the videos is empty)")

  # --- shared analyses ------------------------------------------------------------------------
  @functools.cached_property
  def generated_track(self):
    """Face track of the whole generated video (gaps of up to 25 frames bridged, as LSE's tracker;
    ``detected`` tells the truly detected frames apart)."""
    from talkjax import faces  # pylint: disable=g-import-not-at-top
    return faces.track_faces(self.generated_frames(), max_gap=lse_lib.NUM_FAILED_DET, smooth_window=1,
                             keep_mesh=False)

  @functools.cached_property
  def reference_track(self):
    from talkjax import faces  # pylint: disable=g-import-not-at-top
    return faces.track_faces(self.reference_frames(self.num_aligned), max_gap=0, smooth_window=1,
                             keep_mesh=False)

  @functools.cached_property
  def generated_audio(self) -> np.ndarray:
    """The generated video's audio at 16 kHz (the reference's if the generated file has none)."""
    from talkjax import audio  # pylint: disable=g-import-not-at-top
    try:
      wav = audio.load(self.generated, sr=SAMPLE_RATE)
      self.audio_source = "generated"
    except AudioError as e:
      if self.reference is None or "no audio stream" not in str(e):
        raise
      logger.warning("%s: no audio track; using the reference's audio", self.generated)
      wav = audio.load(self.reference, sr=SAMPLE_RATE)
      self.audio_source = "reference"
    return wav

  def sidecar(self, suffix: str) -> str:
    """``<reference without extension>.<suffix>`` (the synthetic corpus's per-clip arrays)."""
    if self.reference is None:
      raise ArgumentError(f"{self.name}: needs a reference video with sidecar files")
    path = os.path.splitext(self.reference)[0] + suffix
    if not os.path.isfile(path):
      raise MediaError(path, "not found (openness needs the synthetic corpus's .landmarks.npy and "
                       ".visemes.npy next to the reference video)")
    return path


# --------------------------------------------------------------------------------------------------
# Metrics


class Metric:
  """Base: a named metric with its CSV columns."""
  name: str = ""
  columns: tuple[str, ...] = ()
  kind: str = "video"               # "frames" or "video"
  needs_reference: bool = True
  description: str = ""

  def setup(self, options: Options) -> None:
    self.options = options

  def summary(self, rows: list[dict]) -> dict[str, float]:
    out = {}
    for c in self.columns:
      vals = np.array([r.get(c, np.nan) for r in rows], np.float64)
      ok = np.isfinite(vals) | np.isposinf(vals)
      out[c] = float(np.mean(vals[ok])) if ok.any() else float("nan")
    return out


class FrameMetric(Metric):
  kind = "frames"

  def start(self, pair: VideoPair) -> None:
    self._values: list[np.ndarray] = []

  def update(self, gen: np.ndarray, ref: np.ndarray) -> None:
    raise NotImplementedError

  def finish(self) -> dict[str, float]:
    v = np.concatenate(self._values) if self._values else np.zeros(0)
    return {self.columns[0]: float(np.mean(v)) if v.size else float("nan")}


class PSNR(FrameMetric):
  name, columns = "psnr", ("psnr",)
  description = "PSNR (dB), mean over frames; 10 log10(255^2 / MSE) per RGB frame"

  def update(self, gen, ref):
    self._values.append(image_lib.psnr(gen, ref))


class SSIM(FrameMetric):
  name, columns = "ssim", ("ssim",)
  description = "SSIM, Gaussian 11x11 sigma 1.5, per RGB channel, valid region, mean over frames"

  def update(self, gen, ref):
    self._values.append(image_lib.ssim(gen, ref))


class LPIPS(FrameMetric):
  name, columns = "lpips", ("lpips",)
  description = "LPIPS v0.1 (alex by default), mean over frames"

  def setup(self, options):
    super().setup(options)
    from talkjax.metrics import lpips as lpips_lib  # pylint: disable=g-import-not-at-top
    self._metric = lpips_lib.LPIPSMetric.from_weights_dir(options.weights_dir, net=options.lpips_net,
                                                          batch_size=options.batch_size)

  def update(self, gen, ref):
    self._values.append(self._metric(gen, ref))


class FID(FrameMetric):
  """Pools the Inception statistics of every aligned frame of every video; one dataset number."""
  name, columns = "fid", ()
  description = "FID (pytorch-fid) over all aligned frames of all videos"

  def setup(self, options):
    super().setup(options)
    self._features = fid_lib.InceptionFeatures.from_weights_dir(options.weights_dir,
                                                                batch_size=options.batch_size)
    self._gen, self._ref = fid_lib.ActivationStats(), fid_lib.ActivationStats()

  def start(self, pair):
    self._pair_gen, self._pair_ref = fid_lib.ActivationStats(), fid_lib.ActivationStats()

  def update(self, gen, ref):
    self._pair_gen.add(self._features(gen))
    self._pair_ref.add(self._features(ref))

  def finish(self):
    # Merged only once the whole video went through, so a video that fails midway adds nothing.
    self._gen.merge(self._pair_gen)
    self._ref.merge(self._pair_ref)
    return {}

  def summary(self, rows):
    if self._gen.count < 2 or self._ref.count < 2:
      return {"fid": float("nan"), "fid_frames": float(self._gen.count)}
    return {"fid": fid_lib.fid_from_stats(self._gen, self._ref, self.options.fid_method),
            "fid_frames": float(self._gen.count)}


class LMD(Metric):
  name, columns = "lmd", ("m_lmd", "f_lmd", "lmd_frames")
  description = "M-LMD (40 lip points) / F-LMD (131 points), pixels at the generated size"

  def video(self, pair: VideoPair) -> dict[str, float]:
    g_track = pair.generated_track
    n = pair.num_aligned
    gen = np.array(g_track.landmarks[:n], np.float64)
    gen[~g_track.detected[:n]] = np.nan          # interpolated frames are not measurements
    r_track = pair.reference_track
    ref = np.array(r_track.landmarks, np.float64)
    ref[~r_track.detected] = np.nan
    d = lmd_lib.landmark_distance(gen, ref[:n])
    if d.frames_used == 0:
      raise NoFaceError(pair.generated, f"LMD: no frame where both videos show a detectable face (generated: "
                        f"{int(g_track.detected[:n].sum())}/{n} frames with a face, reference: "
                        f"{int(r_track.detected.sum())}/{n})")
    return {"m_lmd": d.m_lmd, "f_lmd": d.f_lmd, "lmd_frames": float(d.frames_used)}

  def summary(self, rows):
    out = super().summary(rows)
    out["lmd_frames"] = float(np.nansum([r.get("lmd_frames", np.nan) for r in rows]))
    return out


class LSE(Metric):
  name, columns = "lse", ("lse_d", "lse_c", "lse_offset", "lse_tracks")
  needs_reference = False
  description = "LSE-D / LSE-C (joonson SyncNet), mean over clips"

  def setup(self, options):
    super().setup(options)
    if options.lse_crop not in lse_lib.CROP_MODES:
      raise ConfigError(f"lse_crop must be one of {lse_lib.CROP_MODES}, got {options.lse_crop!r}")
    lse_lib._cv2()  # pylint: disable=protected-access  (fail at setup, not per video)
    self._scorer = lse_lib.SyncNetScorer.from_weights_dir(options.weights_dir, batch_size=options.batch_size)

  def video(self, pair):
    o = self.options
    track = pair.generated_track if o.lse_crop == "face" else None
    score = lse_lib.score_clip(self._scorer, pair.generated_frames(), pair.generated_audio,
                               crop=o.lse_crop, track=track,
                               min_track=o.lse_min_track, min_face_size=o.lse_min_face_size,
                               name=pair.generated)
    return {"lse_d": score.lse_d, "lse_c": score.lse_c, "lse_offset": score.offset,
            "lse_tracks": float(len(score.tracks))}

  def summary(self, rows):
    out = super().summary(rows)
    out.pop("lse_tracks", None)
    return out


class Openness(Metric):
  name, columns = "openness", ("openness_r", "openness_r_reference")
  description = "Pearson r of pixel mouth openness vs the synthetic clip's ground-truth openness"

  def video(self, pair):
    landmarks = np.load(pair.sidecar(".landmarks.npy"))
    visemes = np.load(pair.sidecar(".visemes.npy"))
    n = min(pair.num_aligned, landmarks.shape[0], visemes.shape[0])
    (h, w), (rh, rw) = pair.size, pair.reference_size
    scaled = landmarks[:n] * np.array([w / rw, h / rh])    # continuous pixel coordinates scale exactly
    from talkjax.data.synthetic import measure_mouth_openness  # pylint: disable=g-import-not-at-top

    def measure(frames):
      out = [measure_mouth_openness(chunk, scaled[start:start + len(chunk)])
             for start, chunk in _chunks(frames, pair.chunk)]
      return np.concatenate(out)
    gen_open = measure(pair.generated_frames(n))
    ref_open = measure(pair.reference_frames(n))
    target = visemes[:n, 0]
    return {"openness_r": openness_lib.pearson(gen_open, target),
            "openness_r_reference": openness_lib.pearson(ref_open, target)}


def _chunks(frames, size: int) -> Iterator[tuple[int, np.ndarray]]:
  """``(start index, stacked chunk)`` of at most ``size`` frames from an iterable."""
  buf, start = [], 0
  for f in frames:
    buf.append(f)
    if len(buf) == size:
      yield start, np.stack(buf)
      start, buf = start + size, []
  if buf:
    yield start, np.stack(buf)


def _load_callable(value, what: str) -> Callable:
  if callable(value):
    return value
  if not isinstance(value, str) or ":" not in value:
    raise ConfigError(f"vtcs needs {what} as a callable or 'module:function' (got {value!r})")
  mod, fn = value.split(":", 1)
  try:
    return getattr(importlib.import_module(mod), fn)
  except (ImportError, AttributeError) as e:
    raise ConfigError(f"vtcs: cannot load {what} {value!r}: {e}") from e


class VTCS(Metric):
  name = "vtcs"
  columns = ("bleu", "wer", "cer", "rouge_l", "bleu_reference", "wer_reference")
  description = "lip-readability (paper 003): BLEU/WER/CER/ROUGE-L of lip-read vs speech text, VTCS-B/W"

  def setup(self, options):
    super().setup(options)
    if options.speech_to_text is None or options.lip_reader is None:
      raise ConfigError("vtcs needs two recognisers: --vtcs_speech_to_text=module:function "
                        "(audio float32 16 kHz, sample rate -> text) and --vtcs_lip_reader=module:function "
                        "(frames (T, H, W, 3) uint8 RGB -> text); talkjax ships none")
    self._stt = _load_callable(options.speech_to_text, "speech_to_text")
    self._reader = _load_callable(options.lip_reader, "lip_reader")
    self._videos: list[vtcs_lib.VideoTexts] = []

  def video(self, pair):
    n = pair.num_aligned
    texts = vtcs_lib.transcribe(np.stack(list(pair.generated_frames(n))), pair.generated_audio, SAMPLE_RATE,
                                speech_to_text=self._stt, lip_reader=self._reader,
                                frames_reference=np.stack(list(pair.reference_frames(n))),
                                smoothing=self.options.vtcs_smoothing)
    self._videos.append(texts)
    g, t = texts.generated_scores, texts.ground_truth_scores
    return {"bleu": g.bleu, "wer": g.wer, "cer": g.cer, "rouge_l": g.rouge_l,
            "bleu_reference": t.bleu, "wer_reference": t.wer,
            "text_speech": texts.speech, "text_generated": texts.generated,
            "text_reference": texts.ground_truth}

  def summary(self, rows):
    if not self._videos:
      return {c: float("nan") for c in ("bleu", "wer", "cer", "rouge_l", "vtcs_b", "vtcs_w")}
    return vtcs_lib.summarise(self._videos, self.options.vtcs_reduction)


REGISTRY: dict[str, type[Metric]] = {
    m.name: m for m in (PSNR, SSIM, LMD, LSE, FID, LPIPS, Openness, VTCS)
}
DEFAULT_METRICS = ("psnr", "ssim", "lmd", "lse", "fid", "lpips")


def parse_metrics(spec: str) -> list[str]:
  """``"psnr,ssim,lse"`` -> validated names (order kept, duplicates dropped)."""
  names = [n.strip().lower() for n in spec.split(",") if n.strip()]
  unknown = [n for n in names if n not in REGISTRY]
  if unknown or not names:
    raise ConfigError(f"--metrics: unknown metric(s) {unknown or spec!r}; valid: {', '.join(REGISTRY)}")
  return list(dict.fromkeys(names))


def is_finite_number(v) -> bool:
  return isinstance(v, (int, float, np.floating)) and math.isfinite(float(v))
