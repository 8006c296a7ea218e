"""PSNR and SSIM against scikit-image with the settings documented in talkjax.metrics.image."""

import numpy as np
import pytest
import skimage.data
import skimage.metrics

from talkjax.metrics import image


def _pairs():
  rng = np.random.default_rng(0)
  photo = skimage.data.astronaut()[100:196, 150:246]              # a 96x96 face crop
  noisy = np.clip(photo.astype(int) + rng.integers(-25, 26, photo.shape), 0, 255).astype(np.uint8)
  shifted = np.roll(photo, 2, axis=1)
  blocky = np.repeat(np.repeat(photo[::4, ::4], 4, 0), 4, 1)
  return np.stack([photo, photo, photo]), np.stack([noisy, shifted, blocky])


def test_psnr_and_ssim_equal_scikit_image():
  ref, gen = _pairs()
  p, s = image.psnr_ssim(gen, ref)
  for i in range(3):
    want_p = skimage.metrics.peak_signal_noise_ratio(ref[i], gen[i], data_range=255)
    want_s = skimage.metrics.structural_similarity(ref[i], gen[i], gaussian_weights=True, sigma=1.5,
                                                  use_sample_covariance=False, data_range=255,
                                                  channel_axis=-1)
    assert p[i] == pytest.approx(want_p, abs=1e-4)
    assert s[i] == pytest.approx(want_s, abs=1e-5)
  np.testing.assert_allclose(image.psnr(gen, ref), p)
  np.testing.assert_allclose(image.ssim(gen, ref), s)


def test_leading_dims_float_input_and_identity():
  ref, gen = _pairs()
  batched = image.ssim(gen.reshape(1, 3, 96, 96, 3).astype(np.float32), ref.reshape(1, 3, 96, 96, 3))
  assert batched.shape == (1, 3)
  np.testing.assert_allclose(batched[0], image.ssim(gen, ref), rtol=1e-6)
  assert image.ssim(ref, ref) == pytest.approx([1.0] * 3, abs=1e-6)
  assert np.all(np.isinf(image.psnr(ref, ref)))
  # PSNR of a constant error of 5 grey levels: 10 log10(255^2 / 25).
  off = np.clip(ref.astype(int) + 5, 0, 255)
  off[ref > 250] = ref[ref > 250] - 5
  assert image.psnr(off.astype(np.uint8), ref) == pytest.approx([10 * np.log10(255 ** 2 / 25)] * 3)


def test_errors_name_the_problem():
  ref, gen = _pairs()
  with pytest.raises(ValueError, match="differ in shape"):
    image.psnr(gen[:2], ref)
  with pytest.raises(ValueError, match="0..255"):
    image.ssim(gen / 255.0 * 300, ref)
  with pytest.raises(ValueError, match="NaN"):
    image.psnr(np.full(ref.shape, np.nan), ref)
  with pytest.raises(ValueError, match="smaller than"):
    image.ssim(gen[:, :8, :8], ref[:, :8, :8])
  with pytest.raises(ValueError, match="RGB"):
    image.psnr(gen[..., :2], ref[..., :2])
