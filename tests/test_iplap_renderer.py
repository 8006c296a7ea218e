"""IP_LAP renderer: shapes, warping modes, weighted aggregation, and converter parity with PyTorch."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn as tnn

from talkjax.errors import CheckpointError
from talkjax.models import iplap_renderer as ipr
from talkjax.nn import numpy_init
from third_party import convert
from parity import rel_err

# NumPy-drawn variables (module.init would compile threefry for every parameter).
random_variables = functools.partial(numpy_init.random_variables, bias_std=0.1, scale_std=0.1)

TINY = dict(width=8, features=16, spade_hidden=16, adain_hidden=16, audio_width_divisor=4)


# --- A PyTorch renderer with IP_LAP's key layout (written for this test) ---------------------------

class TSpadeLayer(tnn.Module):
  def __init__(self, c, cm, hidden):
    super().__init__()
    self.conv1 = tnn.Conv2d(cm, hidden, 3, 1, 1)
    self.gamma = tnn.Conv2d(hidden, c, 3, 1, 1)
    self.beta = tnn.Conv2d(hidden, c, 3, 1, 1)

  def forward(self, x, m):
    n = F.instance_norm(x, eps=1e-5)
    h = self.conv1(m)
    return n + n * self.gamma(h) + self.beta(h)


class TSpade(tnn.Module):
  def __init__(self, c, cm, hidden):
    super().__init__()
    self.spade_layer_1 = TSpadeLayer(c, cm, hidden)
    self.spade_layer_2 = TSpadeLayer(c, cm, hidden)
    self.conv_1 = tnn.Conv2d(c, c, 3, 1, 1)
    self.conv_2 = tnn.Conv2d(c, c, 3, 1, 1)

  def forward(self, x, m):
    x = self.conv_1(F.leaky_relu(self.spade_layer_1(x, m), 0.2))
    return self.conv_2(F.leaky_relu(self.spade_layer_2(x, m), 0.2))


class TAdaINLayer(tnn.Module):
  def __init__(self, c, cm, hidden):
    super().__init__()
    self.mlp_shared = tnn.Sequential(tnn.Linear(cm, hidden), tnn.ReLU())
    self.mlp_gamma = tnn.Linear(hidden, c)
    self.mlp_beta = tnn.Linear(hidden, c)

  def forward(self, x, style):
    a = self.mlp_shared(style.reshape(style.shape[0], -1))
    gamma, beta = self.mlp_gamma(a)[:, :, None, None], self.mlp_beta(a)[:, :, None, None]
    return F.instance_norm(x, eps=1e-5) * (1 + gamma) + beta


class TAdaIN(tnn.Module):
  def __init__(self, c, cm, hidden):
    super().__init__()
    self.adain_layer_1 = TAdaINLayer(c, cm, hidden)
    self.adain_layer_2 = TAdaINLayer(c, cm, hidden)
    self.conv_1 = tnn.Conv2d(c, c, 3, 1, 1)
    self.conv_2 = tnn.Conv2d(c, c, 3, 1, 1)

  def forward(self, x, style):
    x = self.conv_1(F.leaky_relu(self.adain_layer_1(x, style), 0.2))
    return self.conv_2(F.leaky_relu(self.adain_layer_2(x, style), 0.2))


class TConvBN(tnn.Module):
  def __init__(self, cin, cout, k, s, p, residual=False):
    super().__init__()
    self.conv_block = tnn.Sequential(tnn.Conv2d(cin, cout, k, s, p), tnn.BatchNorm2d(cout))
    self.residual = residual

  def forward(self, x):
    y = self.conv_block(x)
    return F.relu(y + x if self.residual else y)


def t_deform_and_warp(x, flow):
  """IP_LAP's convert_flow_to_deformation + warping (grid built align_corners-style, sampled without)."""
  _, _, h, w = flow.shape
  xs = 2 * torch.arange(w, dtype=torch.float32) / (w - 1) - 1
  ys = 2 * torch.arange(h, dtype=torch.float32) / (h - 1) - 1
  grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)[None]
  deform = grid + 2 * torch.stack([flow[:, 0] / (w - 1), flow[:, 1] / (h - 1)], dim=-1)
  if x.shape[2:] != (h, w):
    deform = F.interpolate(deform.permute(0, 3, 1, 2), size=x.shape[2:], mode="bilinear",
                           align_corners=False).permute(0, 2, 3, 1)
  return F.grid_sample(x, deform, align_corners=False)


