"""Helpers of the PyTorch parity tests."""

import numpy as np
import torch


def rel_err(a, b) -> float:
  """||a - b|| / ||b|| in float64 (b is the reference)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
  """Random BatchNorm affine and running statistics, so that they matter in eval mode; eval mode."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):  # pylint: disable=protected-access
        m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
        m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
        m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
        m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        m.num_batches_tracked.fill_(7)
  return model.eval()
