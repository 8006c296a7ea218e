"""LPIPS between generated and reference frames (``lpips`` 0.1.4, version 0.1; see
``talkjax.models.lpips_nets`` for the exact computation).

Frames are RGB uint8 and are mapped to lpips' [-1, 1] range with ``x / 127.5 - 1`` (``lpips.im2tensor``),
at their own size (no resizing). A video's LPIPS is the mean over its frames, a dataset's the mean
over videos. ``net="alex"`` is lpips' default (and what most papers report); ``"vgg"`` is offered too.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.errors import ArgumentError
from talkjax.metrics import image as image_lib
from talkjax.metrics import weights as weights_lib

DEFAULT_BATCH = 16
SPECS = {"alex": weights_lib.LPIPS_ALEX, "vgg": weights_lib.LPIPS_VGG}


@functools.partial(jax.jit, static_argnums=0)
def _distance(module, variables, gen_uint8, ref_uint8):
  to_range = lambda x: x.astype(jnp.float32) / 127.5 - 1.0
  return module.apply(variables, to_range(gen_uint8), to_range(ref_uint8))


class LPIPSMetric:
  """Per-frame LPIPS with converted weights (fixed-size jitted batches).

  Args:
    variables: Flax variables of ``LPIPS(net)`` (``third_party.convert --kind=lpips_<net>``).
    net: ``"alex"`` or ``"vgg"``.
    batch_size: frame pairs per device call.
  """

  def __init__(self, variables: Any, net: str = "alex", batch_size: int = DEFAULT_BATCH):
    if net not in SPECS:
      raise ArgumentError(f"LPIPS net must be one of {sorted(SPECS)}, got {net!r}")
    if batch_size < 1:
      raise ArgumentError(f"batch_size: must be >= 1, got {batch_size}")
    from talkjax.models.lpips_nets import LPIPS  # pylint: disable=g-import-not-at-top
    self.net = net
    self.module = LPIPS(net=net)
    self.variables = jax.tree.map(jnp.asarray, variables)
    self.batch_size = int(batch_size)

  @classmethod
  def from_weights_dir(cls, weights_dir: str | os.PathLike[str], net: str = "alex", **kwargs) -> LPIPSMetric:
    if net not in SPECS:
      raise ArgumentError(f"LPIPS net must be one of {sorted(SPECS)}, got {net!r}")
    return cls(weights_lib.load(SPECS[net], weights_dir, f"LPIPS ({net})"), net=net, **kwargs)

  def __call__(self, generated, reference) -> np.ndarray:
    """``(N, H, W, 3)`` RGB uint8 pairs -> ``(N,)`` float64 distances."""
    gen, ref = np.asarray(generated), np.asarray(reference)
    image_lib.check_pair(gen, ref, "lpips")
    if gen.dtype != np.uint8 or ref.dtype != np.uint8 or gen.ndim != 4:
      raise ArgumentError(f"lpips: expected (N, H, W, 3) uint8 RGB frames, got {gen.shape} {gen.dtype} / "
                          f"{ref.dtype}")
    n = gen.shape[0]
    out = []
    for i in range(0, n, self.batch_size):
      g, r = gen[i:i + self.batch_size], ref[i:i + self.batch_size]
      pad = self.batch_size - g.shape[0]
      if pad:
        g = np.concatenate([g, np.zeros((pad,) + g.shape[1:], np.uint8)])
        r = np.concatenate([r, np.zeros((pad,) + r.shape[1:], np.uint8)])
      out.append(np.asarray(_distance(self.module, self.variables, jnp.asarray(g), jnp.asarray(r))))
    if not out:
      return np.zeros((0,), np.float64)
    return np.concatenate(out)[:n].astype(np.float64)
