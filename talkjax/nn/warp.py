"""Bilinear sampling of NHWC feature maps (``F.grid_sample`` equivalent), flow warping and grids.

Coordinates follow PyTorch's ``grid_sample`` convention: a grid holds ``(x, y)`` pairs in
``[-1, 1]``, ``x`` along the width. With ``align_corners=True`` the extremes -1 and 1 are the
*centres* of the corner pixels (pixel ``i`` sits at ``2*i/(size-1) - 1``); with
``align_corners=False`` they are the *outer edges* of the corner pixels (pixel ``i`` sits at
``(2*i + 1)/size - 1``). Samples that fall outside the map read zeros (``padding_mode="zeros"``),
corner by corner, exactly as PyTorch does, so values near the border fade rather than clamp.

Coordinates and interpolation weights are always computed in float32 (a bf16 pixel coordinate is
off by whole pixels beyond 256); the result has the input's dtype.

IP_LAP quirk (NOTES.md): its ``convert_flow_to_deformation`` builds an ``align_corners=True`` grid
and adds ``2*flow/(size-1)``, but samples with ``align_corners=False``. Reproduce it for converted
checkpoints with ``grid_sample(x, flow_to_grid(flow, align_corners=True), align_corners=False)``;
new models should use :func:`warp_by_flow`, which moves pixel ``p`` to exactly ``p + flow(p)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from talkjax.nn.ops import ShapeError, check_rank

__all__ = [
    "identity_grid", "normalize_coords", "unnormalize_coords", "grid_sample", "grid_sample_per_channel",
    "sample_at_pixels", "flow_to_grid", "warp_by_flow",
]


def unnormalize_coords(coord: jnp.ndarray, size: int, align_corners: bool) -> jnp.ndarray:
  """Maps ``[-1, 1]`` coordinates to pixel indices along an axis of ``size`` pixels (PyTorch's rule)."""
  coord = coord.astype(jnp.float32)
  if align_corners:
    return (coord + 1) * 0.5 * (size - 1)
  return ((coord + 1) * size - 1) * 0.5


def normalize_coords(pixel: jnp.ndarray, size: int, align_corners: bool) -> jnp.ndarray:
  """Inverse of :func:`unnormalize_coords`: pixel index -> ``[-1, 1]`` coordinate."""
  pixel = pixel.astype(jnp.float32)
  if align_corners:
    if size == 1:
      return jnp.zeros_like(pixel)
    return pixel * (2.0 / (size - 1)) - 1
  return (2 * pixel + 1) / size - 1


def identity_grid(height: int, width: int, align_corners: bool = False) -> jnp.ndarray:
  """``(height, width, 2)`` float32 grid of ``(x, y)`` that samples every pixel at its own centre.

  ``grid_sample(x, identity_grid(H, W, ac)[None], ac)`` returns ``x`` unchanged for either setting.
  With ``align_corners=True`` this is IP_LAP's / DINet's ``make_coordinate_grid`` (``linspace(-1, 1)``).
  """
  xs = normalize_coords(jnp.arange(width, dtype=jnp.float32), width, align_corners)
  ys = normalize_coords(jnp.arange(height, dtype=jnp.float32), height, align_corners)
  gx, gy = jnp.meshgrid(xs, ys, indexing="xy")
  return jnp.stack([gx, gy], axis=-1)


def _gather(x: jnp.ndarray, iy: jnp.ndarray, ix: jnp.ndarray, per_channel: bool) -> jnp.ndarray:
  """x: (B, H, W, C); iy/ix int (B, Ho, Wo) or (B, Ho, Wo, C) -> (B, Ho, Wo, C)."""
  if per_channel:
    channels = jnp.arange(x.shape[-1])
    return jax.vmap(lambda xb, yb, xb_: xb[yb, xb_, channels])(x, iy, ix)
  return jax.vmap(lambda xb, yb, xb_: xb[yb, xb_])(x, iy, ix)


def sample_at_pixels(x: jnp.ndarray, px: jnp.ndarray, py: jnp.ndarray) -> jnp.ndarray:
  """Bilinear sample of ``x`` (B, H, W, C) at float pixel coordinates, zeros outside the map.

  ``px``/``py`` are ``(B, Ho, Wo)`` (the same location for every channel) or ``(B, Ho, Wo, C)``
  (a location per channel, as AdaAT needs). Pixel ``(i, j)`` is at ``px = j, py = i``.
  """
  check_rank("sample_at_pixels input", x, 4, "B, H, W, C")
  if px.shape != py.shape or px.ndim not in (3, 4) or px.shape[0] != x.shape[0]:
    raise ShapeError(f"sample_at_pixels: coordinates must both be (B, Ho, Wo) or (B, Ho, Wo, C) with "
                     f"B={x.shape[0]}, got {tuple(px.shape)} and {tuple(py.shape)}")
  per_channel = px.ndim == 4
  if per_channel and px.shape[-1] != x.shape[-1]:
    raise ShapeError(f"sample_at_pixels: per-channel coordinates have {px.shape[-1]} channels, "
                     f"input has {x.shape[-1]}")
  _, h, w, _ = x.shape
  px = px.astype(jnp.float32)
  py = py.astype(jnp.float32)
  x0 = jnp.floor(px)
  y0 = jnp.floor(py)
  wx1 = px - x0
  wy1 = py - y0
  wx0 = 1 - wx1
  wy0 = 1 - wy1
  x0 = x0.astype(jnp.int32)
  y0 = y0.astype(jnp.int32)
  out = None
  for dy, wy in ((0, wy0), (1, wy1)):
    for dx, wx in ((0, wx0), (1, wx1)):
      yi = y0 + dy
      xi = x0 + dx
      inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
      vals = _gather(x, jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1), per_channel)
      weight = jnp.where(inside, wx * wy, 0.0)
      if not per_channel:
        weight = weight[..., None]
      term = vals.astype(jnp.float32) * weight
      out = term if out is None else out + term
  return out.astype(x.dtype)


