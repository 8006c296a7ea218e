"""VGG19 features: parity with torchvision's ``vgg19().features`` layout and converter strictness."""

import chex
import jax
import numpy as np
import pytest
import torch
from torch import nn as tnn

from talkjax.errors import CheckpointError, ConfigError
from talkjax.models import vgg19 as vgg
from third_party import convert
from third_party.converters import vgg19 as vgg19_converter
from parity import rel_err

# torchvision's configuration "E" (vgg19); "M" is a 2x2 max-pool. Public layer list.
_CFG_E = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _torch_vgg19(seed: int = 0) -> tnn.Module:
  """torchvision's vgg19 layout built by hand: ``features`` (indices 0..36) and a classifier.

  The real classifier is 25088 -> 4096 -> 4096 -> 1000; the converter skips it without reading
  shapes, so a tiny one with the same key names keeps the test light.
  """
  torch.manual_seed(seed)
  layers, c = [], 3
  for v in _CFG_E:
    if v == "M":
      layers.append(tnn.MaxPool2d(2, 2))
    else:
      conv = tnn.Conv2d(c, v, 3, padding=1)
      # He init keeps activations alive through 13 layers, so every relu is a meaningful check.
      tnn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
      tnn.init.uniform_(conv.bias, -0.1, 0.1)
      layers += [conv, tnn.ReLU(inplace=False)]
      c = v
  model = tnn.Module()
  model.features = tnn.Sequential(*layers)
  model.classifier = tnn.Sequential(tnn.Linear(8, 6), tnn.ReLU(), tnn.Dropout(), tnn.Linear(6, 6), tnn.ReLU(),
                                    tnn.Dropout(), tnn.Linear(6, 4))
  return model.eval()


def _torch_relus(model: tnn.Module, x_nchw: torch.Tensor) -> dict[str, np.ndarray]:
  """Every relu output up to relu5_1, named relu{block}_{i}, NHWC."""
  out, block, i = {}, 1, 0
  x = x_nchw
  with torch.no_grad():
    for layer in model.features[:30]:
      x = layer(x)
      if isinstance(layer, tnn.MaxPool2d):
        block, i = block + 1, 0
      elif isinstance(layer, tnn.ReLU):
        i += 1
        out[f"relu{block}_{i}"] = x.permute(0, 2, 3, 1).numpy()
  return out


@pytest.fixture(scope="module")
def torch_model():
  return _torch_vgg19()


@pytest.fixture(scope="module")
def variables(torch_model):
  return convert.convert_state_dict("vgg19", torch_model.state_dict(), "random_vgg19")


def test_relu_names_match_torchvision_indices():
  assert vgg.RELU_NAMES == ("relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3",
                            "relu3_4", "relu4_1", "relu4_2", "relu4_3", "relu4_4", "relu5_1")
  # The relu after features.i is features.(i+1); IP_LAP's table: relu_5_1 is index 29, relu_4_1 20.
  assert vgg.TORCHVISION_CONV_INDEX["conv5_1"] + 1 == 29
  assert vgg.TORCHVISION_CONV_INDEX["conv4_1"] + 1 == 20
  convs = [i for i, v in enumerate(_torch_vgg19().features[:30]) if isinstance(v, tnn.Conv2d)]
  assert convs == list(vgg.TORCHVISION_CONV_INDEX.values())


@pytest.mark.parametrize("input_range", ["0_1", "-1_1", "raw"])
def test_parity_every_relu(torch_model, variables, input_range):
  rng = np.random.default_rng(1)
  # 36x44: non-square, and 44 -> 22 -> 11 -> 5 exercises max-pool's floor mode.
  if input_range == "0_1":
    x = rng.uniform(0, 1, (2, 36, 44, 3)).astype(np.float32)
    x_torch = (x - _MEAN) / _STD
  elif input_range == "-1_1":
    x = rng.uniform(-1, 1, (2, 36, 44, 3)).astype(np.float32)
    x_torch = ((x + 1) / 2 - _MEAN) / _STD
  else:
    x = rng.uniform(-1, 1, (2, 36, 44, 3)).astype(np.float32)
    x_torch = x
  ref = _torch_relus(torch_model, torch.from_numpy(np.ascontiguousarray(x_torch.transpose(0, 3, 1, 2))))
  module = vgg.VGG19Features(input_range=input_range, layers=vgg.RELU_NAMES)
  got = jax.jit(module.apply)(variables, x)
  assert list(got) == list(vgg.RELU_NAMES)
  chex.assert_shape(got["relu1_1"], (2, 36, 44, 64))
  chex.assert_shape(got["relu3_4"], (2, 9, 11, 256))
  chex.assert_shape(got["relu5_1"], (2, 2, 2, 512))
  for name in vgg.RELU_NAMES:
    assert got[name].shape == ref[name].shape, name
    assert np.mean(ref[name] > 0) > 0.05, f"{name}: reference features are (almost) all zero"
    err = rel_err(got[name], ref[name])
    assert err < 1e-5, f"{name}: relative error {err:.2e}"


