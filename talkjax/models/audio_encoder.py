"""Wav2Lip's mel-spectrogram encoder, reusable (Wav2Lip generator, expert SyncNet, DCK U-Net, IP_LAP).

Input: mel windows ``(N, 80, 16, 1)`` float32: H = 80 mel bins (low to high), W = 16 mel frames
(0.2 s at 80 frames/s), one channel: PyTorch's ``(N, 1, 80, 16)`` in NHWC, values as produced by
the Wav2Lip front end (``talkjax.audio.melspectrogram``, range [-4, 4]). Output: the ``(N, 1, 1, 512)``
feature map (reshape to ``(N, 512)`` for a vector).

The layer table (NOTES.md "Wav2Lip generator")::

  32 k3          +2R   (80x16)
  64 stride(3,1) +2R   (27x16)
  128 stride 3   +2R   (9x6)
  256 stride(3,2) +nR  (3x3)    n = 1 in the generator, 2 in the expert SyncNet
  512 k3 p0            (1x1)
  512 k1               activation: ReLU (Wav2Lip) or tanh (IP_LAP's landmark generator)

Blocks are named ``block_{i}`` with ``i`` the index in PyTorch's ``nn.Sequential``, so the key
``audio_encoder.{i}.conv_block.0.weight`` maps onto ``audio_encoder/block_{i}/conv/kernel``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkjax.nn.conv_blocks import ACTIVATIONS, ConvBNAct

MEL_BINS = 80
MEL_STEPS = 16


def audio_encoder_layers(residuals_at_256: int = 1, width_divisor: int = 1,
                         out_features: int | None = None) -> list[dict]:
  """The encoder's blocks in PyTorch order, as ``ConvBNAct`` keyword arguments.

  ``out_features`` sets the width of the last (1x1) block alone; default ``512 // width_divisor``.
  """
  def w(c):
    return max(1, c // width_divisor)
  layers = [dict(features=w(32), kernel_size=3, strides=1, padding=1)]
  layers += [dict(features=w(32), kernel_size=3, strides=1, padding=1, residual=True)] * 2
  layers += [dict(features=w(64), kernel_size=3, strides=(3, 1), padding=1)]
  layers += [dict(features=w(64), kernel_size=3, strides=1, padding=1, residual=True)] * 2
  layers += [dict(features=w(128), kernel_size=3, strides=3, padding=1)]
  layers += [dict(features=w(128), kernel_size=3, strides=1, padding=1, residual=True)] * 2
  layers += [dict(features=w(256), kernel_size=3, strides=(3, 2), padding=1)]
  layers += [dict(features=w(256), kernel_size=3, strides=1, padding=1, residual=True)] * residuals_at_256
  layers += [dict(features=w(512), kernel_size=3, strides=1, padding=0)]
  layers += [dict(features=out_features or w(512), kernel_size=1, strides=1, padding=0)]
  return layers


class AudioEncoder(nn.Module):
  """Wav2Lip's audio encoder: ``(N, 80, 16, 1)`` mel windows -> ``(N, 1, 1, 512)`` features.

  Attributes:
    residuals_at_256: residual blocks at width 256 (generator and IP_LAP: 1, expert SyncNet: 2).
    final_activation: activation of the last block, one of ``relu`` (Wav2Lip), ``tanh`` (IP_LAP's
      mel encoder, where Tanh replaces the last ReLU) or ``none``.
    width_divisor: divide every width by this (tiny test variants only; checkpoints need 1).
    out_features: width of the last (1x1) block, the output; None: ``512 // width_divisor``. A
      network whose audio branch is wider than its other branch keeps their embeddings the same size.
    dtype: computation dtype.
  """
  residuals_at_256: int = 1
  final_activation: str = "relu"
  width_divisor: int = 1
  out_features: int | None = None
  dtype: Any = jnp.float32

  def setup(self):
    if self.final_activation not in ACTIVATIONS:
      raise ValueError(f"AudioEncoder.final_activation: unknown {self.final_activation!r}; "
                       f"valid: {', '.join(ACTIVATIONS)}")
    layers = audio_encoder_layers(self.residuals_at_256, self.width_divisor, self.out_features)
    layers[-1] = dict(layers[-1], activation=self.final_activation)
    self.block = [ConvBNAct(**kw, dtype=self.dtype) for kw in layers]

  def __call__(self, mel: jax.Array, train: bool = False) -> jax.Array:
    if mel.ndim != 4 or mel.shape[-1] != 1:
      raise ValueError(f"mel: expected (N, {MEL_BINS}, {MEL_STEPS}, 1) windows (NHWC, one channel), "
                       f"got shape {tuple(mel.shape)}")
    x = mel
    for blk in self.block:
      x = blk(x, train=train)
    return x
