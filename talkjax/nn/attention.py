"""Attention layers: a PyTorch-equivalent post-norm transformer encoder and 1x1 spatial cross-attention.

:class:`TransformerEncoderLayer` computes what ``torch.nn.TransformerEncoderLayer(d_model, nhead,
dim_feedforward, dropout, batch_first=True)`` computes (ReLU, post-norm, LayerNorm eps 1e-5), which
IP_LAP's landmark generator (4 layers, d_model 512, 4 heads, FF 1024, dropout 0.1) and papers 000 /
004 build on. Parameters are laid out so a converter is a list of transposes:

=====================================  ==========================================================
PyTorch key (``layers.{i}.`` prefix)    Flax path under ``layers_{i}``
=====================================  ==========================================================
``self_attn.in_proj_weight`` (3E, E)    ``self_attn/in_proj/kernel`` (E, 3E) = weight.T (q, k, v
                                        column blocks in PyTorch's order)
``self_attn.in_proj_bias`` (3E,)        ``self_attn/in_proj/bias``
``self_attn.out_proj.weight/bias``      ``self_attn/out_proj/kernel`` (= weight.T) / ``bias``
``linear1.weight/bias``                 ``linear1/kernel`` (= weight.T) / ``bias``
``linear2.weight/bias``                 ``linear2/kernel`` (= weight.T) / ``bias``
``norm1.weight/bias``                   ``norm1/scale`` / ``norm1/bias`` (``norm2`` likewise)
``norm.weight/bias`` (encoder-level)    ``norm/scale`` / ``norm/bias`` (``final_norm=True``)
=====================================  ==========================================================

Masking follows PyTorch: ``key_padding_mask`` is ``(B, L)`` bool, **True = padding, ignored**.
Masked logits get the most negative finite float instead of ``-inf``, so a fully masked row
attends uniformly instead of producing NaN (PyTorch gives NaN there). Outputs at padded query
positions are computed like any other (PyTorch's nested-tensor fast path zeroes them; nothing
downstream should read them).

:class:`SpatialCrossAttention` is paper 004's audio-aware cross-attention (section 3.2.2):
``f_g = softmax((W_q f)(W_k a)^T) (W_v a)`` with 1x1 convolutions, queries from an NHWC map and
keys/values from another map or a token sequence, added back through a learnable scale.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from talkjax.nn.ops import ArgumentError, ShapeError, check_rank

__all__ = ["TorchMultiheadAttention", "TransformerEncoderLayer", "TransformerEncoder",
           "SpatialCrossAttention"]


def _mask_logits(logits: jnp.ndarray, key_padding_mask: jnp.ndarray | None) -> jnp.ndarray:
  """logits (B, ..., Lk); key_padding_mask (B, Lk) True = ignore."""
  if key_padding_mask is None:
    return logits
  mask = key_padding_mask.astype(bool).reshape((logits.shape[0],) + (1,) * (logits.ndim - 2) + (-1,))
  return jnp.where(mask, jnp.finfo(logits.dtype).min, logits)


def _check_mask(name: str, mask: jnp.ndarray | None, batch: int, length: int) -> None:
  if mask is not None and tuple(mask.shape) != (batch, length):
    raise ShapeError(f"{name}: key_padding_mask must be (B, L) = {(batch, length)} with True = padding, "
                     f"got {tuple(mask.shape)}")


class TorchMultiheadAttention(nn.Module):
  """Self-attention with PyTorch ``nn.MultiheadAttention``'s packed ``in_proj`` and ``out_proj``.

  Heads take contiguous slices of the projected features (head ``h`` owns dims ``h*E/H:(h+1)*E/H``),
  logits are scaled by ``1/sqrt(E/H)``, dropout (rate ``dropout``) acts on the attention weights.
  """
  num_heads: int
  dropout: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, key_padding_mask: jnp.ndarray | None = None,
               deterministic: bool = True) -> jnp.ndarray:
    b, length, e = x.shape
    if e % self.num_heads:
      raise ArgumentError(f"TorchMultiheadAttention: d_model {e} is not divisible by num_heads "
                          f"{self.num_heads}")
    dh = e // self.num_heads
    qkv = nn.Dense(3 * e, dtype=self.dtype, param_dtype=self.param_dtype, name="in_proj")(x)
    q, k, v = (t.reshape(b, length, self.num_heads, dh) for t in jnp.split(qkv, 3, axis=-1))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32)) / np.sqrt(dh)
    weights = nn.softmax(_mask_logits(logits, key_padding_mask), axis=-1)
    weights = nn.Dropout(self.dropout)(weights, deterministic=deterministic)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(self.dtype), v).reshape(b, length, e)
    return nn.Dense(e, dtype=self.dtype, param_dtype=self.param_dtype, name="out_proj")(out)


class TransformerEncoderLayer(nn.Module):
  """Post-norm encoder layer equal to ``torch.nn.TransformerEncoderLayer(..., batch_first=True)``.

  ``x = norm1(x + dropout(self_attn(x)))``; ``x = norm2(x + dropout(linear2(dropout(relu(linear1(x))))))``.
  Dropout is active only with ``deterministic=False`` (needs a ``"dropout"`` RNG). See the module
  docstring for the parameter names a converter maps.
  """
  d_model: int
  num_heads: int
  dim_feedforward: int = 2048
  dropout: float = 0.1
  layer_norm_eps: float = 1e-5
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, key_padding_mask: jnp.ndarray | None = None,
               deterministic: bool = True) -> jnp.ndarray:
    """x: ``(B, L, d_model)``; key_padding_mask: ``(B, L)`` bool, True = padding.

    Returns ``(B, L, d_model)``.
    """
    check_rank("TransformerEncoderLayer input", x, 3, "B, L, d_model")
    if x.shape[-1] != self.d_model:
      raise ShapeError(f"TransformerEncoderLayer: input width {x.shape[-1]} != d_model {self.d_model}")
    _check_mask("TransformerEncoderLayer", key_padding_mask, x.shape[0], x.shape[1])
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=deterministic)
    norm = lambda name: nn.LayerNorm(self.layer_norm_eps, dtype=jnp.float32, param_dtype=self.param_dtype,
                                     name=name)
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    x = x.astype(self.dtype)
    attention = TorchMultiheadAttention(self.num_heads, self.dropout, self.dtype, self.param_dtype,
                                        name="self_attn")
    sa = attention(x, key_padding_mask, deterministic)
    x = norm("norm1")(x + drop(sa)).astype(self.dtype)
    ff = dense(self.d_model, "linear2")(drop(nn.relu(dense(self.dim_feedforward, "linear1")(x))))
    return norm("norm2")(x + drop(ff)).astype(self.dtype)


class TransformerEncoder(nn.Module):
  """A stack of :class:`TransformerEncoderLayer` (``torch.nn.TransformerEncoder``), named ``layers_{i}``.

  ``final_norm`` adds the optional encoder-level LayerNorm (PyTorch's ``norm=`` argument; IP_LAP
  passes none).
  """
  num_layers: int
  d_model: int
  num_heads: int
  dim_feedforward: int = 2048
  dropout: float = 0.1
  layer_norm_eps: float = 1e-5
  final_norm: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, key_padding_mask: jnp.ndarray | None = None,
               deterministic: bool = True) -> jnp.ndarray:
    for i in range(self.num_layers):
      x = TransformerEncoderLayer(self.d_model, self.num_heads, self.dim_feedforward, self.dropout,
                                  self.layer_norm_eps, self.dtype, self.param_dtype, name=f"layers_{i}")(
                                      x, key_padding_mask, deterministic)
    if self.final_norm:
      x = nn.LayerNorm(self.layer_norm_eps, dtype=jnp.float32, param_dtype=self.param_dtype, name="norm")(x)
      x = x.astype(self.dtype)
    return x


class SpatialCrossAttention(nn.Module):
  """Paper 004's audio-aware cross-attention with 1x1 q/k/v convolutions and a learnable residual scale.

  ``out = x + gamma * softmax(q k^T * s) v`` where ``q = W_q x`` (every pixel of the NHWC map ``x`` is
  a query), ``k = W_k a`` and ``v = W_v a`` (``a`` an NHWC map, whose pixels are the keys, or a
  ``(B, L, Ca)`` token sequence), the softmax runs over the keys, ``v`` has ``x``'s channel count.
  ``gamma`` is a scalar initialised to ``gamma_init`` = 0 (SAGAN / GMA practice: the block starts as
  the identity, so inserting it into a pretrained renderer changes nothing until it learns).

  Choices where the paper is silent: ``qk_features`` (q/k width) defaults to ``x``'s channel count;
  the logit scale ``s`` is 1 as in the paper's formula (``scaled=True`` uses ``1/sqrt(qk_features)``).
  The attention weights are sown as ``intermediates/attention_weights`` ``(B, H*W, L)``.

  Parameters: ``query``, ``key``, ``value`` (1x1 ``nn.Conv``, kernels ``(1, 1, in, out)`` =
  PyTorch OIHW weights transposed) and ``gamma``.
  """
  qk_features: int | None = None
  scaled: bool = False
  gamma_init: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, context: jnp.ndarray, context_mask: jnp.ndarray | None = None
               ) -> jnp.ndarray:
    """x: ``(B, H, W, C)``; context: ``(B, H', W', Ca)`` or ``(B, L, Ca)``; context_mask: ``(B, L)`` bool,
    True = padding (token sequences only). Returns ``(B, H, W, C)``."""
    check_rank("SpatialCrossAttention query map", x, 4, "B, H, W, C")
    check_rank("SpatialCrossAttention context", context, (3, 4), "B, H', W', Ca or B, L, Ca")
    if context.shape[0] != x.shape[0]:
      raise ShapeError(f"SpatialCrossAttention: context batch {context.shape[0]} != query batch {x.shape[0]}")
    b, h, w, c = x.shape
    if context.ndim == 3:
      context = context[:, :, None, :]
    tokens = context.shape[1] * context.shape[2]
    _check_mask("SpatialCrossAttention", context_mask, b, tokens)
    dqk = self.qk_features or c
    conv = lambda n, name: nn.Conv(n, (1, 1), dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    q = conv(dqk, "query")(x).reshape(b, h * w, dqk)
    k = conv(dqk, "key")(context).reshape(b, tokens, dqk)
    v = conv(c, "value")(context).reshape(b, tokens, c)
    logits = jnp.einsum("bqd,bkd->bqk", q.astype(jnp.float32), k.astype(jnp.float32))
    if self.scaled:
      logits = logits / np.sqrt(dqk)
    weights = nn.softmax(_mask_logits(logits, context_mask), axis=-1)
    self.sow("intermediates", "attention_weights", weights)
    fused = jnp.einsum("bqk,bkc->bqc", weights.astype(self.dtype), v).reshape(b, h, w, c)
    gamma = self.param("gamma", nn.initializers.constant(self.gamma_init), (), self.param_dtype)
    return (x + gamma.astype(self.dtype) * fused).astype(self.dtype)
