"""IP_LAP's landmark transformer (talkjax.models.iplap_landmark), its converter and IP_LAP's losses.

The parity reference is a PyTorch module built here from IP_LAP's ``models/landmark_generator.py``
layer lists and attribute names (so its state dict has the published checkpoint's key layout), with
random weights and BatchNorm statistics, compared in eval mode.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from talkjax import checkpoints
from talkjax import landmarks as lm
from talkjax.errors import CheckpointError, ShapeError
from talkjax.models import iplap_landmark, landmark_inference
from talkjax.tasks import landmarks as task
from third_party import convert
from parity import randomise_batchnorm, rel_err

RTOL = 1e-5


def random_variables(model, inputs, seed: int = 0) -> dict:
  """Random variables of ``model`` from its shapes alone (no compiled initialiser), drawn like
  PyTorch's default initialisation: kernels and biases U(+-1/sqrt(fan_in)), norms at scale 1 and
  bias 0, BatchNorm statistics 0 / 1, embeddings N(0, 1)."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *inputs))
  rng = np.random.default_rng(seed)
  fan_in = {}

  def fill(path, leaf):
    names = tuple(p.key for p in path)
    shape = leaf.shape
    if names[-1] == "kernel":
      fan_in[names[:-1]] = int(np.prod(shape[:-1]))
      bound = 1.0 / math.sqrt(fan_in[names[:-1]])
      return rng.uniform(-bound, bound, shape).astype(np.float32)
    if names[-1] in ("scale", "var"):
      return np.ones(shape, np.float32)
    if names[-1] == "mean" or names[-2] in ("bn", "norm") or "norm" in names[-2]:
      return np.zeros(shape, np.float32)
    return rng.normal(0.0, 1.0 if len(shape) == 2 else 0.05, shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


# --- PyTorch reference with IP_LAP's key layout ---------------------------------------------------

class TorchConvBlock(torch.nn.Module):
  """IP_LAP's ``Conv1d`` / ``Conv2d`` blocks: ``conv_block = Sequential(conv, BN)``, residual, act."""

  def __init__(self, dims, cin, cout, kernel_size, stride, padding, residual=False, act="ReLU"):
    super().__init__()
    conv, bn = ((torch.nn.Conv1d, torch.nn.BatchNorm1d) if dims == 1
                else (torch.nn.Conv2d, torch.nn.BatchNorm2d))
    self.conv_block = torch.nn.Sequential(conv(cin, cout, kernel_size, stride, padding), bn(cout))
    self.act = torch.nn.ReLU() if act == "ReLU" else torch.nn.Tanh()
    self.residual = residual

  def forward(self, x):
    out = self.conv_block(x)
    if self.residual:
      out = out + x
    return self.act(out)


# (cin, cout, kernel, stride, padding, residual, act) as listed in IP_LAP's Landmark_generator.
R = "ReLU"
MEL = [(1, 32, 3, 1, 1, False, R), (32, 32, 3, 1, 1, True, R), (32, 32, 3, 1, 1, True, R),
       (32, 64, 3, (3, 1), 1, False, R), (64, 64, 3, 1, 1, True, R), (64, 64, 3, 1, 1, True, R),
       (64, 128, 3, 3, 1, False, R), (128, 128, 3, 1, 1, True, R), (128, 128, 3, 1, 1, True, R),
       (128, 256, 3, (3, 2), 1, False, R), (256, 256, 3, 1, 1, True, R),
       (256, 512, 3, 1, 0, False, R), (512, 512, 1, 1, 0, False, "Tanh")]
REF = [(2, 4, 3, 1, 1, False, R),
       (4, 8, 3, 2, 1, False, R), (8, 8, 3, 1, 1, True, R), (8, 8, 3, 1, 1, True, R),
       (8, 16, 3, 2, 1, False, R), (16, 16, 3, 1, 1, True, R), (16, 16, 3, 1, 1, True, R),
       (16, 32, 3, 2, 1, False, R), (32, 32, 3, 1, 1, True, R), (32, 32, 3, 1, 1, True, R),
       (32, 64, 3, 2, 1, False, R), (64, 64, 3, 1, 1, True, R), (64, 64, 3, 1, 1, True, R),
       (64, 128, 3, 2, 1, False, R), (128, 128, 3, 1, 1, True, R), (128, 128, 3, 1, 1, True, R),
       (128, 256, 3, 2, 1, False, R), (256, 256, 3, 1, 1, True, R),
       (256, 512, 3, 1, 0, False, R), (512, 512, 1, 1, 0, False, "Tanh")]
POSE = [(2, 4, 3, 1, 1, False, R),
        (4, 8, 3, 1, 1, False, R), (8, 8, 3, 1, 1, True, R), (8, 8, 3, 1, 1, True, R),
        (8, 16, 3, 2, 1, False, R), (16, 16, 3, 1, 1, True, R), (16, 16, 3, 1, 1, True, R),
        (16, 32, 3, 2, 1, False, R), (32, 32, 3, 1, 1, True, R), (32, 32, 3, 1, 1, True, R),
        (32, 64, 3, 2, 1, False, R), (64, 64, 3, 1, 1, True, R), (64, 64, 3, 1, 1, True, R),
        (64, 128, 3, 2, 1, False, R), (128, 128, 3, 1, 1, True, R), (128, 128, 3, 1, 1, True, R),
        (128, 256, 3, 2, 1, False, R), (256, 256, 3, 1, 1, True, R), (256, 256, 3, 1, 1, True, R),
        (256, 512, 3, 1, 0, False, R), (512, 512, 1, 1, 0, True, "Tanh")]


class TorchPositions(torch.nn.Module):
  def __init__(self, d_model=512, max_len=512):
    super().__init__()
    position = torch.arange(0, max_len).float().unsqueeze(1)
    div = (torch.arange(0, d_model, 2).float() * -(math.log(10000.0) / d_model)).exp()
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    self.register_buffer("pe", pe.unsqueeze(0))

  def forward(self, x):
    return self.pe[:, :x.size(1)]


class TorchFusion(torch.nn.Module):
  def __init__(self, t=5):
    super().__init__()
    self.t = t
    self.position_v = TorchPositions()
    self.position_a = TorchPositions()
    self.modality = torch.nn.Embedding(4, 512, padding_idx=0)
    self.dropout = torch.nn.Dropout(0.1)
    layer = torch.nn.TransformerEncoderLayer(512, 4, 1024, 0.1, batch_first=True)
    self.transformer_encoder = torch.nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)

  def forward(self, ref, mel, pose):
    b, nl = ref.shape[:2]
    ones = lambda n, v: torch.full((b, n), v, dtype=torch.long)  # noqa: E731
    pose_tokens = pose + self.position_v(pose) + self.modality(ones(self.t, 1))
    audio_tokens = mel + self.position_a(mel) + self.modality(ones(self.t, 2))
    ref_tokens = ref + self.modality(ones(nl, 3))
    return self.transformer_encoder(self.dropout(torch.cat([ref_tokens, audio_tokens, pose_tokens], dim=1)))


