"""The evaluation CLI end to end on synthetic clips: matching, alignment, per-video rows that equal
the metric functions on the decoded frames, outputs, and a metric whose weights are missing."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from talkjax import audio as audio_lib
from talkjax import checkpoints, video
from talkjax.data import synthetic
from talkjax.errors import ConfigError
from talkjax.metrics import image, lse, registry, runner
from third_party import convert

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_clip(path, frames, audio, landmarks=None, visemes=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  video.write_video(path, frames, 25, audio=audio, sr=16000)
  if landmarks is not None:
    np.save(path[:-4] + ".landmarks.npy", landmarks)
    np.save(path[:-4] + ".visemes.npy", visemes)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("eval")
  ref_dir, gen_dir, weights = root / "reference", root / "generated", root / "weights"
  rng = np.random.default_rng(0)
  a = synthetic.generate_clip(seed=(3, 0, 0), speaker=0, size=128, duration=1.2)
  b = synthetic.generate_clip(seed=(3, 0, 1), speaker=0, size=128, duration=1.2)
  for name, clip in (("00000", a), ("00001", b)):
    _write_clip(str(ref_dir / "spk000" / f"{name}.mp4"), clip.frames, clip.audio, clip.landmarks,
                clip.visemes)
  # A good "generation" of clip 0 (reference + noise, 2 frames longer: alignment must cut it) and a
  # poor one of clip 1 (the other clip's frames with clip 1's audio); plus a file without reference.
  noisy = np.clip(a.frames.astype(int) + rng.integers(-6, 7, a.frames.shape), 0, 255).astype(np.uint8)
  noisy = np.concatenate([noisy, noisy[-2:]])
  _write_clip(str(gen_dir / "spk000" / "00000.mp4"), noisy, a.audio)
  _write_clip(str(gen_dir / "spk000" / "00001.mp4"), a.frames, b.audio)
  _write_clip(str(gen_dir / "spk000" / "extra.mp4"), a.frames[:8], None)
  # Weights: random SyncNet and LPIPS(alex) (lpips' real heads), converted; no Inception on purpose.
  torch.manual_seed(0)
  from syncnet_python.SyncNetModel import S  # pylint: disable=g-import-not-at-top
  checkpoints.save_variables(str(weights / "syncnet_v2"), convert.convert_state_dict(
      "syncnet_v2", {k: v.numpy() for k, v in S().state_dict().items()}))
  import test_metrics_stub_torchvision as tv_stub  # pylint: disable=g-import-not-at-top
  alex = {f"features.{k}": v.numpy() for k, v in tv_stub.alexnet().features.state_dict().items()}
  checkpoints.save_variables(str(weights / "lpips_alex"), convert.convert_state_dict("lpips_alex", alex))
  return root


def test_match_by_relative_path_then_unique_stem(tmp_path):
  for p in ("gen/a/x.mp4", "gen/y.mkv", "gen/z.mp4", "gen/w.mp4", "gen/notes.txt",
            "ref/a/x.mp4", "ref/b/x.mp4", "ref/q/y.mp4", "ref/1/w.mp4", "ref/2/w.mp4"):
    os.makedirs(os.path.dirname(tmp_path / p), exist_ok=True)
    (tmp_path / p).write_bytes(b"")
  matches, unmatched = runner.match(str(tmp_path / "gen"), str(tmp_path / "ref"))
  got = {m.name: os.path.relpath(m.reference, tmp_path) for m in matches}
  assert got == {"a/x": "ref/a/x.mp4", "y": "ref/q/y.mp4"}      # exact relative path; unique stem
  assert sorted(os.path.basename(u) for u in unmatched) == ["w.mp4", "z.mp4"]   # ambiguous; missing
  files, _ = runner.match(f"{tmp_path}/gen/y.mkv,{tmp_path}/gen/z.mp4", None)
  assert [(m.name, m.reference) for m in files] == [("y", None), ("z", None)]
  with pytest.raises(ConfigError, match="no such file"):
    runner.match(str(tmp_path / "gen" / "nope.mp4"), str(tmp_path / "ref"))
  with pytest.raises(ConfigError, match="unknown metric"):
    registry.parse_metrics("psnr,fvd")


@pytest.mark.slow  # a CLI subprocess compiling SyncNet and LPIPS, plus face tracking
def test_cli_end_to_end(dataset):
  out = dataset / "out"
  cmd = [sys.executable, "-m", "experiments.evaluate", f"--generated={dataset / 'generated'}",
         f"--reference={dataset / 'reference'}", "--metrics=psnr,ssim,lmd,lse,fid,lpips,openness",
         f"--output={out}", f"--weights_dir={dataset / 'weights'}", "--lse_min_track=10",
         "--lse_min_face_size=30", "--batch_size=8", "--noprogress"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  # FID's weights are missing: exit status 1, a message naming the file and the command ...
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "pt_inception-2015-12-05-6726825d.pth" in proc.stderr
  assert f"--kind=inception_fid --input=pt_inception-2015-12-05-6726825d.pth --output={dataset / 'weights'}" \
      in proc.stderr
  # ... and every other metric ran.
  with open(out / "metrics.csv") as f:
    rows = {r["name"]: r for r in csv.DictReader(f)}
  summary = json.loads((out / "summary.json").read_text())
  assert sorted(rows) == ["spk000/00000", "spk000/00001"]
  assert summary["videos"] == 2 and list(summary["errors"]) == ["fid"]
  assert summary["unmatched"] == [str(dataset / "generated" / "spk000" / "extra.mp4")]
  good, poor = rows["spk000/00000"], rows["spk000/00001"]
  assert (good["frames"], good["frames_generated"], good["frames_reference"]) == ("30", "32", "30")
  assert good["size"] == "128x128" and good["audio_source"] == "generated"

  # The row values are the metric functions applied to the decoded, aligned frames.
  gen = video.read_frames(dataset / "generated" / "spk000" / "00000.mp4", fps=25)[:30]
  ref = video.read_frames(dataset / "reference" / "spk000" / "00000.mp4", fps=25)
  assert float(good["psnr"]) == pytest.approx(np.mean(image.psnr(gen, ref)), rel=1e-6)
  assert float(good["ssim"]) == pytest.approx(np.mean(image.ssim(gen, ref)), rel=1e-6)
  assert float(good["psnr"]) > float(poor["psnr"]) + 3 and float(good["ssim"]) > float(poor["ssim"])
  assert float(good["lpips"]) < float(poor["lpips"])
  assert float(good["m_lmd"]) < float(poor["m_lmd"]) and float(good["lmd_frames"]) >= 28
  assert float(good["f_lmd"]) < 3.0
  # Openness: the noisy copy follows the speech like the reference; the other clip's mouth much less
  # (in 1.2 s both utterances start and end closed, so it is not near 0).
  assert float(good["openness_r"]) > 0.9 and float(good["openness_r_reference"]) > 0.9
  assert float(poor["openness_r"]) < float(good["openness_r"]) - 0.15
  # LSE from the CLI equals score_clip on the same decoded frames and audio.
  variables = checkpoints.load_variables(str(dataset / "weights" / "syncnet_v2"))
  scorer = lse.SyncNetScorer(variables, batch_size=8)
  wav = audio_lib.load(dataset / "generated" / "spk000" / "00000.mp4")
  direct = lse.score_clip(scorer, list(video.read_frames(dataset / "generated" / "spk000" / "00000.mp4",
                                                         fps=25)), wav, crop="face", min_track=10,
                          min_face_size=30)
  assert float(good["lse_d"]) == pytest.approx(direct.lse_d, rel=1e-5)
  assert float(good["lse_c"]) == pytest.approx(direct.lse_c, rel=1e-4, abs=1e-6)
  assert good["lse_tracks"] == "1.0"
  # The summary holds the means over videos and the definitions; the table was printed.
  s = summary["summary"]
  assert s["psnr"] == pytest.approx((float(good["psnr"]) + float(poor["psnr"])) / 2, rel=1e-6)
  assert set(s) >= {"psnr", "ssim", "m_lmd", "f_lmd", "lse_d", "lse_c", "lpips", "openness_r"}
  assert "LSE-D" in summary["definitions"]["lse"] and summary["settings"]["lse_crop"] == "face"
  assert "summary over 2 video(s)" in proc.stdout and "FAILED" in proc.stdout


def test_per_video_failures_do_not_stop_the_run(dataset):
  # Openness without sidecars (the generated dir as reference) and VTCS without recognisers.
  matches, _ = runner.match(str(dataset / "generated" / "spk000" / "00000.mp4"),
                            str(dataset / "generated"))
  result = runner.evaluate(matches, ["psnr", "openness", "vtcs"], registry.Options(), progress=False)
  assert result.rows[0]["psnr"] == np.inf                          # a video compared with itself
  assert np.isnan(result.rows[0]["openness_r"])
  assert result.video_errors[0]["metric"] == "openness" and "landmarks.npy" in result.video_errors[0]["error"]
  assert "vtcs_speech_to_text" in result.errors["vtcs"]
  csv_path, json_path = runner.write_outputs(result, str(dataset / "out2"))
  summary = json.loads(open(json_path).read())
  assert summary["summary"]["psnr"] == "inf" and summary["summary"]["openness_r"] is None


class _ToyFeatures:
  """Stands in for the Inception network (its parity is tested in test_metrics_fid.py): a fixed
  random projection of 8x8-pooled frames to 2048 dimensions."""

  def __init__(self):
    self.proj = np.random.default_rng(0).normal(size=(8 * 8 * 3, 2048)) / 10

  def __call__(self, frames):
    pooled = frames.reshape(frames.shape[0], 8, frames.shape[1] // 8, 8, frames.shape[2] // 8, 3).mean((2, 4))
    return pooled.reshape(frames.shape[0], -1) / 255 @ self.proj


@pytest.mark.slow  # 2048x2048 covariances and eigendecompositions
def test_fid_pools_every_aligned_frame_of_every_video(dataset, monkeypatch):
  toy = _ToyFeatures()
  monkeypatch.setattr(registry.fid_lib.InceptionFeatures, "from_weights_dir",
                      classmethod(lambda cls, *a, **k: toy))
  matches, _ = runner.match(str(dataset / "generated"), str(dataset / "reference"))
  result = runner.evaluate(matches, ["fid"], registry.Options(fid_method="eigh", chunk=7), progress=False)
  gen = np.concatenate([video.read_frames(m.generated, fps=25)[:30] for m in matches])
  ref = np.concatenate([video.read_frames(m.reference, fps=25) for m in matches])
  fg, fr = toy(gen), toy(ref)
  want = registry.fid_lib.frechet_distance(fg.mean(0), np.cov(fg, rowvar=False), fr.mean(0),
                                           np.cov(fr, rowvar=False), method="eigh")
  assert result.summary["fid_frames"] == 60
  assert result.summary["fid"] == pytest.approx(want, rel=1e-6)
