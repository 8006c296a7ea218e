"""pix2pixHD multi-scale discriminator: parity with a hand-built PyTorch module, converter checks."""

import chex
import jax
import numpy as np
import pytest
import torch
from torch import nn as tnn

from talkjax import checkpoints
from talkjax.errors import CheckpointError, ConfigError
from talkjax.models import pix2pixhd as p2p
from third_party import convert
from third_party.converters import pix2pixhd as p2p_converter
from parity import rel_err


class _TorchMultiscaleD(tnn.Module):
  """pix2pixHD's MultiscaleDiscriminator(getIntermFeat=True) rebuilt from its public layout."""

  def __init__(self, input_nc, ndf=64, n_layers=3, num_d=2, norm="instance"):
    super().__init__()
    self.num_d, self.n_layers = num_d, n_layers
    def norm_layers(c):
      return [tnn.InstanceNorm2d(c, affine=False)] if norm == "instance" else []

    for k in range(num_d):
      seq, nf = [[tnn.Conv2d(input_nc, ndf, 4, stride=2, padding=2), tnn.LeakyReLU(0.2)]], ndf
      for _ in range(1, n_layers):
        nf_prev, nf = nf, min(nf * 2, 512)
        seq.append([tnn.Conv2d(nf_prev, nf, 4, stride=2, padding=2)] + norm_layers(nf) + [tnn.LeakyReLU(0.2)])
      nf_prev, nf = nf, min(nf * 2, 512)
      seq.append([tnn.Conv2d(nf_prev, nf, 4, stride=1, padding=2)] + norm_layers(nf) + [tnn.LeakyReLU(0.2)])
      seq.append([tnn.Conv2d(nf, 1, 4, stride=1, padding=2)])
      for j, layers in enumerate(seq):
        setattr(self, f"scale{k}_layer{j}", tnn.Sequential(*layers))
    self.downsample = tnn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)

  def forward(self, x):
    result = []
    for i in range(self.num_d):
      feats, h = [], x
      for j in range(self.n_layers + 2):
        h = getattr(self, f"scale{self.num_d - 1 - i}_layer{j}")(h)
        feats.append(h)
      result.append(feats)
      if i != self.num_d - 1:
        x = self.downsample(x)
    return result


def _make_torch(seed, **kw):
  torch.manual_seed(seed)
  model = _TorchMultiscaleD(**kw)
  for m in model.modules():
    if isinstance(m, tnn.Conv2d):  # pix2pixHD's weights_init; random biases so they are checked too
      tnn.init.normal_(m.weight, 0.0, 0.02)
      tnn.init.uniform_(m.bias, -0.1, 0.1)
  return model.eval()


def _check_parity(torch_model, module, variables, x):
  with torch.no_grad():
    ref = torch_model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
  got = jax.jit(module.apply)(variables, x)
  assert len(got) == len(ref)
  errs = []
  for i, (g_scale, r_scale) in enumerate(zip(got, ref)):
    assert len(g_scale) == len(r_scale)
    for j, (g, r) in enumerate(zip(g_scale, r_scale)):
      r = r.permute(0, 2, 3, 1).numpy()
      assert g.shape == r.shape, (i, j, g.shape, r.shape)
      err = rel_err(g, r)
      errs.append(err)
      assert err < 1e-5, f"scale {i} layer {j}: relative error {err:.2e}"
  return got, max(errs)


def test_iplap_configuration_parity_every_layer():
  torch_model = _make_torch(0, input_nc=3)
  variables = convert.convert_state_dict("pix2pixhd_disc", torch_model.state_dict(), "random_disc")
  convert.check_variables_fit("pix2pixhd_disc", variables)
  x = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 3)).astype(np.float32)
  got, _ = _check_parity(torch_model, p2p.build(), variables, x)
  # k4 p2: stride-2 layers give H/2+1, stride-1 layers H+1; scale 1 sees the 32x32 pooled input.
  assert [g.shape[1] for g in got[0]] == [33, 17, 9, 10, 11]
  assert [g.shape[1] for g in got[1]] == [17, 9, 5, 6, 7]
  assert [g.shape[-1] for g in got[0]] == [64, 128, 256, 512, 1]


def test_reduced_variant_three_scales_six_channels_no_norm():
  kw = dict(input_nc=6, ndf=8, n_layers=2, num_d=3)
  for norm in ("instance", "none"):
    torch_model = _make_torch(1, norm=norm, **kw)
    sd = torch_model.state_dict()
    cfg = p2p_converter.infer_config(sd)
    assert cfg == {"in_channels": 6, "ndf": 8, "n_layers": 2, "num_d": 3}
    variables = convert.convert_state_dict("pix2pixhd_disc", sd)
    module = p2p.build(norm=norm, **cfg)
    x = np.random.default_rng(2).normal(size=(2, 27, 33, 6)).astype(np.float32)  # odd sizes: pooling edges
    got, _ = _check_parity(torch_model, module, variables, x)
    chex.assert_shape(got[2][-1], (2, 5, 5, 1))  # 27x33 -> 14x17 -> 7x9 -> 4x5 -> 3x3 -> 4x4 -> 5x5