class TorchLandmarkGenerator(torch.nn.Module):
  """IP_LAP's ``Landmark_generator(T=5, d_model=512, nlayers=4, nhead=4, dim_feedforward=1024)``."""

  def __init__(self):
    super().__init__()
    self.mel_encoder = torch.nn.Sequential(*[TorchConvBlock(2, *row) for row in MEL])
    self.ref_encoder = torch.nn.Sequential(*[TorchConvBlock(1, *row) for row in REF])
    self.pose_encoder = torch.nn.Sequential(*[TorchConvBlock(1, *row) for row in POSE])
    self.fusion_transformer = TorchFusion()
    self.mouse_keypoint_map = torch.nn.Linear(512, 80)
    self.jaw_keypoint_map = torch.nn.Linear(512, 34)
    self.Norm = torch.nn.LayerNorm(512)

  def forward(self, mels, pose, nl_pose, nl_content):  # (B,T,1,80,16) (B,T,2,74) (B,Nl,2,74) (B,Nl,2,57)
    b, t, nl = mels.shape[0], mels.shape[1], nl_content.shape[1]
    ref = torch.cat([nl_pose, nl_content], dim=3).reshape(b * nl, 2, 131)
    mel_e = self.Norm(self.mel_encoder(mels.reshape(b * t, 1, 80, 16)).reshape(b * t, 512))
    pose_e = self.Norm(self.pose_encoder(pose.reshape(b * t, 2, 74)).reshape(b * t, 512))
    ref_e = self.Norm(self.ref_encoder(ref).reshape(b * nl, 512))
    out = self.fusion_transformer(ref_e.reshape(b, nl, 512), mel_e.reshape(b, t, 512),
                                  pose_e.reshape(b, t, 512))
    lips = self.mouse_keypoint_map(out[:, nl:nl + t])
    jaw = self.jaw_keypoint_map(out[:, nl + t:])
    content = torch.cat([jaw, lips], dim=2).reshape(b, t, -1, 2)
    return content.reshape(b * t, -1, 2).permute(0, 2, 1)  # (B*T, 2, 57), as IP_LAP


