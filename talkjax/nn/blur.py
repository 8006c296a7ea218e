"""Gaussian blur and the (blurred) lower-half face mask of paper 000.

Paper 000 (Tang et al., Sensors 2025, section 3.2.2, "Gaussian blur guiding mechanism"): a mask the
size of the face crop is 1 on the upper half and 0 on the lower half, then blurred with a 5x5
Gaussian of sigma 1.0, ``M_blur = G * M``; the target face multiplied by it keeps the upper face
and fades smoothly into the zeroed mouth region, so the renderer's output joins the upper face
without a hard seam. (The paper's text says the lower half is set to 0; its formula lost its
symbols in conversion. Rows ``y >= H // 2`` are zeroed, as Wav2Lip and IP_LAP zero
``img[..., H//2:, :]``.)

The blur is ``dm_pix.gaussian_blur`` (separable, normalised ``exp(-x^2 / (2 sigma^2))`` taps,
the same kernel as ``cv2.getGaussianKernel`` and torchvision's ``GaussianBlur``). The border is
handled by explicit padding: the default ``"reflect"`` (``cv2.BORDER_REFLECT_101``, torchvision's
choice) keeps a constant image constant, so the blurred mask stays exactly 1 along the top and
sides of the crop; ``"zeros"`` (dm_pix's own ``SAME``) would darken every border pixel.
"""

from __future__ import annotations

import dm_pix
import jax.numpy as jnp
import numpy as np

from talkjax.nn.ops import ArgumentError, ShapeError, check_rank

__all__ = ["gaussian_kernel1d", "gaussian_blur", "lower_half_mask", "blurred_lower_half_mask",
           "mask_lower_half"]

_PAD_MODES = {"reflect": "reflect", "zeros": "constant", "edge": "edge"}


def _check_blur_args(kernel_size: int, sigma: float, padding: str) -> None:
  if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
    raise ArgumentError(f"gaussian_blur: kernel_size must be a positive odd integer, got {kernel_size}")
  if not np.isfinite(sigma) or sigma <= 0:
    raise ArgumentError(f"gaussian_blur: sigma must be a finite positive number, got {sigma}")
  if padding not in _PAD_MODES:
    raise ArgumentError(f"gaussian_blur: padding must be one of {sorted(_PAD_MODES)}, got {padding!r}")


def gaussian_kernel1d(kernel_size: int = 5, sigma: float = 1.0) -> np.ndarray:
  """Normalised 1-D Gaussian taps (what dm_pix, cv2 and torchvision use), float32 ``(kernel_size,)``."""
  _check_blur_args(kernel_size, sigma, "reflect")
  r = kernel_size // 2
  x = np.arange(-r, r + 1, dtype=np.float64)
  k = np.exp(-x ** 2 / (2.0 * sigma ** 2))
  return (k / k.sum()).astype(np.float32)


def gaussian_blur(x: jnp.ndarray, kernel_size: int = 5, sigma: float = 1.0, padding: str = "reflect"
                  ) -> jnp.ndarray:
  """Blurs NHWC images/masks ``(B, H, W, C)`` or ``(H, W, C)`` channel by channel; same shape out.

  Args:
    x: images or masks.
    kernel_size: odd kernel width and height (paper 000: 5).
    sigma: standard deviation in pixels (paper 000: 1.0).
    padding: border handling, ``"reflect"`` (default, reflect-101), ``"zeros"`` or ``"edge"``.
  """
  _check_blur_args(kernel_size, sigma, padding)
  check_rank("gaussian_blur input", x, (3, 4), "(B,) H, W, C")
  squeeze = x.ndim == 3
  if squeeze:
    x = x[None]
  r = kernel_size // 2
  _, h, w, _ = x.shape
  if padding == "reflect" and (h <= r or w <= r):
    raise ShapeError(f"gaussian_blur: reflect padding needs H, W > kernel_size // 2 = {r}, got {h}x{w}")
  if r:
    x = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode=_PAD_MODES[padding])
  y = dm_pix.gaussian_blur(x, sigma, kernel_size, padding="VALID")
  return y[0] if squeeze else y


def lower_half_mask(height: int, width: int, dtype=jnp.float32) -> jnp.ndarray:
  """``(height, width, 1)`` mask: 1 on rows ``< height // 2``, 0 on the lower half."""
  rows = (np.arange(height) < height // 2).astype(np.float32)
  return jnp.asarray(np.broadcast_to(rows[:, None, None], (height, width, 1)), dtype=dtype)


def blurred_lower_half_mask(height: int, width: int, kernel_size: int = 5, sigma: float = 1.0,
                            padding: str = "reflect", dtype=jnp.float32) -> jnp.ndarray:
  """Paper 000's soft mask ``G * M``: :func:`lower_half_mask` blurred, ``(height, width, 1)``."""
  mask = gaussian_blur(lower_half_mask(height, width), kernel_size, sigma, padding)
  return mask.astype(dtype)


def mask_lower_half(images: jnp.ndarray, blur: bool = True, kernel_size: int = 5, sigma: float = 1.0
                    ) -> jnp.ndarray:
  """Zeroes the lower half of NHWC face crops; with ``blur`` the edge is paper 000's soft one."""
  check_rank("mask_lower_half input", images, (3, 4), "(B,) H, W, C")
  h, w = images.shape[-3], images.shape[-2]
  mask = blurred_lower_half_mask(h, w, kernel_size, sigma) if blur else lower_half_mask(h, w)
  return images * mask.astype(images.dtype)
