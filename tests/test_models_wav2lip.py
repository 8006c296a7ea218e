"""Wav2Lip networks and their conv blocks against PyTorch (lipsync's generator; hand-built expert and
discriminator following Wav2Lip's layer tables and key names), random weights and BN statistics."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from lipsync.models.conv import Conv2d as TorchConvBlock
from lipsync.models.wav2lip import Wav2Lip as TorchWav2Lip

from talkjax.models.audio_encoder import AudioEncoder
from talkjax.models.wav2lip import SyncNetColor, Wav2Lip, Wav2LipDisc, cosine_similarity, expert_sync_loss
from talkjax.nn.conv_blocks import (BatchNorm, ConvBNAct, ConvTranspose, ConvTransposeBNAct,
                                    conv_general_dilated, conv_transpose_gemm, conv_transpose_lax)
from third_party import convert
from third_party.converters.torch_io import conv_kernel, conv_transpose_kernel
from parity import rel_err, randomise_batchnorm

RTOL = 1e-5


# --- PyTorch references built from Wav2Lip's layer tables (models/syncnet.py, models/wav2lip.py) ---

class TorchNoNormConv(torch.nn.Module):
  """Wav2Lip's ``nonorm_Conv2d``."""

  def __init__(self, cin, cout, kernel_size, stride, padding):
    super().__init__()
    self.conv_block = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, kernel_size, stride, padding))
    self.act = torch.nn.LeakyReLU(0.01)

  def forward(self, x):
    return self.act(self.conv_block(x))


class TorchSyncNetColor(torch.nn.Module):
  """Wav2Lip's ``SyncNet_color`` (keys ``face_encoder.N.conv_block.{0,1}.*``, ``audio_encoder.N...``)."""

  def __init__(self):
    super().__init__()
    c = TorchConvBlock

    def r(ch):
      return c(ch, ch, kernel_size=3, stride=1, padding=1, residual=True)
    self.face_encoder = torch.nn.Sequential(
        c(15, 32, kernel_size=(7, 7), stride=1, padding=3),
        c(32, 64, kernel_size=5, stride=(1, 2), padding=1), r(64), r(64),
        c(64, 128, kernel_size=3, stride=2, padding=1), r(128), r(128), r(128),
        c(128, 256, kernel_size=3, stride=2, padding=1), r(256), r(256),
        c(256, 512, kernel_size=3, stride=2, padding=1), r(512), r(512),
        c(512, 512, kernel_size=3, stride=2, padding=1),
        c(512, 512, kernel_size=3, stride=1, padding=0),
        c(512, 512, kernel_size=1, stride=1, padding=0))
    self.audio_encoder = torch.nn.Sequential(
        c(1, 32, kernel_size=3, stride=1, padding=1), r(32), r(32),
        c(32, 64, kernel_size=3, stride=(3, 1), padding=1), r(64), r(64),
        c(64, 128, kernel_size=3, stride=3, padding=1), r(128), r(128),
        c(128, 256, kernel_size=3, stride=(3, 2), padding=1), r(256), r(256),
        c(256, 512, kernel_size=3, stride=1, padding=0),
        c(512, 512, kernel_size=1, stride=1, padding=0))

  def forward(self, audio_sequences, face_sequences):
    a = self.audio_encoder(audio_sequences).flatten(1)
    f = self.face_encoder(face_sequences).flatten(1)
    return torch.nn.functional.normalize(a, p=2, dim=1), torch.nn.functional.normalize(f, p=2, dim=1)


