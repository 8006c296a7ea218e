"""RAFT-GMA optical flow (Jiang et al., "Learning to Estimate Hidden Motions with Global Motion
Aggregation", ICCV 2021), the frozen flow estimator behind OpFlowTalker's flow-sync loss.

RAFT (Teed & Deng 2020) plus a global motion aggregation module, laid out as the public PyTorch code
(zacjiang/GMA) so its checkpoints (``gma-things.pth`` etc.) convert with
``python -m third_party.convert --kind=gma``:

* inputs: RGB float in **[0, 255]** (RAFT's convention), normalised inside to [-1, 1]; any size
  (>= 57 px) since the module pads to a multiple of 8 itself (RAFT's ``InputPadder``, replicate,
  ``"sintel"`` split by default) and crops the flow back;
* ``fnet`` (instance norm) and ``cnet`` (batch norm) encoders at 1/8 resolution; ``cnet`` splits into
  tanh(128) GRU state and relu(128) context;
* all-pairs correlation / sqrt(256), 4-level pyramid, radius-4 lookup (324 channels);
* attention over the context features (1x1 128 -> 2x128 q/k, one head, content only: the default
  of GMA's train.py and the configuration of the published checkpoints);
* ``iters`` refinement steps (12 by default): motion encoder -> aggregation (1x1 values, learnable
  gamma) -> separable ConvGRU (1x5, 5x1) -> flow head, and a convex 8x upsampling mask.

The iterations are an ``nn.scan`` with parameters broadcast, so compile time does not grow with
``iters``. As in RAFT the coordinates are detached between iterations; everything else is
differentiable, so a loss on the flow back-propagates into both images (and into the weights).

Output flow is (B, H, W, 2) in pixels, channel 0 = dx (right), channel 1 = dy (down), mapping a pixel
p of ``image1`` to p + flow(p) in ``image2``.

Example::

  model = GMA()                                    # iters=12
  variables = third_party.convert.convert_state_dict("gma", torch_state_dict)
  flow = model.apply(variables, frames[:-1], frames[1:])          # (T-1, H, W, 2)
  flow, per_iteration = model.apply(variables, a, b, return_all=True)  # (iters, B, H, W, 2)
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax.errors import ConfigError, ShapeError
from talkjax.models.gma_parts import (ATTENTION_VARIANTS, CONTEXT_DIM, FEATURE_DIM, HIDDEN_DIM, UPSAMPLE,
                                      BasicEncoder, GlobalAttention, RefinementStep, convex_upsample,
                                      coords_grid, correlation_pyramid, lookup_correlation, pad_amounts)

__all__ = [
    "GMA", "estimate_flow", "pad_to_multiple", "unpad", "pad_amounts", "MIN_SIZE",
    "correlation_pyramid", "lookup_correlation", "convex_upsample", "coords_grid",
]

# The coarsest (4th) correlation level is the 1/8 feature map pooled three times: it needs >= 1 cell,
# so the padded input needs >= 64 px per side (57 px before padding to a multiple of 8).
MIN_SIZE = UPSAMPLE * 2 ** 3 - UPSAMPLE + 1


def pad_to_multiple(images: jax.Array, mode: str = "sintel", multiple: int = UPSAMPLE,
                    ) -> tuple[jax.Array, tuple[tuple[int, int], tuple[int, int]]]:
  """Replicate-pads (..., H, W, C) images to multiples of ``multiple`` (RAFT's ``InputPadder.pad``).

  Returns the padded images and the pads ``((top, bottom), (left, right))`` for :func:`unpad`.
  """
  h, w = images.shape[-3], images.shape[-2]
  pads = pad_amounts(h, w, mode, multiple)
  widths = [(0, 0)] * (images.ndim - 3) + [pads[0], pads[1], (0, 0)]
  return jnp.pad(images, widths, mode="edge"), pads


def unpad(x: jax.Array, pads: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """Crops (..., H, W, C) arrays padded by :func:`pad_to_multiple` back (``InputPadder.unpad``)."""
  (top, bottom), (left, right) = pads
  h, w = x.shape[-3], x.shape[-2]
  return x[..., top:h - bottom, left:w - right, :]


def _check_images(image1: Any, image2: Any, corr_levels: int = 4) -> None:
  padded_min = UPSAMPLE * 2 ** (corr_levels - 1)
  for name, img in (("image1", image1), ("image2", image2)):
    shape = tuple(np.shape(img))
    if len(shape) != 4 or shape[-1] != 3:
      raise ShapeError(f"GMA {name}: expected (B, H, W, 3) RGB in [0, 255], got shape {shape}")
    if min(shape[1:3]) <= padded_min - UPSAMPLE:
      raise ShapeError(f"GMA {name}: images of {shape[1]}x{shape[2]} px are too small: the "
                       f"{corr_levels}-level correlation pyramid at 1/8 resolution needs at least "
                       f"{padded_min - UPSAMPLE + 1} px per side ({padded_min} after padding)")
  if tuple(np.shape(image1)) != tuple(np.shape(image2)):
    raise ShapeError(f"GMA image2: shape {tuple(np.shape(image2))} differs from image1's "
                     f"{tuple(np.shape(image1))}")


class GMA(nn.Module):
  """RAFT-GMA: ``apply(variables, image1, image2) -> flow (B, H, W, 2)``.

  Attributes:
    iters: refinement iterations (12 as GMA's training; its evaluation uses 12-32). Overridable per
      call with ``iters=``.
    attention: ``"content"`` (published checkpoints), ``"position_only"`` or
      ``"position_and_content"`` (GMA's ablations; these use ``max_pos_size``-cell relative embeddings).
    num_heads: attention/aggregation heads (1 in the published checkpoints).
    max_pos_size: size of GMA's relative position tables (160 -> inputs up to 1280 px per side with a
      positional variant; unused by ``"content"``).
    corr_levels, corr_radius: correlation pyramid (4 levels, radius 4 in GMA; the checkpoint's first
      motion-encoder conv fixes ``levels*(2r+1)^2``).
    pad_mode: ``"sintel"`` (pad both sides) or ``"kitti"`` (height at the bottom), as RAFT evaluates.
    remat: recompute each iteration in the backward pass instead of storing it (less memory when a loss
      differentiates through the flow, e.g. OpFlowTalker's flow-sync loss).
    precision: matmul/conv precision (``None``: JAX's default; pass ``jax.lax.Precision.HIGHEST`` on
      GPU/TPU to keep the correlation and attention in full float32).
    dtype: computation dtype. float32 (RAFT keeps its correlation and flow in float32 even under
      AMP); ``jnp.float64`` inside ``jax.enable_x64()`` is for numerical verification.
  """
  iters: int = 12
  attention: str = "content"
  num_heads: int = 1
  max_pos_size: int = 160
  corr_levels: int = 4
  corr_radius: int = 4
  pad_mode: str = "sintel"
  remat: bool = False
  precision: Any = None
  dtype: Any = jnp.float32

  def _check_config(self, iters: Any) -> None:
    for name, value, minimum in (("iters", iters, 1), ("num_heads", self.num_heads, 1),
                                 ("corr_levels", self.corr_levels, 1), ("corr_radius", self.corr_radius, 0),
                                 ("max_pos_size", self.max_pos_size, 1)):
      if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"GMA.{name} must be an integer >= {minimum}, got {value!r}")
    if self.attention not in ATTENTION_VARIANTS:
      raise ConfigError(f"GMA.attention must be one of {ATTENTION_VARIANTS}, got {self.attention!r}")
    pad_amounts(8, 8, self.pad_mode)  # validates pad_mode

  @nn.compact
  def __call__(self, image1: jax.Array, image2: jax.Array, *, iters: int | None = None,
               flow_init: jax.Array | None = None, return_all: bool = False, train: bool = False):
    """Estimates the optical flow from ``image1`` to ``image2``.

    Args:
      image1, image2: (B, H, W, 3) RGB float in [0, 255], H and W >= 57 (64 once padded to a
        multiple of 8).
      iters: overrides ``self.iters`` for this call (a static Python int).
      flow_init: optional (B, H8, W8, 2) initial flow at 1/8 of the *padded* size (RAFT's warm
        start; ``H8 = ceil(H / 8)``), in 1/8-resolution pixels.
      return_all: also return every iteration's upsampled flow, (iters, B, H, W, 2), for RAFT's
        exponentially weighted sequence loss.
      train: batch statistics of the context encoder are used and updated (pass
        ``mutable=["batch_stats"]``); RAFT freezes them after its first training stage.

    Returns:
      ``flow`` (B, H, W, 2), or ``(flow, flows_per_iteration)`` when ``return_all``.
    """
    iters = self.iters if iters is None else iters
    self._check_config(iters)
    _check_images(image1, image2, self.corr_levels)
    image1 = jnp.asarray(image1, self.dtype)
    image2 = jnp.asarray(image2, self.dtype)
    image1, pads = pad_to_multiple(image1, self.pad_mode)
    image2, _ = pad_to_multiple(image2, self.pad_mode)
    b, hp, wp, _ = image1.shape
    h8, w8 = hp // UPSAMPLE, wp // UPSAMPLE
    if flow_init is not None and tuple(np.shape(flow_init)) != (b, h8, w8, 2):
      raise ShapeError(f"GMA flow_init: expected shape {(b, h8, w8, 2)} (1/8 of the padded "
                       f"{hp}x{wp} input), got {tuple(np.shape(flow_init))}")

    image1 = 2.0 * (image1 / 255.0) - 1.0
    image2 = 2.0 * (image2 / 255.0) - 1.0

    fmaps = BasicEncoder(FEATURE_DIM, "instance", self.precision, name="fnet")(
        jnp.concatenate([image1, image2], axis=0))
    pyramid = correlation_pyramid(fmaps[:b], fmaps[b:], self.corr_levels, self.precision)

    context = BasicEncoder(HIDDEN_DIM + CONTEXT_DIM, "batch", self.precision, name="cnet")(image1, train)
    net = jnp.tanh(context[..., :HIDDEN_DIM])
    inp = nn.relu(context[..., HIDDEN_DIM:])
    attention = GlobalAttention(self.num_heads, CONTEXT_DIM, self.attention, self.max_pos_size,
                                self.precision, name="att")(inp)

    coords0 = coords_grid(b, h8, w8, self.dtype)
    coords1 = coords0 if flow_init is None else coords0 + jnp.asarray(flow_init, self.dtype)
    mask0 = jnp.zeros((b, h8, w8, 9 * UPSAMPLE * UPSAMPLE), self.dtype)

    step = nn.remat(RefinementStep, prevent_cse=False) if self.remat else RefinementStep
    refine = nn.scan(step, variable_broadcast="params", split_rngs={"params": False},
                     in_axes=(nn.broadcast,) * 4, length=iters)
    (_, coords1, mask), flows = refine(heads=self.num_heads, precision=self.precision,
                                       radius=self.corr_radius, emit_all=return_all, name="update_block")(
                                           (net, coords1, mask0), pyramid, coords0, inp, attention)
    if return_all:
      flows = unpad(flows, pads)
      return flows[-1], flows
    return unpad(convex_upsample(coords1 - coords0, mask), pads)


@functools.partial(jax.jit, static_argnames=("model", "iters"))
def _apply(model: GMA, variables: Any, image1: jax.Array, image2: jax.Array, iters: int) -> jax.Array:
  return model.apply(variables, image1, image2, iters=iters)


def estimate_flow(variables: Any, image1: Any, image2: Any, *, iters: int = 12,
                  model: GMA | None = None) -> np.ndarray:
  """Checked, jitted inference: flow (B, H, W, 2) from ``image1`` to ``image2`` as a NumPy array.

  Unlike ``model.apply`` (traceable, so it can only check shapes), this rejects non-finite pixels and
  values outside [0, 255] (e.g. [-1, 1] images) with a :class:`ShapeError`. Images in [0, 1] cannot
  be told apart from dark [0, 255] frames: scale them by 255 first.
  """
  model = GMA() if model is None else model
  _check_images(image1, image2, model.corr_levels)
  for name, img in (("image1", image1), ("image2", image2)):
    arr = np.asarray(img)
    if not np.all(np.isfinite(arr)):
      raise ShapeError(f"GMA {name}: contains NaN or infinite pixel values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-3 or hi > 255.0 + 1e-3:
      raise ShapeError(f"GMA {name}: pixel values span [{lo:.3g}, {hi:.3g}]; GMA expects RGB in [0, 255]")
  flow = _apply(model, variables, jnp.asarray(image1, model.dtype), jnp.asarray(image2, model.dtype), iters)
  return np.asarray(flow)