def test_full_resolution_uses_last_scale_weights():
  torch_model = _make_torch(3, input_nc=3, ndf=4, n_layers=1, num_d=2)
  variables = convert.convert_state_dict("pix2pixhd_disc", torch_model.state_dict())
  np.testing.assert_array_equal(variables["params"]["scale1_layer0"]["kernel"],
                                torch_model.scale1_layer0[0].weight.detach().numpy().transpose(2, 3, 1, 0))
  x = np.random.default_rng(3).uniform(size=(1, 16, 16, 3)).astype(np.float32)
  out = p2p.build(ndf=4, n_layers=1).apply(variables, x)
  w, b = variables["params"]["scale1_layer0"]["kernel"], variables["params"]["scale1_layer0"]["bias"]
  first = jax.nn.leaky_relu(
      jax.lax.conv_general_dilated(x, w, (2, 2), ((2, 2), (2, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
      + b, 0.2)
  np.testing.assert_allclose(out[0][0], first, rtol=1e-5, atol=1e-6)


def test_downsample_matches_avgpool_count_include_pad_false():
  x = np.random.default_rng(4).normal(size=(2, 7, 10, 3)).astype(np.float32)
  ref = tnn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)(
      torch.from_numpy(x.transpose(0, 3, 1, 2))).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(p2p.downsample(x), ref, rtol=1e-6, atol=1e-6)
  # corner: mean of the 2x2 in-bounds pixels, not divided by 9
  np.testing.assert_allclose(p2p.downsample(x)[:, 0, 0], x[:, :2, :2].mean(axis=(1, 2)), rtol=1e-6)


def test_convert_file_roundtrip(tmp_path):
  torch_model = _make_torch(5, input_nc=3)
  path = tmp_path / "netD.pth"
  torch.save({"state_dict": {"module." + k: v for k, v in torch_model.state_dict().items()}}, path)
  out = convert.convert_file("pix2pixhd_disc", str(path), str(tmp_path / "disc"))
  loaded = checkpoints.load_variables(out)
  direct = convert.convert_state_dict("pix2pixhd_disc", torch_model.state_dict())
  chex.assert_trees_all_equal(jax.tree.map(np.asarray, loaded), direct)


def test_converter_rejects_bad_state_dicts():
  sd = {k: v.numpy().copy() for k, v in _make_torch(6, input_nc=3, ndf=4, n_layers=2).state_dict().items()}
  bad = dict(sd)
  bad["scale0_layer2.0.weight"] = np.zeros((16, 4, 4, 4), np.float32)
  bad["scale1_layer9.0.bias"] = np.zeros((1,), np.float32)
  with pytest.raises(CheckpointError, match=r"scale0_layer2\.0\.weight: expected \(16, 8, 4, 4\)"):
    convert.convert_state_dict("pix2pixhd_disc", bad, "d.pth")
  bad = dict(sd)
  del bad["scale1_layer1.0.bias"]
  bad["extra"] = np.zeros((1,), np.float32)
  with pytest.raises(CheckpointError,
                     match=r"missing keys: scale1_layer1\.0\.bias \(8,\).*unknown keys: extra"):
    convert.convert_state_dict("pix2pixhd_disc", bad)
  bad = dict(sd)
  bad["scale0_layer1.1.running_mean"] = np.zeros((8,), np.float32)
  with pytest.raises(CheckpointError, match="batch-norm"):
    convert.convert_state_dict("pix2pixhd_disc", bad)
  with pytest.raises(CheckpointError, match="getIntermFeat=False"):
    convert.convert_state_dict("pix2pixhd_disc", {"layer0.0.weight": np.zeros((4, 3, 4, 4), np.float32)})


def test_bad_module_arguments():
  x = np.zeros((1, 32, 32, 3), np.float32)
  with pytest.raises(ConfigError, match="norm"):
    p2p.build(norm="batch").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r"\(N, H, W, 6\).*\(1, 32, 32, 3\)"):
    p2p.build(in_channels=6).init(jax.random.key(0), x)


def test_convert_file_builds_the_architecture_the_checkpoint_describes(tmp_path):
  # A 3-scale, 6-channel discriminator: the CLI path infers the structure from the file instead of
  # checking against the default (IP_LAP) configuration.
  torch.manual_seed(1)
  ref = _TorchMultiscaleD(6, ndf=8, n_layers=2, num_d=3).eval()
  path = tmp_path / "d.pth"
  torch.save({"state_dict": ref.state_dict()}, path)
  out = convert.convert_file("pix2pixhd_disc", str(path), str(tmp_path / "out"))
  variables = checkpoints.load_variables(out)
  module = convert.module_for("pix2pixhd_disc", in_channels=6, ndf=8, n_layers=2, num_d=3)
  x = np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 6)).astype(np.float32)
  outs = module.apply(variables, x)
  assert len(outs) == 3 and len(outs[0]) == 2 + 2  # n_layers + 2 outputs per scale
