"""Paper 004's landmark-to-face renderer: alignment model + rendering model with lip and identity priors.

Wu et al., "Talking Face Generation with Lip and Identity Priors" (CAVW 2025), section 3.2, built on
IP_LAP's renderer (:mod:`talkjax.models.iplap_renderer`). One frame ``t`` is rendered from the occluded
target ``I_t^m`` (lower half zeroed), the ``2k + 1 = 5`` driving sketches ``L_{t-k..t+k}``, ``N``
reference frames with their sketches, ``N_l = 5`` lip references and the frame's mel window.

Alignment model ``M_a`` (:class:`AlignmentModel`, paper Figure 2)
  ``E_r`` (``ref_encoder``) encodes each ``concat(I_i^r, L_i^r)`` at two resolutions, ``f^{r1}`` (S)
  and ``f^{r2}`` (S/2); ``E_m`` (``face_encoder``) encodes ``I_t^m`` the same way, ``f^{m1}``,
  ``f^{m2}``. Per reference, ``concat(f^{r2}_i, f^{m2})`` goes through a ResBlock fusion module
  (``fusion``), two IP_LAP SPADE blocks conditioned on the driving sketches, PixelShuffle(2) and a third
  SPADE block, then a dense flow ``F_i`` (pixels) and a spatial weight ``w_i`` (sigmoid). The image and
  both feature levels are warped and aggregated, ``sum_i w_i F_i(x_i) / (sum_i w_i + 1e-5)``, and
  concatenated with the occluded face's: ``I^c = concat(I_t^m, I^r)``, ``f^{cx} = concat(f^{mx}, f^{rx})``.

Rendering model ``M_r`` (:class:`RenderingModel`, Figures 3 and 4)
  ``face_encoder`` encodes ``concat(I_t^m, L_{t-k..t+k})`` (IP_LAP's translation input, 18 channels) to
  ``f^m`` at S/2. Multi-reference lip module: ``lip_encoder`` encodes each ``concat(I_i^l, L_i^l)`` to
  ``f_i^l`` at S/2, ``lip_fusion`` (ResBlocks) fuses ``concat(f^m, f_i^l)`` into ``f_i`` and the lip
  prior is their average ``f = AVG(f_i)``. Audio-aware cross-attention (``cross_attention``,
  :class:`talkjax.nn.SpatialCrossAttention`): every pixel of ``f`` queries the audio through 1x1
  q/k/v convolutions. Decoder (``decoder``): SPADE(``f^{c2}``) at S/2 -> PixelShuffle(2) ->
  SPADE(``f^{c1}``) -> SPADE(``I^c``) -> LeakyReLU(0.2) -> conv 7x7 -> sigmoid.

Choices where the paper is silent (BUILD_NOTES.md has the reasons):

- Widths follow IP_LAP (``width`` 32 at S, ``features`` 256 at S/2, SPADE hidden 256); encoders are
  IP_LAP's ``conv 7x7 + BN + ReLU, conv 3x3 stride 2 + BN + ReLU``; a fusion module is a 3x3 conv from
  the concatenation to ``features`` (+ BN + ReLU) followed by ``fusion_blocks`` residual blocks
  ``conv-BN-ReLU-conv-BN (+ skip) -> ReLU``.
- Audio keys/values: the Wav2Lip audio encoder (IP_LAP's) stopped at its 3x3 stage, so the mel window
  gives 9 tokens (3 frequency bands x 3 time steps, width 256): a single 1x1x512 audio vector would be a
  single key and make the softmax trivially 1. The block is residual, ``f_g = f + gamma * attention``
  with ``gamma`` starting at 0 (SAGAN), and its logits are scaled by ``1/sqrt(d)``.
- Lip references: lower halves (rows ``>= H // 2``, the complement of the occlusion mask) of reference
  frames and the same lower halves of their sketches (lips, jaw and nose tip). When not given they are
  taken from the ``N`` references, ``num_lip_references`` at evenly spaced positions (the inference rule
  orders references by mouth opening, so they span the speaker's mouth shapes).
- The flow head is zero-initialised, so the alignment starts as the identity warp; the warp is the
  exact one (``p + flow(p)`` at every resolution), not IP_LAP's grid quirk (new model, no checkpoint).

Ablations (paper Table 1), each removing exactly its module's parameters:

- ``align=False`` (``no_ali``): no alignment model; the decoder keeps its shape, its conditions hold
  the rendering model's own encoder features of the occluded face (``f^{m1}``, ``f^{m2}`` slots) and
  ``I_t^m``, with zeros where the aligned references were.
- ``lip=False`` (``no_lip``): no lip encoder or lip fusion; ``f = f^m``.
- ``audio=False`` (``no_aud``): no audio encoder or cross-attention; ``f_g = f``; the output does not
  depend on the mel window.

Inputs are NHWC float32 RGB in [0, 1] (sketches as ``talkjax.landmarks.draw_sketch`` draws them, /255);
mel windows ``(B, 80, 16, 1)`` (IP_LAP centres the window on the target: offset -2 frames).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax.errors import ShapeError
from talkjax.models.audio_encoder import MEL_BINS, MEL_STEPS, audio_encoder_layers
from talkjax.models.iplap_renderer import WEIGHT_EPS, mask_lower_half_hard, stack_sketches, warp_features
from talkjax.nn import IPLAPSPADEBlock, SpatialCrossAttention, pixel_shuffle, resize_nearest
from talkjax.nn.conv_blocks import BatchNorm, ConvBNAct

NUM_LIP_REFERENCES = 5   # Paper 004 section 4.1 ("ref-lip set to 5") and Table 3.
NUM_SKETCHES = 5         # 2k + 1 with k = 2, IP_LAP's window.


class AlignmentOutput(NamedTuple):
  """What the alignment model returns (NHWC).

  Attributes:
    image: ``(B, H, W, 3)`` aggregated warped reference image ``I^r`` (the warp loss compares it with
      the target).
    guide: ``(B, H, W, 6)`` ``I^c = concat(I_t^m, I^r)``.
    features1: ``(B, H, W, 2 * width)`` ``f^{c1} = concat(f^{m1}, f^{r1})``.
    features2: ``(B, H/2, W/2, 2 * features)`` ``f^{c2} = concat(f^{m2}, f^{r2})``.
    flow: ``(B, N, H, W, 2)`` per-reference flow ``(dx, dy)`` in pixels.
    weight: ``(B, N, H, W, 1)`` per-reference weight in (0, 1).
  """
  image: jax.Array
  guide: jax.Array
  features1: jax.Array
  features2: jax.Array
  flow: jax.Array
  weight: jax.Array


class NoAlignment(NamedTuple):
  """Stands in for the alignment output without an alignment model (ablation ``no_ali``): no reference
  pixel reaches the decoder, so the "aggregated warped reference" is a black image."""
  image: jax.Array


class LipPriorOutput(NamedTuple):
  """The renderer's output: ``image`` ``(B, H, W, 3)`` in [0, 1] and the alignment output (None
  without the alignment model)."""
  image: jax.Array
  aligned: AlignmentOutput | None

  @property
  def warped(self) -> AlignmentOutput | NoAlignment:
    """The renderer family's name for the alignment output (``talkjax.tasks.renderer`` helpers read
    ``out.warped.image``); a black :class:`NoAlignment` without the alignment model."""
    return self.aligned if self.aligned is not None else NoAlignment(jnp.zeros_like(self.image))


def _conv(features: int, kernel: int, name: str, *, stride: int = 1, dtype: Any, **kwargs) -> nn.Conv:
  p = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((p, p), (p, p)), dtype=dtype,
                 name=name, **kwargs)


def _check(name: str, x: jax.Array, shape: tuple, layout: str) -> None:
  """``shape`` entries of None match anything."""
  if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
    raise ShapeError(f"{name}: expected {layout}, got shape {tuple(x.shape)}")


def lower_half(images: jax.Array) -> jax.Array:
  """Keeps rows ``>= H // 2`` (the region the occlusion mask hides) and zeroes the rest."""
  h = images.shape[-3]
  rows = (jnp.arange(h) >= h // 2).astype(images.dtype)
  return images * rows[:, None, None]


def lip_reference_indices(num_references: int, num_lip: int) -> np.ndarray:
  """``num_lip`` evenly spaced positions among ``num_references`` (repeats when there are fewer)."""
  if num_references < 1 or num_lip < 1:
    raise ShapeError(f"lip references: need >= 1 reference and >= 1 lip reference, got {num_references}, "
                     f"{num_lip}")
  return np.round(np.linspace(0, num_references - 1, num_lip)).astype(np.int64)


def lip_references(ref_images: jax.Array, ref_sketches: jax.Array, num_lip: int = NUM_LIP_REFERENCES
                   ) -> tuple[jax.Array, jax.Array]:
  """Lip references from ``(B, N, H, W, 3)`` references: lower halves of ``num_lip`` of them and of
  their sketches (:func:`lip_reference_indices`). Returns two ``(B, num_lip, H, W, 3)`` arrays."""
  idx = lip_reference_indices(ref_images.shape[1], num_lip)
  return lower_half(ref_images[:, idx]), lower_half(ref_sketches[:, idx])


class Encoder(nn.Module):
  """IP_LAP's two-level encoder: conv 7x7 (``width``) + BN + ReLU at full size, conv 3x3 stride 2
  (``features``) + BN + ReLU at half size. Returns both levels."""
  width: int
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    h1 = _conv(self.width, 7, "conv1", use_bias=False, dtype=self.dtype)(x.astype(self.dtype))
    h1 = nn.relu(BatchNorm(dtype=self.dtype, name="conv1_bn")(h1, train=train))
    h2 = _conv(self.features, 3, "conv2", stride=2, use_bias=False, dtype=self.dtype)(h1)
    h2 = nn.relu(BatchNorm(dtype=self.dtype, name="conv2_bn")(h2, train=train))
    return h1, h2


class ResFusion(nn.Module):
  """Feature fusion "built with Resblocks": conv 3x3 to ``features`` + BN + ReLU, then ``blocks``
  residual blocks ``relu(x + BN(conv(relu(BN(conv(x))))))``."""
  features: int
  blocks: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    def conv_bn(y, name):
      y = _conv(self.features, 3, name, use_bias=False, dtype=self.dtype)(y)
      return BatchNorm(dtype=self.dtype, name=f"{name}_bn")(y, train=train)

    x = nn.relu(conv_bn(x.astype(self.dtype), "conv_in"))
    for i in range(self.blocks):
      y = nn.relu(conv_bn(x, f"res{i}_conv1"))
      x = nn.relu(x + conv_bn(y, f"res{i}_conv2"))
    return x


class AudioTokens(nn.Module):
  """Wav2Lip's (IP_LAP's) mel encoder up to its 3x3 stage: ``(B, 80, 16, 1)`` -> ``(B, 3, 3, 256)``.

  The blocks are named as in :class:`talkjax.models.audio_encoder.AudioEncoder` (``block_{i}``), so the
  first blocks of a converted Wav2Lip/IP_LAP audio encoder fit; the two final blocks (3x3 valid conv
  to 1x1 and the 1x1 conv) are left out.
  """
  width_divisor: int = 1
  dtype: Any = jnp.float32

  def setup(self):
    layers = audio_encoder_layers(1, self.width_divisor)[:-2]
    self.block = [ConvBNAct(**kw, dtype=self.dtype) for kw in layers]

  def __call__(self, mel: jax.Array, train: bool = False) -> jax.Array:
    x = mel
    for blk in self.block:
      x = blk(x, train=train)
    return x


class AlignmentModel(nn.Module):
  """Paper 004's alignment model ``M_a`` (see the module docstring).

  Attributes:
    width: channels at full size (IP_LAP 32).
    features: channels at half size (IP_LAP 256; divisible by 4 for the PixelShuffle).
    spade_hidden: hidden width of the SPADE layers (IP_LAP 256).
    fusion_blocks: residual blocks of the fusion module.
    warp: ``"exact"`` or ``"iplap"`` (see ``talkjax.models.iplap_renderer.warp_features``).
    dtype: computation dtype.
  """
  width: int = 32
  features: int = 256
  spade_hidden: int = 256
  fusion_blocks: int = 2
  warp: str = "exact"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, masked_face: jax.Array, ref_images: jax.Array, ref_sketches: jax.Array,
               driving_sketches: jax.Array, train: bool = False) -> AlignmentOutput:
    """Args:
      masked_face: ``(B, H, W, 3)`` the occluded target ``I_t^m``.
      ref_images: ``(B, N, H, W, 3)`` references ``I_i^r``.
      ref_sketches: ``(B, N, H, W, 3)`` their sketches ``L_i^r``.
      driving_sketches: ``(B, H, W, 3T)`` the driving sketches stacked on channels (frame-major).
      train: BatchNorm in training mode.
    """
    b, n, h, w, _ = ref_images.shape
    x = jnp.concatenate([ref_images, ref_sketches], axis=-1).reshape(b * n, h, w, 6)
    r1, r2 = Encoder(self.width, self.features, self.dtype, name="ref_encoder")(x, train)
    m1, m2 = Encoder(self.width, self.features, self.dtype, name="face_encoder")(masked_face, train)

    # Example-major, reference-minor: row b*n + i is reference i of example b.
    fused = ResFusion(self.features, self.fusion_blocks, self.dtype, name="fusion")(
        jnp.concatenate([r2, jnp.repeat(m2, n, axis=0)], axis=-1), train)
    cond = jnp.repeat(driving_sketches.astype(self.dtype), n, axis=0)
    spade = lambda name: IPLAPSPADEBlock(self.spade_hidden, dtype=self.dtype, name=name)  # noqa: E731
    cond_half = resize_nearest(cond, fused.shape[1:3])
    y = spade("spade_1")(fused, cond_half)
    y = spade("spade_2")(y, cond_half)
    y = spade("spade_3")(pixel_shuffle(y, 2), cond)

    flow = _conv(2, 7, "flow", dtype=self.dtype, kernel_init=nn.initializers.zeros)(y).astype(jnp.float32)
    weight = nn.relu(_conv(self.width, 7, "weight_1", dtype=self.dtype)(y))
    weight = nn.sigmoid(_conv(1, 7, "weight_2", dtype=self.dtype)(weight)).astype(jnp.float32)

    def aggregate(v):
      """Warps (B*N, h, w, C) features by the flows and takes the weighted mean over references."""
      warped = warp_features(v, flow, self.warp).astype(jnp.float32)
      wgt = weight if v.shape[1:3] == (h, w) else resize_nearest(weight, v.shape[1:3])
      wgt = wgt.reshape((b, n) + wgt.shape[1:])
      warped = warped.reshape((b, n) + warped.shape[1:])
      return (jnp.sum(warped * wgt, axis=1) / (jnp.sum(wgt, axis=1) + WEIGHT_EPS)).astype(self.dtype)

    image = aggregate(ref_images.reshape(b * n, h, w, 3).astype(self.dtype))
    f1, f2 = aggregate(r1), aggregate(r2)
    guide = jnp.concatenate([masked_face.astype(self.dtype), image], axis=-1)
    return AlignmentOutput(image=image, guide=guide, features1=jnp.concatenate([m1, f1], axis=-1),
                           features2=jnp.concatenate([m2, f2], axis=-1),
                           flow=flow.reshape(b, n, h, w, 2), weight=weight.reshape(b, n, h, w, 1))


