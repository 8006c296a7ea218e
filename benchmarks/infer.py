"""Inference speed of the DCK U-Net: the generator alone and end to end (detection to mp4).

  python benchmarks/infer.py [--dtype=float32|bfloat16] [--config=dck_unet] [--repeats 10]
                             [--seconds 4] [--skip_torch] [--skip_e2e]

1. **Generator alone** at the config's crop size (``dck_unet``: 256x256, the paper's setting), batch 1
   and 16: ``jax.jit`` of the eval-mode forward pass (mel window + face crop -> frame), median of
   ``--repeats`` runs after a warm-up; milliseconds per frame and frames per second.
2. **Wav2Lip's PyTorch generator** (``lipsync``) on its own input (96x96 face pairs, 6 channels),
   batch 1 and 16, in the same run and alternating with (1) repeat by repeat, so load from other
   processes hits both alike. A reference point, not a like-for-like comparison (other sizes).
3. **End to end**: ``talkjax.generate`` on a face video (``skimage.data.astronaut()`` at 512x512,
   gently moving) with ``--seconds`` of audio: decoding, MediaPipe tracking, crops, generation,
   paste-back and H.264/AAC encoding, with the time per stage.

Weights are random (filled from NumPy with the real variable shapes, so no initialiser has to be
compiled): speed does not depend on their values. The paper reports 4.7 ms per frame (212 fps) for its
generator at 256x256 on a TITAN RTX and 60 fps with the background pasted back. On a GPU run
``--dtype=bfloat16`` as well as float32. A script, not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import machine  # pylint: disable=g-import-not-at-top


def _config(spec: str):
  from experiments import configs  # pylint: disable=g-import-not-at-top
  return configs.get_config(spec)


def _generator(config, dtype: str):
  """(module, variables) of the config's generator with random weights, in ``dtype``."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from talkjax.nn.numpy_init import numpy_variables  # pylint: disable=g-import-not-at-top
  from talkjax.tasks import dck_unet as task  # pylint: disable=g-import-not-at-top
  module = task.make_generator(config).clone(dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
  s = config.model.image_size
  abstract = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, s, s, 3)),
                                                jnp.zeros((1, 80, 16, 1))))
  return module, jax.device_put(numpy_variables(abstract))


def _cases(config, dtype: str, batches, with_torch: bool):
  """Yields (name, batch, fn) per implementation; fn runs one forward pass to completion."""
  import jax  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  module, variables = _generator(config, dtype)
  s = config.model.image_size
  fwd = jax.jit(lambda v, face, mel: module.apply(v, face, mel).image)
  torch_model = None
  if with_torch:
    import torch  # pylint: disable=g-import-not-at-top
    from lipsync.models.wav2lip import Wav2Lip  # pylint: disable=g-import-not-at-top
    torch.manual_seed(0)
    torch_model = Wav2Lip().eval()
  for batch in batches:
    face = jax.device_put(rng.random((batch, s, s, 3), dtype=np.float32))
    mel = jax.device_put(rng.uniform(-4, 4, (batch, 80, 16, 1)).astype(np.float32))
    fns = [(f"DCK U-Net {s}x{s} (JAX, {dtype})", lambda face=face, mel=mel: fwd(variables, face, mel).block_until_ready())]
    if torch_model is not None:
      import torch  # pylint: disable=g-import-not-at-top
      tface = torch.from_numpy(rng.random((batch, 6, 96, 96), dtype=np.float32))
      tmel = torch.from_numpy(rng.uniform(-4, 4, (batch, 1, 80, 16)).astype(np.float32))
      fns.append(("Wav2Lip 96x96 (PyTorch, float32)", lambda tmel=tmel, tface=tface: torch_model(tmel, tface)))
    yield batch, fns


def bench_generator(config, dtype: str, repeats: int, with_torch: bool) -> list[tuple]:
  import contextlib  # pylint: disable=g-import-not-at-top
  rows = []
  ctx = contextlib.nullcontext()
  if with_torch:
    import torch  # pylint: disable=g-import-not-at-top
    ctx = torch.inference_mode()
  with ctx:
    for batch, fns in _cases(config, dtype, (1, 16), with_torch):
      times = {name: [] for name, _ in fns}
      compile_s = {}
      for name, fn in fns:
        t0 = time.perf_counter()
        fn()
        compile_s[name] = time.perf_counter() - t0
        fn()
      for _ in range(repeats):
        for name, fn in fns:  # alternating: load changes hit every implementation alike
          t0 = time.perf_counter()
          fn()
          times[name].append(time.perf_counter() - t0)
      for name, _ in fns:
        med = statistics.median(times[name])
        rows.append((name, batch, 1000.0 * med / batch, batch / med, compile_s[name]))
  return rows


