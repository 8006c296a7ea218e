"""IP_LAP's landmark-to-face renderer (Zhong et al., CVPR 2023): flow module + translation module.

The renderer turns driving sketches into a face frame. NOTES.md "IP_LAP" gives the layer table; the
parameter names mirror IP_LAP's ``models/video_renderer.py`` so ``third_party.convert
--kind=iplap_renderer`` maps the published checkpoint key for key.

- :class:`FlowModule` (``DenseFlowNetwork``): for each reference frame, ``concat(ref image, ref
  sketch)`` -> conv 7x7 (``width``) + BN + ReLU = ``h1`` (full size) -> conv 3x3 stride 2
  (``features``) + BN + ReLU = ``h2`` (half size) -> two IP_LAP SPADE blocks conditioned on the driving
  sketches -> PixelShuffle(2) -> SPADE -> ``conv_4`` (a dense flow in pixels) and ``conv_5`` (a
  sigmoid weight map). ``h1``, ``h2`` and the reference image are warped by the flow and averaged
  over the references with the weights: ``sum_i w_i warp_i(x_i) / (sum_i w_i + 1e-5)``.
- :class:`TranslationModule` (``TranslationNetwork``): ``concat(masked target, driving sketches)``
  -> conv 7x7 + BN + ReLU -> conv 3x3 stride 2 + BN + ReLU -> SPADE(warped ``h2``) -> AdaIN(audio)
  -> PixelShuffle(2) -> SPADE(warped ``h1``) -> AdaIN(audio) -> SPADE(warped image) ->
  LeakyReLU(0.01) -> conv 7x7 -> sigmoid. The audio feature is Wav2Lip's mel encoder (ReLU ending).
- :class:`IPLAPRenderer` (``Renderer``): masks the target's lower half (rows ``H // 2`` and below),
  runs both modules and returns the generated face, the aggregated warped reference and the flows.

Inputs are NHWC float32 in [0, 1]. A converted IP_LAP checkpoint expects **BGR** images (IP_LAP reads
frames with cv2) and sketches as IP_LAP draws them (grey 224 lines on black, /255); models trained in
talkjax use RGB. Mel windows are ``(B, 80, 16, 1)`` Wav2Lip mel (IP_LAP centres the window on the
target frame: offset -2 frames).

Quirks of the reference kept on purpose (a converted checkpoint depends on them):

- ``warp="iplap"``: IP_LAP builds the sampling grid ``align_corners=True``-style and samples with
  ``align_corners=False`` (a half-pixel shift that grows towards the border), and warps the half-size
  ``h2`` by bilinearly resizing that *grid*. ``warp="exact"`` moves pixel ``p`` to ``p + flow(p)``
  at every resolution (the flow is resized and halved for ``h2``); new models use it.
- The final LeakyReLU has PyTorch's default slope 0.01 (the SPADE/AdaIN blocks use 0.2).
- The translation convolutions have no bias; the flow module's do.

Differences from the PyTorch module that do not change inference: the references are run as one
batch of ``B * N`` instead of a Python loop (in training, BatchNorm therefore normalises over all
references of the batch at once and updates its running statistics once per step, where IP_LAP
updates them once per reference); the perceptual network is not part of the model (the loss lives in
``talkjax.tasks.renderer``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkjax.errors import ShapeError
from talkjax.models.audio_encoder import AudioEncoder
from talkjax.nn import (AdaINBlock, IPLAPSPADEBlock, flow_to_grid, grid_sample, pixel_shuffle,
                        resize_bilinear, resize_nearest, warp_by_flow)
from talkjax.nn.conv_blocks import BatchNorm

WARP_MODES = ("iplap", "exact")
WEIGHT_EPS = 1e-5  # IP_LAP's ``softmax_denominator += 0.00001``.


class FlowOutput(NamedTuple):
  """What the flow module returns (all NHWC).

  Attributes:
    h1: ``(B, H, W, width)`` aggregated warped full-size reference features.
    h2: ``(B, H/2, W/2, features)`` aggregated warped half-size reference features.
    image: ``(B, H, W, 3)`` aggregated warped reference image (the warp loss compares it with the target).
    flow: ``(B, N, H, W, 2)`` per-reference flow ``(dx, dy)`` in pixels.
    weight: ``(B, N, H, W, 1)`` per-reference weight in (0, 1).
  """
  h1: jax.Array
  h2: jax.Array
  image: jax.Array
  flow: jax.Array
  weight: jax.Array


class RendererOutput(NamedTuple):
  """What a renderer returns: the generated face ``(B, H, W, 3)`` in [0, 1] and the flow module's output."""
  image: jax.Array
  warped: FlowOutput