class RenderingModel(nn.Module):
  """Paper 004's rendering model ``M_r`` (see the module docstring).

  Attributes:
    width, features, spade_hidden, fusion_blocks: as in :class:`AlignmentModel`.
    lip: keep the multi-reference lip module (False: ablation ``no_lip``).
    audio: keep the audio-aware cross-attention (False: ablation ``no_aud``).
    audio_width_divisor: shrink the audio encoder (tiny/CPU variants).
    attention_scaled: scale the attention logits by ``1/sqrt(d)``.
    attention_gamma_init: initial residual scale of the cross-attention.
    dtype: computation dtype.
  """
  width: int = 32
  features: int = 256
  spade_hidden: int = 256
  fusion_blocks: int = 2
  lip: bool = True
  audio: bool = True
  audio_width_divisor: int = 1
  attention_scaled: bool = True
  attention_gamma_init: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, guide_input: jax.Array, lip_images: jax.Array | None, lip_sketches: jax.Array | None,
               mel: jax.Array, aligned: AlignmentOutput | None, train: bool = False) -> jax.Array:
    """Args:
      guide_input: ``(B, H, W, 3 + 3T)`` ``concat(I_t^m, L_{t-k..t+k})``.
      lip_images, lip_sketches: ``(B, L, H, W, 3)`` lip references (unused with ``lip=False``).
      mel: ``(B, 80, 16, 1)``.
      aligned: the alignment model's output, or None (ablation ``no_ali``).
      train: BatchNorm in training mode.

    Returns:
      ``(B, H, W, 3)`` in [0, 1].
    """
    masked_face = guide_input[..., :3]
    m1, fm = Encoder(self.width, self.features, self.dtype, name="face_encoder")(guide_input, train)

    feat = fm
    if self.lip:
      b, nl, h, w, _ = lip_images.shape
      x = jnp.concatenate([lip_images, lip_sketches], axis=-1).reshape(b * nl, h, w, 6)
      _, fl = Encoder(self.width, self.features, self.dtype, name="lip_encoder")(x, train)
      fused = ResFusion(self.features, self.fusion_blocks, self.dtype, name="lip_fusion")(
          jnp.concatenate([jnp.repeat(fm, nl, axis=0), fl], axis=-1), train)
      feat = jnp.mean(fused.reshape((b, nl) + fused.shape[1:]), axis=1)

    if self.audio:
      tokens = AudioTokens(self.audio_width_divisor, self.dtype, name="audio_encoder")(mel, train)
      feat = SpatialCrossAttention(scaled=self.attention_scaled, gamma_init=self.attention_gamma_init,
                                   dtype=self.dtype, name="cross_attention")(feat, tokens)

    if aligned is None:
      # Ablation no_ali: the decoder keeps its shape; the aligned-reference slots are empty.
      cond_img = jnp.concatenate([masked_face, jnp.zeros_like(masked_face)], axis=-1)
      cond1 = jnp.concatenate([m1, jnp.zeros_like(m1)], axis=-1)
      cond2 = jnp.concatenate([fm, jnp.zeros_like(fm)], axis=-1)
    else:
      cond_img, cond1, cond2 = aligned.guide, aligned.features1, aligned.features2

    spade = lambda name: IPLAPSPADEBlock(self.spade_hidden, dtype=self.dtype, name=name)  # noqa: E731
    y = spade("spade_1")(feat, cond2)
    y = pixel_shuffle(y, 2)
    y = spade("spade_2")(y, cond1)
    y = spade("spade_3")(y, cond_img)
    y = _conv(3, 7, "conv_out", dtype=self.dtype)(nn.leaky_relu(y, 0.2))
    return nn.sigmoid(y.astype(jnp.float32))


