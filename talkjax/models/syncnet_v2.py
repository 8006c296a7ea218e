"""joonson's SyncNet (Chung & Zisserman 2016, ``syncnet_v2.model``): the network behind LSE-C / LSE-D.

Two towers with 1024-d embeddings that are **not** normalised (LSE-D is a Euclidean distance
between raw embeddings):

- ``embed_audio(mfcc)``: ``(N, 13, 20, 1)``: H = 13 MFCC coefficients (python_speech_features
  defaults on 16 kHz int16-scaled audio), W = 20 steps of 10 ms (0.2 s = 5 video frames at 25 fps),
  one channel: PyTorch's ``(N, 1, 13, 20)`` in NHWC;
- ``embed_face(video)``: ``(N, 5, 224, 224, 3)``: 5 consecutive frames, **BGR**, raw 0..255 (cv2
  frames, no normalisation): PyTorch's ``(N, 3, 5, 224, 224)`` as NDHWC;
- ``__call__(mfcc, video)`` returns ``(audio_embedding, face_embedding)``.

The lip tower's first Conv3d (k 5x7x7) consumes all 5 frames, so every later layer sees one frame:
those depth-1 Conv3d/MaxPool3d layers run as their 2-D equivalents (same numbers, faster on XLA),
with their kernels stored 2-D. Layer table: NOTES.md "joonson SyncNet".

On CPU the first convolution (3 input channels, 5x7x7 kernel, stride 2) is where XLA:CPU's
convolution is weakest (several times slower than oneDNN for so few input channels); there it runs
as one matrix product over a space-to-depth view of the frames instead (:func:`_first_lip_conv_cpu`,
same sums in a different order; about 35 MB of temporaries per window). Other platforms use the
plain convolution.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from talkjax.nn.conv_blocks import BatchNorm, conv_general_dilated, torch_bias_init, torch_kernel_init

MFCC_COEFFS = 13
MFCC_STEPS = 20
VIDEO_FRAMES = 5
VIDEO_SIZE = 224
EMBED_DIM = 1024


def _conv(features, kernel, strides=1, padding=0, fan_in=1, name=None, dtype=jnp.float32):
  nd = len(kernel)
  strides = (strides,) * nd if isinstance(strides, int) else strides
  padding = (padding,) * nd if isinstance(padding, int) else padding
  return nn.Conv(features, kernel, strides=strides, padding=[(p, p) for p in padding], dtype=dtype,
                 kernel_init=torch_kernel_init(), bias_init=torch_bias_init(fan_in),
                 conv_general_dilated=conv_general_dilated, name=name)


def _bn(train: bool, name: str, dtype):
  return functools.partial(BatchNorm(dtype=dtype, name=name), train=train)


def _max_pool(x, window, strides, padding=(0, 0)):
  # PyTorch pads max pooling with -inf; so does nn.max_pool.
  return nn.max_pool(x, window, strides, padding=[(p, p) for p in padding])


class _AudioCNN(nn.Module):
  """``netcnnaud``: 13x20 MFCC window -> 1x1x512."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    def cbr(x, i, c, k, p):
      x = _conv(c, k, 1, p, fan_in=x.shape[-1] * k[0] * k[1], name=f"conv_{i}", dtype=self.dtype)(x)
      return nn.relu(_bn(train, f"bn_{i}", self.dtype)(x))
    x = cbr(x, 1, 64, (3, 3), 1)
    x = cbr(x, 2, 192, (3, 3), 1)                  # (the 1x1 max pool before it is the identity)
    x = _max_pool(x, (3, 3), (1, 2))               # 11x9
    x = cbr(x, 3, 384, (3, 3), 1)
    x = cbr(x, 4, 256, (3, 3), 1)
    x = cbr(x, 5, 256, (3, 3), 1)
    x = _max_pool(x, (3, 3), (2, 2))               # 5x4
    return cbr(x, 6, 512, (5, 4), 0)               # 1x1


