"""Wav2Lip's networks (Prajwal et al., ACM MM 2020), NHWC ports that load the published checkpoints.

- :class:`Wav2Lip`: the generator (``wav2lip.pth`` and ``wav2lip_gan.pth``).
- :class:`SyncNetColor`: the lip-sync expert (``lipsync_expert.pth``, PyTorch ``SyncNet_color``).
- :class:`Wav2LipDisc`: the visual-quality discriminator (PyTorch ``Wav2Lip_disc_qual``).
- :func:`cosine_similarity`, :func:`expert_sync_loss`: the expert's BCE-on-cosine loss.

Conventions (all inputs float32, NHWC, what the PyTorch checkpoints were trained on):

- mel windows ``(N, 80, 16, 1)``: H = 80 mel bins, W = 16 mel frames, 1 channel (PyTorch
  ``(N, 1, 80, 16)``), Wav2Lip front-end values in [-4, 4];
- images are **BGR** in [0, 1] (Wav2Lip reads frames with cv2 and divides by 255).

Layer tables: NOTES.md "Wav2Lip generator". Submodule names mirror the PyTorch attribute names
(``face_encoder_blocks_{i}_{j}`` for ``face_encoder_blocks.{i}.{j}``) so the converter is a
mechanical renaming. ``width_divisor`` shrinks every width for tiny test variants; checkpoints need 1.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkjax import losses
from talkjax.models.audio_encoder import MEL_BINS, MEL_STEPS, AudioEncoder
from talkjax.nn.conv_blocks import ConvAct, ConvBNAct, ConvTransposeBNAct, torch_bias_init, torch_kernel_init

FACE_SIZE = 96          # generator input/output resolution
SYNC_T = 5              # frames per expert/generator window


def _w(c: int, div: int) -> int:
  return max(1, c // div)


def _conv(c, k=3, s=1, p=1, residual=False):
  return ("conv", dict(features=c, kernel_size=k, strides=s, padding=p, residual=residual))


def _convt(c, k=3, s=2, p=1, op=1):
  return ("convt", dict(features=c, kernel_size=k, strides=s, padding=p, output_padding=op))


def _r(c):
  return _conv(c, residual=True)


# Generator layer tables: blocks of layers, PyTorch ModuleList/Sequential order.
GENERATOR_FACE_ENCODER = (
    (_conv(16, 7, 1, 3),),                                   # 96
    (_conv(32, 3, 2, 1), _r(32), _r(32)),                    # 48
    (_conv(64, 3, 2, 1), _r(64), _r(64), _r(64)),            # 24
    (_conv(128, 3, 2, 1), _r(128), _r(128)),                 # 12
    (_conv(256, 3, 2, 1), _r(256), _r(256)),                 # 6
    (_conv(512, 3, 2, 1), _r(512)),                          # 3
    (_conv(512, 3, 1, 0), _conv(512, 1, 1, 0)),              # 1
)
GENERATOR_FACE_DECODER = (
    (_conv(512, 1, 1, 0),),                                  # 1
    (_convt(512, 3, 1, 0, 0), _r(512)),                      # 3
    (_convt(512), _r(512), _r(512)),                         # 6
    (_convt(384), _r(384), _r(384)),                         # 12
    (_convt(256), _r(256), _r(256)),                         # 24
    (_convt(128), _r(128), _r(128)),                         # 48
    (_convt(64), _r(64), _r(64)),                            # 96
)
SYNCNET_FACE_ENCODER = (
    _conv(32, 7, 1, 3),                                      # 48x96
    _conv(64, 5, (1, 2), 1), _r(64), _r(64),                 # 46x47
    _conv(128, 3, 2, 1), _r(128), _r(128), _r(128),          # 23x24
    _conv(256, 3, 2, 1), _r(256), _r(256),                   # 12x12
    _conv(512, 3, 2, 1), _r(512), _r(512),                   # 6x6
    _conv(512, 3, 2, 1),                                     # 3x3
    _conv(512, 3, 1, 0),                                     # 1x1
    _conv(512, 1, 1, 0),
)
# Discriminator: (features, kernel, stride, padding); conv + LeakyReLU(0.01), no norm.
DISC_FACE_ENCODER = (
    ((32, 7, 1, 3),),                                        # 48x96
    ((64, 5, (1, 2), 2), (64, 5, 1, 2)),                     # 48x48
    ((128, 5, 2, 2), (128, 5, 1, 2)),                        # 24
    ((256, 5, 2, 2), (256, 5, 1, 2)),                        # 12
    ((512, 3, 2, 1), (512, 3, 1, 1)),                        # 6
    ((512, 3, 2, 1), (512, 3, 1, 1)),                        # 3
    ((512, 3, 1, 0), (512, 1, 1, 0)),                        # 1
)


def _make(spec, div: int, dtype):
  kind, kw = spec
  kw = dict(kw, features=_w(kw["features"], div))
  if kind == "conv":
    return ConvBNAct(**kw, dtype=dtype)
  return ConvTransposeBNAct(**kw, dtype=dtype)


def _check(x: jax.Array, name: str, shape: tuple, allow_time: bool) -> bool:
  """Validates ``x`` against ``(N, *shape)`` or ``(B, T, *shape)``; returns True for the 5-D form."""
  if x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape:
    return False
  if allow_time and x.ndim == len(shape) + 2 and tuple(x.shape[2:]) == shape:
    return True
  forms = f"(N, {', '.join(map(str, shape))})" + (f" or (B, T, {', '.join(map(str, shape))})"
                                                    if allow_time else "")
  raise ValueError(f"{name}: expected shape {forms}, got {tuple(x.shape)}")


class Wav2Lip(nn.Module):
  """Wav2Lip generator: mel window + (masked target, reference) face -> lower-face-synced face.

  ``__call__(mel, face, train=False)`` (PyTorch forward order):

  - ``mel``: ``(N, 80, 16, 1)``, or ``(B, T, 80, 16, 1)`` for a window of ``T`` frames;
  - ``face``: ``(N, 96, 96, 6)`` or ``(B, T, 96, 96, 6)``: channels 0-2 the target frame with its
    lower half (rows 48:) zeroed, channels 3-5 the reference frame, both BGR in [0, 1];
  - returns ``(N, 96, 96, 3)`` / ``(B, T, 96, 96, 3)`` BGR in [0, 1] (sigmoid output).

  PyTorch takes the window form as ``(B, T, 1, 80, 16)`` + ``(B, 6, T, 96, 96)`` and returns
  ``(B, 3, T, 96, 96)``; here time stays next to batch. Frames are independent except through
  BatchNorm's batch statistics when ``train=True`` (pass ``mutable=["batch_stats"]`` then).

  Attributes:
    width_divisor: shrink all widths (tiny test variants; checkpoints need 1).
    dtype: computation dtype (bfloat16 on accelerators; parameters stay float32).
  """
  width_divisor: int = 1
  dtype: Any = jnp.float32

  def setup(self):
    d = self.width_divisor
    self.face_encoder_blocks = [[_make(s, d, self.dtype) for s in blk] for blk in GENERATOR_FACE_ENCODER]
    self.audio_encoder = AudioEncoder(residuals_at_256=1, width_divisor=d, dtype=self.dtype)
    self.face_decoder_blocks = [[_make(s, d, self.dtype) for s in blk] for blk in GENERATOR_FACE_DECODER]
    self.output_block = ConvBNAct(_w(32, d), 3, 1, 1, dtype=self.dtype)
    fan_in = _w(32, d)
    self.output_conv = nn.Conv(3, (1, 1), dtype=self.dtype, kernel_init=torch_kernel_init(),
                               bias_init=torch_bias_init(fan_in))

  def __call__(self, mel: jax.Array, face: jax.Array, train: bool = False) -> jax.Array:
    mel_windowed = _check(mel, "mel", (MEL_BINS, MEL_STEPS, 1), allow_time=True)
    face_windowed = _check(face, "face", (FACE_SIZE, FACE_SIZE, 6), allow_time=True)
    if mel_windowed != face_windowed or mel.shape[:1 + mel_windowed] != face.shape[:1 + face_windowed]:
      raise ValueError(f"mel {tuple(mel.shape)} and face {tuple(face.shape)}: leading (batch[, time]) "
                       "dimensions must match")
    lead = face.shape[:1 + face_windowed]
    if face_windowed:
      mel = mel.reshape((-1,) + mel.shape[2:])
      face = face.reshape((-1,) + face.shape[2:])

    x = face.astype(self.dtype)
    feats = []
    for blk in self.face_encoder_blocks:
      for layer in blk:
        x = layer(x, train=train)
      feats.append(x)

    x = self.audio_encoder(mel.astype(self.dtype), train=train)
    for blk, skip in zip(self.face_decoder_blocks, reversed(feats)):
      for layer in blk:
        x = layer(x, train=train)
      x = jnp.concatenate([x, skip], axis=-1)

    x = self.output_block(x, train=train)
    out = nn.sigmoid(self.output_conv(x)).astype(jnp.float32)
    return out.reshape(lead + out.shape[1:])


class SyncNetColor(nn.Module):
  """Wav2Lip's lip-sync expert (``SyncNet_color``): L2-normalised 512-d audio and face embeddings.

  - ``embed_audio(mel)``: ``(N, 80, 16, 1)`` -> ``(N, 512)``, unit L2 norm;
  - ``embed_face(face)``: ``(N, 48, 96, 15)`` -> ``(N, 512)``, unit L2 norm. The 15 channels are the
    lower halves (rows 48:96 of 96x96 crops) of 5 consecutive frames stacked frame-major, each BGR
    in [0, 1]: channel ``3*t + c`` is colour ``c`` of frame ``t`` (PyTorch ``(N, 15, 48, 96)``);
  - ``__call__(mel, face)`` returns ``(audio_embedding, face_embedding)`` like PyTorch's forward.

  Both embeddings come out of a ReLU, so their cosine similarity is in [0, 1] and feeds
  :func:`expert_sync_loss` directly.

  Attributes:
    width_divisor: shrink all widths (reduced variants; checkpoints need 1).
    audio_width_divisor: the audio branch's own divisor (None: ``width_divisor``). Its last 1x1
      block keeps the face branch's width (``512 // width_divisor``), so the embeddings still match:
      a reduced expert can have a wider audio branch at little cost (the face branch is nine tenths
      of the compute). Checkpoints need None or 1.
    dtype: computation dtype.
  """
  width_divisor: int = 1
  audio_width_divisor: int | None = None
  dtype: Any = jnp.float32

  def setup(self):
    d = self.width_divisor
    self.face_encoder = [_make(s, d, self.dtype) for s in SYNCNET_FACE_ENCODER]
    self.audio_encoder = AudioEncoder(residuals_at_256=2, width_divisor=self.audio_width_divisor or d,
                                      out_features=_w(512, d), dtype=self.dtype)

  def embed_audio(self, mel: jax.Array, train: bool = False) -> jax.Array:
    _check(mel, "mel", (MEL_BINS, MEL_STEPS, 1), allow_time=False)
    x = self.audio_encoder(mel.astype(self.dtype), train=train)
    return _l2_normalize(x.reshape(x.shape[0], -1))

  def embed_face(self, face: jax.Array, train: bool = False) -> jax.Array:
    _check(face, "face", (FACE_SIZE // 2, FACE_SIZE, 3 * SYNC_T), allow_time=False)
    x = face.astype(self.dtype)
    for layer in self.face_encoder:
      x = layer(x, train=train)
    return _l2_normalize(x.reshape(x.shape[0], -1))

  def __call__(self, mel: jax.Array, face: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    return self.embed_audio(mel, train=train), self.embed_face(face, train=train)


def _safe_norm(x: jax.Array, eps: float, keepdims: bool = False) -> jax.Array:
  """``max(||x||, eps)`` over the last axis with a finite gradient at x = 0.

  ``jnp.maximum(jnp.linalg.norm(x), eps)`` has the right value but a NaN gradient there (the norm's
  derivative x / ||x|| is 0/0, and 0 * NaN = NaN): a ReLU-ended embedding that is all zero, which
  SyncNet's can be, turned a whole training step's gradients into NaN. Clamping the squared norm
  first gives the same value, and a zero gradient where the clamp holds.
  """
  return jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=keepdims), eps * eps))


def _l2_normalize(x: jax.Array) -> jax.Array:
  """``F.normalize(x, p=2, dim=1)``: x / max(||x||, 1e-12), in float32."""
  x = x.astype(jnp.float32)
  return x / _safe_norm(x, 1e-12, keepdims=True)


def cosine_similarity(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Row-wise cosine similarity, as ``torch.nn.functional.cosine_similarity(a, b, dim=1)``."""
  a = a.astype(jnp.float32)
  b = b.astype(jnp.float32)
  na = _safe_norm(a, eps)
  nb = _safe_norm(b, eps)
  return jnp.sum(a * b, axis=-1) / (na * nb)


