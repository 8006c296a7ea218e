"""One sampler per training scheme: examples drawn from a preprocessed dataset, batched by Grain.

``make_sampler(name, root=..., split=..., batch_size=..., seed=...)`` is what the trainer calls
(``talkjax.train.data_source``); it returns an infinite, deterministic ``grain.MapDataset`` of this
process's batches (an ``IterDataset`` when ``num_workers > 0``). Every batch is a dict of NumPy arrays
with a leading batch axis ``B``; the tables below give the per-example shapes.

Conventions: images are uint8 RGB NHWC (the model step converts to float on the device); ``S`` is
the sampler's ``image_size`` (crops are resized on the fly when it differs from the stored size);
mel windows are (80, 16, 1) float32 (H = 80 mel bins, W = 16 mel frames = 0.2 s, C = 1: what
``talkjax.models.audio_encoder`` takes), in [-4, 4]; landmarks are float32 ``(x, y)`` in [0, 1] of
their crop (IP_LAP's normalisation: pixels in the crop / crop size); "lower half masked" zeroes rows
``S // 2`` and below. The mel window of frame ``f`` with offset ``o`` starts at mel frame
``int(80 * (f + o) / 25)``; only frames whose windows are all real audio are sampled (no clamping, as
in Wav2Lip's and IP_LAP's loaders).

Augmentations (off by default): ``flip`` mirrors images horizontally (p = 0.5) and landmarks with
them (``x -> 1 - x`` and the left/right point permutation :data:`MIRROR`); ``color_jitter=s`` scales
brightness, contrast and saturation by factors in [1 - s, 1 + s], the same for every image of an
example (sketches are never jittered).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grain
import numpy as np
from PIL import Image

from talkjax import landmarks as lm
from talkjax.data import loader
from talkjax.errors import ConfigError

T_WINDOW = 5

# --- Horizontal flips ------------------------------------------------------------------------------
# Left/right counterparts among the 131 points (MediaPipe indices; points on the midline map to
# themselves). Checked against the real mesh of a mirrored photograph in tests/test_samplers.py.
_MIRROR_PAIRS_MEDIAPIPE = (
    (162, 389), (127, 356), (234, 454), (93, 323),  # face sides
    (70, 300), (63, 293), (105, 334), (66, 296), (107, 336),  # eyebrows, upper edge
    (55, 285), (65, 295), (52, 282), (53, 283), (46, 276),  # eyebrows, lower edge
    (48, 278), (115, 344), (220, 440), (45, 275),  # nose base
    (33, 263), (133, 362), (246, 466), (161, 388), (160, 387), (159, 386), (158, 385), (157, 384),
    (173, 398), (155, 382), (154, 381), (153, 380), (145, 374), (144, 373), (163, 390), (7, 249),  # eyes
    (132, 361), (58, 288), (172, 397), (136, 365), (150, 379), (149, 378), (176, 400), (148, 377),  # jaw
    (61, 291), (185, 409), (40, 270), (39, 269), (37, 267),  # outer upper lip
    (375, 146), (321, 91), (405, 181), (314, 84),  # outer lower lip
    (78, 308), (191, 415), (80, 310), (81, 311), (82, 312),  # inner upper lip
    (324, 95), (318, 88), (402, 178), (317, 87),  # inner lower lip
)


def _mirror_permutation() -> np.ndarray:
  perm = np.arange(lm.NUM_POINTS)
  for a, b in _MIRROR_PAIRS_MEDIAPIPE:
    perm[lm.index_of(a)], perm[lm.index_of(b)] = lm.index_of(b), lm.index_of(a)
  return perm


# MIRROR[i]: the point that point i becomes in a horizontally mirrored face.
MIRROR: np.ndarray = _mirror_permutation()
assert np.array_equal(np.sort(MIRROR), np.arange(lm.NUM_POINTS))
assert np.array_equal(MIRROR[MIRROR], np.arange(lm.NUM_POINTS))


def flip_landmarks(points: np.ndarray) -> np.ndarray:
  """Normalised (..., 131, 2) landmarks of the horizontally mirrored crop."""
  points = np.asarray(points, np.float32)[..., MIRROR, :]
  return np.stack([1.0 - points[..., 0], points[..., 1]], axis=-1)


def color_jitter(images: np.ndarray, factors: np.ndarray) -> np.ndarray:
  """Scales brightness, contrast and saturation of uint8 (..., H, W, 3) images by ``factors`` (3,)."""
  x = images.astype(np.float32) * factors[0]
  luma = np.array([0.299, 0.587, 0.114], np.float32)
  mean = (x @ luma).mean(axis=(-2, -1), keepdims=True)[..., None]
  x = (x - mean) * factors[1] + mean
  grey = (x @ luma)[..., None]
  x = (x - grey) * factors[2] + grey
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def mask_lower_half(images: np.ndarray) -> np.ndarray:
  """A copy of (..., H, W, C) images with rows ``H // 2`` and below set to 0."""
  out = np.array(images, copy=True)
  out[..., out.shape[-3] // 2:, :, :] = 0
  return out


def _resize(images: np.ndarray, size: int) -> np.ndarray:
  if images.shape[-3:-1] == (size, size):
    return images
  return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])