def _conv(features: int, kernel: int, name: str, *, stride: int = 1, use_bias: bool = True, dtype: Any):
  p = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((p, p), (p, p)),
                 use_bias=use_bias, dtype=dtype, name=name)


def _check_width(module: str, features: int) -> None:
  if features % 4:
    raise ShapeError(f"{module}: features ({features}) must be divisible by 4 (PixelShuffle(2) follows)")


def _check_images(name: str, x: jax.Array, rank: int, layout: str) -> None:
  if x.ndim != rank or x.shape[-1] % 3:
    raise ShapeError(f"{name}: expected {layout} with a multiple of 3 channels, got shape {tuple(x.shape)}")


def warp_features(x: jax.Array, flow: jax.Array, mode: str) -> jax.Array:
  """Backward-warps ``x`` (B, h, w, C) by a full-size pixel flow (B, H, W, 2), at ``x``'s size.

  ``mode="iplap"`` reproduces IP_LAP's ``warping(x, convert_flow_to_deformation(flow))`` exactly,
  including its grid convention and the bilinear resize of the *grid* for smaller feature maps;
  ``mode="exact"`` resizes the flow, rescales its values to ``x``'s pixels and samples ``p + flow(p)``.
  """
  if mode not in WARP_MODES:
    raise ValueError(f"warp mode: expected one of {WARP_MODES}, got {mode!r}")
  size = x.shape[1:3]
  if mode == "iplap":
    grid = resize_bilinear(flow_to_grid(flow, align_corners=True), size, align_corners=False)
    return grid_sample(x, grid, align_corners=False)
  if flow.shape[1:3] != size:
    scale = jnp.asarray([size[1] / flow.shape[2], size[0] / flow.shape[1]], jnp.float32)
    flow = resize_bilinear(flow.astype(jnp.float32), size, align_corners=False) * scale
  return warp_by_flow(x, flow)


class FlowModule(nn.Module):
  """IP_LAP's ``DenseFlowNetwork``: flows and weights per reference, aggregated warped features.

  Attributes:
    width: channels of ``h1`` (IP_LAP 32).
    features: channels of ``h2`` and the SPADE blocks (IP_LAP 256; divisible by 4).
    spade_hidden: SPADE's hidden width (IP_LAP 256).
    warp: ``"iplap"`` (reference grid quirk) or ``"exact"``; see :func:`warp_features`.
    dtype: computation dtype.
  """
  width: int = 32
  features: int = 256
  spade_hidden: int = 256
  warp: str = "iplap"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, ref_images: jax.Array, ref_sketches: jax.Array, driving_sketches: jax.Array,
               train: bool = False) -> FlowOutput:
    """Args:
      ref_images: ``(B, N, H, W, 3)`` reference frames.
      ref_sketches: ``(B, N, H, W, 3)`` their sketches.
      driving_sketches: ``(B, H, W, 3T)`` the T driving sketches stacked on channels (frame-major).
      train: BatchNorm in training mode (batch statistics; the caller makes ``batch_stats`` mutable).
    """
    _check_width("FlowModule", self.features)
    _check_images("ref_images", ref_images, 5, "(B, N, H, W, 3)")
    if ref_sketches.shape != ref_images.shape:
      raise ShapeError(f"ref_sketches: shape {tuple(ref_sketches.shape)} != ref_images "
                       f"{tuple(ref_images.shape)}")
    b, n, h, w, _ = ref_images.shape
    if driving_sketches.ndim != 4 or driving_sketches.shape[:3] != (b, h, w):
      raise ShapeError(f"driving_sketches: expected (B={b}, {h}, {w}, 3T), got "
                       f"{tuple(driving_sketches.shape)}")
    if h % 2 or w % 2:
      raise ShapeError(f"FlowModule: image size {h}x{w} must be even (a stride-2 level follows)")
    x = jnp.concatenate([ref_images, ref_sketches], axis=-1).reshape(b * n, h, w, 6).astype(self.dtype)
    # Example-major, reference-minor: row b*n + i is reference i of example b.
    cond = jnp.repeat(driving_sketches.astype(self.dtype), n, axis=0)

    h1 = _conv(self.width, 7, "conv1", dtype=self.dtype)(x)
    h1 = nn.relu(BatchNorm(dtype=self.dtype, name="conv1_bn")(h1, train=train))
    h2 = _conv(self.features, 3, "conv2", stride=2, dtype=self.dtype)(h1)
    h2 = nn.relu(BatchNorm(dtype=self.dtype, name="conv2_bn")(h2, train=train))

    cond_half = resize_nearest(cond, h2.shape[1:3])
    spade = lambda name: IPLAPSPADEBlock(self.spade_hidden, dtype=self.dtype, name=name)  # noqa: E731
    y = spade("spade_layer_1")(h2, cond_half)
    y = spade("spade_layer_2")(y, cond_half)
    y = pixel_shuffle(y, 2)
    y = spade("spade_layer_4")(y, cond)

    flow = _conv(2, 7, "conv_4", dtype=self.dtype)(y).astype(jnp.float32)
    weight = nn.relu(_conv(self.width, 7, "conv_5_0", dtype=self.dtype)(y))
    weight = nn.sigmoid(_conv(1, 7, "conv_5_2", dtype=self.dtype)(weight)).astype(jnp.float32)

    warped_h1 = warp_features(h1, flow, self.warp)
    warped_h2 = warp_features(h2, flow, self.warp)
    warped_img = warp_features(ref_images.reshape(b * n, h, w, 3).astype(self.dtype), flow, self.warp)

    def per_example(a):
      return a.reshape((b, n) + a.shape[1:])

    wgt = per_example(weight)                                   # (B, N, H, W, 1)
    denom = jnp.sum(wgt, axis=1) + WEIGHT_EPS                   # (B, H, W, 1)
    # IP_LAP takes the half-size weights and denominator by nearest downsampling (even rows/columns).
    wgt_half = per_example(resize_nearest(weight, h2.shape[1:3]))
    denom_half = resize_nearest(denom, h2.shape[1:3])
    agg_h1 = jnp.sum(per_example(warped_h1) * wgt, axis=1) / denom
    agg_h2 = jnp.sum(per_example(warped_h2) * wgt_half, axis=1) / denom_half
    agg_img = jnp.sum(per_example(warped_img) * wgt, axis=1) / denom
    return FlowOutput(h1=agg_h1.astype(self.dtype), h2=agg_h2.astype(self.dtype),
                      image=agg_img.astype(self.dtype), flow=per_example(flow), weight=wgt)


