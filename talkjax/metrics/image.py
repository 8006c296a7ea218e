"""Full-reference image quality: PSNR and SSIM on uint8-range frames.

Exact definitions (per frame, then averaged over the frames of a video, then over videos):

- **PSNR** = ``10 * log10(255^2 / MSE)``, MSE over all pixels and the three RGB channels of the frame
  (``skimage.metrics.peak_signal_noise_ratio(ref, gen, data_range=255)``). Identical frames give
  ``inf``; a video's PSNR is the mean of its frames' PSNR (not the PSNR of the pooled MSE).
- **SSIM** (Wang et al. 2004): Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03, data range
  255, population (not sample) covariances, the SSIM map over the *valid* region only (no padding:
  a 5-pixel border is dropped), computed on each RGB channel separately and averaged over channels
  and pixels. This is ``dm_pix.ssim`` and equals ``skimage.metrics.structural_similarity(ref, gen,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)``
  (tested to < 1e-4). Frames must be at least 11x11.

Inputs are ``(..., H, W, 3)`` RGB arrays on the 0..255 scale (uint8, or float in [0, 255]); both
images of a pair must have the same shape.
"""

from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

from talkjax.errors import ShapeError

DATA_RANGE = 255.0
SSIM_FILTER_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def check_pair(generated, reference, name: str = "frames") -> tuple[np.ndarray, np.ndarray]:
  """Validates a pair of frame batches on the 0..255 scale; returns them as float32 arrays."""
  gen, ref = np.asarray(generated), np.asarray(reference)
  if gen.shape != ref.shape:
    raise ShapeError(f"{name}: generated {gen.shape} and reference {ref.shape} differ in shape")
  if gen.ndim < 3 or gen.shape[-1] != 3:
    raise ShapeError(f"{name}: expected (..., H, W, 3) RGB frames, got shape {gen.shape}")
  for what, arr in (("generated", gen), ("reference", ref)):
    if arr.dtype == np.uint8:
      continue
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
      raise ShapeError(f"{name}: {what} frames have unsupported dtype {arr.dtype}")
    if arr.size and not np.all(np.isfinite(arr)):
      raise ShapeError(f"{name}: {what} frames contain NaN or inf")
    if arr.size and (arr.min() < 0 or arr.max() > DATA_RANGE):
      raise ShapeError(f"{name}: {what} frames must be on the 0..255 scale, got values in "
                       f"[{arr.min():.4g}, {arr.max():.4g}] (multiply [0, 1] images by 255)")
  return gen.astype(np.float32), ref.astype(np.float32)


@jax.jit
def _psnr(gen: jax.Array, ref: jax.Array) -> jax.Array:
  mse = jnp.mean(jnp.square(gen - ref), axis=(-3, -2, -1))
  return 10.0 * jnp.log10(DATA_RANGE ** 2 / mse)


@jax.jit
def _ssim(gen: jax.Array, ref: jax.Array) -> jax.Array:
  # dm-pix works on any scale given max_val; [0, 1] keeps its float32 sums in their usual range.
  return dm_pix.ssim(gen / DATA_RANGE, ref / DATA_RANGE, max_val=1.0, filter_size=SSIM_FILTER_SIZE,
                     filter_sigma=SSIM_SIGMA, k1=SSIM_K1, k2=SSIM_K2)


def _batched(fn, gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
  lead = gen.shape[:-3]
  flat_g = gen.reshape((-1,) + gen.shape[-3:])
  flat_r = ref.reshape((-1,) + ref.shape[-3:])
  return np.asarray(fn(flat_g, flat_r), np.float64).reshape(lead)


def psnr(generated, reference) -> np.ndarray:
  """PSNR in dB of each frame: ``(..., H, W, 3)`` pairs on the 0..255 scale -> ``(...)`` float64."""
  gen, ref = check_pair(generated, reference, "psnr")
  return _batched(_psnr, gen, ref)


def ssim(generated, reference) -> np.ndarray:
  """SSIM of each frame (settings in the module docstring) -> ``(...)`` float64."""
  gen, ref = check_pair(generated, reference, "ssim")
  if min(gen.shape[-3:-1]) < SSIM_FILTER_SIZE:
    raise ShapeError(f"ssim: frames of {gen.shape[-2]}x{gen.shape[-3]} are smaller than the "
                     f"{SSIM_FILTER_SIZE}x{SSIM_FILTER_SIZE} window")
  return _batched(_ssim, gen, ref)


@jax.jit
def _both(gen, ref):
  return _psnr(gen, ref), _ssim(gen, ref)


def psnr_ssim(generated, reference) -> tuple[np.ndarray, np.ndarray]:
  """Both per-frame scores in one device call (what the evaluator streams chunks through)."""
  gen, ref = check_pair(generated, reference, "psnr/ssim")
  if min(gen.shape[-3:-1]) < SSIM_FILTER_SIZE:
    raise ShapeError(f"ssim: frames of {gen.shape[-2]}x{gen.shape[-3]} are smaller than the "
                     f"{SSIM_FILTER_SIZE}x{SSIM_FILTER_SIZE} window")
  lead = gen.shape[:-3]
  p, s = _both(gen.reshape((-1,) + gen.shape[-3:]), ref.reshape((-1,) + ref.shape[-3:]))
  return np.asarray(p, np.float64).reshape(lead), np.asarray(s, np.float64).reshape(lead)