def randomised_torch_model(seed=0) -> TorchLandmarkGenerator:
  """IP_LAP's generator with random weights, BatchNorm statistics (tests/parity.py) and LayerNorms."""
  torch.manual_seed(seed)
  model = randomise_batchnorm(TorchLandmarkGenerator(), seed + 1)
  g = torch.Generator().manual_seed(seed + 2)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.LayerNorm):
        m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
        m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
  return model.eval()


@pytest.fixture(scope="module")
def torch_model():
  return randomised_torch_model()


@pytest.fixture(scope="module")
def state_dict(torch_model):
  return {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}


@pytest.fixture(scope="module")
def converted(state_dict):
  return convert.convert_state_dict("iplap_landmark", state_dict, "random.pth")


def to_torch_points(x):
  return torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, -1, -2)))


def test_converted_model_matches_pytorch(torch_model, converted):
  mel, pose, ref_pose, ref_content = iplap_landmark.example_inputs(2, seed=3)
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(np.moveaxis(mel, -1, 2)), to_torch_points(pose),
                           to_torch_points(ref_pose), to_torch_points(ref_content)).numpy()
  expected = np.swapaxes(expected, 1, 2).reshape(2, 5, lm.NUM_CONTENT, 2)
  model = convert.module_for("iplap_landmark")
  got = jax.jit(model.apply)(converted, mel, pose, ref_pose, ref_content)
  chex.assert_shape(got, (2, 5, lm.NUM_CONTENT, 2))
  assert rel_err(got, expected) < RTOL
  convert.check_variables_fit("iplap_landmark", converted)


def test_convert_file_roundtrip_with_wrapper_and_prefix(tmp_path, torch_model, converted):
  wrapped = {"state_dict": {"module." + k: v for k, v in torch_model.state_dict().items()},
             "optimizer": None, "global_step": 5, "global_epoch": 1}
  torch.save(wrapped, tmp_path / "landmarkgenerator_checkpoint.pth")
  out = convert.convert_file("iplap_landmark", str(tmp_path / "landmarkgenerator_checkpoint.pth"),
                             str(tmp_path / "weights"))
  loaded = checkpoints.load_variables(out)
  chex.assert_trees_all_close(loaded, jax.tree.map(np.asarray, converted), atol=0)


def test_converter_lists_every_problem(state_dict):
  sd = dict(state_dict)
  del sd["ref_encoder.3.conv_block.1.running_var"]
  sd["pose_encoder.0.conv_block.0.weight"] = np.zeros((4, 2, 5), np.float32)
  sd["extra.weight"] = np.zeros((3,), np.float32)
  with pytest.raises(CheckpointError) as e:
    convert.convert_state_dict("iplap_landmark", sd)
  message = str(e.value)
  for part in ("ref_encoder.3.conv_block.1.running_var", "pose_encoder.0.conv_block.0.weight",
               "extra.weight"):
    assert part in message