def _first_lip_conv_xla(x: jax.Array, w: jax.Array) -> jax.Array:
  """Conv3d k(5,7,7) s(1,2,2), no padding, over exactly 5 frames: (N, 5, H, W, 3) -> (N, H', W', O)."""
  y = lax.conv_general_dilated(x, w, (1, 2, 2), "VALID", dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
  return y[:, 0]


def _first_lip_conv_cpu(x: jax.Array, w: jax.Array) -> jax.Array:
  """The same convolution as one GEMM (XLA:CPU runs a 3-channel 7x7 conv several times slower).

  Fold the 5 frames into channels (15) and pairs of columns and rows into channels (space-to-depth
  by 2), so the stride-2 7x7 kernel (zero-padded to 8x8) becomes a stride-1 4x4 one over 60
  channels. The 4 column taps are gathered into channels (240), one GEMM computes the
  contribution of all 4 row taps at once (240 x 4*O), and shifted row slices are summed.
  """
  n, d, h, wd, c = x.shape
  kd, kh, kw, _, o = w.shape
  oh, ow = (h - kh) // 2 + 1, (wd - kw) // 2 + 1
  th, tw = -(-kh // 2), -(-kw // 2)              # taps after space-to-depth (4, 4)
  hp, wp = 2 * (oh + th - 1), 2 * (ow + tw - 1)  # rows/cols the taps touch (even)
  x = jnp.pad(x, ((0, 0), (0, 0), (0, max(0, hp - h)), (0, max(0, wp - wd)), (0, 0)))[:, :, :hp, :wp]
  # (n, Y, p, X, (dx, d, c)): row 2Y+p, column 2X+dx.
  x = jnp.transpose(x, (0, 2, 3, 1, 4)).reshape(n, hp // 2, 2, wp // 2, 2 * d * c)
  # Gather the column taps: (n, Y, ow, (p, tx, dx, d, c)).
  cols = jnp.stack([x[:, :, :, t:t + ow] for t in range(tw)], axis=3)      # (n, Y, p, tw, ow, 2dc)
  cols = jnp.transpose(cols, (0, 1, 4, 2, 3, 5)).reshape(n, hp // 2, ow, 2 * tw * 2 * d * c)
  # Kernel (kd, kh, kw, c, o) -> rows i = 2q+p, cols j = 2tx+dx -> (p, tx, dx, d, c) x (q, o).
  k = jnp.pad(w, ((0, 0), (0, 2 * th - kh), (0, 2 * tw - kw), (0, 0), (0, 0)))
  k = k.reshape(kd, th, 2, tw, 2, c, o)                                   # (d, q, p, tx, dx, c, o)
  k = jnp.transpose(k, (2, 3, 4, 0, 5, 1, 6)).reshape(2 * tw * 2 * d * c, th * o)
  y = (cols @ k).reshape(n, hp // 2, ow, th, o)
  return sum(y[:, q:q + oh, :, q] for q in range(th))


class _FirstLipConv(nn.Module):
  """``netcnnlip.0``: Conv3d(3, 96, k(5,7,7), s(1,2,2)) whose single output frame is returned."""
  features: int = 96
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = (5, 7, 7)
    fan_in = x.shape[-1] * 5 * 7 * 7
    w = self.param("kernel", torch_kernel_init(), kernel + (x.shape[-1], self.features), jnp.float32)
    b = self.param("bias", torch_bias_init(fan_in), (self.features,), jnp.float32)
    x, w, b = nn.dtypes.promote_dtype(x, w, b, dtype=self.dtype)
    return lax.platform_dependent(x, w, cpu=_first_lip_conv_cpu, default=_first_lip_conv_xla) + b


class _LipCNN(nn.Module):
  """``netcnnlip``: 5x224x224 BGR frames -> 1x1x512."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    # Conv3d k(5,7,7) s(1,2,2) over exactly 5 frames = one output frame.
    x = _FirstLipConv(96, dtype=self.dtype, name="conv_1")(x)   # (N, 109, 109, 96): depth is 1 from here on
    x = nn.relu(_bn(train, "bn_1", self.dtype)(x))
    x = _max_pool(x, (3, 3), (2, 2))               # 54

    def cbr(x, i, c, k, s, p):
      x = _conv(c, (k, k), s, p, fan_in=x.shape[-1] * k * k, name=f"conv_{i}", dtype=self.dtype)(x)
      return nn.relu(_bn(train, f"bn_{i}", self.dtype)(x))
    x = cbr(x, 2, 256, 5, 2, 1)                    # 26
    x = _max_pool(x, (3, 3), (2, 2), (1, 1))       # 13
    x = cbr(x, 3, 256, 3, 1, 1)
    x = cbr(x, 4, 256, 3, 1, 1)
    x = cbr(x, 5, 256, 3, 1, 1)
    x = _max_pool(x, (3, 3), (2, 2))               # 6
    return cbr(x, 6, 512, 6, 1, 0)                 # 1


class _FC(nn.Module):
  """``netfcaud`` / ``netfclip``: Linear 512->512, BatchNorm1d, ReLU, Linear 512->dim."""
  features: int = EMBED_DIM
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    x = nn.Dense(512, dtype=self.dtype, kernel_init=torch_kernel_init(),
                 bias_init=torch_bias_init(x.shape[-1]), name="dense_1")(x)
    x = nn.relu(_bn(train, "bn", self.dtype)(x))
    return nn.Dense(self.features, dtype=self.dtype, kernel_init=torch_kernel_init(),
                    bias_init=torch_bias_init(512), name="dense_2")(x)


class SyncNetV2(nn.Module):
  """joonson SyncNet; see the module docstring for inputs. Embeddings are float32, unnormalised.

  Attributes:
    embedding_dim: output size of both towers (``num_layers_in_fc_layers``; 1024 in the checkpoint).
    dtype: computation dtype.
  """
  embedding_dim: int = EMBED_DIM
  dtype: Any = jnp.float32

  def setup(self):
    self.audio_cnn = _AudioCNN(dtype=self.dtype)
    self.audio_fc = _FC(self.embedding_dim, dtype=self.dtype)
    self.lip_cnn = _LipCNN(dtype=self.dtype)
    self.lip_fc = _FC(self.embedding_dim, dtype=self.dtype)

  def embed_audio(self, mfcc: jax.Array, train: bool = False) -> jax.Array:
    if mfcc.ndim != 4 or tuple(mfcc.shape[1:]) != (MFCC_COEFFS, MFCC_STEPS, 1):
      raise ValueError(f"mfcc: expected (N, {MFCC_COEFFS}, {MFCC_STEPS}, 1), got {tuple(mfcc.shape)}")
    x = self.audio_cnn(mfcc.astype(self.dtype), train)
    return self.audio_fc(x.reshape(x.shape[0], -1), train).astype(jnp.float32)

  def embed_face(self, video: jax.Array, train: bool = False) -> jax.Array:
    want = (VIDEO_FRAMES, VIDEO_SIZE, VIDEO_SIZE, 3)
    if video.ndim != 5 or tuple(video.shape[1:]) != want:
      raise ValueError(f"video: expected (N, {', '.join(map(str, want))}) BGR 0..255, "
                       f"got {tuple(video.shape)}")
    x = self.lip_cnn(video.astype(self.dtype), train)
    return self.lip_fc(x.reshape(x.shape[0], -1), train).astype(jnp.float32)

  def __call__(self, mfcc: jax.Array, video: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    return self.embed_audio(mfcc, train=train), self.embed_face(video, train=train)
