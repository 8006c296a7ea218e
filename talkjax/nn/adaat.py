"""AdaAT: adaptive per-channel affine transformation of a feature map (DINet; described by G4G).

Zhang & Ding, "Adaptive affine transformation" (ACM MM 2022), used in DINet (AAAI 2023) and in
paper 002 (G4G, eq. 18): a parameter code predicts, for every channel ``c`` of a reference feature
map, a scale ``s_c = 2*sigmoid(.)``, a rotation ``theta_c = pi*tanh(.)`` and a translation
``t_c = tanh(.)`` (2 values). Channel ``c`` of the output samples channel ``c`` of the input at
``s_c * R(theta_c) @ [x, y] + t_c`` for every grid point ``(x, y)`` in ``[-1, 1]``, with
``R = [[cos, -sin], [sin, cos]]``; the three heads share one hidden ``Dense + ReLU`` layer on the code.

This module implements the clean per-channel 2-D version: with ``s = 1, theta = 0, t = 0`` it is
the identity, and no channel ever reads another channel.

DINet's quirk (``dinet_compat=True``): DINet treats the map as a 3-D volume ``(1, C, H, W)`` and
calls 3-D ``grid_sample`` with the default ``align_corners=False``, but builds both the ``(x, y)``
grid and the channel coordinate ``z_c = 2c/(C-1) - 1`` in the ``align_corners=True`` convention.
The channel axis therefore lands at ``c*C/(C-1) - 0.5``: output channel ``c`` is a linear mix of
input channels ``floor(.)`` and ``floor(.)+1`` (channel 0 and channel C-1 are half zeros), and the
identity transform shrinks the map by half a pixel. It also uses ``pi = 3.14159``. The flag
reproduces all of this for DINet checkpoints; new models (G4G) should leave it off.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from talkjax.nn.ops import ShapeError, check_rank
from talkjax.nn.warp import identity_grid, sample_at_pixels, unnormalize_coords

__all__ = ["affine_channel_grids", "adaat_transform", "AdaAT"]

_DINET_PI = 3.14159


def affine_channel_grids(scale: jnp.ndarray, angle: jnp.ndarray, translation: jnp.ndarray, base: jnp.ndarray
                         ) -> jnp.ndarray:
  """Per-channel sampling grids ``s_c * R(theta_c) @ base + t_c``.

  Args:
    scale: ``(B, C)``. angle: ``(B, C)`` radians. translation: ``(B, C, 2)`` as ``(tx, ty)``.
    base: ``(H, W, 2)`` base grid of ``(x, y)``.

  Returns:
    ``(B, H, W, C, 2)`` float32.
  """
  scale = scale.astype(jnp.float32)[:, None, None, :]
  cos = jnp.cos(angle.astype(jnp.float32))[:, None, None, :]
  sin = jnp.sin(angle.astype(jnp.float32))[:, None, None, :]
  bx = base[None, :, :, None, 0]
  by = base[None, :, :, None, 1]
  t = translation.astype(jnp.float32)[:, None, None]
  gx = (cos * bx - sin * by) * scale + t[..., 0]
  gy = (sin * bx + cos * by) * scale + t[..., 1]
  return jnp.stack([gx, gy], axis=-1)


def adaat_transform(x: jnp.ndarray, scale: jnp.ndarray, angle: jnp.ndarray, translation: jnp.ndarray, *,
                    align_corners: bool = False, dinet_compat: bool = False) -> jnp.ndarray:
  """Applies per-channel affine transforms to ``x`` (B, H, W, C); see the module docstring.

  Args:
    x: ``(B, H, W, C)`` feature map.
    scale, angle: ``(B, C)``; translation: ``(B, C, 2)`` in ``[-1, 1]`` units.
    align_corners: grid convention of the clean version (identity is exact for either).
    dinet_compat: reproduce DINet's 3-D sampling (channel mixing, mismatched grid convention).
  """
  check_rank("adaat input", x, 4, "B, H, W, C")
  b, h, w, c = x.shape
  if scale.shape != (b, c) or angle.shape != (b, c) or translation.shape != (b, c, 2):
    raise ShapeError(f"adaat_transform: expected scale/angle (B, C)={(b, c)} and translation (B, C, 2), got "
                     f"{tuple(scale.shape)}, {tuple(angle.shape)}, {tuple(translation.shape)}")
  if not dinet_compat:
    grids = affine_channel_grids(scale, angle, translation, identity_grid(h, w, align_corners))
    return sample_at_pixels(x, unnormalize_coords(grids[..., 0], w, align_corners),
                            unnormalize_coords(grids[..., 1], h, align_corners))
  if c < 2:
    raise ShapeError(f"adaat_transform: dinet_compat needs at least 2 channels (DINet divides by C-1), "
                     f"got {c}")
  grids = affine_channel_grids(scale, angle, translation, identity_grid(h, w, align_corners=True))
  px = unnormalize_coords(grids[..., 0], w, align_corners=False)
  py = unnormalize_coords(grids[..., 1], h, align_corners=False)
  # DINet's channel coordinate, computed in float32 the way PyTorch does.
  z = np.float32(2) * (np.arange(c, dtype=np.float32) / np.float32(c - 1)) - np.float32(1)
  zc = ((z + np.float32(1)) * np.float32(c) - np.float32(1)) * np.float32(0.5)
  z0 = np.floor(zc).astype(np.int64)
  wz1 = (zc - z0).astype(np.float32)
  out = 0.0
  for idx, weight in ((z0, 1 - wz1), (z0 + 1, wz1)):
    valid = ((idx >= 0) & (idx < c)).astype(np.float32)
    source = jnp.take(x, jnp.asarray(np.clip(idx, 0, c - 1)), axis=-1)
    out = out + sample_at_pixels(source, px, py).astype(jnp.float32) * jnp.asarray(weight * valid)
  return out.astype(x.dtype)


class AdaAT(nn.Module):
  """AdaAT layer (DINet / G4G eq. 18): a code predicts per-channel scale, rotation, translation.

  Parameter names follow DINet's ``AdaAT`` so a converter maps them one to one:
  ``commn_linear`` (code -> hidden, ReLU; DINet's spelling), ``scale`` (-> C, ``2*sigmoid``),
  ``rotation`` (-> C, ``pi*tanh``), ``translation`` (-> 2C, ``tanh``; output unit ``2c`` is ``tx`` of
  channel ``c`` and ``2c+1`` its ``ty``). PyTorch ``Linear`` weights transpose to the Dense kernels.

  Attributes:
    hidden: width of the shared layer; ``None`` = the code's width (DINet: 256 -> 256).
    align_corners: grid convention of the clean version.
    dinet_compat: reproduce DINet's 3-D sampling quirk (see the module docstring).
    dtype: computation dtype of the Dense layers (sampling is float32 internally).
  """
  hidden: int | None = None
  align_corners: bool = False
  dinet_compat: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, code: jnp.ndarray) -> jnp.ndarray:
    """x: ``(B, H, W, C)`` feature map; code: ``(B, D)`` parameter code. Returns ``(B, H, W, C)``."""
    check_rank("AdaAT input", x, 4, "B, H, W, C")
    check_rank("AdaAT code", code, 2, "B, D")
    if code.shape[0] != x.shape[0]:
      raise ShapeError(f"AdaAT: code batch {code.shape[0]} != feature batch {x.shape[0]}")
    b, _, _, c = x.shape
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    hidden = nn.relu(dense(self.hidden or code.shape[-1], "commn_linear")(code))
    pi = _DINET_PI if self.dinet_compat else np.pi
    scale = 2 * nn.sigmoid(dense(c, "scale")(hidden).astype(jnp.float32))
    angle = pi * jnp.tanh(dense(c, "rotation")(hidden).astype(jnp.float32))
    translation = jnp.tanh(dense(2 * c, "translation")(hidden).astype(jnp.float32)).reshape(b, c, 2)
    return adaat_transform(x, scale, angle, translation, align_corners=self.align_corners,
                           dinet_compat=self.dinet_compat)