def test_converter_checks_the_positional_buffers(state_dict):
  sd = dict(state_dict)
  sd["fusion_transformer.position_a.pe"] = sd["fusion_transformer.position_a.pe"] + 0.1
  with pytest.raises(CheckpointError, match="position_a.pe"):
    convert.convert_state_dict("iplap_landmark", sd)
  renderer_like = {"translation.conv1.weight": np.zeros((1,), np.float32)}
  with pytest.raises(CheckpointError, match="iplap_renderer"):
    convert.convert_state_dict("iplap_landmark", renderer_like)


def test_sinusoidal_positions_match_torch():
  expected = TorchPositions(64, 9).pe[0].numpy()
  np.testing.assert_allclose(iplap_landmark.sinusoidal_positions(9, 64), expected, atol=1e-6)
  np.testing.assert_allclose(iplap_landmark.sinusoidal_positions(3, 8)[2, :2], [np.sin(2.0), np.cos(2.0)],
                             atol=1e-6)


# --- Tiny variants: shapes and behaviour ---------------------------------------------------------

TINY = dict(width_divisor=16, num_layers=1, num_heads=2, dim_feedforward=32)


@pytest.fixture(scope="module")
def tiny():
  model = iplap_landmark.IPLAPLandmarkGenerator(**TINY)
  inputs = iplap_landmark.example_inputs(2, num_frames=5, num_references=3, seed=1)
  return model, random_variables(model, inputs), inputs, jax.jit(model.apply)


def test_tiny_shapes_and_parameter_layout(tiny):
  model, variables, inputs, apply = tiny
  out = apply(variables, *inputs)
  chex.assert_shape(out, (2, 5, lm.NUM_CONTENT, 2))
  chex.assert_tree_all_finite(out)
  assert model.d_model == 32
  params = variables["params"]
  assert set(params) == {"encoders", "modality", "transformer", "lip_head", "jaw_head"}
  assert len(params["encoders"]["mel_encoder"]) == 13
  assert len(params["encoders"]["ref_encoder"]) == 20 and len(params["encoders"]["pose_encoder"]) == 21
  chex.assert_shape(params["modality"], (4, 32))
  chex.assert_shape(params["lip_head"]["kernel"], (32, 80))
  chex.assert_shape(params["jaw_head"]["kernel"], (32, 34))


def test_audio_drives_lips_and_pose_drives_jaw(tiny):
  _, variables, (mel, pose, ref_pose, ref_content), apply = tiny
  base = np.asarray(apply(variables, mel, pose, ref_pose, ref_content))
  other_mel = np.asarray(apply(variables, -mel, pose, ref_pose, ref_content))
  lips, jaw = slice(lm.NUM_JAW, None), slice(0, lm.NUM_JAW)
  # (Thresholds far above float32 noise; at initialisation the conv stacks damp input differences.)
  assert np.abs(other_mel[:, :, lips] - base[:, :, lips]).mean() > 1e-4
  moved = pose.copy()
  moved[:, 2] = np.clip(moved[:, 2] + 0.2, 0.0, 1.0)
  other_pose = np.asarray(apply(variables, mel, moved, ref_pose, ref_content))
  assert np.abs(other_pose[:, 2, jaw] - base[:, 2, jaw]).mean() > 1e-5
  # The model is a function of each example alone: example 1 does not see example 0's change.
  mixed = mel.copy()
  mixed[0] = -mel[0]
  out = np.asarray(apply(variables, mixed, pose, ref_pose, ref_content))
  np.testing.assert_allclose(out[1], base[1], atol=1e-5)


def test_training_mode_updates_batch_stats_and_uses_dropout(tiny):
  model, variables, inputs, _ = tiny

  @jax.jit
  def train_apply(rng):
    return model.apply(variables, *inputs, train=True, rngs={"dropout": rng}, mutable=["batch_stats"])

  out1, upd = train_apply(jax.random.PRNGKey(0))
  out2, _ = train_apply(jax.random.PRNGKey(1))
  assert not np.allclose(out1, out2)
  old = variables["batch_stats"]["encoders"]["mel_encoder"]["block_0"]["bn"]["mean"]
  new = upd["batch_stats"]["encoders"]["mel_encoder"]["block_0"]["bn"]["mean"]
  assert not np.allclose(old, new)