class TranslationModule(nn.Module):
  """IP_LAP's ``TranslationNetwork``: the face from the guiding input, warped features and audio.

  Attributes:
    width, features, spade_hidden: as in :class:`FlowModule` (must match it: the SPADE layers take the
      warped ``h1``/``h2`` as conditions).
    adain_hidden: AdaIN MLP width (IP_LAP 128).
    audio_width_divisor: shrink the audio encoder (tiny test/CPU variants; 1 for checkpoints).
    dtype: computation dtype.
  """
  width: int = 32
  features: int = 256
  spade_hidden: int = 256
  adain_hidden: int = 128
  audio_width_divisor: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, translation_input: jax.Array, warped: FlowOutput, mel: jax.Array,
               train: bool = False) -> jax.Array:
    """Args:
      translation_input: ``(B, H, W, C)`` guiding input (IP_LAP: masked target + 5 sketches, 18 ch).
      warped: the flow module's output (``h1``, ``h2``, ``image`` are used).
      mel: ``(B, 80, 16, 1)`` mel windows.
      train: BatchNorm mode.

    Returns:
      ``(B, H, W, 3)`` in [0, 1].
    """
    _check_width("TranslationModule", self.features)
    if translation_input.ndim != 4 or translation_input.shape[:3] != warped.image.shape[:3]:
      raise ShapeError(f"translation_input: expected (B, H, W, C) matching the warped image "
                       f"{tuple(warped.image.shape[:3])}, got {tuple(translation_input.shape)}")
    audio = AudioEncoder(residuals_at_256=1, final_activation="relu", width_divisor=self.audio_width_divisor,
                         dtype=self.dtype, name="audio_encoder")(mel, train=train)
    audio = audio.reshape(audio.shape[0], -1)

    x = _conv(self.width, 7, "conv1", use_bias=False, dtype=self.dtype)(translation_input.astype(self.dtype))
    x = nn.relu(BatchNorm(dtype=self.dtype, name="conv1_bn")(x, train=train))
    x = _conv(self.features, 3, "conv2", stride=2, use_bias=False, dtype=self.dtype)(x)
    x = nn.relu(BatchNorm(dtype=self.dtype, name="conv2_bn")(x, train=train))

    spade = lambda name: IPLAPSPADEBlock(self.spade_hidden, dtype=self.dtype, name=name)  # noqa: E731
    adain = lambda name: AdaINBlock(self.adain_hidden, dtype=self.dtype, name=name)  # noqa: E731
    x = spade("spade_1")(x, warped.h2)
    x = adain("adain_1")(x, audio)
    x = pixel_shuffle(x, 2)
    x = spade("spade_2")(x, warped.h1)
    x = adain("adain_2")(x, audio)
    x = spade("spade_4")(x, warped.image)
    x = nn.leaky_relu(x, 0.01)  # PyTorch's default slope: IP_LAP writes torch.nn.LeakyReLU().
    x = _conv(3, 7, "conv_last", use_bias=False, dtype=self.dtype)(x)
    return nn.sigmoid(x.astype(jnp.float32))


