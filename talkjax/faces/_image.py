"""Frame validation, conversion to PIL and resampling helpers shared by talkjax.faces.

Coordinates: every point and box in talkjax.faces is in *continuous* pixel coordinates: pixel
``(row i, column j)`` covers ``[j, j+1) x [i, i+1)`` and its centre is ``(j + 0.5, i + 0.5)``. This is
the convention of MediaPipe's normalised outputs (``x_norm * width``) and of PIL's geometric
transforms, so no half-pixel corrections are needed anywhere.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def check_frame(frame, name: str = "frame") -> np.ndarray:
  """Validates one RGB frame and returns it as a C-contiguous ``(H, W, 3)`` uint8 array.

  Accepts uint8 (0..255) or floating point (0..1) RGB. Raises ``ValueError`` naming ``name`` and the
  problem for anything else (wrong rank/channels, empty, NaN/inf, out-of-range floats).
  """
  arr = np.asarray(frame)
  if arr.ndim != 3 or arr.shape[-1] != 3:
    raise ValueError(f"{name}: expected an (H, W, 3) RGB image, got shape {arr.shape}")
  if arr.shape[0] < 8 or arr.shape[1] < 8:
    raise ValueError(f"{name}: image of {arr.shape[1]}x{arr.shape[0]} pixels is too small (minimum 8x8)")
  if arr.dtype == np.uint8:
    return np.ascontiguousarray(arr)
  if np.issubdtype(arr.dtype, np.floating):
    if not np.all(np.isfinite(arr)):
      raise ValueError(f"{name}: image contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
      raise ValueError(f"{name}: float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
    return np.ascontiguousarray(np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8))
  raise ValueError(f"{name}: unsupported dtype {arr.dtype} (expected uint8 or float in [0, 1])")


def to_pil(frame: np.ndarray) -> Image.Image:
  """(H, W, 3) uint8 -> PIL RGB image (one copy)."""
  return Image.fromarray(frame, mode="RGB")


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
  """Resizes an ``(H, W, C)`` or ``(H, W)`` image with antialiased bilinear filtering.

  uint8 RGB goes through PIL's RGB path; anything else is resized channel by channel in float32
  (PIL mode "F") and returned as float32. A same-size call returns the input unchanged.
  """
  if image.shape[0] == height and image.shape[1] == width:
    return image
  if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
    return np.asarray(Image.fromarray(image, mode="RGB").resize((width, height), Image.BILINEAR))
  img = np.asarray(image, dtype=np.float32)
  planes = img[..., None] if img.ndim == 2 else img
  out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c]), mode="F")
                             .resize((width, height), Image.BILINEAR))
                  for c in range(planes.shape[-1])], axis=-1)
  return out[..., 0] if img.ndim == 2 else out


def sigmoid(x: np.ndarray) -> np.ndarray:
  # Clipping as MediaPipe does (score_clipping_thresh 100) keeps exp() finite in float32.
  return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))
