"""FID: the Fréchet distance against an independent float64 reference, streaming statistics against
np.cov, and the Inception port against pytorch-fid's own InceptionV3 (FID blocks, resize, normalisation)
on random weights, through the inception_fid converter."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import test_metrics_stub_torchvision as tv_stub
from talkjax import checkpoints
from talkjax.errors import CheckpointError
from talkjax.metrics import fid as fid_lib
from talkjax.metrics import weights as weights_lib
from talkjax.models import inception
from third_party import convert


# ------------------------------------------------------------------------------------------------
# Fréchet distance and statistics


def _eig_frechet(mu1, s1, mu2, s2):
  """Independent float64 reference: Tr(sqrt(S1 S2)) = Tr(sqrt(S1^1/2 S2 S1^1/2)) via eigh."""
  w, v = np.linalg.eigh(s1)
  r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  m = r1 @ s2 @ r1
  tr = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)))
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr)


def test_frechet_distance_hand_computed_1d():
  # N(0, 1) vs N(1, 4): 1 + 1 + 4 - 2 * sqrt(4) = 2.
  assert fid_lib.frechet_distance([0.0], [[1.0]], [1.0], [[4.0]]) == pytest.approx(2.0, abs=1e-12)
  same = fid_lib.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3))
  assert same == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("dim,n", [(16, 200), (64, 40)])   # full-rank and rank-deficient covariances
def test_frechet_distance_equals_float64_eigen_reference(dim, n):
  rng = np.random.default_rng(dim)
  a = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim))
  b = rng.normal(0.3, 1.0, size=(n, dim)) @ rng.normal(size=(dim, dim))
  mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
  want = _eig_frechet(mu1, s1, mu2, s2)
  for method in ("sqrtm", "eigh"):
    got = fid_lib.frechet_distance(mu1, s1, mu2, s2, method=method)
    assert got == pytest.approx(want, rel=1e-6, abs=1e-6 * np.trace(s1))


def test_activation_stats_equal_numpy_mean_and_cov_and_merge():
  rng = np.random.default_rng(0)
  x = rng.normal(100.0, 3.0, size=(57, 8))        # a large offset tests the shifted sums
  one, parts = fid_lib.ActivationStats(8), [fid_lib.ActivationStats(8) for _ in range(3)]
  for i, chunk in enumerate(np.array_split(x, 6)):
    one.add(chunk)
    parts[i % 3].add(chunk)
  merged = fid_lib.ActivationStats(8)
  for p in parts:
    merged.merge(p)
  for s in (one, merged):
    assert s.count == 57
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
  with pytest.raises(ValueError, match=r"\(N, 8\)"):
    one.add(np.zeros((2, 7)))
  with pytest.raises(ValueError, match="at least 2"):
    _ = fid_lib.ActivationStats(8).cov


def test_frechet_distance_rejects_bad_statistics():
  with pytest.raises(ValueError, match="differ in length"):
    fid_lib.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
  with pytest.raises(ValueError, match="NaN"):
    fid_lib.frechet_distance(np.array([np.nan, 0]), np.eye(2), np.zeros(2), np.eye(2))


# ------------------------------------------------------------------------------------------------
# Resize and Inception parity


@pytest.mark.parametrize("shape", [(37, 50), (512, 320), (299, 299)])
def test_resize_equals_torch_bilinear_align_corners_false(shape):
  x = np.random.default_rng(1).uniform(0, 1, (2,) + shape + (3,)).astype(np.float32)
  want = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(299, 299), mode="bilinear",
                       align_corners=False).permute(0, 2, 3, 1).numpy()
  got = np.asarray(inception.resize_bilinear(x, 299, 299))
  np.testing.assert_allclose(got, want, atol=2e-6)


_BLOCK_LAYERS = (("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"), ("Conv2d_3b_1x1", "Conv2d_4a_3x3"),
                 ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                  "Mixed_6e"), ("Mixed_7a", "Mixed_7b", "Mixed_7c"))


def _reference_and_state_dict(monkeypatch, calibration):
  """pytorch-fid's real InceptionV3 (on the torchvision stub) with random weights whose BatchNorm
  statistics are set from ``calibration``; returns it and its weights as a pt_inception state dict."""
  tv_stub.install(monkeypatch)
  import pytorch_fid.inception as pfi  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  init = tv_stub.inception_v3(num_classes=1008, aux_logits=False).state_dict()
  monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: init)
  model = pfi.InceptionV3([3])
  for m in model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.momentum = None
      torch.nn.init.uniform_(m.weight, 0.5, 1.5)
      torch.nn.init.uniform_(m.bias, -0.2, 0.2)
  model.train()
  with torch.no_grad():
    model(calibration)
  model.eval()
  sd = {}
  for b, names in enumerate(_BLOCK_LAYERS):
    for i, name in enumerate(names):
      prefix = f"blocks.{b}.{i}."
      for k, v in model.state_dict().items():
        if k.startswith(prefix):
          sd[name + "." + k[len(prefix):]] = v.numpy()
  sd["fc.weight"] = np.zeros((1008, 2048), np.float32)    # pytorch-fid's file carries the classifier
  sd["fc.bias"] = np.zeros((1008,), np.float32)
  return model, sd


@pytest.mark.slow  # compiles the whole Inception at 299x299 on CPU
def test_inception_features_equal_pytorch_fid_and_give_its_fid(monkeypatch):
  # Frames as pytorch-fid sees image files: uint8 RGB -> ToTensor ([0, 1]); resized to 299 inside.
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (4, 96, 112, 3), dtype=np.uint8)
  frames[2:] = (frames[2:] * 0.3 + 0.6 * frames[:2]).astype(np.uint8)     # related but different
  nchw = torch.from_numpy(frames.astype(np.float32) / 255).permute(0, 3, 1, 2)
  model, sd = _reference_and_state_dict(monkeypatch, nchw)
  with torch.no_grad():
    want = model(nchw)[0].reshape(4, 2048).numpy().astype(np.float64)
  feats = fid_lib.InceptionFeatures(convert.convert_state_dict("inception_fid", sd), batch_size=4)
  got = feats(frames)
  assert got.shape == (4, 2048)
  rel = np.linalg.norm(got - want) / np.linalg.norm(want)
  print(f"Inception pool3 parity with pytorch-fid (299x299, random weights): relative error {rel:.2e}")
  assert rel < 1e-4
  assert np.linalg.norm(want[0] - want[2]) > 0.05 * np.linalg.norm(want[0])  # features are informative
  # FID of frames 0, 1, 3 vs 1, 2, 3 from talkjax's features vs pytorch-fid's formula on its own.
  a, b = [0, 1, 3], [1, 2, 3]
  # (method="eigh": pytorch-fid's sqrtm of a 2048x2048 product takes minutes on this CPU; the two
  # methods are compared above.)
  value = fid_lib.fid(feats, frames[a], frames[b], method="eigh")
  ref = _eig_frechet(want[a].mean(0), np.cov(want[a], rowvar=False), want[b].mean(0),
                     np.cov(want[b], rowvar=False))
  print(f"FID parity: talkjax {value:.6f}, float64 reference on pytorch-fid features {ref:.6f}")
  assert value == pytest.approx(ref, rel=1e-3)


# ------------------------------------------------------------------------------------------------
# Converter and missing weights


def _random_sd():
  torch.manual_seed(0)
  sd = {k: v.numpy() for k, v in tv_stub.inception_v3(num_classes=1008).state_dict().items()}
  return sd


def test_converter_is_strict_and_refuses_torchvision_imagenet_weights():
  sd = _random_sd()
  variables = convert.convert_state_dict("inception_fid", sd)
  convert.check_variables_fit("inception_fid", variables)
  assert variables["params"]["Mixed_7c"]["branch_pool"]["conv"]["kernel"].shape == (1, 1, 2048, 192)
  missing = dict(sd)
  del missing["Mixed_6b.branch7x7_2.bn.running_var"]
  with pytest.raises(CheckpointError, match="Mixed_6b.branch7x7_2.bn.running_var"):
    convert.convert_state_dict("inception_fid", missing)
  imagenet = dict(sd, **{"fc.weight": np.zeros((1000, 2048), np.float32),
                         "fc.bias": np.zeros(1000, np.float32)})
  with pytest.raises(CheckpointError, match="not the FID Inception"):
    convert.convert_state_dict("inception_fid", imagenet)


def test_convert_cli_path_writes_loadable_weights(tmp_path):
  sd = _random_sd()
  torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, str(tmp_path / "pt_inception.pth"))
  out = convert.convert_file("inception_fid", str(tmp_path / "pt_inception.pth"), str(tmp_path / "w"))
  loaded = checkpoints.load_variables(out)
  ref = convert.convert_state_dict("inception_fid", sd)
  np.testing.assert_array_equal(loaded["batch_stats"]["Mixed_6e"]["branch7x7dbl_5"]["bn"]["var"],
                                ref["batch_stats"]["Mixed_6e"]["branch7x7dbl_5"]["bn"]["var"])


def test_missing_weights_name_the_file_and_the_command():
  with pytest.raises(weights_lib.MissingWeightsError) as e:
    fid_lib.InceptionFeatures.from_weights_dir("/nowhere")
  assert "pt_inception-2015-12-05-6726825d.pth" in str(e.value)
  assert "--kind=inception_fid" in str(e.value)