def mask_lower_half_hard(images: jax.Array) -> jax.Array:
  """IP_LAP's masking: rows ``H // 2`` and below set to 0 (``gt_mask_face[:, :, H//2:, :] = 0``)."""
  h = images.shape[-3]
  rows = (jnp.arange(h) < h // 2).astype(images.dtype)
  return images * rows[:, None, None]


def stack_sketches(sketches: jax.Array) -> jax.Array:
  """``(B, T, H, W, 3)`` -> ``(B, H, W, 3T)``, frame-major (IP_LAP's ``torch.cat(..., dim=1)``)."""
  _check_images("sketches", sketches, 5, "(B, T, H, W, 3)")
  b, t, h, w, c = sketches.shape
  return jnp.moveaxis(sketches, 1, 3).reshape(b, h, w, t * c)


class IPLAPRenderer(nn.Module):
  """IP_LAP's ``Renderer`` (without its perceptual loss): masked target + sketches + references -> face.

  Attributes:
    width, features, spade_hidden, adain_hidden, audio_width_divisor, warp: see the two modules
      (defaults: IP_LAP's published renderer).
    dtype: computation dtype.
  """
  width: int = 32
  features: int = 256
  spade_hidden: int = 256
  adain_hidden: int = 128
  audio_width_divisor: int = 1
  warp: str = "iplap"
  dtype: Any = jnp.float32

  def setup(self):
    self.flow_module = FlowModule(self.width, self.features, self.spade_hidden, self.warp, dtype=self.dtype)
    self.translation = TranslationModule(self.width, self.features, self.spade_hidden, self.adain_hidden,
                                         self.audio_width_divisor, dtype=self.dtype)

  def guiding_input(self, face: jax.Array, sketches: jax.Array) -> jax.Array:
    """The translation module's input: ``concat(face with lower half zeroed, T sketches)``."""
    return jnp.concatenate([mask_lower_half_hard(face), stack_sketches(sketches)], axis=-1)

  def __call__(self, face: jax.Array, sketches: jax.Array, ref_images: jax.Array, ref_sketches: jax.Array,
               mel: jax.Array, train: bool = False) -> RendererOutput:
    """Renders one face per example (IP_LAP's ``Renderer.forward`` with T = 1).

    Args:
      face: ``(B, H, W, 3)`` the target frame (its lower half is masked here, as IP_LAP does).
      sketches: ``(B, T, H, W, 3)`` driving sketches centred on the target (T = 5).
      ref_images: ``(B, N, H, W, 3)`` reference frames.
      ref_sketches: ``(B, N, H, W, 3)`` their sketches.
      mel: ``(B, 80, 16, 1)`` the target's (centred) mel window.
      train: BatchNorm in training mode.
    """
    _check_images("face", face, 4, "(B, H, W, 3)")
    if sketches.ndim != 5 or sketches.shape[0] != face.shape[0] or sketches.shape[2:] != face.shape[1:]:
      raise ShapeError(f"sketches: expected (B, T, H, W, 3) matching face {tuple(face.shape)}, "
                       f"got {tuple(sketches.shape)}")
    warped = self.flow_module(ref_images, ref_sketches, stack_sketches(sketches), train=train)
    image = self.translation(self.guiding_input(face, sketches), warped, mel, train=train)
    return RendererOutput(image=image, warped=warped)


def build(**overrides) -> IPLAPRenderer:
  """The converter's factory: IP_LAP's published renderer unless overridden."""
  return IPLAPRenderer(**overrides)


def example_inputs(batch_size: int = 1, *, image_size: int = 128, num_sketches: int = 5,
                   num_references: int = 3, seed: int = 0) -> tuple:
  """Random NumPy inputs for :class:`IPLAPRenderer` (face, sketches, references, sketches, mel)."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  s = image_size

  def img(*shape):
    return rng.uniform(0.0, 1.0, shape + (s, s, 3)).astype(np.float32)

  mel = rng.uniform(-4.0, 4.0, (batch_size, 80, 16, 1)).astype(np.float32)
  return (img(batch_size), img(batch_size, num_sketches), img(batch_size, num_references),
          img(batch_size, num_references), mel)
