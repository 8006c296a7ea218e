"""IP_LAP's audio-to-landmark transformer (Zhong et al., CVPR 2023; paper 004 section 3.1), NHWC.

Given T = 5 consecutive frames' mel windows and pose landmarks (upper face, 74 points) and Nl = 15
reference landmark sets (all 131 points of other frames of the same face), it predicts the T frames'
content landmarks: jaw (17 points) then lips (40 points). All landmarks are ``(x, y)`` in [0, 1] of
each frame's IP_LAP crop box (``talkjax.landmarks.normalize_to_box``).

Architecture (IP_LAP's ``models/landmark_generator.py``, NOTES.md "IP_LAP"):

- mel windows -> Wav2Lip's audio encoder with tanh as the last activation (``mel_encoder``);
- reference landmarks ``(131, 2)`` and pose landmarks ``(74, 2)`` -> 1-D conv stacks over the point
  axis (x and y are the two input channels) to one ``d_model`` vector each (``ref_encoder``,
  ``pose_encoder``; tables :data:`REF_ENCODER`, :data:`POSE_ENCODER`);
- one LayerNorm shared by the three embeddings (``norm``);
- tokens ``[reference (Nl), audio (T), pose (T)]``: audio and pose tokens get sinusoidal positions
  (the same table for both); every token gets a learned modality embedding (row 1 pose, 2 audio,
  3 reference; row 0 is PyTorch's unused padding row); dropout on the tokens;
- a 4-layer post-norm transformer encoder (d_model 512, 4 heads, FF 1024, dropout 0.1, ReLU);
- heads: lips ``Dense(80)`` on the audio tokens, jaw ``Dense(34)`` on the pose tokens, each output
  read as interleaved ``(x, y)`` pairs; result ``concat([jaw, lips])`` -> ``(B, T, 57, 2)``.

The encoders, shared norm and token assembly are reused by paper 000's DCT generator
(``talkjax.models.dct_landmark``), which replaces the transformer.

``width_divisor`` divides the encoder widths (the point encoders' layers of 8 channels or fewer stay
as they are), which sets ``d_model = 512 // width_divisor`` (tiny test and ``runlocal`` variants;
IP_LAP's checkpoint needs 1). Converter: ``third_party.convert``
kind ``iplap_landmark``.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax import landmarks as lm
from talkjax.errors import ShapeError
from talkjax.models.audio_encoder import MEL_BINS, MEL_STEPS, AudioEncoder
from talkjax.nn.attention import TransformerEncoder
from talkjax.nn.conv_blocks import ConvBNAct

NUM_FRAMES = 5        # T: frames predicted together
NUM_REFERENCES = 15   # Nl: reference landmark sets (IP_LAP)
D_MODEL = 512
# Modality embedding rows (IP_LAP: 0 is nn.Embedding's padding row and never used).
POSE_MODALITY, AUDIO_MODALITY, REF_MODALITY = 1, 2, 3

# 1-D conv stacks over the point axis: (features, stride, padding, residual, kernel). PyTorch order,
# so block i is ``<encoder>.{i}`` in IP_LAP's state dict. The last row's width is d_model.
REF_ENCODER: tuple[tuple[int, int, int, bool, int], ...] = (
    (4, 1, 1, False, 3),                                            # 131
    (8, 2, 1, False, 3), (8, 1, 1, True, 3), (8, 1, 1, True, 3),      # 66
    (16, 2, 1, False, 3), (16, 1, 1, True, 3), (16, 1, 1, True, 3),   # 33
    (32, 2, 1, False, 3), (32, 1, 1, True, 3), (32, 1, 1, True, 3),   # 17
    (64, 2, 1, False, 3), (64, 1, 1, True, 3), (64, 1, 1, True, 3),   # 9
    (128, 2, 1, False, 3), (128, 1, 1, True, 3), (128, 1, 1, True, 3),  # 5
    (256, 2, 1, False, 3), (256, 1, 1, True, 3),                    # 3
    (512, 1, 0, False, 3),                                          # 1
    (512, 1, 0, False, 1),                                          # 1, tanh
)
POSE_ENCODER: tuple[tuple[int, int, int, bool, int], ...] = (
    (4, 1, 1, False, 3),                                            # 74
    (8, 1, 1, False, 3), (8, 1, 1, True, 3), (8, 1, 1, True, 3),      # 74
    (16, 2, 1, False, 3), (16, 1, 1, True, 3), (16, 1, 1, True, 3),   # 37
    (32, 2, 1, False, 3), (32, 1, 1, True, 3), (32, 1, 1, True, 3),   # 19
    (64, 2, 1, False, 3), (64, 1, 1, True, 3), (64, 1, 1, True, 3),   # 10
    (128, 2, 1, False, 3), (128, 1, 1, True, 3), (128, 1, 1, True, 3),  # 5
    (256, 2, 1, False, 3), (256, 1, 1, True, 3), (256, 1, 1, True, 3),  # 3
    (512, 1, 0, False, 3),                                          # 1
    (512, 1, 0, True, 1),                                           # 1, tanh (IP_LAP: residual here)
)


def sinusoidal_positions(length: int, d_model: int) -> np.ndarray:
  """``(length, d_model)`` float32 sinusoids: even dims ``sin(p w_i)``, odd ``cos(p w_i)``.

  ``w_i = exp(-2i ln(10000) / d_model)``, computed in float32 as IP_LAP's ``PositionalEmbedding``.
  """
  position = np.arange(length, dtype=np.float32)[:, None]
  div = np.exp(np.arange(0, d_model, 2, dtype=np.float32) * np.float32(-(math.log(10000.0) / d_model)))
  pe = np.zeros((length, d_model), np.float32)
  pe[:, 0::2] = np.sin(position * div)
  pe[:, 1::2] = np.cos(position * div)[:, :d_model // 2]
  return pe


class PointEncoder(nn.Module):
  """IP_LAP's 1-D conv stack over landmark points: ``(N, P, 2)`` -> ``(N, d_model)``.

  Blocks ``block_{i}`` are Wav2Lip-style conv + BatchNorm (+ residual) + ReLU (tanh last).
  """
  layers: tuple[tuple[int, int, int, bool, int], ...]
  d_model: int = D_MODEL
  width_divisor: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, points: jax.Array, train: bool = False) -> jax.Array:
    x = points.astype(self.dtype)
    last = len(self.layers) - 1
    for i, (features, stride, padding, residual, kernel) in enumerate(self.layers):
      # Reduced variants divide the wide layers only: the first ones (4 and 8 channels in IP_LAP) are
      # cheap, and 1-2 channel ReLU layers easily die and cut the input off.
      width = self.d_model if features == D_MODEL else max(min(features, 8), features // self.width_divisor)
      block = ConvBNAct(width, kernel_size=(kernel,), strides=stride, padding=padding, residual=residual,
                        activation="tanh" if i == last else "relu", dtype=self.dtype, name=f"block_{i}")
      x = block(x, train=train)
    if x.shape[1] != 1:
      raise ShapeError(f"{self.name}: expected the conv stack to reduce {points.shape[1]} points to 1, "
                       f"got {x.shape[1]}")
    return x[:, 0, :]


def _check_inputs(mel, pose, reference_pose, reference_content) -> None:
  """Raises ShapeError naming the argument whose shape is wrong."""
  if mel.ndim != 5 or tuple(mel.shape[2:]) != (MEL_BINS, MEL_STEPS, 1):
    raise ShapeError(f"mel: expected (B, T, {MEL_BINS}, {MEL_STEPS}, 1) windows, got {tuple(mel.shape)}")
  b, t = mel.shape[:2]
  expected = {"pose": (pose, (b, t, lm.NUM_POSE, 2)),
              "reference_pose": (reference_pose, (b, None, lm.NUM_POSE, 2)),
              "reference_content": (reference_content, (b, None, lm.NUM_CONTENT, 2))}
  for name, (x, shape) in expected.items():
    if x.ndim != 4 or any(s is not None and s != d for s, d in zip(shape, x.shape)):
      want = tuple("Nl" if s is None else s for s in shape)
      raise ShapeError(f"{name}: expected shape {want} (B={b}, T={t} from mel), got {tuple(x.shape)}")
  if reference_pose.shape[1] != reference_content.shape[1]:
    raise ShapeError(f"reference_pose and reference_content disagree on Nl: {reference_pose.shape[1]} vs "
                     f"{reference_content.shape[1]}")


class LandmarkEncoders(nn.Module):
  """The three input encoders and their shared LayerNorm: ``(ref, audio, pose)`` embeddings.

  Returns ``(B, Nl, d)``, ``(B, T, d)``, ``(B, T, d)``, normalised by the shared LayerNorm.
  """
  width_divisor: int = 1
  dtype: Any = jnp.float32

  @property
  def d_model(self) -> int:
    return D_MODEL // self.width_divisor

  @nn.compact
  def __call__(self, mel, pose, reference_pose, reference_content, train: bool = False):
    _check_inputs(mel, pose, reference_pose, reference_content)
    b, t = mel.shape[:2]
    nl = reference_pose.shape[1]
    d = self.d_model
    reference = jnp.concatenate([reference_pose, reference_content], axis=2)  # (B, Nl, 131, 2)
    mel_encoder = AudioEncoder(residuals_at_256=1, final_activation="tanh", width_divisor=self.width_divisor,
                               dtype=self.dtype, name="mel_encoder")
    audio = mel_encoder(mel.reshape((b * t,) + mel.shape[2:]), train=train)
    ref = PointEncoder(REF_ENCODER, d, self.width_divisor, self.dtype, name="ref_encoder")(
        reference.reshape(b * nl, lm.NUM_POINTS, 2), train=train)
    pose_e = PointEncoder(POSE_ENCODER, d, self.width_divisor, self.dtype, name="pose_encoder")(
        pose.reshape(b * t, lm.NUM_POSE, 2), train=train)
    norm = nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, name="norm")
    audio = norm(audio.reshape(b * t, d)).astype(self.dtype)
    pose_e = norm(pose_e).astype(self.dtype)
    ref = norm(ref).astype(self.dtype)
    return ref.reshape(b, nl, d), audio.reshape(b, t, d), pose_e.reshape(b, t, d)


def assemble_tokens(ref: jax.Array, audio: jax.Array, pose: jax.Array, modality: jax.Array) -> jax.Array:
  """IP_LAP's token sequence ``[ref (Nl), audio (T), pose (T)]`` with positions and modality embeddings.

  ``modality`` is the ``(4, d)`` embedding table. Audio and pose tokens get the same sinusoidal
  positions ``0..T-1``; reference tokens get none (they are an unordered set).
  """
  t, d = audio.shape[1], audio.shape[2]
  positions = jnp.asarray(sinusoidal_positions(t, d), audio.dtype)[None]
  modality = modality.astype(audio.dtype)
  return jnp.concatenate([ref + modality[REF_MODALITY],
                          audio + positions + modality[AUDIO_MODALITY],
                          pose + positions + modality[POSE_MODALITY]], axis=1)


def content_from_heads(lips: jax.Array, jaw: jax.Array) -> jax.Array:
  """``(B, T, 80)`` lip and ``(B, T, 34)`` jaw head outputs -> ``(B, T, 57, 2)`` [jaw 17, lips 40]."""
  b, t = lips.shape[:2]
  return jnp.concatenate([jaw.reshape(b, t, lm.NUM_JAW, 2), lips.reshape(b, t, lm.NUM_LIPS, 2)], axis=2)


def xavier_heads(name: str, features: int, dtype, zero: bool = False) -> nn.Dense:
  """An output head with IP_LAP's ``weight_init`` (Xavier-normal weights, zero bias), or with ``zero``
  a zero kernel: a model predicting offsets from the reference shape then starts at that shape."""
  init = nn.initializers.zeros if zero else nn.initializers.xavier_normal()
  return nn.Dense(features, kernel_init=init, bias_init=nn.initializers.zeros, dtype=dtype, name=name)


class IPLAPLandmarkGenerator(nn.Module):
  """IP_LAP's landmark generator (``Landmark_generator``), see the module docstring.

  ``__call__(mel, pose, reference_pose, reference_content, train=False)`` takes the PyTorch forward's
  inputs in its order, NHWC / point-last:

  - ``mel``: ``(B, T, 80, 16, 1)`` Wav2Lip mel windows in [-4, 4], each centred on its frame
    (window start ``int(80 (f - 2) / 25)``, IP_LAP's rule);
  - ``pose``: ``(B, T, 74, 2)`` the T frames' pose landmarks, normalised in each frame's crop;
  - ``reference_pose`` ``(B, Nl, 74, 2)`` and ``reference_content`` ``(B, Nl, 57, 2)``: the reference
    frames' landmarks split as IP_LAP feeds them (pose points, then jaw + lips).

  Returns ``(B, T, 57, 2)``: jaw (17) then lips (40) of the T frames, normalised crop coordinates.
  (PyTorch returns the same values as ``(B*T, 2, 57)``.) With ``train=True`` BatchNorm uses batch
  statistics (``batch_stats`` must be mutable) and dropout needs a ``"dropout"`` RNG.

  ``zero_init_heads`` starts the heads at zero output: for models trained to predict offsets from
  a reference prior (``talkjax.models.landmark_inference.apply_model(offset=True)``).
  """
  width_divisor: int = 1
  num_layers: int = 4
  num_heads: int = 4
  dim_feedforward: int = 1024
  dropout: float = 0.1
  zero_init_heads: bool = False
  dtype: Any = jnp.float32

  @property
  def d_model(self) -> int:
    return D_MODEL // self.width_divisor

  @nn.compact
  def __call__(self, mel, pose, reference_pose, reference_content, train: bool = False) -> jax.Array:
    d = self.d_model
    ref, audio, pose_e = LandmarkEncoders(self.width_divisor, self.dtype, name="encoders")(
        mel, pose, reference_pose, reference_content, train=train)
    modality = self.param("modality", nn.initializers.normal(1.0), (4, d), jnp.float32)
    tokens = assemble_tokens(ref, audio, pose_e, modality)
    tokens = nn.Dropout(self.dropout)(tokens, deterministic=not train)
    out = TransformerEncoder(self.num_layers, d, self.num_heads, self.dim_feedforward, self.dropout,
                             dtype=self.dtype, name="transformer")(tokens, deterministic=not train)
    nl, t = ref.shape[1], audio.shape[1]
    zero = self.zero_init_heads
    lips = xavier_heads("lip_head", 2 * lm.NUM_LIPS, self.dtype, zero)(out[:, nl:nl + t])
    jaw = xavier_heads("jaw_head", 2 * lm.NUM_JAW, self.dtype, zero)(out[:, nl + t:])
    return content_from_heads(lips, jaw).astype(jnp.float32)


def split_reference(reference: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(..., 131, 2)`` reference landmarks -> (pose ``(..., 74, 2)``, content ``(..., 57, 2)``)."""
  return reference[..., lm.POSE_SLICE, :], reference[..., lm.CONTENT_SLICE, :]


def example_inputs(batch_size: int = 1, num_frames: int = NUM_FRAMES, num_references: int = NUM_REFERENCES,
                   seed: int = 0) -> tuple[np.ndarray, ...]:
  """Random inputs of the generator's shapes (mel in [-4, 4], landmarks in [0, 1])."""
  rng = np.random.default_rng(seed)
  mel = rng.uniform(-4.0, 4.0, (batch_size, num_frames, MEL_BINS, MEL_STEPS, 1)).astype(np.float32)
  pose = rng.uniform(0.0, 1.0, (batch_size, num_frames, lm.NUM_POSE, 2)).astype(np.float32)
  ref_pose = rng.uniform(0.0, 1.0, (batch_size, num_references, lm.NUM_POSE, 2)).astype(np.float32)
  ref_content = rng.uniform(0.0, 1.0, (batch_size, num_references, lm.NUM_CONTENT, 2)).astype(np.float32)
  return mel, pose, ref_pose, ref_content
