"""Paper 000's Dynamic Convolution Transformer generator (DCTGenerator; Tang, Liu, Li, Sensors 2025, 3.1.2).

Audio, identity (reference landmarks) and pose features are concatenated along time into
``F_input (B, L, d)`` and split along channels into two halves:

- ``X1 -> SALA -> Y1``: self-attention with local feature augmentation. Each SALA layer adds to
  global multi-head self-attention a *local* attention over overlapping blocks of the token
  sequence (:class:`OverlappingBlockAttention`: queries in blocks of ``block_size`` tokens, keys and
  values from the block widened by ``halo`` tokens on each side, i.e. "larger overlapping blocks" that
  see across block boundaries), then a feed-forward layer; post-norm like IP_LAP's encoder.
- ``X2 -> DACN -> Y2``: the dynamic audio convolution network. Each DACN layer is a 1-D convolution
  over the token axis whose kernel and bias are generated per sample (``talkjax.nn.DynamicConv``)
  from a conditioning vector that pools the audio, pose and reference embeddings, inside a
  bottleneck (``Dense(d/2 -> dacn_width)``, dynamic conv, ReLU, ``Dense(-> d/2)``), then a
  feed-forward layer; post-norm.

``F_out = concat(Y1, Y2)`` goes through the dimension alignment network (a residual 2-layer MLP +
LayerNorm) to ``F_final``; as in IP_LAP the lip head reads the audio tokens and the jaw head the
pose tokens, and ``concat([jaw, lips])`` gives the T frames' 57 content landmarks.

The input encoders, shared LayerNorm, positional and modality embeddings are IP_LAP's
(:mod:`talkjax.models.iplap_landmark`), on which paper 000 builds. Choices where the paper is vague
(each a field, justified in BUILD_NOTES.md): block size 5 (= T, so audio, pose and each group of 5
references fall in their own block) with halo 2; kernel size 3 over tokens; kernels generated from
the mean audio, pose and reference embeddings; each half ``d/2`` wide with ``num_layers`` layers;
``dacn_width`` 64 (a full ``k x d/2 x d/2`` kernel would need a 50M-parameter hypernetwork head).

``use_dacn=False`` is the paper's Table 4 ablation (``dct_landmark:no_dcf``): the X2 half goes
through a plain transformer encoder instead of DACN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax import landmarks as lm
from talkjax.errors import ConfigError
from talkjax.models.iplap_landmark import (D_MODEL, LandmarkEncoders, assemble_tokens, content_from_heads,
                                           xavier_heads)
from talkjax.nn.attention import TorchMultiheadAttention, TransformerEncoder
from talkjax.nn.dynamic_conv import DynamicConv

CONDITION_SOURCES = ("audio", "pose", "reference")


def overlapping_block_indices(length: int, block_size: int, halo: int) -> tuple[np.ndarray, np.ndarray]:
  """Key/value positions of each query block and whether they are real tokens.

  The sequence is cut into ``ceil(length / block_size)`` query blocks; block ``j`` reads keys from
  positions ``j*block_size - halo .. (j+1)*block_size + halo - 1``. Returns ``(idx, valid)`` of shape
  ``(num_blocks, block_size + 2*halo)``: positions clipped into ``[0, length)`` and a mask that is
  False for positions outside the sequence (to be ignored).
  """
  if block_size < 1 or halo < 0:
    raise ConfigError(f"overlapping blocks: need block_size >= 1 and halo >= 0, got {block_size}, {halo}")
  num_blocks = -(-length // block_size)
  pos = np.arange(num_blocks)[:, None] * block_size - halo + np.arange(block_size + 2 * halo)[None]
  valid = (pos >= 0) & (pos < length)
  return np.clip(pos, 0, length - 1), valid


class OverlappingBlockAttention(nn.Module):
  """Local multi-head attention: query blocks of ``block_size`` tokens attend to their block +- ``halo``.

  ``(B, L, E) -> (B, L, E)``. Heads take contiguous slices of the projections (as
  ``TorchMultiheadAttention``); logits are scaled by ``1/sqrt(E/H)``.
  """
  num_heads: int
  block_size: int = 5
  halo: int = 2
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    b, length, e = x.shape
    if e % self.num_heads:
      raise ConfigError(f"OverlappingBlockAttention: width {e} is not divisible by {self.num_heads} heads")
    h, dh = self.num_heads, e // self.num_heads
    idx, valid = overlapping_block_indices(length, self.block_size, self.halo)
    nb, window = idx.shape
    qkv = nn.Dense(3 * e, dtype=self.dtype, name="in_proj")(x)
    q, k, v = jnp.split(qkv, 3, axis=-1)
    pad = nb * self.block_size - length
    q = jnp.pad(q, ((0, 0), (0, pad), (0, 0))).reshape(b, nb, self.block_size, h, dh)
    k = k[:, idx].reshape(b, nb, window, h, dh)
    v = v[:, idx].reshape(b, nb, window, h, dh)
    logits = jnp.einsum("bnqhd,bnkhd->bnhqk", q.astype(jnp.float32), k.astype(jnp.float32)) / np.sqrt(dh)
    logits = jnp.where(jnp.asarray(valid)[None, :, None, None, :], logits, jnp.finfo(jnp.float32).min)
    weights = nn.Dropout(self.dropout)(nn.softmax(logits, axis=-1), deterministic=deterministic)
    out = jnp.einsum("bnhqk,bnkhd->bnqhd", weights.astype(self.dtype), v).reshape(b, nb * self.block_size, e)
    return nn.Dense(e, dtype=self.dtype, name="out_proj")(out[:, :length])


def _feed_forward(x, dim_feedforward: int, dropout: float, deterministic: bool, dtype) -> jax.Array:
  y = nn.relu(nn.Dense(dim_feedforward, dtype=dtype, name="linear1")(x))
  y = nn.Dropout(dropout)(y, deterministic=deterministic)
  return nn.Dense(x.shape[-1], dtype=dtype, name="linear2")(y)


class SALALayer(nn.Module):
  """Self-attention + local feature augmentation, post-norm:

  ``x = LN(x + drop(MHSA(x) + BlockAttention(x)))``; ``x = LN(x + drop(FFN(x)))``.
  """
  num_heads: int
  dim_feedforward: int
  dropout: float = 0.1
  block_size: int = 5
  halo: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=deterministic)  # noqa: E731
    global_ = TorchMultiheadAttention(self.num_heads, self.dropout, self.dtype, name="self_attn")(
        x, deterministic=deterministic)
    local = OverlappingBlockAttention(self.num_heads, self.block_size, self.halo, self.dropout, self.dtype,
                                      name="local_attn")(x, deterministic)
    x = nn.LayerNorm(1e-5, dtype=jnp.float32, name="norm1")(x + drop(global_ + local)).astype(self.dtype)
    ff = _feed_forward(x, self.dim_feedforward, self.dropout, deterministic, self.dtype)
    return nn.LayerNorm(1e-5, dtype=jnp.float32, name="norm2")(x + drop(ff)).astype(self.dtype)


class DACNLayer(nn.Module):
  """Dynamic audio convolution layer, post-norm:

  ``x = LN(x + drop(Dense_up(relu(DynamicConv_cond(Dense_down(x))))))``; ``x = LN(x + drop(FFN(x)))``.
  The dynamic conv runs over the token axis (1-D, ``kernel_size`` taps, SAME zero padding) with a
  kernel generated per sample from ``cond``.
  """
  width: int = 64
  kernel_size: int = 3
  hidden: Sequence[int] = (256,)
  dim_feedforward: int = 512
  dropout: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array, deterministic: bool = True) -> jax.Array:
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=deterministic)  # noqa: E731
    y = nn.Dense(self.width, dtype=self.dtype, name="down")(x)
    y = DynamicConv(self.width, kernel_size=(self.kernel_size,), hidden=tuple(self.hidden), dtype=self.dtype,
                    name="dynamic_conv")(y, cond)
    y = nn.Dense(x.shape[-1], dtype=self.dtype, name="up")(nn.relu(y))
    x = nn.LayerNorm(1e-5, dtype=jnp.float32, name="norm1")(x + drop(y)).astype(self.dtype)
    ff = _feed_forward(x, self.dim_feedforward, self.dropout, deterministic, self.dtype)
    return nn.LayerNorm(1e-5, dtype=jnp.float32, name="norm2")(x + drop(ff)).astype(self.dtype)


class DCTLandmarkGenerator(nn.Module):
  """Paper 000's DCTGenerator (see the module docstring); same call signature as IP_LAP's generator.

  ``__call__(mel, pose, reference_pose, reference_content, train=False)``: ``mel`` ``(B, T, 80, 16, 1)``
  centred Wav2Lip mel windows, ``pose`` ``(B, T, 74, 2)``, ``reference_pose`` ``(B, Nl, 74, 2)``,
  ``reference_content`` ``(B, Nl, 57, 2)`` (landmarks normalised in their crops). Returns ``(B, T, 57,
  2)``: jaw then lips.

  Attributes:
    width_divisor: divides the encoder widths; ``d_model = 512 // width_divisor``.
    num_layers: layers of each half (SALA, and DACN or the ablation's transformer).
    num_heads: attention heads of the SALA half (and of the ablation's transformer).
    dim_feedforward: feed-forward width of each half's layers.
    dropout: dropout of tokens, attention weights and residual branches.
    block_size, halo: SALA's local attention blocks.
    dacn_width, dacn_kernel, dacn_hidden: DACN's bottleneck width, kernel taps over tokens, and its
      hypernetwork's hidden widths.
    condition: which pooled embeddings generate the DACN kernels (subset of audio, pose, reference).
    use_dacn: False is the ``no_dcf`` ablation (a plain transformer on the X2 half).
    zero_init_heads: zero output at initialisation (for offset prediction, as in IP_LAP's module).
  """
  width_divisor: int = 1
  num_layers: int = 4
  num_heads: int = 4
  dim_feedforward: int = 512
  dropout: float = 0.1
  block_size: int = 5
  halo: int = 2
  dacn_width: int = 64
  dacn_kernel: int = 3
  dacn_hidden: Sequence[int] = (256,)
  condition: Sequence[str] = CONDITION_SOURCES
  use_dacn: bool = True
  zero_init_heads: bool = False
  dtype: Any = jnp.float32

  @property
  def d_model(self) -> int:
    return D_MODEL // self.width_divisor

  def _check(self) -> None:
    if self.d_model % 2:
      raise ConfigError(f"DCTLandmarkGenerator: d_model {self.d_model} must be even (split in two halves)")
    unknown = sorted(set(self.condition) - set(CONDITION_SOURCES))
    if unknown or not self.condition:
      raise ConfigError(f"DCTLandmarkGenerator.condition: {list(self.condition)}; choose one or more of "
                        f"{', '.join(CONDITION_SOURCES)}")

  @nn.compact
  def __call__(self, mel, pose, reference_pose, reference_content, train: bool = False) -> jax.Array:
    self._check()
    d, half = self.d_model, self.d_model // 2
    deterministic = not train
    ref, audio, pose_e = LandmarkEncoders(self.width_divisor, self.dtype, name="encoders")(
        mel, pose, reference_pose, reference_content, train=train)
    modality = self.param("modality", nn.initializers.normal(1.0), (4, d), jnp.float32)
    tokens = assemble_tokens(ref, audio, pose_e, modality)
    tokens = nn.Dropout(self.dropout)(tokens, deterministic=deterministic)
    x1, x2 = tokens[..., :half], tokens[..., half:]

    y1 = x1
    for i in range(self.num_layers):
      y1 = SALALayer(self.num_heads, self.dim_feedforward, self.dropout, self.block_size, self.halo,
                     self.dtype, name=f"sala_{i}")(y1, deterministic)
    if self.use_dacn:
      pooled = {"audio": audio.mean(axis=1), "pose": pose_e.mean(axis=1), "reference": ref.mean(axis=1)}
      cond = jnp.concatenate([pooled[k] for k in CONDITION_SOURCES if k in self.condition], axis=-1)
      y2 = x2
      for i in range(self.num_layers):
        y2 = DACNLayer(self.dacn_width, self.dacn_kernel, tuple(self.dacn_hidden), self.dim_feedforward,
                       self.dropout, self.dtype, name=f"dacn_{i}")(y2, cond, deterministic)
    else:
      y2 = TransformerEncoder(self.num_layers, half, self.num_heads, self.dim_feedforward, self.dropout,
                              dtype=self.dtype, name="transformer")(x2, deterministic=deterministic)

    f_out = jnp.concatenate([y1, y2], axis=-1)
    hidden = nn.relu(nn.Dense(d, dtype=self.dtype, name="align_1")(f_out))
    f_final = nn.LayerNorm(1e-5, dtype=jnp.float32, name="align_norm")(
        f_out + nn.Dense(d, dtype=self.dtype, name="align_2")(hidden)).astype(self.dtype)
    nl, t = ref.shape[1], audio.shape[1]
    zero = self.zero_init_heads
    lips = xavier_heads("lip_head", 2 * lm.NUM_LIPS, self.dtype, zero)(f_final[:, nl:nl + t])
    jaw = xavier_heads("jaw_head", 2 * lm.NUM_JAW, self.dtype, zero)(f_final[:, nl + t:])
    return content_from_heads(lips, jaw).astype(jnp.float32)