def expert_sync_loss(audio_embedding: jax.Array, face_embedding: jax.Array,
                     labels: jax.Array) -> jax.Array:
  """Wav2Lip's ``cosine_loss``: mean BCE between cos(audio, face) and ``labels`` (1 = in sync).

  As ``nn.BCELoss`` it clamps each log at -100, so a perfectly wrong pair costs 100, not inf. The
  similarity is clipped to [0, 1] (it can exceed 1 by rounding). Used both to train the expert
  (labels 0/1) and, with labels 1, as the generator's sync loss.
  """
  d = jnp.clip(cosine_similarity(audio_embedding, face_embedding), 0.0, 1.0)
  return losses.bce(d, jnp.asarray(labels, jnp.float32).reshape(d.shape))


class Wav2LipDisc(nn.Module):
  """Wav2Lip's visual-quality discriminator (``Wav2Lip_disc_qual``).

  ``__call__(face, train=False, logits=False)``: ``face`` is a full face ``(N, 96, 96, 3)`` or a
  window ``(B, T, 96, 96, 3)``, BGR in [0, 1]; like PyTorch the network looks only at the lower
  half (rows ``H//2:``). Returns the probability that the face is real, ``(N, 1)`` / ``(B, T, 1)``
  (PyTorch flattens a window time-major to ``(T*B, 1)``); ``logits=True`` returns the pre-sigmoid
  value instead, for a numerically stable BCE. ``train`` is accepted for a uniform interface; the
  network has no normalisation or dropout.
  """
  width_divisor: int = 1
  negative_slope: float = 0.01
  dtype: Any = jnp.float32

  def setup(self):
    d = self.width_divisor
    self.face_encoder_blocks = [
        [ConvAct(_w(f, d), k, s, p, negative_slope=self.negative_slope, dtype=self.dtype)
         for f, k, s, p in blk]
        for blk in DISC_FACE_ENCODER]
    fan_in = _w(512, d)
    self.binary_pred = nn.Conv(1, (1, 1), dtype=self.dtype, kernel_init=torch_kernel_init(),
                               bias_init=torch_bias_init(fan_in))

  def __call__(self, face: jax.Array, train: bool = False, logits: bool = False) -> jax.Array:
    del train
    windowed = _check(face, "face", (FACE_SIZE, FACE_SIZE, 3), allow_time=True)
    lead = face.shape[:1 + windowed]
    x = face.reshape((-1,) + face.shape[-3:]).astype(self.dtype)
    x = x[:, x.shape[1] // 2:]
    for blk in self.face_encoder_blocks:
      for layer in blk:
        x = layer(x)
    z = self.binary_pred(x).reshape(lead + (1,)).astype(jnp.float32)
    return z if logits else nn.sigmoid(z)