class LipPriorRenderer(nn.Module):
  """Paper 004's landmark-to-face generation model (alignment + rendering).

  Attributes:
    width: channels at full size (IP_LAP 32).
    features: channels at half size (IP_LAP 256; divisible by 4).
    spade_hidden: SPADE hidden width (IP_LAP 256).
    fusion_blocks: residual blocks in each fusion module.
    num_lip_references: lip references taken from the references when none are given (paper 5).
    align: keep the alignment model (False: ablation ``no_ali``).
    lip: keep the multi-reference lip module (False: ablation ``no_lip``).
    audio: keep the audio-aware cross-attention (False: ablation ``no_aud``).
    audio_width_divisor: shrink the audio encoder (tiny/CPU variants; 1 for IP_LAP's widths).
    attention_scaled, attention_gamma_init: see :class:`RenderingModel`.
    warp: ``"exact"`` (default) or ``"iplap"``.
    dtype: computation dtype.
  """
  width: int = 32
  features: int = 256
  spade_hidden: int = 256
  fusion_blocks: int = 2
  num_lip_references: int = NUM_LIP_REFERENCES
  align: bool = True
  lip: bool = True
  audio: bool = True
  audio_width_divisor: int = 1
  attention_scaled: bool = True
  attention_gamma_init: float = 0.0
  warp: str = "exact"
  dtype: Any = jnp.float32

  def setup(self):
    if self.features % 4:
      raise ShapeError(f"LipPriorRenderer: features ({self.features}) must be divisible by 4 "
                       "(PixelShuffle(2) follows)")
    if self.align:
      self.alignment = AlignmentModel(self.width, self.features, self.spade_hidden, self.fusion_blocks,
                                      self.warp, dtype=self.dtype)
    self.rendering = RenderingModel(self.width, self.features, self.spade_hidden, self.fusion_blocks,
                                    self.lip, self.audio, self.audio_width_divisor, self.attention_scaled,
                                    self.attention_gamma_init, dtype=self.dtype)

  def guiding_input(self, face: jax.Array, sketches: jax.Array) -> jax.Array:
    """``concat(face with its lower half zeroed, T sketches)`` (IP_LAP's translation input)."""
    return jnp.concatenate([mask_lower_half_hard(face), stack_sketches(sketches)], axis=-1)

  def __call__(self, face: jax.Array, sketches: jax.Array, ref_images: jax.Array, ref_sketches: jax.Array,
               mel: jax.Array, train: bool = False, lip_images: jax.Array | None = None,
               lip_sketches: jax.Array | None = None) -> LipPriorOutput:
    """Renders frame ``t`` of each example.

    Args:
      face: ``(B, H, W, 3)`` the target frame (its lower half is masked here).
      sketches: ``(B, T, H, W, 3)`` driving sketches centred on the target (T = 5).
      ref_images: ``(B, N, H, W, 3)`` reference frames (alignment).
      ref_sketches: ``(B, N, H, W, 3)`` their sketches.
      mel: ``(B, 80, 16, 1)`` the target's mel window.
      train: BatchNorm in training mode (the caller makes ``batch_stats`` mutable).
      lip_images, lip_sketches: ``(B, L, H, W, 3)`` lip references and their sketches (lower halves);
        default :func:`lip_references` of the references.

    Returns:
      :class:`LipPriorOutput`.
    """
    _check("face", face, (None, None, None, 3), "(B, H, W, 3)")
    b, h, w, _ = face.shape
    if h % 2 or w % 2:
      raise ShapeError(f"face: image size {h}x{w} must be even (a half-size level follows)")
    _check("sketches", sketches, (b, None, h, w, 3), f"(B={b}, T, {h}, {w}, 3)")
    _check("ref_images", ref_images, (b, None, h, w, 3), f"(B={b}, N, {h}, {w}, 3)")
    _check("ref_sketches", ref_sketches, ref_images.shape, f"{tuple(ref_images.shape)} like ref_images")
    _check("mel", mel, (b, MEL_BINS, MEL_STEPS, 1), f"(B={b}, {MEL_BINS}, {MEL_STEPS}, 1) mel windows")
    if (lip_images is None) != (lip_sketches is None):
      raise ShapeError("lip_images and lip_sketches: give both or neither")
    if lip_images is None:
      lip_images, lip_sketches = lip_references(ref_images, ref_sketches, self.num_lip_references)
    _check("lip_images", lip_images, (b, None, h, w, 3), f"(B={b}, L, {h}, {w}, 3)")
    _check("lip_sketches", lip_sketches, lip_images.shape, f"{tuple(lip_images.shape)} like lip_images")

    guide = self.guiding_input(face.astype(self.dtype), sketches.astype(self.dtype))
    aligned = None
    if self.align:
      aligned = self.alignment(guide[..., :3], ref_images.astype(self.dtype), ref_sketches.astype(self.dtype),
                               guide[..., 3:], train=train)
    image = self.rendering(guide, lip_images.astype(self.dtype), lip_sketches.astype(self.dtype), mel,
                           aligned, train=train)
    return LipPriorOutput(image=image, aligned=aligned)


