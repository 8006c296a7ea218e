"""talkjax.nn.numpy_init: NumPy-drawn variables from a module's shapes."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax.nn import numpy_init


class _Net(nn.Module):

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(64, (3, 3))(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    return nn.Dense(5)(x)


def _inputs():
  return (jnp.zeros((2, 8, 8, 16)),)


def test_shapes_statistics_and_scales_follow_the_rules():
  variables = numpy_init.random_variables(_Net(), *_inputs(), seed=3)
  abstract = jax.eval_shape(_Net().init, jax.random.key(0), *_inputs())
  chex.assert_trees_all_equal_shapes_and_dtypes(variables, abstract)
  params, stats = variables["params"], variables["batch_stats"]
  np.testing.assert_array_equal(stats["BatchNorm_0"]["mean"], np.zeros(64))
  np.testing.assert_array_equal(stats["BatchNorm_0"]["var"], np.ones(64))
  np.testing.assert_array_equal(params["BatchNorm_0"]["scale"], np.ones(64))  # scale_std = 0
  kernel = params["Conv_0"]["kernel"]                                        # fan-in 3 * 3 * 16
  np.testing.assert_allclose(kernel.std(), 1.0 / 12.0, rtol=0.05)
  np.testing.assert_allclose(params["Dense_0"]["bias"].std(), 0.5, rtol=0.6)
  assert abs(float(params["Conv_0"]["bias"].mean())) < 0.2


def test_same_seed_same_values_and_options_change_only_their_leaves():
  a = numpy_init.random_variables(_Net(), *_inputs(), seed=1)
  b = numpy_init.random_variables(_Net(), *_inputs(), seed=1)
  c = numpy_init.random_variables(_Net(), *_inputs(), seed=2)
  chex.assert_trees_all_equal(a, b)
  assert not np.allclose(a["params"]["Conv_0"]["kernel"], c["params"]["Conv_0"]["kernel"])
  d = numpy_init.random_variables(_Net(), *_inputs(), seed=1, bias_std=0.1, scale_std=0.1)
  scale = d["params"]["BatchNorm_0"]["scale"]
  assert 0.0 < np.abs(scale - 1.0).max() < 0.6
  assert d["params"]["Conv_0"]["bias"].std() < 0.2
  # The variables drive the module like init's do.
  out = _Net().apply(d, *_inputs())
  chex.assert_shape(out, (2, 8, 8, 5))
  chex.assert_tree_all_finite(out)