def _check_grid(x: jnp.ndarray, grid: jnp.ndarray, rank: int) -> None:
  check_rank("grid_sample input", x, 4, "B, H, W, C")
  if grid.ndim != rank or grid.shape[-1] != 2 or grid.shape[0] != x.shape[0]:
    layout = "(B, Ho, Wo, 2)" if rank == 4 else "(B, Ho, Wo, C, 2)"
    raise ShapeError(f"grid_sample: grid must be {layout} of (x, y) with B={x.shape[0]}, "
                     f"got shape {tuple(grid.shape)}")


def grid_sample(x: jnp.ndarray, grid: jnp.ndarray, align_corners: bool = False) -> jnp.ndarray:
  """``F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=...)`` in NHWC.

  Args:
    x: ``(B, H, W, C)`` features.
    grid: ``(B, Ho, Wo, 2)`` sampling locations ``(x, y)`` in ``[-1, 1]`` (values outside read zeros).
    align_corners: PyTorch's flag (see the module docstring).

  Returns:
    ``(B, Ho, Wo, C)`` in ``x.dtype``.
  """
  _check_grid(x, grid, 4)
  _, h, w, _ = x.shape
  px = unnormalize_coords(grid[..., 0], w, align_corners)
  py = unnormalize_coords(grid[..., 1], h, align_corners)
  return sample_at_pixels(x, px, py)


def grid_sample_per_channel(x: jnp.ndarray, grid: jnp.ndarray, align_corners: bool = False) -> jnp.ndarray:
  """Like :func:`grid_sample` but channel ``c`` is sampled on its own grid ``grid[:, :, :, c]``.

  ``grid`` is ``(B, Ho, Wo, C, 2)``. This is the clean per-channel deformation AdaAT describes.
  """
  _check_grid(x, grid, 5)
  if grid.shape[3] != x.shape[-1]:
    raise ShapeError(f"grid_sample_per_channel: grid has {grid.shape[3]} channel grids, input has "
                     f"{x.shape[-1]} channels")
  _, h, w, _ = x.shape
  px = unnormalize_coords(grid[..., 0], w, align_corners)
  py = unnormalize_coords(grid[..., 1], h, align_corners)
  return sample_at_pixels(x, px, py)


def flow_to_grid(flow: jnp.ndarray, align_corners: bool = False) -> jnp.ndarray:
  """Dense flow in pixels ``(B, H, W, 2)`` of ``(dx, dy)`` -> sampling grid ``(B, H, W, 2)``.

  With a matching ``align_corners`` in :func:`grid_sample`, output pixel ``p`` reads ``x`` at
  ``p + flow(p)``. ``flow_to_grid(flow, align_corners=True)`` is IP_LAP's
  ``convert_flow_to_deformation`` (which IP_LAP then samples with ``align_corners=False``).
  """
  check_rank("flow", flow, 4, "B, H, W, 2")
  if flow.shape[-1] != 2:
    raise ShapeError(f"flow: last axis must hold (dx, dy), got shape {tuple(flow.shape)}")
  _, h, w, _ = flow.shape
  flow = flow.astype(jnp.float32)
  if align_corners:
    sx, sy = 2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)
  else:
    sx, sy = 2.0 / w, 2.0 / h
  return identity_grid(h, w, align_corners)[None] + flow * jnp.asarray([sx, sy], jnp.float32)


def warp_by_flow(x: jnp.ndarray, flow: jnp.ndarray) -> jnp.ndarray:
  """Backward-warps ``x`` (B, H, W, C) by a pixel flow (B, H, W, 2): ``out[p] = x[p + flow(p)]``.

  Bilinear, zeros outside the map. Flow and features must share their spatial size (resize the
  flow with :func:`talkjax.nn.ops.resize_bilinear` and scale its values first if they do not).
  """
  check_rank("warp_by_flow input", x, 4, "B, H, W, C")
  check_rank("flow", flow, 4, "B, H, W, 2")
  if flow.shape[:3] != x.shape[:3] or flow.shape[-1] != 2:
    raise ShapeError(f"warp_by_flow: flow must be (B, H, W, 2) matching input {tuple(x.shape[:3])}, "
                     f"got {tuple(flow.shape)}")
  b, h, w, _ = x.shape
  gy, gx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  flow = flow.astype(jnp.float32)
  return sample_at_pixels(x, gx[None] + flow[..., 0], gy[None] + flow[..., 1])