def init_variables(model: LipPriorRenderer, rng: jax.Array, *inputs, **kwargs) -> dict:
  """The model's initial variables, built from one random draw (jit-friendly, fast to compile).

  XLA compiles every random initialiser of a Flax ``init`` separately; on a CPU this model's ~250
  leaves take minutes to compile. The shapes come from ``jax.eval_shape(model.init, ...)`` instead,
  and the values from a single normal draw, sliced: conv/dense kernels LeCun-normal (variance
  1/fan_in, Flax's default), biases 0, BatchNorm scales 1 and running statistics (0, 1), the
  cross-attention's ``gamma`` its ``attention_gamma_init``, the flow head 0 (identity warp).

  Args:
    model: the renderer.
    rng: a PRNG key.
    *inputs, **kwargs: example inputs of ``model.__call__`` (only their shapes matter).
  """
  abstract = jax.eval_shape(functools.partial(model.init, **kwargs), rng, *inputs)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
  kernels = [leaf for path, leaf in leaves if _leaf_name(path) == "kernel"]
  draw = jax.random.normal(rng, (sum(math.prod(k.shape) for k in kernels),), jnp.float32)
  values, offset = [], 0
  for path, leaf in leaves:
    name, keys = _leaf_name(path), [getattr(p, "key", None) for p in path]
    if name == "kernel":
      size = math.prod(leaf.shape)
      if "alignment" in keys and "flow" in keys:
        value = jnp.zeros(leaf.shape, leaf.dtype)
      else:
        fan_in = math.prod(leaf.shape[:-1])
        value = (draw[offset:offset + size] / math.sqrt(fan_in)).reshape(leaf.shape).astype(leaf.dtype)
      offset += size
    elif name in ("bias", "mean"):
      value = jnp.zeros(leaf.shape, leaf.dtype)
    elif name in ("scale", "var"):
      value = jnp.ones(leaf.shape, leaf.dtype)
    elif name == "gamma" and "cross_attention" in keys:
      value = jnp.full(leaf.shape, model.attention_gamma_init, leaf.dtype)
    else:
      raise ValueError(f"init_variables: no rule for the variable {jax.tree_util.keystr(path)}")
    values.append(value)
  return jax.tree_util.tree_unflatten(treedef, values)


def _leaf_name(path) -> str:
  return str(getattr(path[-1], "key", path[-1]))


def build(**overrides) -> LipPriorRenderer:
  """The paper's model at IP_LAP's widths unless overridden."""
  return LipPriorRenderer(**overrides)


def example_inputs(batch_size: int = 1, *, image_size: int = 128, num_sketches: int = NUM_SKETCHES,
                   num_references: int = 3, seed: int = 0) -> tuple:
  """Random NumPy inputs (face, sketches, references, reference sketches, mel)."""
  rng = np.random.default_rng(seed)
  s = image_size

  def img(*shape):
    return rng.uniform(0.0, 1.0, shape + (s, s, 3)).astype(np.float32)

  mel = rng.uniform(-4.0, 4.0, (batch_size, MEL_BINS, MEL_STEPS, 1)).astype(np.float32)
  return (img(batch_size), img(batch_size, num_sketches), img(batch_size, num_references),
          img(batch_size, num_references), mel)
