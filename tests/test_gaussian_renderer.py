"""Paper 000's Gaussian renderer: the guide mask, the guided input, the no_gs ablation, shapes."""

import functools

import chex
import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import configs
from talkjax.models import gaussian_renderer as gr
from talkjax.models import iplap_renderer as ipr
from talkjax.nn import numpy_init

# NumPy-drawn variables (module.init would compile threefry for every parameter).
random_variables = functools.partial(numpy_init.random_variables, bias_std=0.1, scale_std=0.1)

TINY = dict(width=8, features=16, spade_hidden=16, adain_hidden=16, audio_width_divisor=4)


def _taps():
  g = np.exp(-np.arange(-2, 3) ** 2 / 2.0)
  return g / g.sum()   # 5 taps, sigma 1


def test_guide_mask_is_the_5x5_sigma1_blur_of_the_lower_half_mask():
  h, w = 16, 12
  mask = np.asarray(gr.guide_mask(h, w))
  chex.assert_shape(mask, (h, w, 1))
  g = _taps()
  expected_rows = {h // 2 - 3: 1.0, h // 2 - 2: 1.0 - g[0], h // 2 - 1: g[0] + g[1] + g[2],
                   h // 2: g[0] + g[1], h // 2 + 1: g[0], h // 2 + 2: 0.0}
  for row, value in expected_rows.items():
    np.testing.assert_allclose(mask[row, :, 0], value, atol=1e-6)
  np.testing.assert_allclose(mask[0, :, 0], 1.0, atol=1e-6)     # reflect-101 border: no dark frame
  np.testing.assert_allclose(mask[-1, :, 0], 0.0, atol=1e-6)
  np.testing.assert_allclose(mask[h // 2 - 1, 0, 0], 0.7013, atol=1e-4)  # 1/2 + g0/2, the seam row
  hard = (np.arange(h) < h // 2).astype(np.float32)[:, None].repeat(w, 1)
  ref = cv2.GaussianBlur(hard, (5, 5), 1.0, borderType=cv2.BORDER_REFLECT_101)
  np.testing.assert_allclose(mask[..., 0], ref, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(gr.guide_mask(h, w, blur=False))[..., 0], hard)


def test_guided_input_is_s_new_i_mask_and_the_sketches():
  rng = np.random.default_rng(0)
  face = rng.uniform(size=(2, 8, 8, 3)).astype(np.float32)
  sketches = rng.uniform(size=(2, 5, 8, 8, 3)).astype(np.float32)
  mask = np.asarray(gr.guide_mask(8, 8))
  x = np.asarray(gr.gaussian_guided_input(jnp.asarray(face), jnp.asarray(sketches), jnp.asarray(mask)))
  chex.assert_shape(x, (2, 8, 8, 21))
  i_mask = face * mask
  s_new = i_mask + (1 - mask) * sketches[:, 2]
  np.testing.assert_allclose(x[..., :3], s_new, atol=1e-6)
  np.testing.assert_allclose(x[..., 3:6], i_mask, atol=1e-6)
  for t in range(5):
    np.testing.assert_array_equal(x[..., 6 + 3 * t:9 + 3 * t], sketches[:, t])
  # Above the blur's reach S_new is the face, below it the target sketch.
  np.testing.assert_allclose(x[:, :2, :, :3], face[:, :2], atol=1e-6)
  np.testing.assert_allclose(x[:, 6:, :, :3], sketches[:, 2, 6:], atol=1e-6)
  with pytest.raises(ValueError, match="odd number"):
    gr.gaussian_guided_input(jnp.asarray(face), jnp.asarray(sketches[:, :4]), jnp.asarray(mask))


def test_no_gs_ablation_differs_only_in_the_mask():
  a = configs.get_config("gaussian_renderer:runlocal")
  b = configs.get_config("gaussian_renderer:runlocal,no_gs")
  flat_a, flat_b = a.to_dict(), b.to_dict()

  def diff(x, y, prefix=""):
    out = []
    for k in sorted(set(x) | set(y)):
      if isinstance(x.get(k), dict):
        out += diff(x[k], y[k], f"{prefix}{k}.")
      elif x.get(k) != y.get(k):
        out.append(prefix + k)
    return out
  assert diff(flat_a, flat_b) == ["model.mask_blur"]
  assert a.model.mask_blur and not b.model.mask_blur

  blur, hard = gr.GaussianRenderer(**TINY), gr.GaussianRenderer(**TINY, mask_blur=False)
  inputs = [jnp.asarray(v) for v in ipr.example_inputs(1, image_size=16, num_references=2)]
  variables = random_variables(blur, *inputs)
  shapes = jax.tree.map(jnp.shape, jax.eval_shape(hard.init, jax.random.key(0), *inputs))
  assert jax.tree.map(jnp.shape, variables) == shapes           # one parameter set fits both
  ga = np.asarray(blur.guiding_input(inputs[0], inputs[1]))
  gb = np.asarray(hard.guiding_input(inputs[0], inputs[1]))
  rows = np.flatnonzero(np.any(ga != gb, axis=(0, 2, 3)))
  np.testing.assert_array_equal(rows, [6, 7, 8, 9])            # the blur's reach around row 8 only
  np.testing.assert_array_equal(ga[..., 6:], gb[..., 6:])        # sketches untouched
  out_a = jax.jit(blur.apply)(variables, *inputs).image
  out_b = jax.jit(hard.apply)(variables, *inputs).image
  assert float(jnp.max(jnp.abs(out_a - out_b))) > 1e-6         # and the mask reaches the output


def test_gaussian_renderer_shapes():
  model = gr.build(**TINY)
  assert model.warp == "exact" and model.mask_blur
  inputs = [jnp.asarray(v) for v in ipr.example_inputs(2, image_size=16, num_references=3)]
  variables = random_variables(model, *inputs, seed=1)
  chex.assert_shape(variables["params"]["translation"]["conv1"]["kernel"], (7, 7, 21, 8))
  chex.assert_shape(variables["params"]["flow_module"]["conv1"]["kernel"], (7, 7, 6, 8))
  out = jax.jit(model.apply)(variables, *inputs)
  chex.assert_shape(out.image, (2, 16, 16, 3))
  chex.assert_shape(out.warped.flow, (2, 3, 16, 16, 2))
  assert bool(jnp.all((out.image >= 0) & (out.image <= 1)))
