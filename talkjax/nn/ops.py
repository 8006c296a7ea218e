"""Small tensor ops shared by the layers: PixelShuffle, PyTorch-exact resizing, shape checks.

All arrays are NHWC. ``pixel_shuffle`` / ``pixel_unshuffle`` equal ``torch.nn.PixelShuffle`` /
``PixelUnshuffle`` on the NCHW transpose (Shi et al. 2016, the sub-pixel convolution that IP_LAP's
renderer and paper 004's decoder use). ``resize_nearest`` and ``resize_bilinear`` reproduce
``torch.nn.functional.interpolate`` index for index, which ``jax.image.resize`` does not: PyTorch's
``mode="nearest"`` takes source pixel ``floor(i * in / out)`` (no half-pixel offset), so a 2x
downsample keeps the even rows where ``jax.image.resize`` keeps the odd ones. Reference networks
(IP_LAP's SPADE conditioning, NVlabs SPADE) were trained with PyTorch's choice, so converted
checkpoints need it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from talkjax import errors

__all__ = [
    "ArgumentError", "ShapeError", "check_rank", "pixel_shuffle", "pixel_unshuffle", "resize_nearest",
    "resize_bilinear",
]


ArgumentError = errors.ArgumentError
ShapeError = errors.ShapeError


def check_rank(name: str, x, rank: int | Sequence[int], layout: str = "") -> None:
  """Raises :class:`ShapeError` naming ``name`` unless ``x.ndim`` is (one of) ``rank``."""
  ranks = (rank,) if isinstance(rank, int) else tuple(rank)
  if x.ndim not in ranks:
    want = " or ".join(str(r) for r in ranks)
    hint = f" ({layout})" if layout else ""
    raise ShapeError(f"{name}: expected a rank-{want} array{hint}, got shape {tuple(x.shape)}")


def pixel_shuffle(x: jnp.ndarray, upscale_factor: int) -> jnp.ndarray:
  """Rearranges ``(B, H, W, C*r*r)`` into ``(B, H*r, W*r, C)`` exactly like ``torch.nn.PixelShuffle``.

  Channel ``c*r*r + i*r + j`` of input pixel ``(h, w)`` goes to output pixel ``(h*r + i, w*r + j)``,
  channel ``c`` (PyTorch's channel order, so converted convolutions before it need no permutation).
  """
  check_rank("pixel_shuffle input", x, 4, "B, H, W, C")
  r = int(upscale_factor)
  b, h, w, c = x.shape
  if r < 1 or c % (r * r):
    raise ShapeError(f"pixel_shuffle: channels ({c}) must be divisible by upscale_factor**2 ({r}**2)")
  x = x.reshape(b, h, w, c // (r * r), r, r)
  x = x.transpose(0, 1, 4, 2, 5, 3)
  return x.reshape(b, h * r, w * r, c // (r * r))


def pixel_unshuffle(x: jnp.ndarray, downscale_factor: int) -> jnp.ndarray:
  """Inverse of :func:`pixel_shuffle`: ``(B, H*r, W*r, C)`` -> ``(B, H, W, C*r*r)`` (``PixelUnshuffle``)."""
  check_rank("pixel_unshuffle input", x, 4, "B, H, W, C")
  r = int(downscale_factor)
  b, h, w, c = x.shape
  if r < 1 or h % r or w % r:
    raise ShapeError(f"pixel_unshuffle: spatial size {h}x{w} must be divisible by downscale_factor {r}")
  x = x.reshape(b, h // r, r, w // r, r, c)
  x = x.transpose(0, 1, 3, 5, 2, 4)
  return x.reshape(b, h // r, w // r, c * r * r)


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
  if isinstance(size, int):
    return size, size
  size = tuple(int(s) for s in size)
  if len(size) != 2:
    raise ShapeError(f"resize: size must be an int or (height, width), got {size}")
  return size


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
  # PyTorch computes the scale in float32 and floors dst * scale (legacy "nearest").
  scale = np.float32(n_in) / np.float32(n_out)
  idx = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
  return np.minimum(idx, n_in - 1)


def resize_nearest(x: jnp.ndarray, size: int | Sequence[int]) -> jnp.ndarray:
  """``F.interpolate(x, size, mode="nearest")`` on NHWC: output pixel ``i`` copies ``floor(i*in/out)``."""
  check_rank("resize_nearest input", x, 4, "B, H, W, C")
  out_h, out_w = _size2(size)
  _, h, w, _ = x.shape
  if (out_h, out_w) == (h, w):
    return x
  x = jnp.take(x, jnp.asarray(_nearest_index(h, out_h)), axis=1)
  return jnp.take(x, jnp.asarray(_nearest_index(w, out_w)), axis=2)


def _linear_weights(n_in: int, n_out: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Source indices (i0, i1) and weight of i1 for PyTorch's 1-D linear interpolation."""
  dst = np.arange(n_out, dtype=np.float32)
  if align_corners:
    scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
    src = dst * scale
  else:
    scale = np.float32(n_in) / np.float32(n_out)
    src = np.maximum((dst + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
  i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
  i1 = np.minimum(i0 + 1, n_in - 1)
  lam = (src - i0).astype(np.float32)
  return i0, i1, lam


def resize_bilinear(x: jnp.ndarray, size: int | Sequence[int], align_corners: bool = False) -> jnp.ndarray:
  """``F.interpolate(x, size, mode="bilinear", align_corners=...)`` on NHWC (no antialiasing).

  Used for resizing sampling grids and flows between resolutions as IP_LAP's ``warping`` does.
  Interpolation weights are computed in float32; the result has ``x``'s dtype.
  """
  check_rank("resize_bilinear input", x, 4, "B, H, W, C")
  out_h, out_w = _size2(size)
  _, h, w, _ = x.shape
  if (out_h, out_w) == (h, w):
    return x
  dtype = x.dtype
  y = x.astype(jnp.float32)
  i0, i1, lam = _linear_weights(h, out_h, align_corners)
  lam = jnp.asarray(lam)[None, :, None, None]
  y = jnp.take(y, jnp.asarray(i0), axis=1) * (1 - lam) + jnp.take(y, jnp.asarray(i1), axis=1) * lam
  i0, i1, lam = _linear_weights(w, out_w, align_corners)
  lam = jnp.asarray(lam)[None, None, :, None]
  y = jnp.take(y, jnp.asarray(i0), axis=2) * (1 - lam) + jnp.take(y, jnp.asarray(i1), axis=2) * lam
  return y.astype(dtype)