class TFlow(tnn.Module):
  def __init__(self, width, features, hidden, t=5):
    super().__init__()
    self.conv1 = tnn.Conv2d(6, width, 7, 1, 3)
    self.conv1_bn = tnn.BatchNorm2d(width)
    self.conv2 = tnn.Conv2d(width, features, 3, 2, 1)
    self.conv2_bn = tnn.BatchNorm2d(features)
    self.spade_layer_1 = TSpade(features, 3 * t, hidden)
    self.spade_layer_2 = TSpade(features, 3 * t, hidden)
    self.spade_layer_4 = TSpade(features // 4, 3 * t, hidden)
    self.conv_4 = tnn.Conv2d(features // 4, 2, 7, 1, 3)
    self.conv_5 = tnn.Sequential(tnn.Conv2d(features // 4, width, 7, 1, 3), tnn.ReLU(),
                                 tnn.Conv2d(width, 1, 7, 1, 3), tnn.Sigmoid())

  def forward(self, refs, ref_sketches, driving):
    drive = torch.cat([driving[:, i] for i in range(driving.shape[1])], dim=1)
    half = F.interpolate(drive, size=(drive.shape[2] // 2, drive.shape[3] // 2), mode="nearest")
    s1 = s2 = s3 = den = 0.0
    for i in range(refs.shape[1]):
      h1 = F.relu(self.conv1_bn(self.conv1(torch.cat([refs[:, i], ref_sketches[:, i]], dim=1))))
      h2 = F.relu(self.conv2_bn(self.conv2(h1)))
      y = self.spade_layer_2(self.spade_layer_1(h2, half), half)
      y = self.spade_layer_4(F.pixel_shuffle(y, 2), drive)
      flow, weight = self.conv_4(y), self.conv_5(y)
      den = den + weight
      s1 = s1 + t_deform_and_warp(h1, flow) * weight
      s2 = s2 + t_deform_and_warp(h2, flow) * F.interpolate(weight, size=h2.shape[2:], mode="nearest")
      s3 = s3 + t_deform_and_warp(refs[:, i], flow) * weight
    den = den + 1e-5
    return s1 / den, s2 / F.interpolate(den, size=half.shape[2:], mode="nearest"), s3 / den


class TTranslation(tnn.Module):
  def __init__(self, width, features, hidden, adain_hidden, d, t=5):
    super().__init__()
    c = lambda n: n // d  # noqa: E731
    self.audio_encoder = tnn.Sequential(
        TConvBN(1, c(32), 3, 1, 1), TConvBN(c(32), c(32), 3, 1, 1, True),
        TConvBN(c(32), c(32), 3, 1, 1, True),
        TConvBN(c(32), c(64), 3, (3, 1), 1), TConvBN(c(64), c(64), 3, 1, 1, True),
        TConvBN(c(64), c(64), 3, 1, 1, True),
        TConvBN(c(64), c(128), 3, 3, 1), TConvBN(c(128), c(128), 3, 1, 1, True),
        TConvBN(c(128), c(128), 3, 1, 1, True),
        TConvBN(c(128), c(256), 3, (3, 2), 1), TConvBN(c(256), c(256), 3, 1, 1, True),
        TConvBN(c(256), c(512), 3, 1, 0), TConvBN(c(512), c(512), 1, 1, 0))
    self.conv1 = tnn.Conv2d(3 + 3 * t, width, 7, 1, 3, bias=False)
    self.conv1_bn = tnn.BatchNorm2d(width)
    self.conv2 = tnn.Conv2d(width, features, 3, 2, 1, bias=False)
    self.conv2_bn = tnn.BatchNorm2d(features)
    self.spade_1 = TSpade(features, features, hidden)
    self.adain_1 = TAdaIN(features, c(512), adain_hidden)
    self.spade_2 = TSpade(features // 4, width, hidden)
    self.adain_2 = TAdaIN(features // 4, c(512), adain_hidden)
    self.spade_4 = TSpade(features // 4, 3, hidden)
    self.conv_last = tnn.Conv2d(features // 4, 3, 7, 1, 3, bias=False)

  def forward(self, x, wref, wh1, wh2, mel):
    audio = self.audio_encoder(mel.flatten(0, 1)).squeeze(-1).permute(0, 2, 1)
    x = F.relu(self.conv2_bn(self.conv2(F.relu(self.conv1_bn(self.conv1(x))))))
    x = F.pixel_shuffle(self.adain_1(self.spade_1(x, wh2), audio), 2)
    x = self.spade_4(self.adain_2(self.spade_2(x, wh1), audio), wref)
    return torch.sigmoid(self.conv_last(F.leaky_relu(x)))


class TRenderer(tnn.Module):
  def __init__(self, width, features, spade_hidden, adain_hidden, audio_width_divisor):
    super().__init__()
    self.flow_module = TFlow(width, features, spade_hidden)
    self.translation = TTranslation(width, features, spade_hidden, adain_hidden, audio_width_divisor)

  def forward(self, face, sketches, refs, ref_sketches, mel):
    wh1, wh2, wref = self.flow_module(refs, ref_sketches, sketches)
    masked = face.squeeze(1).clone()
    masked[:, :, masked.shape[2] // 2:, :] = 0
    x = torch.cat([masked] + [sketches[:, i] for i in range(sketches.shape[1])], dim=1)
    return self.translation(x, wref, wh1, wh2, mel), wref


def _randomise_batchnorm(model, gen):
  for m in model.modules():
    if isinstance(m, tnn.BatchNorm2d):
      m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
      m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
      m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
      m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.2)


def _to_torch(x, batch_axes=1):
  """NHWC (with leading axes) -> NCHW."""
  x = np.asarray(x)
  perm = tuple(range(batch_axes)) + (x.ndim - 1,) + tuple(range(batch_axes, x.ndim - 1))
  return torch.from_numpy(np.ascontiguousarray(x.transpose(perm)))


# --- Tests ---------------------------------------------------------------------------------------

def test_tiny_renderer_shapes_and_ranges():
  model = ipr.IPLAPRenderer(**TINY, warp="exact")
  inputs = [jnp.asarray(a) for a in ipr.example_inputs(2, image_size=16, num_references=3)]
  variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), *inputs)
  out = jax.jit(model.apply)(variables, *inputs)
  chex.assert_shape(out.image, (2, 16, 16, 3))
  chex.assert_shape(out.warped.image, (2, 16, 16, 3))
  chex.assert_shape(out.warped.h1, (2, 16, 16, 8))
  chex.assert_shape(out.warped.h2, (2, 8, 8, 16))
  chex.assert_shape(out.warped.flow, (2, 3, 16, 16, 2))
  chex.assert_shape(out.warped.weight, (2, 3, 16, 16, 1))
  assert float(out.image.min()) >= 0.0 and float(out.image.max()) <= 1.0
  assert set(variables) == {"params", "batch_stats"}
  assert set(variables["params"]) == {"flow_module", "translation"}


def test_zero_flow_warps_are_identity_and_aggregation_is_a_weighted_mean():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 8, 12, 3)), jnp.float32)
  flow = jnp.zeros((2, 8, 12, 2))
  chex.assert_trees_all_close(ipr.warp_features(x, flow, "exact"), x, atol=1e-6)
  # IP_LAP's grid convention is not the identity at zero flow: a half-pixel shrink towards the centre.
  iplap = ipr.warp_features(x, flow, "iplap")
  assert float(jnp.max(jnp.abs(iplap - x))) > 1e-2
  # Half-size maps: the flow is halved with the resolution, so a 2-px shift moves by 1 px there.
  half = jnp.asarray(rng.normal(size=(1, 4, 6, 2)), jnp.float32)
  shift = jnp.zeros((1, 8, 12, 2)).at[..., 0].set(2.0)
  moved = ipr.warp_features(half, shift, "exact")
  chex.assert_trees_all_close(moved[:, :, :-1], half[:, :, 1:], atol=1e-6)


def test_weights_pick_the_reference_they_favour():
  """With the flow net's weight conv forced to +-large biases, the aggregate equals one reference."""
  model = ipr.FlowModule(width=4, features=8, spade_hidden=8, warp="exact")
  rng = np.random.default_rng(1)
  refs = jnp.asarray(rng.uniform(size=(1, 2, 8, 8, 3)), jnp.float32)
  sk = jnp.asarray(rng.uniform(size=(1, 2, 8, 8, 3)), jnp.float32)
  drive = jnp.asarray(rng.uniform(size=(1, 8, 8, 15)), jnp.float32)
  variables = random_variables(model, refs, sk, drive)
  params = dict(variables["params"])
  params["conv_4"] = jax.tree.map(jnp.zeros_like, params["conv_4"])           # zero flow
  params["conv_5_2"]["kernel"] = jnp.zeros_like(params["conv_5_2"]["kernel"])
  params["conv_5_2"]["bias"] = jnp.full_like(params["conv_5_2"]["bias"], 30.0)  # weight ~1 for both refs
  out = jax.jit(model.apply)({**variables, "params": params}, refs, sk, drive)
  chex.assert_trees_all_close(out.image[0], refs[0].mean(axis=0), atol=1e-4)
  chex.assert_trees_all_close(out.weight, jnp.ones_like(out.weight), atol=1e-6)


def test_bad_inputs_name_the_argument():
  model = ipr.IPLAPRenderer(**TINY)
  face, sketches, refs, ref_sk, mel = ipr.example_inputs(1, image_size=16, num_references=2)
  with pytest.raises(ValueError, match="sketches"):
    jax.eval_shape(model.init, jax.random.key(0), face, sketches[:, :, :8], refs, ref_sk, mel)
  with pytest.raises(ValueError, match="ref_sketches"):
    jax.eval_shape(model.init, jax.random.key(0), face, sketches, refs, ref_sk[:, :1], mel)
  with pytest.raises(ValueError, match="divisible by 4"):
    jax.eval_shape(ipr.IPLAPRenderer(width=8, features=10, spade_hidden=8, adain_hidden=8).init,
                   jax.random.key(0), face, sketches, refs, ref_sk, mel)


@pytest.fixture(scope="module")
def torch_renderer():
  torch.manual_seed(0)
  gen = torch.Generator().manual_seed(1)
  model = TRenderer(**TINY)
  with torch.no_grad():
    _randomise_batchnorm(model, gen)
  return model.eval()


def test_converter_parity_with_pytorch(torch_renderer):
  sd = {k: v.detach().numpy() for k, v in torch_renderer.state_dict().items()}
  # The published file also holds IP_LAP's VGG19 (its perceptual loss) and a DataParallel prefix.
  sd["perceptual.model.network.0.weight"] = np.zeros((64, 3, 3, 3), np.float32)
  sd["perceptual.model.network.0.bias"] = np.zeros((64,), np.float32)
  wrapped = {"state_dict": {"module." + k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()},
             "global_step": 7}
  variables = convert.convert_state_dict("iplap_renderer", wrapped, "renderer.pth")
  entry = convert._registry_entry("iplap_renderer")  # pylint: disable=protected-access
  overrides = entry.infer_overrides(sd, "renderer.pth")
  assert overrides == TINY
  convert.check_variables_fit("iplap_renderer", variables, **overrides)

  face, sketches, refs, ref_sk, mel = ipr.example_inputs(2, image_size=32, num_references=2, seed=3)
  with torch.no_grad():
    t_img, t_warp = torch_renderer(_to_torch(face)[:, None], _to_torch(sketches, 2), _to_torch(refs, 2),
                                   _to_torch(ref_sk, 2), _to_torch(mel)[:, None])
  out = jax.jit(ipr.build(**overrides).apply)(variables, face, sketches, refs, ref_sk, mel)
  t_img = t_img.numpy().transpose(0, 2, 3, 1)
  t_warp = t_warp.numpy().transpose(0, 2, 3, 1)
  assert rel_err(out.warped.image, t_warp) < 1e-5
  assert rel_err(out.image, t_img) < 1e-5
  assert rel_err(out.image - 0.5, t_img - 0.5) < 1e-5  # the sigmoid's offset does not hide differences


def test_converter_rejects_wrong_files(torch_renderer):
  sd = {k: v.detach().numpy() for k, v in torch_renderer.state_dict().items()}
  bad = dict(sd)
  del bad["translation.conv_last.weight"]
  bad["translation.extra.weight"] = np.zeros((1,), np.float32)
  with pytest.raises(CheckpointError, match=r"missing keys: translation\.conv_last\.weight.*unknown keys: "
                     r"translation\.extra\.weight"):
    convert.convert_state_dict("iplap_renderer", bad)
  with pytest.raises(CheckpointError, match="landmark generator"):
    convert.convert_state_dict("iplap_renderer",
                               {"mel_encoder.0.conv_block.0.weight": np.zeros((1, 1, 3, 3))})
  nan = dict(sd)
  nan["flow_module.conv_4.bias"] = np.full((2,), np.nan, np.float32)
  with pytest.raises(CheckpointError, match="non-finite"):
    convert.convert_state_dict("iplap_renderer", nan)


# --- The renderer task: warm-up, VGG fallback, evaluation helpers -----------------------------------

def _tiny_task_config(**overrides):
  from experiments import configs
  base = {"data.image_size": 16, "data.num_references": 2, "batch_size": 2, "warmup_steps": 3,
          "model.width": 8, "model.features": 16, "model.spade_hidden": 16, "model.adain_hidden": 16,
          "model.audio_width_divisor": 4, "perceptual.layers": ("relu1_1",), "gan.ndf": 4, "gan.n_layers": 1,
          "gan.num_d": 1}
  base.update(overrides)
  return configs.get_config("iplap_renderer:runlocal,gan", base)


def _random_batch(config, seed=0):
  from talkjax.tasks import renderer
  rng = np.random.default_rng(seed)
  spec = renderer.batch_spec(config)
  b = config.batch_size
  return {k: (rng.integers(0, 256, (b,) + v.shape, np.uint8) if v.dtype == jnp.uint8
              else rng.uniform(-4, 4, (b,) + v.shape).astype(np.float32)) for k, v in spec.items()}


def test_warmup_trains_the_warp_loss_only():
  from talkjax.tasks import LossContext, renderer
  config = _tiny_task_config()
  nets = renderer.networks(config)
  assert set(nets) == {"generator", "discriminator"}
  batch = _random_batch(config)
  x = renderer.to_inputs(batch)
  gen_vars = random_variables(nets["generator"], x.target, x.sketches, x.references, x.reference_sketches,
                              x.mel)
  disc_vars = random_variables(nets["discriminator"], x.target, seed=1)
  params = {"generator": gen_vars["params"], "discriminator": disc_vars["params"]}
  rng = np.random.default_rng(2)
  vgg = {"params": {"conv1_1": {"kernel": rng.normal(0, 0.27, (3, 3, 3, 64)).astype(np.float32),
                                "bias": np.zeros((64,), np.float32)}}}
  weights = {k: jnp.float32(v) for k, v in renderer.initial_weights(config).items()}
  assert renderer.initial_weights(config) == dict(warp=2.5, perceptual=4.0, style=1000.0, gan=0.25,
                                                   feature_matching=2.5, l1=1.0)

  def loss(gen_params, step, train):
    ctx = LossContext(batch_stats={"generator": gen_vars["batch_stats"], "discriminator": {}},
                      frozen={"vgg19": vgg}, batch=batch, rng=jax.random.key(0), step=step, weights=weights,
                      carry={}, train=train)
    return renderer.generator_loss(config, nets, {**params, "generator": gen_params}, ctx)

  grad_fn = jax.jit(jax.value_and_grad(lambda p, s: loss(p, s, True), has_aux=True))
  gen_terms = ("perceptual", "style", "gan", "feature_matching", "l1")
  for step, warm in ((0, True), (2, True), (3, False)):
    (value, aux), grads = grad_fn(params["generator"], jnp.int32(step))
    terms = {k: float(v) for k, v in aux.terms.items()}
    assert set(terms) == {"warp", *gen_terms}
    translation = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads["translation"]))
    flow = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads["flow_module"]))
    assert flow > 0
    if warm:
      assert all(terms[k] == 0.0 for k in gen_terms)
      np.testing.assert_allclose(float(value), 2.5 * terms["warp"], rtol=1e-6)
      assert translation == 0.0
    else:
      assert all(terms[k] > 0 for k in gen_terms)
      total = sum(float(weights[k]) * v for k, v in terms.items())
      np.testing.assert_allclose(float(value), total, rtol=1e-5)
      assert translation > 0
    assert set(aux.batch_stats) == {"generator"}
    chex.assert_shape(aux.carry["fake"], (2, 16, 16, 3))
  # Held-out evaluation computes every term whatever the step.
  value, aux = jax.jit(lambda p: loss(p, jnp.int32(0), False))(params["generator"])
  assert all(float(aux.terms[k]) > 0 for k in gen_terms) and aux.batch_stats == {}


