"""Random variables drawn with NumPy from a module's shapes alone.

``module.init`` compiles one threefry computation per parameter tensor, which on XLA:CPU takes tens of
seconds to minutes for a network of a few hundred tensors (BUILD_NOTES.md, "Compile time").
Benchmarks, tests and smoke runs only need variables of the right shapes and sensible scales:
``jax.eval_shape`` gives the tree in well under a second and NumPy fills it.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def numpy_variables(abstract: Any, seed: int = 0, bias_std: float = 0.5,
                    scale_std: float = 0.0) -> Any:
  """Fills a tree of ``jax.ShapeDtypeStruct`` with NumPy draws.

  Args:
    abstract: the variables' shapes, e.g. ``jax.eval_shape(module.init, key, *inputs)``.
    seed: NumPy seed; leaves are drawn in tree order, so equal seeds give equal variables.
    bias_std: standard deviation of 0-d and 1-d leaves other than norm scales and statistics.
    scale_std: standard deviation of norm scales around 1.

  Returns:
    The same tree of NumPy arrays: kernels N(0, 1/fan_in) (fan-in = product of all but the last axis),
    biases N(0, bias_std^2), norm scales 1 + N(0, scale_std^2), running means 0, running variances 1.
  """
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['var']"):
      return np.ones(leaf.shape, leaf.dtype)
    if name.endswith("['mean']"):
      return np.zeros(leaf.shape, leaf.dtype)
    if len(leaf.shape) <= 1:
      offset, std = (1.0, scale_std) if name.endswith("['scale']") else (0.0, bias_std)
      if std == 0.0:  # no draw: the other leaves' values do not depend on this setting
        return np.full(leaf.shape, offset, leaf.dtype)
      return (offset + std * rng.standard_normal(leaf.shape)).astype(leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def random_variables(module, *inputs, seed: int = 0, **kwargs) -> Any:
  """``numpy_variables`` of ``module.init(key, *inputs)``'s shapes (``kwargs`` go to numpy_variables)."""
  return numpy_variables(jax.eval_shape(module.init, jax.random.key(0), *inputs), seed=seed, **kwargs)
