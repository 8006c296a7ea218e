"""talkjax.nn.blur against SciPy/OpenCV convolutions with the same Gaussian kernel."""

import chex
import cv2
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from talkjax.nn import ArgumentError, ShapeError, blur

# SciPy's names for the same borders.
_SCIPY_MODE = {"reflect": "mirror", "zeros": "constant", "edge": "nearest"}


def _kernel_np(k, sigma):
  x = np.arange(k) - k // 2
  g = np.exp(-x ** 2 / (2 * sigma ** 2))
  return g / g.sum()


@pytest.mark.parametrize("padding", ["reflect", "zeros", "edge"])
@pytest.mark.parametrize("k,sigma", [(5, 1.0), (7, 2.5)])
def test_gaussian_blur_matches_scipy(k, sigma, padding):
  x = np.random.default_rng(0).uniform(size=(2, 12, 10, 3)).astype(np.float32)
  out = np.asarray(blur.gaussian_blur(jnp.asarray(x), k, sigma, padding))
  chex.assert_shape(out, x.shape)
  kernel2d = np.outer(_kernel_np(k, sigma), _kernel_np(k, sigma))
  ref = np.zeros(x.shape, np.float64)
  for b in range(2):
    for c in range(3):
      ref[b, :, :, c] = ndimage.correlate(x[b, :, :, c].astype(np.float64), kernel2d,
                                          mode=_SCIPY_MODE[padding])
  np.testing.assert_allclose(out, ref, atol=2e-6)


def test_gaussian_blur_paper_setting_matches_cv2():
  """5x5, sigma 1.0 with reflect-101 borders is exactly cv2.GaussianBlur's default."""
  img = np.random.default_rng(1).uniform(size=(16, 16, 3)).astype(np.float32)
  ref = cv2.GaussianBlur(img, (5, 5), 1.0, sigmaY=1.0)
  np.testing.assert_allclose(np.asarray(blur.gaussian_blur(jnp.asarray(img))), ref, atol=2e-6)
  np.testing.assert_allclose(blur.gaussian_kernel1d(5, 1.0), cv2.getGaussianKernel(5, 1.0)[:, 0], atol=1e-7)


def test_lower_half_mask_values():
  m = np.asarray(blur.lower_half_mask(7, 4))
  chex.assert_shape(m, (7, 4, 1))
  np.testing.assert_array_equal(m[:, 0, 0], [1, 1, 1, 0, 0, 0, 0])  # rows >= H // 2 zeroed


def test_blurred_mask_has_paper_000_soft_edge():
  h = 32
  m = np.asarray(blur.blurred_lower_half_mask(h, 8))
  chex.assert_shape(m, (h, 8, 1))
  g = _kernel_np(5, 1.0)
  rows = (np.arange(h) < h // 2).astype(np.float64)
  padded = np.pad(rows, 2, mode="reflect")
  expected = np.array([np.dot(g, padded[i:i + 5]) for i in range(h)])
  np.testing.assert_allclose(m[:, 3, 0], expected, atol=1e-6)
  # Constant along the width, exactly 1 on the upper face (borders included), 0 deep in the mouth region.
  np.testing.assert_allclose(m, np.broadcast_to(m[:, :1], m.shape), atol=1e-7)
  np.testing.assert_allclose(m[:h // 2 - 2, :, 0], 1.0, atol=1e-6)
  np.testing.assert_allclose(m[h // 2 + 2:, :, 0], 0.0, atol=1e-7)
  edge = m[h // 2 - 2:h // 2 + 2, 0, 0]
  assert np.all(np.diff(edge) < 0) and 0 < edge[-1] < edge[0] < 1


def test_mask_lower_half_applies_mask():
  imgs = jnp.ones((2, 16, 16, 3))
  hard = np.asarray(blur.mask_lower_half(imgs, blur=False))
  np.testing.assert_array_equal(hard[:, :8], 1.0)
  np.testing.assert_array_equal(hard[:, 8:], 0.0)
  soft = np.asarray(blur.mask_lower_half(imgs))
  expected = np.asarray(blur.blurred_lower_half_mask(16, 16))[:, 0, 0]
  np.testing.assert_allclose(soft[0, :, 0, 0], expected, atol=1e-7)


def test_bad_arguments_are_named():
  with pytest.raises(ArgumentError, match="kernel_size must be a positive odd"):
    blur.gaussian_blur(jnp.zeros((1, 8, 8, 1)), 4, 1.0)
  with pytest.raises(ArgumentError, match="sigma"):
    blur.gaussian_blur(jnp.zeros((1, 8, 8, 1)), 5, 0.0)
  with pytest.raises(ArgumentError, match="padding"):
    blur.gaussian_blur(jnp.zeros((1, 8, 8, 1)), 5, 1.0, "wrap")
  with pytest.raises(ShapeError, match="reflect padding needs"):
    blur.gaussian_blur(jnp.zeros((1, 2, 8, 1)), 5, 1.0)
