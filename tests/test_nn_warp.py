"""talkjax.nn.warp against torch.nn.functional.grid_sample and a NumPy bilinear sampler."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from talkjax.nn import ShapeError, ops, warp


_grid_sample = jax.jit(warp.grid_sample, static_argnums=2)
_per_channel = jax.jit(warp.grid_sample_per_channel, static_argnums=2)
_warp_by_flow = jax.jit(warp.warp_by_flow)


def _to_nchw(x):
  return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def _np_bilinear(img, px, py):
  """img (H, W, C); sample at float pixel (px, py) with zero padding, corner by corner."""
  h, w, _ = img.shape
  x0, y0 = int(np.floor(px)), int(np.floor(py))
  out = np.zeros(img.shape[-1], np.float64)
  for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
    for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
      if 0 <= xx < w and 0 <= yy < h:
        out += wx * wy * img[yy, xx]
  return out


@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample_matches_torch(align_corners):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 7, 9, 3)).astype(np.float32)
  grid = rng.uniform(-1.25, 1.25, size=(2, 5, 6, 2)).astype(np.float32)  # some samples fall outside
  out = _grid_sample(jnp.asarray(x), jnp.asarray(grid), align_corners)
  chex.assert_shape(out, (2, 5, 6, 3))
  ref = F.grid_sample(_to_nchw(x), torch.from_numpy(grid), mode="bilinear", padding_mode="zeros",
                      align_corners=align_corners).numpy().transpose(0, 2, 3, 1)
  assert np.max(np.abs(np.asarray(out) - ref)) < 1e-5


@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample_gradients_match_torch(align_corners):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(1, 6, 5, 2)).astype(np.float32)
  grid = rng.uniform(-1.1, 1.1, size=(1, 4, 4, 2)).astype(np.float32)
  cot = rng.normal(size=(1, 4, 4, 2)).astype(np.float32)
  loss = lambda a, g: jnp.sum(warp.grid_sample(a, g, align_corners) * cot)
  gx, gg = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(x), jnp.asarray(grid))
  tx = _to_nchw(x).requires_grad_(True)
  tg = torch.from_numpy(grid).requires_grad_(True)
  out = F.grid_sample(tx, tg, align_corners=align_corners)
  (out * _to_nchw(cot)).sum().backward()
  np.testing.assert_allclose(np.asarray(gx), tx.grad.numpy().transpose(0, 2, 3, 1), atol=1e-5)
  np.testing.assert_allclose(np.asarray(gg), tg.grad.numpy(), atol=1e-4)


@pytest.mark.parametrize("align_corners", [False, True])
def test_identity_grid_reproduces_input(align_corners):
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 5, 8, 3)), jnp.float32)
  grid = jnp.broadcast_to(warp.identity_grid(5, 8, align_corners), (2, 5, 8, 2))
  np.testing.assert_allclose(np.asarray(_grid_sample(x, grid, align_corners)), np.asarray(x), atol=1e-5)
  if align_corners:  # linspace(-1, 1), IP_LAP's make_coordinate_grid
    np.testing.assert_allclose(np.asarray(warp.identity_grid(5, 8, True)[0, :, 0]), np.linspace(-1, 1, 8),
                               atol=1e-7)


def test_warp_by_flow_matches_numpy_and_flow_to_grid():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(2, 6, 7, 3)).astype(np.float32)
  flow = rng.uniform(-2.5, 2.5, size=(2, 6, 7, 2)).astype(np.float32)
  out = np.asarray(_warp_by_flow(jnp.asarray(x), jnp.asarray(flow)))
  chex.assert_shape(out, (2, 6, 7, 3))
  ref = np.zeros_like(out)
  for b in range(2):
    for i in range(6):
      for j in range(7):
        ref[b, i, j] = _np_bilinear(x[b], j + flow[b, i, j, 0], i + flow[b, i, j, 1])
  np.testing.assert_allclose(out, ref, atol=1e-5)
  for ac in (False, True):  # the same warp through a normalised grid
    via_grid = _grid_sample(jnp.asarray(x), warp.flow_to_grid(jnp.asarray(flow), ac), ac)
    np.testing.assert_allclose(np.asarray(via_grid), ref, atol=1e-5)


def test_iplap_deformation_quirk_matches_torch():
  """IP_LAP: align_corners=True-style grid + 2*flow/(size-1), sampled with align_corners=False."""
  rng = np.random.default_rng(4)
  x = rng.normal(size=(1, 8, 8, 4)).astype(np.float32)
  flow = rng.normal(size=(1, 8, 8, 2)).astype(np.float32)
  tflow = torch.from_numpy(flow)
  lin = torch.linspace(-1, 1, 8)
  base = torch.stack([lin[None, :].expand(8, 8), lin[:, None].expand(8, 8)], -1)[None]
  deformation = base + 2 * tflow / 7
  ref = F.grid_sample(_to_nchw(x), deformation, align_corners=False).numpy().transpose(0, 2, 3, 1)
  out = _grid_sample(jnp.asarray(x), warp.flow_to_grid(jnp.asarray(flow), align_corners=True), False)
  assert np.max(np.abs(np.asarray(out) - ref)) < 1e-5
  # ...which is not the clean warp: the quirk shrinks the image by half a pixel.
  clean = _warp_by_flow(jnp.asarray(x), jnp.asarray(flow))
  assert np.max(np.abs(np.asarray(out) - np.asarray(clean))) > 1e-2


def test_grid_sample_per_channel_matches_channelwise_grid_sample():
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.normal(size=(2, 5, 6, 3)), jnp.float32)
  grids = jnp.asarray(rng.uniform(-1.2, 1.2, size=(2, 4, 3, 3, 2)), jnp.float32)
  out = _per_channel(x, grids, False)
  chex.assert_shape(out, (2, 4, 3, 3))
  for c in range(3):
    ref = _grid_sample(x[..., c:c + 1], grids[:, :, :, c], False)
    np.testing.assert_allclose(np.asarray(out[..., c]), np.asarray(ref[..., 0]), atol=1e-6)


def test_bf16_input_keeps_dtype_and_float32_coordinates():
  x = jnp.asarray(np.random.default_rng(6).normal(size=(1, 300, 4, 1)), jnp.bfloat16)
  grid = jnp.broadcast_to(warp.identity_grid(300, 4, False), (1, 300, 4, 2))
  out = _grid_sample(x, grid, False)
  assert out.dtype == jnp.bfloat16
  # Within bf16 rounding of the input everywhere: no pixel is read from a neighbouring row (a bf16
  # coordinate near row 300 would be off by up to 2 rows).
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(x, np.float32), rtol=8e-3, atol=1e-3)


def test_bad_shapes_are_named():
  x = jnp.zeros((2, 4, 4, 3))
  with pytest.raises(ShapeError, match="grid must be"):
    warp.grid_sample(x, jnp.zeros((2, 4, 4, 3)))
  with pytest.raises(ShapeError, match="rank-4"):
    warp.grid_sample(jnp.zeros((4, 4, 3)), jnp.zeros((2, 4, 4, 2)))
  with pytest.raises(ShapeError, match="flow must be"):
    warp.warp_by_flow(x, jnp.zeros((2, 5, 4, 2)))
  assert issubclass(ShapeError, ValueError) and ops.ShapeError is ShapeError