class TorchDisc(torch.nn.Module):
  """Wav2Lip's ``Wav2Lip_disc_qual`` (keys ``face_encoder_blocks.i.j.conv_block.0.*``, ``binary_pred.0``)."""

  def __init__(self):
    super().__init__()
    n = TorchNoNormConv
    seq = torch.nn.Sequential
    self.face_encoder_blocks = torch.nn.ModuleList([
        seq(n(3, 32, 7, 1, 3)),
        seq(n(32, 64, 5, (1, 2), 2), n(64, 64, 5, 1, 2)),
        seq(n(64, 128, 5, 2, 2), n(128, 128, 5, 1, 2)),
        seq(n(128, 256, 5, 2, 2), n(256, 256, 5, 1, 2)),
        seq(n(256, 512, 3, 2, 1), n(512, 512, 3, 1, 1)),
        seq(n(512, 512, 3, 2, 1), n(512, 512, 3, 1, 1)),
        seq(n(512, 512, 3, 1, 0), n(512, 512, 1, 1, 0))])
    self.binary_pred = seq(torch.nn.Conv2d(512, 1, kernel_size=1, stride=1, padding=0), torch.nn.Sigmoid())

  def logits(self, face_sequences):  # (B, 3, T, H, W), as in Wav2Lip
    x = torch.cat([face_sequences[:, :, i] for i in range(face_sequences.size(2))], dim=0)
    x = x[:, :, x.size(2) // 2:]
    for f in self.face_encoder_blocks:
      x = f(x)
    return self.binary_pred[0](x).view(len(x), -1)

  def forward(self, face_sequences):
    return torch.sigmoid(self.logits(face_sequences))


def he_init(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
  """He-normal conv weights: with PyTorch's default init 15 unnormalised layers shrink the signal to
  nothing and every output would be sigmoid(bias); this keeps the comparison meaningful."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.Conv2d):
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
        m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)
  return model.eval()


def torch_state_dict(kind: str, seed: int = 0) -> dict:
  """A random state dict of ``kind`` from the PyTorch reference (used by test_convert too)."""
  torch.manual_seed(seed)
  if kind == "wav2lip":
    return randomise_batchnorm(TorchWav2Lip(), seed).state_dict()
  if kind == "wav2lip_syncnet":
    return randomise_batchnorm(TorchSyncNetColor(), seed).state_dict()
  if kind == "wav2lip_disc":
    return he_init(TorchDisc(), seed).state_dict()
  from syncnet_python.SyncNetModel import S  # pylint: disable=g-import-not-at-top
  return randomise_batchnorm(S(), seed).state_dict()


def nchw(x):
  return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def numpy_variables(module, *inputs, seed: int = 0):
  """Random variables of the right shapes without jitting ``init`` (XLA:CPU compiles a few hundred
  RNG calls very slowly): shapes from ``jax.eval_shape``, values from NumPy."""
  shapes = jax.eval_shape(module.init, jax.random.key(0), *inputs)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['var']"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
    return (rng.standard_normal(leaf.shape) * (2.0 / fan_in) ** 0.5 * 0.5).astype(np.float32)
  return jax.tree_util.tree_map_with_path(fill, shapes)


# --- conv blocks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("k,s,p,op,hw", [
    (3, 2, 1, 1, (3, 4)),            # Wav2Lip's decoder upsampling (output_padding=1)
    (3, 1, 0, 0, (1, 1)),            # Wav2Lip's 1x1 -> 3x3
    ((3, 5), (2, 3), (1, 2), (1, 2), (4, 5)),
    (4, 2, 1, 0, (5, 5)),
    (2, 3, 0, 2, (3, 2)),
])
def test_conv_transpose_reproduces_torch_size_and_values(k, s, p, op, hw):
  torch.manual_seed(0)
  t = torch.nn.ConvTranspose2d(5, 4, k, s, p, op)
  x = np.random.default_rng(0).standard_normal((2,) + hw + (5,)).astype(np.float32)
  with torch.no_grad():
    ref = t(nchw(x)).numpy().transpose(0, 2, 3, 1)
  kernel, bias = conv_transpose_kernel(t.weight.detach().numpy()), t.bias.detach().numpy()
  y = ConvTranspose(4, k, s, p, op).apply({"params": {"kernel": kernel, "bias": bias}}, x)
  chex.assert_shape(y, ref.shape)
  assert rel_err(y, ref) < RTOL
  # Both platform forms (the module picks GEMM + overlap-add on CPU, lax.conv_transpose elsewhere).
  tup = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
  for form in (conv_transpose_gemm, conv_transpose_lax):
    z = form(jnp.asarray(x), jnp.asarray(kernel), tup(s), tup(p), tup(op)) + bias
    chex.assert_shape(z, ref.shape)
    assert rel_err(z, ref) < RTOL, form.__name__


def test_conv_transpose_1d_matches_torch():
  torch.manual_seed(3)
  t = torch.nn.ConvTranspose1d(3, 2, 4, 3, 1, 2)
  x = np.random.default_rng(3).standard_normal((2, 5, 3)).astype(np.float32)
  with torch.no_grad():
    ref = t(nchw(x)).numpy().transpose(0, 2, 1)
  variables = {"params": {"kernel": conv_transpose_kernel(t.weight.detach().numpy()),
                          "bias": t.bias.detach().numpy()}}
  y = ConvTranspose(2, (4,), 3, 1, 2).apply(variables, x)
  chex.assert_shape(y, ref.shape)
  assert rel_err(y, ref) < RTOL


@pytest.mark.parametrize("x_shape,w_shape,strides,padding,uses_gemm", [
    ((1, 3, 3, 64), (3, 3, 64, 32), (1, 1), ((1, 1), (1, 1)), True),     # 512-ch layers at 3x3
    ((2, 6, 7, 16), (3, 3, 16, 8), (2, 2), ((1, 1), (1, 1)), True),
    ((3, 3, 3, 16), (3, 3, 16, 8), (1, 1), ((0, 0), (0, 0)), True),      # 3x3 -> 1x1
    ((3, 1, 1, 16), (1, 1, 16, 8), (1, 1), ((0, 0), (0, 0)), True),
    ((2, 9, 4), (3, 4, 5), (2,), ((1, 1),), True),                        # 1-D
    ((2, 13, 20, 1), (3, 3, 1, 4), (1, 1), ((1, 1), (1, 1)), False),     # 520 positions: XLA conv
])
def test_small_output_conv_as_gemm_equals_lax(x_shape, w_shape, strides, padding, uses_gemm):
  rng = np.random.default_rng(10)
  x = rng.standard_normal(x_shape).astype(np.float32)
  w = rng.standard_normal(w_shape).astype(np.float32)
  names = ("NHWC", "HWIO", "NHWC") if len(x_shape) == 4 else ("NWC", "WIO", "NWC")
  dn = jax.lax.conv_dimension_numbers(x_shape, w_shape, names)
  want = jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=dn)
  fn = functools.partial(conv_general_dilated, window_strides=strides, padding=padding, dimension_numbers=dn)
  got = jax.jit(fn)(x, w)
  chex.assert_shape(got, want.shape)
  assert rel_err(got, want) < RTOL
  assert ("dot_general" in str(jax.make_jaxpr(fn)(x, w))) == uses_gemm


def test_conv_transpose_rejects_output_padding_not_below_stride():
  with pytest.raises(ValueError, match="output_padding"):
    jax.eval_shape(ConvTranspose(4, 3, 2, 1, 2).init, jax.random.key(0), jnp.zeros((1, 3, 3, 2)))


def test_conv_bn_act_blocks_match_torch_eval_and_train():
  torch.manual_seed(1)
  ref = randomise_batchnorm(TorchConvBlock(8, 8, kernel_size=3, stride=1, padding=1, residual=True))
  conv, bn = ref.conv_block
  variables = {"params": {"conv": {"kernel": conv_kernel(conv.weight.detach().numpy()),
                                   "bias": conv.bias.detach().numpy()},
                          "bn": {"scale": bn.weight.detach().numpy(), "bias": bn.bias.detach().numpy()}},
               "batch_stats": {"bn": {"mean": bn.running_mean.numpy().copy(),
                                      "var": bn.running_var.numpy().copy()}}}
  block = ConvBNAct(8, 3, 1, 1, residual=True)
  x = np.random.default_rng(1).standard_normal((3, 6, 5, 8)).astype(np.float32)
  with torch.no_grad():
    want = ref(nchw(x)).numpy().transpose(0, 2, 3, 1)
  assert rel_err(block.apply(variables, x), want) < RTOL
  # Training: batch statistics, and running statistics updated with PyTorch's unbiased variance.
  ref.train()
  with torch.no_grad():
    want = ref(nchw(x)).numpy().transpose(0, 2, 3, 1)
  got, updates = block.apply(variables, x, train=True, mutable=["batch_stats"])
  assert rel_err(got, want) < RTOL
  stats = updates["batch_stats"]["bn"]
  np.testing.assert_allclose(stats["mean"], bn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats["var"], bn.running_var.numpy(), rtol=1e-5, atol=1e-6)


def test_training_batchnorm_on_a_sharded_batch_equals_one_device():
  """Under jit with the batch split over 8 devices, BN's statistics are over the global batch."""
  block = ConvBNAct(4, 3, 1, 1)
  x = np.random.default_rng(9).standard_normal((8, 5, 5, 3)).astype(np.float32)
  variables = numpy_variables(block, x)
  step = jax.jit(lambda v, x: block.apply(v, x, train=True, mutable=["batch_stats"]))
  want, want_stats = step(variables, x)
  mesh = jax.make_mesh((8,), ("data",))
  xs = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
  got, got_stats = step(variables, xs)
  assert len(xs.sharding.device_set) == 8
  chex.assert_trees_all_close((got, got_stats), (want, want_stats), rtol=1e-5, atol=1e-6)


def test_batchnorm_refuses_one_value_per_channel_in_training():
  v = BatchNorm().init(jax.random.key(0), jnp.zeros((1, 1, 1, 4)))
  with pytest.raises(ValueError, match="more than one value per channel"):
    BatchNorm().apply(v, jnp.ones((1, 1, 1, 4)), train=True, mutable=["batch_stats"])


def test_conv_blocks_support_1d_and_tanh_like_iplap():
  torch.manual_seed(2)
  conv, bn = torch.nn.Conv1d(4, 6, 3, 2, 1), torch.nn.BatchNorm1d(6)
  ref = randomise_batchnorm(torch.nn.Sequential(conv, bn, torch.nn.Tanh()))
  x = np.random.default_rng(2).standard_normal((2, 9, 4)).astype(np.float32)
  with torch.no_grad():
    want = ref(nchw(x)).numpy().transpose(0, 2, 1)
  variables = {"params": {"conv": {"kernel": conv_kernel(conv.weight.detach().numpy()),
                                   "bias": conv.bias.detach().numpy()},
                          "bn": {"scale": bn.weight.detach().numpy(), "bias": bn.bias.detach().numpy()}},
               "batch_stats": {"bn": {"mean": bn.running_mean.numpy(), "var": bn.running_var.numpy()}}}
  got = ConvBNAct(6, (3,), 2, 1, activation="tanh").apply(variables, x)
  chex.assert_shape(got, (2, 5, 6))
  assert rel_err(got, want) < RTOL


def test_residual_block_with_width_change_is_rejected():
  with pytest.raises(ValueError, match="residual"):
    jax.eval_shape(ConvBNAct(8, 3, 1, 1, residual=True).init, jax.random.key(0), jnp.zeros((1, 4, 4, 3)))


def test_conv_transpose_block_shapes_and_torch_default_init():
  block = ConvTransposeBNAct(7, 3, 2, 1, 1)
  y, variables = jax.jit(block.init_with_output)(jax.random.key(0), jnp.ones((2, 6, 6, 3)))
  chex.assert_shape(y, (2, 12, 12, 7))
  assert float(jnp.min(y)) >= 0.0  # ReLU output
  # PyTorch's default init: U(+-1/sqrt(fan_in)) with fan_in = C_out * k * k for a transposed conv.
  kernel = variables["params"]["conv_transpose"]["kernel"]
  chex.assert_shape(kernel, (3, 3, 7, 3))
  bound = 1.0 / np.sqrt(7 * 9)
  assert float(jnp.max(jnp.abs(kernel))) <= bound
  assert float(jnp.std(kernel)) == pytest.approx(bound / np.sqrt(3.0), rel=0.3)


# --- generator -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def generator():
  ref = randomise_batchnorm(TorchWav2Lip())
  return ref, convert.convert_state_dict("wav2lip", ref.state_dict())


@pytest.mark.slow  # two compilations of the full generator (~20 s of a 2-core CPU)
def test_wav2lip_generator_matches_lipsync_single_frames_and_windows(generator):
  ref, variables = generator
  rng = np.random.default_rng(3)
  fwd = jax.jit(Wav2Lip().apply)
  # Single frames: mel (N, 80, 16, 1), face (N, 96, 96, 6).
  mel = rng.uniform(-4, 4, (2, 80, 16, 1)).astype(np.float32)
  face = rng.uniform(0, 1, (2, 96, 96, 6)).astype(np.float32)
  face[:, 48:, :, :3] = 0
  with torch.no_grad():
    want = ref(nchw(mel), nchw(face)).numpy().transpose(0, 2, 3, 1)
  got = fwd(variables, mel, face)
  chex.assert_shape(got, (2, 96, 96, 3))
  err_frames = rel_err(got, want)
  # A window: PyTorch takes (B, T, 1, 80, 16) + (B, 6, T, 96, 96) and returns (B, 3, T, 96, 96).
  mel_w = rng.uniform(-4, 4, (1, 2, 80, 16, 1)).astype(np.float32)
  face_w = rng.uniform(0, 1, (1, 2, 96, 96, 6)).astype(np.float32)
  with torch.no_grad():
    want_w = ref(torch.from_numpy(mel_w.transpose(0, 1, 4, 2, 3).copy()),
                 torch.from_numpy(face_w.transpose(0, 4, 1, 2, 3).copy())).numpy().transpose(0, 2, 3, 4, 1)
  got_w = fwd(variables, mel_w, face_w)
  chex.assert_shape(got_w, (1, 2, 96, 96, 3))
  err_window = rel_err(got_w, want_w)
  print(f"wav2lip parity: frames {err_frames:.2e}, window {err_window:.2e}")
  assert err_frames < RTOL and err_window < RTOL


def test_audio_encoder_training_mode_matches_torch():
  """Train-mode BatchNorm through a whole encoder, down to 1x1 layers with 3 values per channel."""
  torch.manual_seed(5)
  ref = randomise_batchnorm(TorchWav2Lip(), seed=5)
  variables = convert.convert_state_dict("wav2lip", ref.state_dict())
  sub = {c: variables[c]["audio_encoder"] for c in variables}
  mel = np.random.default_rng(4).uniform(-4, 4, (3, 80, 16, 1)).astype(np.float32)
  ref.train()
  with torch.no_grad():
    want = ref.audio_encoder(nchw(mel)).numpy().transpose(0, 2, 3, 1)
  train_fwd = jax.jit(lambda v, m: AudioEncoder().apply(v, m, train=True, mutable=["batch_stats"]))
  got, updates = train_fwd(sub, mel)
  err = rel_err(got, want)
  want_stats = convert.convert_state_dict("wav2lip", ref.state_dict())["batch_stats"]["audio_encoder"]
  stat_errs = [rel_err(a, b)
               for a, b in zip(jax.tree.leaves(updates["batch_stats"]), jax.tree.leaves(want_stats))]
  print(f"audio encoder train-mode parity: output {err:.2e}, running stats max {max(stat_errs):.2e}")
  assert err < 1e-4
  assert max(stat_errs) < 1e-4


def test_audio_encoder_with_tanh_ending_matches_torch(generator):
  ref, variables = generator
  ref.audio_encoder[-1].act = torch.nn.Tanh()  # IP_LAP's mel encoder ends in Tanh instead of ReLU
  mel = np.random.default_rng(5).uniform(-4, 4, (2, 80, 16, 1)).astype(np.float32)
  with torch.no_grad():
    want = ref.audio_encoder(nchw(mel)).numpy().transpose(0, 2, 3, 1)
  ref.audio_encoder[-1].act = torch.nn.ReLU()
  sub = {c: variables[c]["audio_encoder"] for c in variables}
  got = jax.jit(AudioEncoder(final_activation="tanh").apply)(sub, mel)
  chex.assert_shape(got, (2, 1, 1, 512))
  assert float(jnp.min(got)) < 0.0  # tanh, not relu
  assert rel_err(got, want) < RTOL


def test_tiny_generator_variant_shapes():
  m = Wav2Lip(width_divisor=16)
  out, variables = jax.eval_shape(m.init_with_output, jax.random.key(0), jnp.zeros((2, 5, 80, 16, 1)),
                                  jnp.zeros((2, 5, 96, 96, 6)))
  chex.assert_shape(out, (2, 5, 96, 96, 3))
  params = variables["params"]
  chex.assert_shape(params["face_encoder_blocks_0_0"]["conv"]["kernel"], (7, 7, 6, 1))
  chex.assert_shape(params["face_decoder_blocks_6_0"]["conv_transpose"]["kernel"], (3, 3, 4, 10))
  chex.assert_shape(params["output_conv"]["kernel"], (1, 1, 2, 3))
  chex.assert_shape(variables["batch_stats"]["audio_encoder"]["block_12"]["bn"]["var"], (32,))


@pytest.mark.parametrize("mel_shape,face_shape,match", [
    ((2, 1, 80, 16), (2, 96, 96, 6), "mel"),                  # NCHW by mistake
    ((2, 80, 16, 1), (2, 6, 96, 96), "face"),
    ((2, 80, 16, 1), (3, 96, 96, 6), "leading"),
    ((2, 5, 80, 16, 1), (2, 96, 96, 6), "leading"),
])
def test_generator_rejects_bad_shapes_with_named_argument(mel_shape, face_shape, match):
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(Wav2Lip(width_divisor=16).init, jax.random.key(0), jnp.zeros(mel_shape),
                   jnp.zeros(face_shape))


# --- expert SyncNet and discriminator --------------------------------------------------------------

def test_syncnet_color_matches_torch_and_embeddings_are_unit_norm():
  torch.manual_seed(6)
  ref = randomise_batchnorm(TorchSyncNetColor(), seed=6)
  variables = convert.convert_state_dict("wav2lip_syncnet", ref.state_dict())
  rng = np.random.default_rng(6)
  mel = rng.uniform(-4, 4, (3, 80, 16, 1)).astype(np.float32)
  face = rng.uniform(0, 1, (3, 48, 96, 15)).astype(np.float32)
  with torch.no_grad():
    want_a, want_f = (t.numpy() for t in ref(nchw(mel), nchw(face)))
  net = SyncNetColor()
  got_a = jax.jit(functools.partial(net.apply, method="embed_audio"))(variables, mel)
  got_f = jax.jit(functools.partial(net.apply, method="embed_face"))(variables, face)
  chex.assert_shape([got_a, got_f], (3, 512))
  err_a, err_f = rel_err(got_a, want_a), rel_err(got_f, want_f)
  print(f"wav2lip_syncnet parity: audio {err_a:.2e}, face {err_f:.2e}")
  assert err_a < RTOL and err_f < RTOL
  both = jax.eval_shape(net.apply, variables, mel, face)   # __call__ = (embed_audio, embed_face)
  chex.assert_shape(list(both), (3, 512))
  np.testing.assert_allclose(np.linalg.norm(got_a, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(got_f, axis=1), 1.0, rtol=1e-5)
  # Wav2Lip's cosine_loss: BCELoss(cosine_similarity(a, v), y).
  labels = np.array([1.0, 0.0, 1.0], np.float32)
  d = torch.nn.functional.cosine_similarity(torch.from_numpy(want_a), torch.from_numpy(want_f))
  want_loss = torch.nn.BCELoss()(d.unsqueeze(1), torch.from_numpy(labels)[:, None]).item()
  got_loss = float(expert_sync_loss(got_a, got_f, labels))
  assert abs(got_loss - want_loss) < 1e-5 * max(1.0, abs(want_loss))


def test_expert_sync_loss_edge_cases_follow_bce_clamping():
  a = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8]])
  v = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
  np.testing.assert_allclose(np.asarray(cosine_similarity(a, v)), [1.0, 0.0, 1.0], atol=1e-6)
  # Perfect pairs cost 0; a label-1 pair with cosine 0 costs BCELoss's clamp of 100.
  assert float(expert_sync_loss(a[:1], v[:1], jnp.ones(1))) == pytest.approx(0.0, abs=1e-6)
  assert float(expert_sync_loss(a[1:2], v[1:2], jnp.ones(1))) == pytest.approx(100.0)
  assert float(expert_sync_loss(a[1:2], v[1:2], jnp.zeros(1))) == pytest.approx(0.0, abs=1e-6)
  # A uniform guess (cosine 0.5) gives log 2: the 0.69 plateau users report.
  h = jnp.array([[1.0, 0.0]])
  g = jnp.array([[0.5, 0.75 ** 0.5]])
  assert float(expert_sync_loss(h, g, jnp.ones(1))) == pytest.approx(np.log(2.0), rel=1e-5)