# --- Samplers -------------------------------------------------------------------------------------


class Sampler:
  """Base class: eligibility, frame loading at ``image_size``, augmentation.

  Subclasses set ``name``, ``offsets`` (mel window offsets every sampled frame needs), implement
  ``_eligible(entry)`` (from the index entry alone), ``spec()`` and ``example(item, rng)``.
  """
  name = ""
  crop = "image"
  requirement = ""

  def __init__(self, data: loader.SegmentDataset, *, image_size: int | None = None, flip: bool = False,
               color_jitter: float = 0.0, crop: str | None = None):
    self.data = data
    if crop is not None:
      if crop not in loader.CROPS:
        raise ConfigError(f"crop: expected one of {', '.join(loader.CROPS)}, got {crop!r}")
      self.crop = crop
    stored = int(data.settings["size" if self.crop == "image" else "face_size"])
    self.stored_size = stored
    self.image_size = stored if image_size is None else int(image_size)
    if self.image_size < 8:
      raise ConfigError(f"image_size: expected >= 8 pixels, got {image_size}")
    if not 0.0 <= color_jitter < 1.0:
      raise ConfigError(f"color_jitter: expected a strength in [0, 1), got {color_jitter}")
    self.flip = bool(flip)
    self.jitter = float(color_jitter)
    self._items = self._items_of(data)

  def _items_of(self, data: loader.SegmentDataset) -> list:
    return [i for i, e in enumerate(data.segments) if self._eligible(e)]

  def _eligible(self, entry: dict) -> bool:
    raise NotImplementedError

  @property
  def num_items(self) -> int:
    return len(self._items)

  def spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-example ``{key: (shape, dtype)}`` (batches add a leading batch axis)."""
    raise NotImplementedError

  def example(self, item: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    raise NotImplementedError

  # Helpers for subclasses.
  def _augmentation(self, rng: np.random.Generator) -> tuple[bool, np.ndarray | None]:
    flip = bool(self.flip and rng.random() < 0.5)
    factors = rng.uniform(1.0 - self.jitter, 1.0 + self.jitter, 3).astype(np.float32) if self.jitter else None
    return flip, factors

  def _images(self, i: int, ts, flip: bool, factors: np.ndarray | None) -> np.ndarray:
    images = _resize(self.data.frames(i, ts, self.crop), self.image_size)
    if flip:
      images = images[..., ::-1, :]
    if factors is not None:
      images = color_jitter(images, factors)
    return np.ascontiguousarray(images)

  def _points(self, segment: loader.Segment, ts, flip: bool) -> np.ndarray:
    key = "landmarks" if self.crop == "image" else "face_landmarks"
    points = np.asarray(segment.arrays[key][np.asarray(ts)], np.float32) / np.float32(self.stored_size)
    return flip_landmarks(points) if flip else points

  def _sketches(self, points: np.ndarray) -> np.ndarray:
    return lm.draw_sketches(points, self.image_size)

  def _valid_starts(self, entry: dict, length: int, offsets_first=(), offsets_each=()) -> np.ndarray:
    """Starts ``t`` of ``length``-frame windows inside the segment whose first frame has real mel
    windows at ``offsets_first`` and every frame at ``offsets_each``."""
    n = entry["num_frames"] - length + 1
    if n <= 0:
      return np.zeros((0,), np.int64)
    ok = np.ones(n, bool)
    if offsets_first:
      ok &= loader.windows_ok(entry, offsets_first)[:n]
    if offsets_each:
      each = loader.windows_ok(entry, offsets_each)
      for k in range(length):
        ok &= each[k:k + n]
    return np.flatnonzero(ok)


class Wav2LipSampler(Sampler):
  """Wav2Lip generator training (``hq_wav2lip_train.py``'s dataset).

  ==============  ======================  ==========================================================
  key             shape, dtype            contents
  ==============  ======================  ==========================================================
  frames          (T, S, S, 3) uint8      T consecutive target frames t .. t+T-1 (T = 5)
  masked          (T, S, S, 3) uint8      the same frames with the lower half zeroed
  reference       (T, S, S, 3) uint8      T consecutive frames starting elsewhere in the segment
  mel             (80, 16, 1) float32     window of frame t (offset 0): the 5 frames' audio (sync loss)
  indiv_mels      (T, 80, 16, 1) float32  per-frame windows, frame k uses offset -1 (Wav2Lip's rule)
  ==============  ======================  ==========================================================

  The generator's input is ``concat([masked, reference], channels)`` per frame, as in Wav2Lip.
  """
  name = "wav2lip"
  requirement = "T + 1 frames and full mel windows"

  def __init__(self, data, *, num_frames: int = T_WINDOW, mel_offset: int = -1, **kwargs):
    self.t = int(num_frames)
    self.mel_offset = int(mel_offset)
    super().__init__(data, **kwargs)

  def _starts(self, entry):
    return self._valid_starts(entry, self.t, offsets_first=(0,), offsets_each=(self.mel_offset,))

  def _eligible(self, entry):
    return entry["num_frames"] >= self.t + 1 and len(self._starts(entry)) > 0

  def spec(self):
    s, t = self.image_size, self.t
    return {"frames": ((t, s, s, 3), np.uint8), "masked": ((t, s, s, 3), np.uint8),
            "reference": ((t, s, s, 3), np.uint8), "mel": ((80, 16, 1), np.float32),
            "indiv_mels": ((t, 80, 16, 1), np.float32)}

  def example(self, item, rng):
    i = self._items[item]
    entry = self.data.segments[i]
    start = int(rng.choice(self._starts(entry)))
    others = np.delete(np.arange(entry["num_frames"] - self.t + 1), start)
    ref = int(rng.choice(others))
    flip, factors = self._augmentation(rng)
    seg = self.data.segment(i)
    frames = self._images(i, range(start, start + self.t), flip, factors)
    return {
        "frames": frames,
        "masked": mask_lower_half(frames),
        "reference": self._images(i, range(ref, ref + self.t), flip, factors),
        "mel": seg.mel_window(start, 0),
        "indiv_mels": np.stack([seg.mel_window(start + k, self.mel_offset) for k in range(self.t)]),
    }


MOUTH_FEATURES = 2
MOUTH_SCALE = 30.0


def mouth_targets(points: np.ndarray, starts, length: int) -> np.ndarray:
  """``(len(starts), length, 2)`` float32: the mouth shape on each window of frames, the expert's
  auxiliary target.

  From a segment's box-normalised landmarks ``(T, 131, 2)`` (:func:`talkjax.landmarks.mouth_shape`),
  per frame of the windows ``s .. s + length - 1``: the inner opening (0 with closed lips, for every
  speaker) and the width less its mean over the window (how the lips spread or round *during* the
  window: a face seen for 5 frames shows that, not how wide this speaker's mouth is at rest), both
  times ``MOUTH_SCALE`` (about unit range).
  """
  shape = lm.mouth_shape(points)[:, [0, 2]].astype(np.float32)
  windows = np.stack([shape[int(s):int(s) + length] for s in starts])
  windows[..., 1] -= windows[..., 1].mean(axis=1, keepdims=True)
  return (windows * np.float32(MOUTH_SCALE)).astype(np.float32)


class SyncNetSampler(Sampler):
  """Lip-sync expert training (Wav2Lip's ``color_syncnet_train.py``).

  ==============  ======================  ==========================================================
  key             shape, dtype            contents
  ==============  ======================  ==========================================================
  faces           (T, H, S, 3) uint8      lower halves (rows S//2 on, H = S - S//2, as Wav2Lip) of T
                                          consecutive frames t .. t+T-1 (T = 5)
  mel             (80, 16, 1) float32     window of frame t (label 1) or of a frame u of the same
                                          segment with ``|u - t| >= min_shift`` (label 0)
  label           () float32              1 in sync, 0 off sync (each with probability 1/2)
  ==============  ======================  ==========================================================

  With ``negatives = K >= 1`` every window comes with its own in-sync window and K off-sync ones
  (distinct starts where the segment has enough): ``mel`` is ``(1 + K, 80, 16, 1)`` and ``label``
  ``(1 + K,)`` = ``[1, 0, ..., 0]``. The face encoder, the expensive half of the expert, then runs
  once for 1 + K labelled pairs, and each window is judged against both of its kinds of audio (the
  ``syncnet:runlocal`` setting, BUILD_NOTES.md 5.2). Each pair has the marginals of the ``K = 0``
  stream, so either kind measures the same held-out accuracy.
  """
  name = "syncnet"
  requirement = "a second window start at least min_shift frames away"

  def __init__(self, data, *, num_frames: int = T_WINDOW, min_shift: int = 5, negatives: int = 0,
               mouth: bool = False, **kwargs):
    self.t = int(num_frames)
    self.mouth = bool(mouth)
    if min_shift < 1:
      raise ConfigError(f"min_shift: expected >= 1 frame, got {min_shift}")
    if int(negatives) != negatives or negatives < 0:
      raise ConfigError(f"negatives: expected an integer >= 0 (off-sync windows per face window), got {negatives}")
    self.min_shift = int(min_shift)
    self.negatives = int(negatives)
    super().__init__(data, **kwargs)

  def _starts(self, entry):
    return self._valid_starts(entry, self.t, offsets_first=(0,))

  def _eligible(self, entry):
    starts = self._starts(entry)
    return len(starts) > 0 and starts[-1] - starts[0] >= self.min_shift

  def spec(self):
    s, t = self.image_size, self.t
    pairs = (1 + self.negatives,) if self.negatives else ()
    spec = {"faces": ((t, s - s // 2, s, 3), np.uint8), "mel": (pairs + (80, 16, 1), np.float32),
            "label": (pairs, np.float32)}
    if self.mouth:
      spec.update(face_mouth=((t, MOUTH_FEATURES), np.float32), mel_mouth=(pairs + (t, MOUTH_FEATURES), np.float32))
    return spec

  def example(self, item, rng):
    i = self._items[item]
    starts = self._starts(self.data.segments[i])
    positive = bool(rng.random() < 0.5)
    # Starts with an off-sync partner, so either label can be drawn from the same start.
    usable = starts[(starts - starts[0] >= self.min_shift) | (starts[-1] - starts >= self.min_shift)]
    start = int(rng.choice(usable))
    far = starts[np.abs(starts - start) >= self.min_shift]
    if self.negatives:
      off = rng.choice(far, self.negatives, replace=len(far) < self.negatives)
      audio_at, label = [start, *off.tolist()], np.array([1.0] + [0.0] * self.negatives, np.float32)
    else:
      audio_at, label = [start if positive else int(rng.choice(far))], np.float32(positive)
    flip, factors = self._augmentation(rng)
    frames = self._images(i, range(start, start + self.t), flip, factors)
    seg = self.data.segment(i)
    mels = np.stack([seg.mel_window(int(u), 0) for u in audio_at])
    out = {"faces": np.ascontiguousarray(frames[:, self.image_size // 2:]),
           "mel": mels if self.negatives else mels[0], "label": label}
    if self.mouth:
      windows = mouth_targets(seg.arrays["landmarks"] / np.float32(self.stored_size), audio_at, self.t)
      face = windows[0] if audio_at[0] == start else mouth_targets(
          seg.arrays["landmarks"] / np.float32(self.stored_size), [start], self.t)[0]
      out.update(face_mouth=face, mel_mouth=windows if self.negatives else windows[0])
    return out


class DckPairsSampler(Sampler):
  """DCK-style training on paired clips (``<name>_a`` / ``<name>_b``: same head motion, other speech).

  The model takes frame t of the source clip (its face and pose) and the audio of the target clip at
  t and must output frame t of the target clip. With ``swap`` (default) a and b trade roles with
  probability 1/2. Loose face crops by default (``crop="face"``).

  =================  ====================  =======================================================
  key                shape, dtype          contents
  =================  ====================  =======================================================
  source             (S, S, 3) uint8       frame t of the source clip
  target             (S, S, 3) uint8       frame t of the target clip (same crop box: same pose)
  source_mel         (80, 16, 1) float32   the source clip's window at t (offset ``mel_offset``)
  target_mel         (80, 16, 1) float32   the target clip's window at t: the driving audio
  source_landmarks   (131, 2) float32      normalised landmarks of the source frame
  target_landmarks   (131, 2) float32      normalised landmarks of the target frame
  =================  ====================  =======================================================
  """
  name = "dck_pairs"
  crop = "face"
  requirement = "a/b pairs (the synthetic corpus made with --pairs)"

  def __init__(self, data, *, mel_offset: int = -2, swap: bool = True, **kwargs):
    self.mel_offset = int(mel_offset)
    self.swap = bool(swap)
    super().__init__(data, **kwargs)

  def _items_of(self, data):
    return [(a, b) for a, b in data.pairs() if self._frames(a, b).size]

  def _frames(self, a, b):
    segs = self.data.segments
    return np.flatnonzero(loader.windows_ok(segs[a], (self.mel_offset,))
                          & loader.windows_ok(segs[b], (self.mel_offset,)))

  def spec(self):
    s = self.image_size
    return {"source": ((s, s, 3), np.uint8), "target": ((s, s, 3), np.uint8),
            "source_mel": ((80, 16, 1), np.float32), "target_mel": ((80, 16, 1), np.float32),
            "source_landmarks": ((131, 2), np.float32), "target_landmarks": ((131, 2), np.float32)}

  def example(self, item, rng):
    a, b = self._items[item]
    t = int(rng.choice(self._frames(a, b)))
    if self.swap and rng.random() < 0.5:
      a, b = b, a
    flip, factors = self._augmentation(rng)
    seg_a, seg_b = self.data.segment(a), self.data.segment(b)
    return {
        "source": self._images(a, [t], flip, factors)[0],
        "target": self._images(b, [t], flip, factors)[0],
        "source_mel": seg_a.mel_window(t, self.mel_offset),
        "target_mel": seg_b.mel_window(t, self.mel_offset),
        "source_landmarks": self._points(seg_a, [t], flip)[0],
        "target_landmarks": self._points(seg_b, [t], flip)[0],
    }


class LandmarksSampler(Sampler):
  """IP_LAP's landmark generator (audio + pose + reference landmarks -> jaw and lip landmarks).

  ==============  ======================  ==========================================================
  key             shape, dtype            contents
  ==============  ======================  ==========================================================
  pose            (T, 74, 2) float32      pose landmarks of T consecutive frames t .. t+T-1 (T = 5)
  mel             (T, 80, 16, 1) float32  each frame's window, centred (offset -2, IP_LAP)
  reference       (Nl, 131, 2) float32    all landmarks of Nl = 15 other frames of the segment
  target          (T, 57, 2) float32      jaw (17) then lips (40) landmarks of the T frames
  ==============  ======================  ==========================================================

  Landmarks are normalised in each frame's IP_LAP crop. References avoid the target window when the
  segment has enough other frames (else they are drawn with replacement). No images: ``image_size``
  does not apply.
  """
  name = "landmarks"
  requirement = "T frames with full centred mel windows"

  def __init__(self, data, *, num_frames: int = T_WINDOW, num_references: int = 15, mel_offset: int = -2,
               **kwargs):
    self.t = int(num_frames)
    self.num_references = int(num_references)
    if self.num_references < 1:
      raise ConfigError(f"num_references: expected >= 1, got {num_references}")
    self.mel_offset = int(mel_offset)
    kwargs.pop("image_size", None)
    super().__init__(data, **kwargs)

  def _starts(self, entry):
    return self._valid_starts(entry, self.t, offsets_each=(self.mel_offset,))

  def _eligible(self, entry):
    return len(self._starts(entry)) > 0

  def spec(self):
    t, n = self.t, self.num_references
    return {"pose": ((t, lm.NUM_POSE, 2), np.float32), "mel": ((t, 80, 16, 1), np.float32),
            "reference": ((n, lm.NUM_POINTS, 2), np.float32), "target": ((t, lm.NUM_CONTENT, 2), np.float32)}

  def example(self, item, rng):
    i = self._items[item]
    entry = self.data.segments[i]
    start = int(rng.choice(self._starts(entry)))
    window = np.arange(start, start + self.t)
    others = np.setdiff1d(np.arange(entry["num_frames"]), window)
    replace = len(others) < self.num_references
    refs = rng.choice(others if len(others) else window, self.num_references, replace=replace)
    flip, _ = self._augmentation(rng)
    seg = self.data.segment(i)
    points = self._points(seg, window, flip)
    return {
        "pose": np.ascontiguousarray(points[:, lm.POSE_SLICE]),
        "mel": np.stack([seg.mel_window(int(t), self.mel_offset) for t in window]),
        "reference": self._points(seg, refs, flip),
        "target": np.ascontiguousarray(points[:, lm.CONTENT_SLICE]),
    }


class RendererSampler(Sampler):
  """IP_LAP's renderer (references + sketches -> target frame); paper 000 uses 5 references.

  ===================  =====================  ======================================================
  key                  shape, dtype           contents
  ===================  =====================  ======================================================
  target               (S, S, 3) uint8        frame t
  masked               (S, S, 3) uint8        frame t with its lower half zeroed
  sketches             (5, S, S, 3) uint8     IP_LAP sketches (125 edges) of frames t-2 .. t+2
  references           (N, S, S, 3) uint8     N other frames of the segment (N = ``num_references``)
  reference_sketches   (N, S, S, 3) uint8     their sketches
  mel                  (80, 16, 1) float32    window of frame t, centred (offset -2)
  ===================  =====================  ======================================================

  Sketches are drawn at ``S`` from the landmarks normalised in each frame's crop
  (``talkjax.landmarks.draw_sketches``), so they line up with the (resized) images.
  """
  name = "renderer"
  requirement = "5 frames around a target with a full centred mel window"

  def __init__(self, data, *, num_references: int = 3, mel_offset: int = -2, **kwargs):
    self.num_references = int(num_references)
    if self.num_references < 1:
      raise ConfigError(f"num_references: expected >= 1, got {num_references}")
    self.mel_offset = int(mel_offset)
    super().__init__(data, **kwargs)

  def _targets(self, entry):
    half = T_WINDOW // 2
    ts = np.arange(half, entry["num_frames"] - half)
    return ts[loader.windows_ok(entry, (self.mel_offset,))[ts]]

  def _eligible(self, entry):
    return entry["num_frames"] > T_WINDOW and len(self._targets(entry)) > 0

  def spec(self):
    s, n = self.image_size, self.num_references
    return {"target": ((s, s, 3), np.uint8), "masked": ((s, s, 3), np.uint8),
            "sketches": ((T_WINDOW, s, s, 3), np.uint8), "references": ((n, s, s, 3), np.uint8),
            "reference_sketches": ((n, s, s, 3), np.uint8), "mel": ((80, 16, 1), np.float32)}

  def example(self, item, rng):
    i = self._items[item]
    entry = self.data.segments[i]
    t = int(rng.choice(self._targets(entry)))
    others = np.delete(np.arange(entry["num_frames"]), t)
    refs = rng.choice(others, self.num_references, replace=len(others) < self.num_references)
    flip, factors = self._augmentation(rng)
    seg = self.data.segment(i)
    window = np.arange(t - T_WINDOW // 2, t + T_WINDOW // 2 + 1)
    target = self._images(i, [t], flip, factors)[0]
    return {
        "target": target,
        "masked": mask_lower_half(target),
        "sketches": self._sketches(self._points(seg, window, flip)),
        "references": self._images(i, refs, flip, factors),
        "reference_sketches": self._sketches(self._points(seg, refs, flip)),
        "mel": seg.mel_window(t, self.mel_offset),
    }


SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls
    for cls in (Wav2LipSampler, SyncNetSampler, DckPairsSampler, LandmarksSampler, RendererSampler)}

# Keys of ``config.data`` that belong to the engine or the dataset, not to the sampler.
_LOADER_KEYS = ("num_workers", "worker_buffer_size", "num_threads", "prefetch")
_IGNORED_KEYS = ("kind", "root", "cache_dir", "preset", "corpus")  # where the data is, not how to sample it
_DATASET_KEYS = ("eval_fraction", "eval_speakers")
_SAMPLER_KEYS = {
    "wav2lip": ("image_size", "flip", "color_jitter", "crop", "num_frames", "mel_offset"),
    "syncnet": ("image_size", "flip", "color_jitter", "crop", "num_frames", "min_shift", "negatives",
                "mouth"),
    "dck_pairs": ("image_size", "flip", "color_jitter", "crop", "mel_offset", "swap"),
    "landmarks": ("image_size", "flip", "num_frames", "num_references", "mel_offset"),
    "renderer": ("image_size", "flip", "color_jitter", "crop", "num_references", "mel_offset"),
}


def sampler(name: str, data: loader.SegmentDataset, **kwargs) -> Sampler:
  """The sampler ``name`` bound to ``data`` (keyword options as in its class)."""
  if name not in SAMPLERS:
    raise ConfigError(f"sampler: unknown {name!r}; valid: {', '.join(SAMPLERS)}")
  return SAMPLERS[name](data, **kwargs)


def make_sampler(name: str, *, root: str, split: str = "train", batch_size: int, seed: int = 0,
                 process_index: int = 0, process_count: int = 1, options: Mapping[str, Any] | None = None,
                 **kwargs) -> grain.MapDataset | grain.IterDataset:
  """This process's batches of sampler ``name`` over the dataset at ``root`` (infinite, deterministic).

  Args:
    name: ``wav2lip``, ``syncnet``, ``dck_pairs``, ``landmarks`` or ``renderer``.
    root: a preprocessed dataset (``experiments.preprocess`` or ``embedded.ensure_corpus``).
    split: ``train``, ``eval`` (held-out speakers) or ``all``.
    batch_size: examples per batch on this process.
    seed: the run's seed.
    process_index, process_count: this process among those sharing each global batch.
    options: ``config.data`` as a dict: sampler options (``image_size``, ``flip``, ...), dataset
      options (``eval_fraction``, ``eval_speakers``) and loader options (``num_workers``,
      ``worker_buffer_size``, ``num_threads``, ``prefetch``); engine keys (``kind``, ``root``,
      ``cache_dir``, ``preset``) are ignored, anything else is an error.
    **kwargs: more options (override ``options``).

  Returns:
    A ``grain.MapDataset`` of batches, or an ``IterDataset`` reading it in ``num_workers`` worker
    processes when that option is > 0.
  """
  if name not in SAMPLERS:
    raise ConfigError(f"sampler: unknown {name!r}; valid: {', '.join(SAMPLERS)}")
  opts = {k: v for k, v in dict(options or {}).items() if k not in _IGNORED_KEYS}
  opts.update(kwargs)
  allowed = _SAMPLER_KEYS[name] + _LOADER_KEYS + _DATASET_KEYS
  unknown = sorted(set(opts) - set(allowed))
  if unknown:
    raise ConfigError(f"data options {unknown} do not apply to sampler {name!r}; valid: {', '.join(allowed)}")
  data = loader.SegmentDataset(root, split, **{k: opts.pop(k) for k in _DATASET_KEYS if k in opts})
  loader_opts = {k: opts.pop(k) for k in _LOADER_KEYS if k in opts}
  smp = sampler(name, data, **opts)
  ds = loader.build_dataset(smp, batch_size=batch_size, seed=seed, process_index=process_index,
                            process_count=process_count)
  if int(loader_opts.get("num_workers", 0)) > 0:
    return loader.to_iter_dataset(ds, **loader_opts)
  return ds