def _face_video(path: str, seconds: float, size: int = 512) -> str:
  """The astronaut photo, gently moving (a few pixels, a degree), as an H.264 mp4 at 25 fps."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from skimage import data  # pylint: disable=g-import-not-at-top
  from talkjax import video  # pylint: disable=g-import-not-at-top
  photo = Image.fromarray(data.astronaut()).resize((size, size), Image.BILINEAR)
  n = int(round(seconds * 25))

  def frames():
    for k in range(n):
      t = k / 25.0
      yield np.asarray(photo.rotate(1.5 * np.sin(t), translate=(6 * np.sin(0.7 * t), 4 * np.cos(0.5 * t)),
                                    resample=Image.BILINEAR, fillcolor=(40, 40, 40)))

  video.write_video(path, frames(), 25, preset="veryfast")
  return path


def _speech(path: str, seconds: float) -> str:
  text = ("Dynamic convolution kernels let one network follow any voice. "
          "The quick brown fox jumps over the lazy dog, again and again.")
  try:
    subprocess.run(["espeak-ng", "-s", "150", "-w", path, text], check=True, capture_output=True, timeout=60)
  except (OSError, subprocess.CalledProcessError):  # no espeak-ng: a modulated tone of the same length
    import soundfile as sf  # pylint: disable=g-import-not-at-top
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 4 * t) > 0)).astype(np.float32), 16000)
    return path
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  wav, sr = sf.read(path, dtype="float32")
  wav = np.resize(wav, int(seconds * sr))  # repeat or cut to the requested length
  sf.write(path, wav, sr)
  return path


def jax_tree(variables):
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def bench_end_to_end(config, dtype: str, seconds: float, batch_size: int):
  from talkjax import generate  # pylint: disable=g-import-not-at-top
  from talkjax.tasks import dck_unet as task  # pylint: disable=g-import-not-at-top
  _, variables = _generator(config, "float32")
  renderer = task.inference(config, {"generator": jax_tree(variables)}, batch_size=batch_size, dtype=dtype)
  with tempfile.TemporaryDirectory() as tmp:
    face = _face_video(os.path.join(tmp, "face.mp4"), seconds)
    speech = _speech(os.path.join(tmp, "speech.wav"), seconds)
    # Warm-up on a short clip: compiles the generator and loads the face models.
    short = _speech(os.path.join(tmp, "short.wav"), 0.5)
    generate.generate(renderer, face, short, os.path.join(tmp, "warm.mp4"), progress=False)
    report = generate.generate(renderer, face, speech, os.path.join(tmp, "out.mp4"), progress=False)
  return report


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="dck_unet", help="config whose generator to time (default: the paper's)")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--seconds", type=float, default=4.0, help="audio length of the end-to-end run")
  parser.add_argument("--e2e_batch", type=int, default=16, help="frames per generator call end to end")
  parser.add_argument("--skip_torch", action="store_true", help="no Wav2Lip PyTorch reference")
  parser.add_argument("--skip_e2e", action="store_true", help="generator only")
  args = parser.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  config = _config(args.config)
  device = jax.devices()[0]
  print(f"CPU: {machine.cpu_model()} ({os.cpu_count()} logical cores); load average {os.getloadavg()[0]:.2f}")
  print(f"jax {jax.__version__} on {device.platform} ({device.device_kind}); config {args.config}: "
        f"{config.model.image_size}x{config.model.image_size} crops, {args.dtype}\n")

  rows = bench_generator(config, args.dtype, args.repeats, not args.skip_torch)
  print("| generator | batch | ms / frame | frames / s | first call (compile) s |")
  print("| --- | ---: | ---: | ---: | ---: |")
  for name, batch, ms, fps, comp in rows:
    print(f"| {name} | {batch} | {ms:.2f} | {fps:.1f} | {comp:.1f} |")
  print("\npaper (PyTorch, TITAN RTX, 256x256): 4.7 ms / frame, 212 fps without background, 60 fps with it")

  if not args.skip_e2e:
    report = bench_end_to_end(config, args.dtype, args.seconds, args.e2e_batch)
    total = report.timings["total"]
    print(f"\nend to end (512x512 face video, {report.num_frames} frames, {report.audio_seconds:.1f} s of "
          f"audio, generator batch {args.e2e_batch}): {report.end_to_end_fps:.1f} frames/s")
    print("| stage | seconds | share | ms / frame |")
    print("| --- | ---: | ---: | ---: |")
    for stage in ("audio", "decode", "detection", "crop", "generation", "paste", "encoding"):
      v = report.timings.get(stage, 0.0)
      print(f"| {stage} | {v:.2f} | {100 * v / total:.0f}% | {1000 * v / report.num_frames:.1f} |")
    print(f"| total | {total:.2f} | 100% | {1000 * total / report.num_frames:.1f} |")


if __name__ == "__main__":
  main()