def test_random_vgg_fallback_is_written_once_and_he_scaled(tmp_path):
  from talkjax.errors import ConfigError
  from talkjax.tasks import renderer
  from talkjax.train import frozen as frozen_lib
  config = _tiny_task_config(**{"perceptual.random_init_dir": str(tmp_path / "vgg")})
  loaded = frozen_lib.load_frozen(renderer, config)["vgg19"]["params"]
  assert set(loaded) == set(ipr_vgg_names())
  k = np.asarray(loaded["conv3_1"]["kernel"])
  np.testing.assert_allclose(k.std(), np.sqrt(2.0 / (9 * 128)), rtol=0.02)
  stamp = (tmp_path / "vgg").stat().st_mtime_ns
  renderer.frozen(config)
  assert (tmp_path / "vgg").stat().st_mtime_ns == stamp
  np.testing.assert_array_equal(renderer.random_vgg19_variables(0)["params"]["conv1_1"]["kernel"],
                                loaded["conv1_1"]["kernel"])
  with pytest.raises(ConfigError, match="frozen.vgg19 and config.perceptual.random_init_dir"):
    renderer.frozen(_tiny_task_config(**{"perceptual.random_init_dir": None}))


def ipr_vgg_names():
  from talkjax.models import vgg19
  return vgg19.CONV_NAMES


