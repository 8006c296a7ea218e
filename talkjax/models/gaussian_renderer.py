"""Paper 000's dynamic Gaussian renderer (Tang, Liu, Li, Sensors 2025, section 3.2.2).

IP_LAP's renderer (:mod:`talkjax.models.iplap_renderer`: the same flow module with SPADE on the
2k+1 driving sketches and per-reference weights, the same translation module with SPADE, AdaIN on
the audio and PixelShuffle) with the *Gaussian blur guiding mechanism* on the translation input:

1. ``M``: 1 on the upper half of the face crop, 0 on rows ``y >= H // 2`` (the paper's text: "setting
   the value of its lower half region to 0"; its formula lost its symbols in conversion).
2. ``M_blur = G * M``, a 5x5 Gaussian of sigma 1.0 (``talkjax.nn.blurred_lower_half_mask``, dm_pix
   with reflect-101 borders, so the mask stays exactly 1 on the top and side borders).
3. ``I_mask = M_blur * I_t``: the target fades smoothly into the zeroed mouth region.
4. ``S_t^new = I_mask + (1 - M_blur) * S_t``: the blur-guided image combined with the target sketch,
   a 3-channel image (the paper: ``S_t^new in R^{3 x H x W}``) that shows the face above the seam and
   the driving sketch below it, with the same soft transition.
5. Translation input ``concat(S_t^new, I_mask, S_{t-k..t+k})`` (3 + 3 + 3(2k+1) channels): the paper
   lists ``S_t^new``, ``I_mask`` and the warped reference features as the GS translation module's
   inputs; the 2k+1 sketches are kept as in IP_LAP because section 3.2.1 makes them the basis of the
   prediction of frame t (continuity), and the flow module sees them anyway.

The ablation of the paper's Table 4 ("Gaussian blur replaced with a simple mask") is
``mask_blur=False``: the hard mask ``M`` in steps 3-4, nothing else changes (the same parameters fit
both). Inputs are RGB in [0, 1] (models trained in talkjax); see ``IPLAPRenderer.__call__`` for shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from talkjax.errors import ShapeError
from talkjax.models.iplap_renderer import IPLAPRenderer, stack_sketches
from talkjax.nn import blurred_lower_half_mask, lower_half_mask

# Paper 000: "The kernel size of the Gaussian blur is set to 5 x 5, and the value is fixed to 1.0."
BLUR_KERNEL = 5
BLUR_SIGMA = 1.0


def guide_mask(height: int, width: int, blur: bool = True, kernel_size: int = BLUR_KERNEL,
               sigma: float = BLUR_SIGMA) -> jax.Array:
  """``(height, width, 1)``: ``M_blur`` (``blur=True``) or the hard lower-half mask ``M``."""
  if blur:
    return blurred_lower_half_mask(height, width, kernel_size, sigma)
  return lower_half_mask(height, width)


def gaussian_guided_input(face: jax.Array, sketches: jax.Array, mask: jax.Array) -> jax.Array:
  """The GS translation module's input ``concat(S_t^new, I_mask, sketches)`` (see the module docstring).

  Args:
    face: ``(B, H, W, 3)`` target frame.
    sketches: ``(B, 2k+1, H, W, 3)`` driving sketches; the middle one is the target's, ``S_t``.
    mask: ``(H, W, 1)`` guide mask (:func:`guide_mask`).

  Returns:
    ``(B, H, W, 6 + 3(2k+1))``.
  """
  if sketches.ndim != 5 or sketches.shape[1] % 2 == 0:
    raise ShapeError(f"sketches: expected (B, 2k+1, H, W, 3) with an odd number of sketches, "
                     f"got shape {tuple(sketches.shape)}")
  if face.ndim != 4 or face.shape[1:3] != mask.shape[:2] or sketches.shape[2:4] != mask.shape[:2]:
    raise ShapeError(f"face {tuple(face.shape)}, sketches {tuple(sketches.shape)} and mask "
                     f"{tuple(mask.shape)} disagree on the image size")
  mask = mask.astype(face.dtype)
  target_sketch = sketches[:, sketches.shape[1] // 2]
  i_mask = face * mask
  s_new = i_mask + (1.0 - mask) * target_sketch
  return jnp.concatenate([s_new, i_mask, stack_sketches(sketches)], axis=-1)


class GaussianRenderer(IPLAPRenderer):
  """Paper 000's renderer: :class:`IPLAPRenderer` with the Gaussian-blur-guided translation input.

  Attributes (besides IPLAPRenderer's; ``warp`` defaults to ``"exact"`` here, a new model):
    mask_blur: True for ``M_blur`` (the paper), False for the hard mask (ablation ``no_gs``).
    blur_kernel, blur_sigma: the Gaussian (paper: 5, 1.0).
  """
  warp: str = "exact"
  mask_blur: bool = True
  blur_kernel: int = BLUR_KERNEL
  blur_sigma: float = BLUR_SIGMA

  def mask(self, height: int, width: int) -> jax.Array:
    return guide_mask(height, width, self.mask_blur, self.blur_kernel, self.blur_sigma)

  def guiding_input(self, face: jax.Array, sketches: jax.Array) -> jax.Array:
    return gaussian_guided_input(face, sketches, self.mask(face.shape[1], face.shape[2]))


def build(**overrides) -> GaussianRenderer:
  """Paper 000's renderer at IP_LAP's widths unless overridden."""
  return GaussianRenderer(**overrides)