def test_pose_frame_makes_predictions_follow_the_crop_box(tiny):
  """With normalization="pose" a change of crop box (scale + shift of a frame's points) moves the
  prediction with it and tells the network nothing; in IP_LAP's crop frame it changes the input."""
  model, variables, (mel, pose, ref_pose, ref_content), _ = tiny
  reference = np.concatenate([ref_pose, ref_content], axis=2)
  rng = np.random.default_rng(5)
  scale = rng.uniform(0.7, 1.3, (2, 5, 1, 1)).astype(np.float32)
  shift = rng.uniform(-0.1, 0.1, (2, 5, 1, 2)).astype(np.float32)
  ref_scale = rng.uniform(0.7, 1.3, (2, 3, 1, 1)).astype(np.float32)

  @jax.jit
  def run(pose, reference):
    return {n: landmark_inference.apply_model(model, variables, mel, pose, reference, normalization=n)
            for n in landmark_inference.NORMALIZATIONS}

  base, moved = run(pose, reference), run(pose * scale + shift, reference * ref_scale)
  np.testing.assert_allclose(moved["pose"], base["pose"] * scale + shift, atol=2e-5)
  assert np.abs(moved["crop"] - (base["crop"] * scale + shift)).max() > 1e-4
  centre, side = landmark_inference.pose_frame(pose)
  np.testing.assert_allclose(landmark_inference.from_frame(landmark_inference.to_frame(pose, centre, side),
                                                           centre, side), pose, atol=1e-6)
  framed = np.asarray(landmark_inference.to_frame(pose, centre, side))
  np.testing.assert_allclose(framed.min(axis=-2).min(axis=-1), 0.0, atol=1e-6)   # long side spans [0, 1]
  np.testing.assert_allclose(framed.max(axis=-2).max(axis=-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("normalization", landmark_inference.NORMALIZATIONS)
def test_offset_model_starts_at_the_reference_prior(normalization):
  """``offset=True`` with zero-initialised heads predicts, before any training, the references' jaw +
  lips moved to each target frame's nose base and averaged (NumPy reference), whatever the audio;
  trained heads add to it."""
  model = iplap_landmark.IPLAPLandmarkGenerator(**TINY, zero_init_heads=True)
  mel, pose, ref_pose, ref_content = iplap_landmark.example_inputs(2, num_frames=5, num_references=3, seed=2)
  reference = np.concatenate([ref_pose, ref_content], axis=2)
  variables = task.init_variables(model, jax.random.key(0), {"mel": mel, "pose": pose, "reference": reference})
  for head in ("lip_head", "jaw_head"):
    assert not np.any(np.asarray(variables["params"][head]["kernel"]))

  def run(variables, mel):
    return np.asarray(landmark_inference.apply_model(model, variables, mel, pose, reference,
                                                     normalization=normalization, offset=True))

  def prior(pose, ref_pose, ref_content):   # the references' content, nose base on the frame's, averaged
    ref_nose = ref_pose[:, :, 33:42].mean(axis=2, keepdims=True)              # (B, Nl, 1, 2)
    shape = (ref_content - ref_nose).mean(axis=1, keepdims=True)              # (B, 1, 57, 2)
    return shape + pose[:, :, 33:42].mean(axis=2, keepdims=True)             # (B, T, 57, 2)

  if normalization == "pose":   # each reference in its own pose box, the result mapped to each frame's
    def box(points):
      lo, hi = points.min(axis=-2, keepdims=True), points.max(axis=-2, keepdims=True)
      return 0.5 * (lo + hi), (hi - lo).max(axis=-1, keepdims=True)
    rc, rs = box(ref_pose)
    c, sd = box(pose)
    framed = prior((pose - c) / sd + 0.5, (ref_pose - rc) / rs + 0.5, (ref_content - rc) / rs + 0.5)
    expected = (framed - 0.5) * sd + c
  else:
    expected = prior(pose, ref_pose, ref_content)
  out = run(variables, mel)
  chex.assert_shape(out, (2, 5, lm.NUM_CONTENT, 2))
  np.testing.assert_allclose(out, expected, atol=1e-5)
  np.testing.assert_allclose(run(variables, -mel), expected, atol=1e-5)
  bumped = jax.tree.map(lambda x: x, variables)
  bumped["params"]["lip_head"]["bias"] = jnp.full((2 * lm.NUM_LIPS,), 0.01)   # trained heads add to it
  moved = run(bumped, mel) - out
  assert np.abs(moved[:, :, lm.NUM_JAW:]).min() > 1e-3 and np.abs(moved[:, :, :lm.NUM_JAW]).max() < 1e-6


@pytest.mark.parametrize("which, shape, match", [
    (0, (2, 5, 80, 16), "mel"),
    (1, (2, 4, 74, 2), "pose"),
    (2, (2, 3, 70, 2), "reference_pose"),
    (3, (2, 4, 57, 2), "reference"),
])
def test_bad_input_shapes_name_the_argument(tiny, which, shape, match):
  model, variables, inputs, _ = tiny
  inputs = list(inputs)
  inputs[which] = np.zeros(shape, np.float32)
  with pytest.raises(ShapeError, match=match):
    model.apply(variables, *inputs)


# --- IP_LAP's losses ---------------------------------------------------------------------------------

def torch_velocity_loss(pred, gt, t=5):
  """IP_LAP's ``get_velocity_loss`` on (B*T, 2, 57) tensors."""
  pred = torch.stack(torch.split(pred, t, dim=0), dim=0)
  gt = torch.stack(torch.split(gt, t, dim=0), dim=0)
  pred = torch.cat([pred[:, :, :, i] for i in range(pred.size(3))], dim=2)
  gt = torch.cat([gt[:, :, :, i] for i in range(gt.size(3))], dim=2)
  b, tt, c = pred.shape
  dp = (pred[:, 1:] - pred[:, :-1]).reshape(b * (tt - 1), c)
  dg = (gt[:, 1:] - gt[:, :-1]).reshape(b * (tt - 1), c)
  return torch.mean(torch.nn.functional.pairwise_distance(dp, dg))


def test_iplap_losses_match_pytorch_and_numpy():
  rng = np.random.default_rng(0)
  pred = rng.uniform(0, 1, (3, 5, 57, 2)).astype(np.float32)
  gt = rng.uniform(0, 1, (3, 5, 57, 2)).astype(np.float32)
  as_torch = lambda x: torch.from_numpy(np.swapaxes(x, 2, 3).reshape(15, 2, 57).copy())  # noqa: E731
  np.testing.assert_allclose(float(task.l1_loss(pred, gt)), np.mean(np.abs(pred - gt)), rtol=1e-6)
  np.testing.assert_allclose(float(task.velocity_loss(pred, gt)),
                             float(torch_velocity_loss(as_torch(pred), as_torch(gt))), rtol=1e-5)
  dp, dg = np.diff(pred, axis=1).reshape(3, 4, -1), np.diff(gt, axis=1).reshape(3, 4, -1)
  np.testing.assert_allclose(float(task.velocity_loss(pred, gt)),
                             np.mean(np.linalg.norm(dp - dg + 1e-6, axis=-1)), rtol=1e-5)
  # A constant offset has no velocity error (up to eps) but its full L1.
  assert float(task.velocity_loss(gt + 0.1, gt)) < 1e-4
  np.testing.assert_allclose(float(task.l1_loss(gt + 0.1, gt)), 0.1, rtol=1e-5)
  grad = jax.grad(task.velocity_loss)(jnp.asarray(gt), jnp.asarray(gt))
  chex.assert_tree_all_finite(grad)