def test_syncnet_color_rejects_full_faces():
  with pytest.raises(ValueError, match="face"):
    jax.eval_shape(SyncNetColor(width_divisor=16).init, jax.random.key(0), jnp.zeros((1, 80, 16, 1)),
                   jnp.zeros((1, 96, 96, 15)))


def test_discriminator_matches_torch_on_frames_and_windows():
  torch.manual_seed(7)
  ref = he_init(TorchDisc(), seed=7)
  variables = convert.convert_state_dict("wav2lip_disc", ref.state_dict())
  assert set(variables) == {"params"}
  rng = np.random.default_rng(7)
  window = rng.uniform(0, 1, (2, 3, 96, 96, 3)).astype(np.float32)   # (B, T, H, W, C)
  window_t = torch.from_numpy(window.transpose(0, 4, 1, 2, 3).copy())
  with torch.no_grad():
    want_logits = ref.logits(window_t).numpy()   # (T*B, 1), time-major
    want = ref(window_t).numpy()
  assert np.std(want_logits) > 0.1  # the signal reaches the output
  net = Wav2LipDisc()
  got_logits, got = jax.jit(lambda v, x: (net.apply(v, x, logits=True), net.apply(v, x)))(variables, window)
  chex.assert_shape([got_logits, got], (2, 3, 1))
  # PyTorch flattens the window time-major: row t*B + b.
  err_logits = rel_err(np.transpose(got_logits, (1, 0, 2)).reshape(6, 1), want_logits)
  err_probs = rel_err(np.transpose(got, (1, 0, 2)).reshape(6, 1), want)
  print(f"wav2lip_disc parity: logits {err_logits:.2e}, probabilities {err_probs:.2e}")
  assert err_logits < RTOL and err_probs < RTOL
  chex.assert_shape(jax.eval_shape(net.apply, variables, window[:, 0]), (2, 1))   # single frames
