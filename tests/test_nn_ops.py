"""talkjax.nn.ops against torch: PixelShuffle/Unshuffle and F.interpolate (nearest, bilinear)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from talkjax.nn import ShapeError, ops


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def _nhwc(t):
  return t.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("r", [2, 3])
def test_pixel_shuffle_matches_torch(r):
  x = np.random.default_rng(0).normal(size=(2, 3, 4, 5 * r * r)).astype(np.float32)
  out = jax.jit(ops.pixel_shuffle, static_argnums=1)(jnp.asarray(x), r)
  chex.assert_shape(out, (2, 3 * r, 4 * r, 5))
  np.testing.assert_array_equal(np.asarray(out), _nhwc(torch.nn.PixelShuffle(r)(_nchw(x))))


def test_pixel_unshuffle_matches_torch_and_inverts():
  x = np.random.default_rng(1).normal(size=(2, 6, 4, 3)).astype(np.float32)
  out = ops.pixel_unshuffle(jnp.asarray(x), 2)
  chex.assert_shape(out, (2, 3, 2, 12))
  np.testing.assert_array_equal(np.asarray(out), _nhwc(torch.nn.PixelUnshuffle(2)(_nchw(x))))
  np.testing.assert_array_equal(np.asarray(ops.pixel_shuffle(out, 2)), x)


@pytest.mark.parametrize("size", [(4, 4), (3, 5), (16, 12), (7, 9)])
def test_resize_nearest_matches_torch(size):
  x = np.random.default_rng(2).normal(size=(2, 8, 6, 3)).astype(np.float32)
  out = ops.resize_nearest(jnp.asarray(x), size)
  chex.assert_shape(out, (2,) + size + (3,))
  np.testing.assert_array_equal(np.asarray(out), _nhwc(F.interpolate(_nchw(x), size=size, mode="nearest")))


def test_resize_nearest_differs_from_jax_image_resize_on_2x_downsample():
  """The reason this helper exists: PyTorch keeps even rows, jax.image.resize odd ones."""
  x = jnp.arange(16, dtype=jnp.float32).reshape(1, 4, 4, 1)
  np.testing.assert_array_equal(np.asarray(ops.resize_nearest(x, 2))[0, :, :, 0], [[0, 2], [8, 10]])
  assert not np.array_equal(np.asarray(jax.image.resize(x, (1, 2, 2, 1), "nearest")),
                            np.asarray(ops.resize_nearest(x, 2)))


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(16, 12), (3, 5), (1, 4)])
def test_resize_bilinear_matches_torch(size, align_corners):
  x = np.random.default_rng(3).normal(size=(2, 8, 6, 2)).astype(np.float32)
  out = ops.resize_bilinear(jnp.asarray(x), size, align_corners)
  chex.assert_shape(out, (2,) + size + (2,))
  ref = F.interpolate(_nchw(x), size=size, mode="bilinear", align_corners=align_corners)
  np.testing.assert_allclose(np.asarray(out), _nhwc(ref), atol=1e-5)


def test_bad_inputs_are_named():
  with pytest.raises(ShapeError, match="divisible by upscale_factor"):
    ops.pixel_shuffle(jnp.zeros((1, 2, 2, 6)), 2)
  with pytest.raises(ShapeError, match="divisible by downscale_factor"):
    ops.pixel_unshuffle(jnp.zeros((1, 5, 4, 1)), 2)
  with pytest.raises(ShapeError, match="rank-4"):
    ops.resize_nearest(jnp.zeros((4, 4, 1)), 2)
