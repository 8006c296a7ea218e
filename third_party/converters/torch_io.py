"""Safe reading of PyTorch checkpoints and strict state-dict -> Flax variable mapping.

Shared by every converter in this package. PyTorch is imported lazily: it is needed only to read
``.pth`` files, never to run talkjax models.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np

from talkjax.errors import CheckpointError

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net", "params")


def load_torch_file(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """Reads a PyTorch checkpoint safely and returns a flat ``{key: float32/int ndarray}`` dict.

  Uses ``torch.load(..., map_location="cpu", weights_only=True)``: a pickle that needs to execute
  code (custom classes, arbitrary callables) is refused with :class:`CheckpointError`. ``.safetensors``
  files are read with the ``safetensors`` package when it is installed.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: no such file")
  if path.endswith(".safetensors"):
    try:
      from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise CheckpointError(f"{path}: reading .safetensors needs the 'safetensors' package") from e
    return unwrap_state_dict(load_file(path), path)
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise CheckpointError(f"{path}: reading PyTorch checkpoints needs torch (pip install torch)") from e
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    raise CheckpointError(
        f"{path}: refused: this pickle needs code execution to load (weights_only=True failed: "
        f"{str(e).splitlines()[0]}). talkjax never unpickles untrusted files; re-save the weights "
        "as a plain state_dict (torch.save(model.state_dict(), ...)) or as .safetensors") from e
  except (RuntimeError, EOFError, OSError, ValueError) as e:
    raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
  return unwrap_state_dict(obj, path)


def unwrap_state_dict(obj: Any, source: str = "<state_dict>") -> dict[str, np.ndarray]:
  """Finds the tensor dict inside common wrappers and strips ``module.`` (DataParallel) prefixes."""
  for _ in range(3):
    if isinstance(obj, Mapping) and not _is_tensor_dict(obj):
      for k in WRAPPER_KEYS:
        if k in obj and isinstance(obj[k], Mapping):
          obj = obj[k]
          break
      else:
        break
  if not isinstance(obj, Mapping) or not _is_tensor_dict(obj):
    keys = list(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(f"{source}: no state_dict of tensors found (top level: {keys})")
  out = {}
  for k, v in obj.items():
    key = k[len("module."):] if k.startswith("module.") else k
    out[key] = _to_numpy(v)
  return out


def _is_tensor_dict(obj: Mapping) -> bool:
  return len(obj) > 0 and all(_is_array(v) for v in obj.values())


def _is_array(v: Any) -> bool:
  if isinstance(v, np.ndarray):
    return True
  return type(v).__module__.startswith("torch") and hasattr(v, "detach")


def _to_numpy(v: Any) -> np.ndarray:
  if isinstance(v, np.ndarray):
    return v
  return v.detach().cpu().numpy()


class StateDictReader:
  """Takes tensors out of a state dict by key, checking shapes; reports every mismatch at once.

  Usage::

    r = StateDictReader(sd, source="wav2lip.pth")
    w = r.take("conv.weight", (32, 3, 3, 3))
    ...
    r.finish(ignore_prefixes=("perceptual.",))   # raises on unknown/missing/mis-shaped keys
  """

  def __init__(self, state_dict: Mapping[str, np.ndarray], source: str = "<state_dict>"):
    self._sd = dict(state_dict)
    self._used: set[str] = set()
    self._missing: list[str] = []
    self._misshaped: list[str] = []
    self.source = source

  def has(self, key: str) -> bool:
    return key in self._sd

  def take(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Returns the tensor at ``key`` (float tensors as float32); records problems for ``finish``."""
    if key not in self._sd:
      self._missing.append(key + (f" {tuple(shape)}" if shape is not None else ""))
      return np.zeros(shape or (), np.float32)
    self._used.add(key)
    arr = np.asarray(self._sd[key])
    if np.issubdtype(arr.dtype, np.floating):
      arr = arr.astype(np.float32)
    if shape is not None and tuple(arr.shape) != tuple(shape):
      self._misshaped.append(f"{key}: expected {tuple(shape)}, found {tuple(arr.shape)}")
      return np.zeros(shape, np.float32)
    return arr

  def skip(self, key: str) -> None:
    """Marks a key as deliberately unused (e.g. BatchNorm's num_batches_tracked)."""
    if key in self._sd:
      self._used.add(key)

  def finish(self, ignore_prefixes: tuple[str, ...] = (),
             ignore_suffixes: tuple[str, ...] = ("num_batches_tracked",)) -> None:
    """Raises :class:`CheckpointError` listing unknown, missing and mis-shaped keys, if any."""
    unknown = sorted(k for k in self._sd if k not in self._used
                     and not k.startswith(tuple(ignore_prefixes)) and not k.endswith(ignore_suffixes))
    problems = []
    if self._missing:
      problems.append(f"missing keys: {', '.join(self._missing)}")
    if self._misshaped:
      problems.append(f"mis-shaped keys: {'; '.join(self._misshaped)}")
    if unknown:
      problems.append(f"unknown keys: {', '.join(unknown)}")
    if problems:
      raise CheckpointError(f"{self.source}: state dict does not match the model: " + " | ".join(problems))
    nonfinite = sorted(k for k in self._used
                       if np.issubdtype(np.asarray(self._sd[k]).dtype, np.floating)
                       and not np.all(np.isfinite(self._sd[k])))
    if nonfinite:
      raise CheckpointError(f"{self.source}: non-finite (NaN or inf) weights in {', '.join(nonfinite)}")


# --- Layout conversions (PyTorch NCHW conventions -> Flax NHWC) -------------------------------

def conv_kernel(w: np.ndarray) -> np.ndarray:
  """Conv weight OIHW (or OIDHW / OIL) -> Flax HWIO (DHWIO / LIO)."""
  nd = w.ndim - 2
  return np.transpose(w, tuple(range(2, 2 + nd)) + (1, 0))


def conv_transpose_kernel(w: np.ndarray) -> np.ndarray:
  """ConvTranspose weight (Cin, Cout, kh, kw) -> Flax ``nn.ConvTranspose(transpose_kernel=True)``.

  With ``transpose_kernel=True`` Flax computes the gradient-of-conv form that PyTorch's
  ConvTranspose2d computes, expecting the kernel laid out as the *forward* conv it is the transpose
  of: (kh, kw, Cout, Cin). No spatial flip is needed (verified against PyTorch, including
  ``output_padding``, in tests/test_models_wav2lip.py). 1-D and 3-D weights map the same way:
  (Cin, Cout, *k) -> (*k, Cout, Cin).
  """
  nd = w.ndim - 2
  return np.transpose(w, tuple(range(2, 2 + nd)) + (1, 0))


def linear_kernel(w: np.ndarray) -> np.ndarray:
  """Linear weight (out, in) -> Flax Dense kernel (in, out)."""
  return np.transpose(w, (1, 0))
