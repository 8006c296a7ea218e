"""LPIPS against the ``lpips`` package itself (its real forward and its shipped v0.1 heads) on random
torchvision-layout backbones, through the lpips_vgg / lpips_alex converters."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import test_metrics_stub_torchvision as tv_stub
from talkjax import checkpoints
from talkjax.errors import CheckpointError
from talkjax.metrics import lpips as lpips_metric
from talkjax.metrics import weights as weights_lib
from third_party import convert
from third_party.converters import lpips as lpips_conv

HEADS = {net: lpips_conv.installed_heads_path(net) for net in ("vgg", "alex")}


def test_the_lpips_package_ships_the_heads():
  for net, path in HEADS.items():
    assert path is not None and path.endswith(os.path.join("weights", "v0.1", f"{net}.pth"))


def _reference(monkeypatch, net):
  tv_stub.install(monkeypatch)
  import lpips  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  # pnet_rand: a randomly initialised torchvision backbone; pretrained: lpips' own v0.1 heads.
  return lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False).eval()


@pytest.mark.parametrize("net,size", [("alex", 64), ("vgg", 48)])
def test_lpips_equals_the_lpips_package(monkeypatch, net, size):
  ref = _reference(monkeypatch, net)
  rng = np.random.default_rng(0)
  a = rng.integers(0, 256, (3, size, size + 8, 3), dtype=np.uint8)
  b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
  b[2] = a[2]                                                     # identical pair -> 0
  to_t = lambda x: torch.from_numpy(x.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
  with torch.no_grad():
    want = ref(to_t(a), to_t(b)).reshape(-1).numpy()
  # The whole LPIPS module's state dict (backbone slices + heads + scaling buffers) converts as is.
  variables = convert.convert_state_dict(f"lpips_{net}", {k: v.numpy() for k, v in ref.state_dict().items()})
  got = lpips_metric.LPIPSMetric(variables, net=net, batch_size=2)(a, b)
  rel = np.max(np.abs(got[:2] - want[:2]) / want[:2])
  print(f"LPIPS {net} parity: talkjax {got[:2]}, lpips {want[:2]}, max relative difference {rel:.2e}")
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)
  assert abs(got[2]) < 1e-9 and got[0] > 1e-4


def test_torchvision_backbone_file_with_heads_from_the_package_or_a_given_file(monkeypatch, tmp_path):
  ref = _reference(monkeypatch, "alex")
  # torchvision's own layout, features.{i}.weight/bias (lpips' slices keep torchvision's indices),
  # plus the classifier, which is skipped.
  backbone = {f"features.{k}": v for s in range(1, 6)
              for k, v in getattr(ref.net, f"slice{s}").state_dict().items()}
  backbone["classifier.1.weight"] = torch.zeros(4096, 9216)
  path = str(tmp_path / "alexnet-owt.pth")
  torch.save(backbone, path)
  from_package = convert.convert_state_dict("lpips_alex", {k: v.numpy() for k, v in backbone.items()})
  given = lpips_conv.convert_files("alex", path, HEADS["alex"])
  full = convert.convert_state_dict("lpips_alex", {k: v.numpy() for k, v in ref.state_dict().items()})
  for variables in (from_package, given):
    for k in range(5):
      np.testing.assert_array_equal(variables["params"][f"lin{k}"], full["params"][f"lin{k}"])
    for name, leaf in full["params"]["backbone"].items():
      np.testing.assert_array_equal(variables["params"]["backbone"][name]["kernel"], leaf["kernel"])

  # The module's CLI writes a checkpoint that the metric loads from a weights directory.
  out = tmp_path / "weights"
  subprocess.run([sys.executable, "-m", "third_party.converters.lpips", "--net=alex", f"--backbone={path}",
                  f"--heads={HEADS['alex']}", f"--output={out / 'lpips_alex'}"], check=True,
                 capture_output=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  loaded = checkpoints.load_variables(str(out / "lpips_alex"))
  np.testing.assert_array_equal(loaded["params"]["lin3"], full["params"]["lin3"])
  metric = lpips_metric.LPIPSMetric.from_weights_dir(str(out), net="alex", batch_size=2)
  frames = np.random.default_rng(1).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
  assert metric(frames, frames[::-1]).shape == (2,)


def test_converter_errors_name_the_problem(monkeypatch, tmp_path):
  tv = tv_stub.vgg16()
  sd = {f"features.{k}": v.numpy() for k, v in tv.features.state_dict().items()}
  # No heads anywhere: the error names the heads file and both ways to supply it.
  monkeypatch.setattr(lpips_conv, "installed_heads_path", lambda net: None)
  with pytest.raises(CheckpointError, match=r"weights/v0.1/vgg.pth.*--heads="):
    convert.convert_state_dict("lpips_vgg", sd)
  monkeypatch.undo()
  # An AlexNet file given as VGG: every mismatch listed.
  alex = {f"features.{k}": v.numpy() for k, v in tv_stub.alexnet().features.state_dict().items()}
  with pytest.raises(CheckpointError, match=r"features\.3 \(conv2_1\)|missing features\.2"):
    convert.convert_state_dict("lpips_vgg", alex)
  bad = dict(sd)
  bad["features.0.weight"] = np.full_like(sd["features.0.weight"], np.nan)
  with pytest.raises(CheckpointError, match="non-finite"):
    convert.convert_state_dict("lpips_vgg", bad)


def test_missing_weights_and_bad_frames():
  with pytest.raises(weights_lib.MissingWeightsError) as e:
    lpips_metric.LPIPSMetric.from_weights_dir("/nowhere", net="vgg")
  assert "vgg16-397923af.pth" in str(e.value) and "--kind=lpips_vgg" in str(e.value)
  with pytest.raises(ValueError, match="alex"):
    lpips_metric.LPIPSMetric({}, net="squeeze")