def test_reference_selection_sketch_windows_and_seam():
  from talkjax import landmarks as lm
  from talkjax.tasks import renderer
  points = np.zeros((6, 131, 2), np.float32)
  openings = np.array([3.0, 0.0, 5.0, 1.0, 4.0, 2.0])
  points[:, lm.INNER_LIP_BOTTOM, 1] = openings
  np.testing.assert_array_equal(renderer.select_references(points, 3), [1, 5, 2])   # closed, middle, open
  np.testing.assert_array_equal(renderer.select_references(points, 2, candidates=[0, 3, 4]), [3, 4])
  np.testing.assert_array_equal(renderer.select_references(points[:1], 3), [0, 0, 0])  # a photo

  rng = np.random.default_rng(0)
  norm = rng.uniform(0.2, 0.8, (4, 131, 2)).astype(np.float32)
  windows = renderer.sketch_windows(norm, 16, np.array([0, 3]))
  chex.assert_shape(windows, (2, 5, 16, 16, 3))
  for j, u in enumerate([0, 0, 0, 1, 2]):                # frame 0: t-2, t-1 clamp to frame 0
    np.testing.assert_array_equal(windows[0, j], lm.draw_sketch(norm[u], 16))
  for j, u in enumerate([1, 2, 3, 3, 3]):
    np.testing.assert_array_equal(windows[1, j], lm.draw_sketch(norm[u], 16))

  img = np.full((2, 8, 8, 3), 0.5, np.float32)
  img[1, 4:] += 10 / 255.0                              # a 10-level step across the mask's edge
  np.testing.assert_allclose(renderer.seam_discontinuity(img), [0.0, 10.0], atol=1e-4)
  figures = renderer.summarize({"openness_gen": np.array([1.0, 2.0, 3.0]),
                                "openness_gt": np.array([2.0, 4.0, 6.1]),
                                "fixed_gen": np.array([1.0, 1.0, 2.0]), "fixed_gt": np.array([2.0, 1.0, 1.0]),
                                "seam_gen": np.array([5.0, 7.0, 9.0]), "seam_gt": np.array([4.0, 4.0, 4.0]),
                                "psnr": np.array([20.0, 30.0, 25.0]), "psnr_lower": np.array([1.0, 2.0, 3.0]),
                                "ssim": np.array([0.5, 0.7, 0.6])})
  assert figures["openness_r"] > 0.999 and figures["seam"] == pytest.approx(3.0)
  assert figures["openness_r_fixed"] == pytest.approx(-0.5)
  assert figures["psnr"] == pytest.approx(25.0) and figures["ssim"] == pytest.approx(0.6)


def test_render_batches_pads_to_the_mesh_and_drops_the_padding():
  from talkjax.tasks import renderer
  rng = np.random.default_rng(1)
  crops = rng.integers(0, 256, (7, 8, 8, 3), np.uint8)
  norm = rng.uniform(0.2, 0.8, (7, 131, 2)).astype(np.float32)
  mel = rng.uniform(-4, 4, (7, 80, 16, 1)).astype(np.float32)
  seen = []

  def render(batch):
    seen.append(len(batch["target"]))
    assert batch["references"].shape == (len(batch["target"]), 2, 8, 8, 3)
    return batch["target"].astype(np.float32) / 255.0

  out = list(renderer.render_batches(render, crops, norm, mel, crops[:2], norm[:2], batch_size=3, multiple=4,
                                     frames=np.array([1, 2, 3, 4, 5])))
  assert seen == [4, 4]                               # 3 frames padded to 4, then 2 padded to 4
  np.testing.assert_array_equal(np.concatenate([ts for ts, _ in out]), [1, 2, 3, 4, 5])
  np.testing.assert_allclose(np.concatenate([im for _, im in out]), crops[1:6] / 255.0)
