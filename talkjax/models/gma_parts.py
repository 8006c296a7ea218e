"""Building blocks of RAFT-GMA (see :mod:`talkjax.models.gma` for the full network).

Everything is NHWC. Layer and parameter names follow the public PyTorch code (zacjiang/GMA, which
builds on princeton-vl/RAFT) so that ``third_party/converters/gma.py`` is a plain renaming:
``fnet``/``cnet`` (:class:`BasicEncoder`), ``att`` (:class:`GlobalAttention`), ``update_block``
(:class:`GMAUpdateBlock`). Sequential indices become suffixes (``layer2.0`` -> ``layer2_0``,
``mask.2`` -> ``mask_2``).

Correlation numerics follow RAFT's ``CorrBlock``: all-pairs dot products / sqrt(C), a 2x2 average-pool
pyramid, and a bilinear lookup of a (2r+1)^2 window around each coordinate with zero outside the map
(what ``grid_sample(..., align_corners=True)`` computes). The lookup here is written with gathers in
pixel coordinates; see :func:`lookup_correlation` for the one deliberate difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkjax.errors import ConfigError

HIDDEN_DIM = 128    # GRU state channels (tanh half of the context encoder output)
CONTEXT_DIM = 128   # context features (relu half), also the attention input width
FEATURE_DIM = 256   # matching features from fnet
UPSAMPLE = 8        # the network works at 1/8 resolution
ATTENTION_VARIANTS = ("content", "position_only", "position_and_content")

# PyTorch's default Conv2d init (kaiming_uniform with a=sqrt(5)) is uniform(+-1/sqrt(fan_in)).
_TORCH_DEFAULT_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# RAFT's encoders re-initialise their convolutions with kaiming_normal(mode="fan_out", relu).
_ENCODER_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(features: int, kernel: int | tuple[int, int], *, name: str, stride: int = 1,
          use_bias: bool = True, init: Any = _TORCH_DEFAULT_INIT, precision: Any = None) -> nn.Conv:
  """A PyTorch-style conv: symmetric explicit padding of kernel//2 (odd kernels), stride as given."""
  kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
  padding = ((kh // 2, kh // 2), (kw // 2, kw // 2))
  return nn.Conv(features, (kh, kw), strides=(stride, stride), padding=padding, use_bias=use_bias,
                 kernel_init=init, bias_init=nn.initializers.zeros, precision=precision, name=name)


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
  """``nn.InstanceNorm2d`` without affine parameters: per sample and channel over H, W (biased var)."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  centred = x - mean
  var = jnp.mean(jnp.square(centred), axis=(1, 2), keepdims=True)
  return centred * jax.lax.rsqrt(var + eps)


def _norm(kind: str, name: str, x: jax.Array, train: bool) -> jax.Array:
  if kind == "instance":
    return instance_norm(x)
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)(x)


class ResidualBlock(nn.Module):
  """RAFT's ResidualBlock: two 3x3 convs with norm + ReLU, 1x1 strided shortcut when stride > 1.

  PyTorch registers the shortcut's norm twice (``norm3`` and ``downsample.1``); here it is ``norm3``.
  """
  planes: int
  norm: str
  stride: int = 1
  precision: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    def conv(features, kernel, name, stride=1):
      return _conv(features, kernel, name=name, stride=stride, init=_ENCODER_INIT, precision=self.precision)

    y = nn.relu(_norm(self.norm, "norm1", conv(self.planes, 3, "conv1", self.stride)(x), train))
    y = nn.relu(_norm(self.norm, "norm2", conv(self.planes, 3, "conv2")(y), train))
    if self.stride != 1:
      x = _norm(self.norm, "norm3", conv(self.planes, 1, "downsample", self.stride)(x), train)
    return nn.relu(x + y)


class BasicEncoder(nn.Module):
  """RAFT's BasicEncoder: 7x7/2 conv 64, residual stages 64, 96 (/2), 128 (/2), 1x1 conv -> output_dim.

  Attributes:
    output_dim: channels of the 1/8-resolution output (256 for both GMA encoders).
    norm: ``"instance"`` (feature encoder ``fnet``) or ``"batch"`` (context encoder ``cnet``).
  """
  output_dim: int
  norm: str
  precision: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.norm not in ("instance", "batch"):
      raise ConfigError(f"BasicEncoder.norm must be 'instance' or 'batch', got {self.norm!r}")
    x = _conv(64, 7, name="conv1", stride=2, init=_ENCODER_INIT, precision=self.precision)(x)
    x = nn.relu(_norm(self.norm, "norm1", x, train))
    for stage, (planes, stride) in enumerate(((64, 1), (96, 2), (128, 2)), start=1):
      x = ResidualBlock(planes, self.norm, stride, self.precision, name=f"layer{stage}_0")(x, train)
      x = ResidualBlock(planes, self.norm, 1, self.precision, name=f"layer{stage}_1")(x, train)
    return _conv(self.output_dim, 1, name="conv2", init=_ENCODER_INIT, precision=self.precision)(x)


# --- correlation volume -----------------------------------------------------------------------

def correlation_pyramid(fmap1: jax.Array, fmap2: jax.Array, num_levels: int = 4,
                        precision: Any = None) -> list[jax.Array]:
  """All-pairs correlation of two (B, h, w, C) feature maps and its average-pooled pyramid.

  Returns ``num_levels`` arrays of shape (B*h*w, h2_l, w2_l): for every pixel of ``fmap1`` a map over
  ``fmap2`` pooled 2**l times (2x2 windows, stride 2, odd remainders dropped like ``avg_pool2d``).
  """
  b, h, w, c = fmap1.shape
  corr = jnp.einsum("bijc,bklc->bijkl", fmap1, fmap2, precision=precision) / math.sqrt(c)
  corr = corr.reshape(b * h * w, h, w)
  pyramid = [corr]
  for _ in range(num_levels - 1):
    n, hh, ww = corr.shape
    corr = corr[:, :hh // 2 * 2, :ww // 2 * 2].reshape(n, hh // 2, 2, ww // 2, 2).mean(axis=(2, 4))
    pyramid.append(corr)
  return pyramid


def lookup_correlation(pyramid: Sequence[jax.Array], coords: jax.Array, radius: int = 4) -> jax.Array:
  """Bilinear samples of each pyramid level on a (2r+1)^2 grid of unit offsets around ``coords``.

  Args:
    pyramid: from :func:`correlation_pyramid`, level 0 of shape (B*h*w, h, w).
    coords: (B, h, w, 2) pixel coordinates ``(x, y)`` in level-0 units (divided by 2**l per level).
    radius: r; 4 in GMA, giving 81 values per level.

  Returns:
    (B, h, w, levels*(2r+1)^2). Within a level, channel ``i*(2r+1) + j`` holds the sample at
    ``(x + i - r, y + j - r)``: RAFT builds its offsets with ``meshgrid(dy, dx)`` and adds them to
    ``(x, y)``, so the x offset is the slow index; trained weights depend on this order.

  Samples outside the map are 0 (``grid_sample``'s zero padding, corner by corner). All samples of
  one pixel share the fractional part of the centre, so one (2r+2)^2 gather per level and pixel plus
  four shared weights give all (2r+1)^2 bilinear values. RAFT maps pixel coordinates to [-1, 1]
  with ``2x/(W-1) - 1``, which is 0/0 for a level of width or height 1 and makes PyTorch GMA return
  NaN for inputs under 128 px; here sampling is in pixel coordinates, so such a level reads its single
  value with the usual bilinear weights (the value PyTorch would give if it did not divide by zero).
  """
  b, h, w, _ = coords.shape
  n = b * h * w
  size = 2 * radius + 1
  offsets = jnp.arange(-radius, radius + 2, dtype=jnp.int32)  # 2r+2 integer taps
  xy = coords.reshape(n, 2)
  out = []
  for level, corr in enumerate(pyramid):
    _, hl, wl = corr.shape
    centre = xy / float(2 ** level)
    # Clipping keeps the int conversion defined for wild coordinates without changing any sample:
    # a centre this far out has its whole window outside the map either way.
    x = jnp.clip(centre[:, 0], -radius - 2.0, wl + radius + 1.0)
    y = jnp.clip(centre[:, 1], -radius - 2.0, hl + radius + 1.0)
    x0, y0 = jnp.floor(x), jnp.floor(y)
    fx, fy = (x - x0)[:, None, None], (y - y0)[:, None, None]
    cols = x0.astype(jnp.int32)[:, None] + offsets  # (n, 2r+2)
    rows = y0.astype(jnp.int32)[:, None] + offsets
    inside = (((rows >= 0) & (rows < hl))[:, :, None]) & (((cols >= 0) & (cols < wl))[:, None, :])
    flat = jnp.clip(rows, 0, hl - 1)[:, :, None] * wl + jnp.clip(cols, 0, wl - 1)[:, None, :]
    window = jnp.take_along_axis(corr.reshape(n, hl * wl), flat.reshape(n, -1), axis=1)
    window = jnp.where(inside, window.reshape(n, size + 1, size + 1), 0.0)  # [n, row, col]
    top = window[:, :-1, :-1] * (1.0 - fx) + window[:, :-1, 1:] * fx
    bottom = window[:, 1:, :-1] * (1.0 - fx) + window[:, 1:, 1:] * fx
    samples = top * (1.0 - fy) + bottom * fy  # [n, y offset, x offset]
    out.append(jnp.swapaxes(samples, 1, 2).reshape(b, h, w, size * size))
  return jnp.concatenate(out, axis=-1)


def coords_grid(batch: int, h: int, w: int, dtype: Any = jnp.float32) -> jax.Array:
  """(batch, h, w, 2) pixel coordinates, channel 0 = x (column), channel 1 = y (row)."""
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=dtype), jnp.arange(w, dtype=dtype), indexing="ij")
  return jnp.broadcast_to(jnp.stack([xs, ys], axis=-1), (batch, h, w, 2))


def convex_upsample(flow: jax.Array, mask: jax.Array, factor: int = UPSAMPLE) -> jax.Array:
  """RAFT's learned convex upsampling: (B, h, w, 2) flow + (B, h, w, 9*f*f) logits -> (B, f*h, f*w, 2).

  Each output pixel ``(f*i + a, f*j + b)`` is a softmax-weighted mix of the 3x3 neighbourhood of
  ``factor * flow`` around ``(i, j)`` (zero outside); logit channel ``k*f*f + a*f + b`` belongs to
  neighbour ``k = 3*dy + dx``.
  """
  b, h, w, _ = flow.shape
  weights = jax.nn.softmax(mask.reshape(b, h, w, 9, factor, factor), axis=3)
  padded = jnp.pad(factor * flow, ((0, 0), (1, 1), (1, 1), (0, 0)))
  neighbours = jnp.stack([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=3)
  # A multiply-add rather than an einsum: it must not become a reduced-precision matmul on GPU/TPU.
  up = jnp.sum(weights[..., None] * neighbours[:, :, :, :, None, None, :], axis=3)  # (b, h, w, f, f, 2)
  return up.transpose(0, 1, 3, 2, 4, 5).reshape(b, factor * h, factor * w, 2)


# --- global motion aggregation ------------------------------------------------------------------

class RelPosEmb(nn.Module):
  """GMA's relative positional scores: q . (e_h[u - x] + e_w[v - y]) for query (x, y), key (u, v)."""
  max_pos_size: int
  dim_head: int
  precision: Any = None

  @nn.compact
  def __call__(self, q: jax.Array) -> jax.Array:
    """(B, h, w, heads, d) scaled queries -> (B, heads, h, w, h, w) scores."""
    _, h, w, _, _ = q.shape
    m = self.max_pos_size
    if h > m or w > m:
      raise ConfigError(f"GMA positional attention covers at most {m}x{m} feature cells (inputs up to "
                        f"{8 * m} px); got {h}x{w}. Raise max_pos_size (the checkpoint fixes it)")
    init = nn.initializers.normal(1.0)  # nn.Embedding's default
    emb_h = nn.Embed(2 * m - 1, self.dim_head, embedding_init=init, name="rel_height")
    emb_w = nn.Embed(2 * m - 1, self.dim_head, embedding_init=init, name="rel_width")
    rel = lambda n: jnp.arange(n)[None, :] - jnp.arange(n)[:, None] + m - 1  # noqa: E731  [x, u] -> u - x
    eh, ew = emb_h(rel(h)), emb_w(rel(w))  # (h, h, d), (w, w, d)
    height = jnp.einsum("bxynd,xud->bnxyu", q, eh, precision=self.precision)
    width = jnp.einsum("bxynd,yvd->bnxyv", q, ew, precision=self.precision)
    return height[..., :, None] + width[..., None, :]


class GlobalAttention(nn.Module):
  """GMA's ``Attention``: softmax self-similarity of the context features, (B, heads, hw, hw).

  Attributes:
    variant: ``"content"`` (q.k; what the published checkpoints use), ``"position_only"`` or
      ``"position_and_content"`` (GMA's --position_only / --position_and_content ablations).
  """
  heads: int = 1
  dim_head: int = CONTEXT_DIM
  variant: str = "content"
  max_pos_size: int = 160
  precision: Any = None

  @nn.compact
  def __call__(self, fmap: jax.Array) -> jax.Array:
    if self.variant not in ATTENTION_VARIANTS:
      raise ConfigError(f"GMA attention variant must be one of {ATTENTION_VARIANTS}, got {self.variant!r}")
    b, h, w, _ = fmap.shape
    inner = self.heads * self.dim_head
    qk = _conv(2 * inner, 1, name="to_qk", use_bias=False, precision=self.precision)(fmap)
    q, k = jnp.split(qk, 2, axis=-1)
    q = q.reshape(b, h, w, self.heads, self.dim_head) * (self.dim_head ** -0.5)
    k = k.reshape(b, h, w, self.heads, self.dim_head)
    sim = jnp.zeros((), fmap.dtype)
    if self.variant != "position_only":
      sim = jnp.einsum("bxynd,buvnd->bnxyuv", q, k, precision=self.precision)
    if self.variant != "content":
      sim = sim + RelPosEmb(self.max_pos_size, self.dim_head, self.precision, name="pos_emb")(q)
    return jax.nn.softmax(sim.reshape(b, self.heads, h * w, h * w), axis=-1)


class Aggregate(nn.Module):
  """GMA's ``Aggregate``: fmap + gamma * attention-weighted values (gamma starts at 0)."""
  dim: int = 128
  heads: int = 1
  dim_head: int = 128
  precision: Any = None

  @nn.compact
  def __call__(self, attn: jax.Array, fmap: jax.Array) -> jax.Array:
    b, h, w, _ = fmap.shape
    inner = self.heads * self.dim_head
    v = _conv(inner, 1, name="to_v", use_bias=False, precision=self.precision)(fmap)
    v = v.reshape(b, h * w, self.heads, self.dim_head)
    out = jnp.einsum("bnij,bjnd->bind", attn, v, precision=self.precision).reshape(b, h, w, inner)
    if inner != self.dim:
      out = _conv(self.dim, 1, name="project", use_bias=False, precision=self.precision)(out)
    gamma = self.param("gamma", nn.initializers.zeros, (1,), jnp.float32)
    return fmap + gamma * out


# --- update block -----------------------------------------------------------------------------

class MotionEncoder(nn.Module):
  """RAFT's BasicMotionEncoder: correlation (2 convs) + flow (2 convs) -> 126 channels, then + flow."""
  precision: Any = None

  @nn.compact
  def __call__(self, flow: jax.Array, corr: jax.Array) -> jax.Array:
    def conv(features, kernel, name):
      return _conv(features, kernel, name=name, precision=self.precision)

    cor = nn.relu(conv(256, 1, "convc1")(corr))
    cor = nn.relu(conv(192, 3, "convc2")(cor))
    flo = nn.relu(conv(128, 7, "convf1")(flow))
    flo = nn.relu(conv(64, 3, "convf2")(flo))
    out = nn.relu(conv(128 - 2, 3, "conv")(jnp.concatenate([cor, flo], axis=-1)))
    return jnp.concatenate([out, flow], axis=-1)


class SepConvGRU(nn.Module):
  """RAFT's separable ConvGRU: a 1x5 (horizontal) GRU step, then a 5x1 (vertical) one."""
  hidden_dim: int = HIDDEN_DIM
  precision: Any = None

  @nn.compact
  def __call__(self, h: jax.Array, x: jax.Array) -> jax.Array:
    for suffix, kernel in (("1", (1, 5)), ("2", (5, 1))):
      convz, convr, convq = (_conv(self.hidden_dim, kernel, name=gate + suffix, precision=self.precision)
                             for gate in ("convz", "convr", "convq"))
      hx = jnp.concatenate([h, x], axis=-1)
      z = jax.nn.sigmoid(convz(hx))
      r = jax.nn.sigmoid(convr(hx))
      q = jnp.tanh(convq(jnp.concatenate([r * h, x], axis=-1)))
      h = (1.0 - z) * h + z * q
    return h


class FlowHead(nn.Module):
  """Two 3x3 convs (ReLU between) from the GRU state to a flow update (dx, dy)."""
  hidden_dim: int = 256
  precision: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.relu(_conv(self.hidden_dim, 3, name="conv1", precision=self.precision)(x))
    return _conv(2, 3, name="conv2", precision=self.precision)(x)


class GMAUpdateBlock(nn.Module):
  """GMA's update block: motion features, their global aggregate, ConvGRU, flow head, upsampling mask.

  ``update(net, inp, corr, flow, attention)`` returns ``(net, mask, delta_flow)`` with the mask already
  scaled by 0.25 (RAFT's gradient balancing).
  """
  heads: int = 1
  precision: Any = None

  def setup(self):
    p = self.precision
    self.encoder = MotionEncoder(p)
    self.aggregator = Aggregate(dim=128, heads=self.heads, dim_head=128, precision=p)
    self.gru = SepConvGRU(HIDDEN_DIM, p)
    self.flow_head = FlowHead(256, p)
    self.mask_0 = _conv(256, 3, name="mask_0", precision=p)
    self.mask_2 = _conv(UPSAMPLE * UPSAMPLE * 9, 1, name="mask_2", precision=p)

  def update(self, net, inp, corr, flow, attention):
    motion = self.encoder(flow, corr)
    motion_global = self.aggregator(attention, motion)
    net = self.gru(net, jnp.concatenate([inp, motion, motion_global], axis=-1))
    delta_flow = self.flow_head(net)
    mask = 0.25 * self.mask_2(nn.relu(self.mask_0(net)))
    return net, mask, delta_flow

  def __call__(self, net, inp, corr, flow, attention):
    return self.update(net, inp, corr, flow, attention)


class RefinementStep(GMAUpdateBlock):
  """One RAFT iteration, the body of the ``nn.scan`` over iterations (params shared by broadcast).

  Carry ``(net, coords1, mask)``; broadcast inputs ``(pyramid, coords0, inp, attention)``. Like RAFT,
  ``coords1`` is detached before each lookup, so gradients reach the images through the correlation
  values, the context features and the update of the current step, never through earlier estimates.
  Emits the upsampled flow of this iteration when ``emit_all`` (for sequence losses), else nothing.
  """
  radius: int = 4
  emit_all: bool = False

  def __call__(self, carry, pyramid, coords0, inp, attention):  # pylint: disable=arguments-renamed
    net, coords1, _ = carry
    coords1 = jax.lax.stop_gradient(coords1)
    corr = lookup_correlation(pyramid, coords1, self.radius)
    net, mask, delta_flow = self.update(net, inp, corr, coords1 - coords0, attention)
    coords1 = coords1 + delta_flow
    emitted = convex_upsample(coords1 - coords0, mask) if self.emit_all else None
    return (net, coords1, mask), emitted


def pad_amounts(height: int, width: int, mode: str = "sintel",
                multiple: int = UPSAMPLE) -> tuple[tuple[int, int], tuple[int, int]]:
  """RAFT's InputPadder amounts ``((top, bottom), (left, right))`` to reach a multiple of ``multiple``.

  ``"sintel"`` splits the padding between both sides (the extra pixel goes bottom/right); ``"kitti"``
  pads the height at the bottom only.
  """
  if mode not in ("sintel", "kitti"):
    raise ConfigError(f"GMA pad_mode must be 'sintel' or 'kitti', got {mode!r}")
  pad_h, pad_w = (-height) % multiple, (-width) % multiple
  vertical = (pad_h // 2, pad_h - pad_h // 2) if mode == "sintel" else (0, pad_h)
  return vertical, (pad_w // 2, pad_w - pad_w // 2)