def test_subset_of_layers_stops_early_and_matches(variables):
  x = np.random.default_rng(2).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
  full = vgg.build().apply(variables, x)
  sub = vgg.VGG19Features(input_range="0_1", layers=("relu2_1",))
  got = sub.apply(variables, x)  # full variables work for any subset
  assert list(got) == ["relu2_1"]
  np.testing.assert_allclose(got["relu2_1"], full["relu2_1"], rtol=1e-6, atol=1e-6)
  shapes = jax.eval_shape(lambda: sub.init(jax.random.key(0), x))
  assert sorted(shapes["params"]) == ["conv1_1", "conv1_2", "conv2_1"]


def test_converted_variables_fit_default_module(variables):
  convert.check_variables_fit("vgg19", variables)
  assert sorted(variables) == ["params"]
  assert sorted(variables["params"]) == sorted(vgg.CONV_NAMES)
  chex.assert_shape(variables["params"]["conv5_1"]["kernel"], (3, 3, 512, 512))


def test_bare_features_state_dict_is_accepted(torch_model, variables):
  bare = {k: v for k, v in torch_model.features.state_dict().items()}
  assert "0.weight" in bare
  got = convert.convert_state_dict("vgg19", bare, "features_only")
  chex.assert_trees_all_equal(got, variables)


def _sd(torch_model):
  return {k: v.numpy().copy() for k, v in torch_model.state_dict().items()}


def test_converter_skips_exactly_the_unused_layers(torch_model):
  sd = _sd(torch_model)
  unused = {k for k in sd if k.startswith("classifier.") or k.split(".")[1] in ("30", "32", "34")}
  assert unused == set(vgg19_converter.UNUSED_KEYS)
  sd["features.36.weight"] = np.zeros((1,), np.float32)  # a pool has no weights: unknown key
  sd["extra.head.bias"] = np.zeros((3,), np.float32)
  with pytest.raises(CheckpointError, match=r"unknown keys: extra\.head\.bias, features\.36\.weight"):
    convert.convert_state_dict("vgg19", sd)


def test_converter_reports_missing_and_misshaped(torch_model):
  sd = _sd(torch_model)
  del sd["features.28.bias"]
  sd["features.5.weight"] = np.zeros((128, 32, 3, 3), np.float32)
  with pytest.raises(CheckpointError) as e:
    convert.convert_state_dict("vgg19", sd, "broken.pth")
  msg = str(e.value)
  assert msg.startswith("broken.pth: ")
  assert "missing keys: features.28.bias (512,)" in msg
  assert "features.5.weight: expected (128, 64, 3, 3), found (128, 32, 3, 3)" in msg


def test_converter_refuses_nan_and_vgg19_bn(torch_model):
  sd = _sd(torch_model)
  sd["features.0.weight"][0, 0, 0, 0] = np.nan
  with pytest.raises(CheckpointError, match=r"non-finite .* features\.0\.weight"):
    convert.convert_state_dict("vgg19", sd)
  sd = _sd(torch_model)
  sd["features.1.running_mean"] = np.zeros((64,), np.float32)
  with pytest.raises(CheckpointError, match="vgg19_bn"):
    convert.convert_state_dict("vgg19", sd)


def test_bad_arguments_raise_clear_errors(variables):
  x = np.zeros((1, 32, 32, 3), np.float32)
  with pytest.raises(ConfigError, match="input_range"):
    vgg.VGG19Features(input_range="0_255").apply(variables, x)
  with pytest.raises(ConfigError, match="relu6_1"):
    vgg.VGG19Features(input_range="0_1", layers=("relu6_1",)).apply(variables, x)
  with pytest.raises(ValueError, match=r"\(N, H, W, 3\).*\(1, 32, 32, 4\)"):
    vgg.build().apply(variables, np.zeros((1, 32, 32, 4), np.float32))
  with pytest.raises(ValueError, match="too small for relu5_1"):
    vgg.build().apply(variables, np.zeros((1, 8, 32, 3), np.float32))
