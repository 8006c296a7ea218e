"""Training logs: TensorBoard event files, a JSON-lines metrics file and the console line.

Only process 0 writes (``enabled=False`` elsewhere). TensorBoard files go to ``<workdir>/tensorboard``;
every logged scalar is also appended to ``<workdir>/metrics.jsonl`` (one ``{"step": ..., name: value}``
object per line), easy to read without TensorBoard.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import sys
import time
from typing import Mapping

from absl import logging
import numpy as np


def image_grid(images: Mapping[str, np.ndarray], max_rows: int = 4, pad: int = 2) -> np.ndarray:
  """One (H, W, 3) float image: a row per example, a column per named image (in the given order).

  Images of different sizes are placed top-left in cells of the largest size; one-channel images
  are shown grey. Values are clipped to [0, 1].
  """
  arrays = []
  for name, value in images.items():
    value = np.asarray(value, np.float32)
    if value.ndim == 3:
      value = value[..., None]
    if value.ndim != 4 or value.shape[-1] not in (1, 3):
      raise ValueError(f"image {name!r}: expected (N, H, W, 1 or 3), got shape {value.shape}")
    if value.shape[-1] == 1:
      value = np.repeat(value, 3, axis=-1)
    arrays.append(np.clip(value[:max_rows], 0.0, 1.0))
  if not arrays:
    raise ValueError("image_grid: no images")
  rows = max(a.shape[0] for a in arrays)
  h = max(a.shape[1] for a in arrays)
  w = max(a.shape[2] for a in arrays)
  grid = np.zeros((rows * (h + pad) + pad, len(arrays) * (w + pad) + pad, 3), np.float32)
  for c, a in enumerate(arrays):
    for r in range(a.shape[0]):
      y, x = pad + r * (h + pad), pad + c * (w + pad)
      grid[y:y + a.shape[1], x:x + a.shape[2]] = a[r]
  return grid


def group_images(images: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
  """Groups ``<prefix>/<name>`` images by prefix (one grid per player or evaluator)."""
  groups: dict[str, dict[str, np.ndarray]] = {}
  for key, value in images.items():
    prefix, _, name = key.rpartition("/")
    groups.setdefault(prefix or "images", {})[name] = value
  return groups


def _summary_writer_class():
  """tensorboardX's SummaryWriter, imported without torch when torch is not loaded already.

  tensorboardX imports torch only to accept torch tensors, which talkjax never passes; hiding it
  during the import saves seconds of start-up and hundreds of MB per process.
  """
  if "tensorboardX" in sys.modules or "torch" in sys.modules:
    from tensorboardX import SummaryWriter
    return SummaryWriter
  sys.modules["torch"] = None  # Makes `import torch` raise ImportError, which tensorboardX handles.
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules["torch"]
  return SummaryWriter


class MetricWriter:
  """Writes scalars and images to TensorBoard and ``metrics.jsonl`` (no-op when disabled)."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self._tb = None
    self._jsonl = None
    if enabled:
      self._tb = _summary_writer_class()(logdir=os.path.join(workdir, "tensorboard"))
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in values.items()}
    for k, v in clean.items():
      self._tb.add_scalar(k, v, step)
    self._jsonl.write(json.dumps({"step": int(step), **{k: (v if math.isfinite(v) else str(v))
                                                        for k, v in clean.items()}}) + "\n")
    self._jsonl.flush()

  def images(self, step: int, tag: str, images: Mapping[str, np.ndarray], max_rows: int = 4) -> None:
    """Logs a grid of named image batches (columns) under ``tag``."""
    if not self.enabled or not images:
      return
    self._tb.add_image(tag, image_grid(images, max_rows), step, dataformats="HWC")

  def text(self, tag: str, text: str, step: int = 0) -> None:
    if self.enabled:
      self._tb.add_text(tag, text, step)

  def flush(self) -> None:
    if self.enabled:
      self._tb.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self._tb.close()
      self._jsonl.close()
      self.enabled = False


class Throughput:
  """Steps per second and ETA between log points (excluding the first, compiling, step)."""

  def __init__(self, first_step: int, total_steps: int):
    self.total_steps = total_steps
    self._step = first_step
    self._time = time.perf_counter()

  def reset(self, step: int) -> None:
    self._step, self._time = step, time.perf_counter()

  def update(self, step: int) -> tuple[float, float]:
    """Returns (steps/s since the last update, ETA in seconds) and restarts the interval."""
    now = time.perf_counter()
    rate = (step - self._step) / max(now - self._time, 1e-9)
    self._step, self._time = step, now
    eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
    return rate, eta


def console_line(step: int, total_steps: int, values: Mapping[str, float], rate: float, eta: float) -> str:
  """``step 120/2000 | generator/loss 0.1234 ... | 8.51 steps/s | ETA 0:03:41``."""
  parts = [f"step {step}/{total_steps}"]
  parts += [f"{k} {v:.4g}" for k, v in values.items()]
  eta_text = str(datetime.timedelta(seconds=round(eta))) if math.isfinite(eta) else "?"
  parts += [f"{rate:.2f} steps/s", f"ETA {eta_text}"]
  return " | ".join(parts)


def log_console(line: str) -> None:
  logging.info("%s", line)


class _DropLibraryInfo:
  """A logging filter dropping INFO/DEBUG records of chatty libraries (Orbax logs every file it writes)."""

  def __init__(self, packages: tuple[str, ...]):
    self._needles = tuple(f"{os.sep}{p}{os.sep}" for p in packages)

  def filter(self, record) -> bool:
    return record.levelno >= 30 or not any(n in record.pathname for n in self._needles)


def quiet_library_logs(packages: tuple[str, ...] = ("orbax", "grain")) -> None:
  """Hides INFO messages of ``packages`` on absl's handler (warnings and errors still show)."""
  logging.get_absl_handler().addFilter(_DropLibraryInfo(packages))
