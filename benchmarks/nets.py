"""Forward-pass time of talkjax's reference ports against the PyTorch originals on this CPU.

  python benchmarks/nets.py [--repeats 15] [--nets wav2lip,syncnet_v2] [--threads N] [--single_thread]

For each case both implementations get the same random weights (converted with
``third_party.convert``) and inputs; JAX runs ``jax.jit(module.apply)`` after a warm-up call (which
compiles), PyTorch runs eager in ``eval()`` under ``torch.inference_mode()``. The two are timed in
alternation, repeat by repeat, so load from other processes hits both alike; the table shows
medians and the ratio PyTorch / JAX (> 1: JAX faster). Needs ``torch``, ``lipsync`` and
``syncnet_python``. A script, not a test: run it on a quiet machine. On a busy one,
``--single_thread`` (one thread each: XLA without its Eigen thread pool, ``torch.set_num_threads(1)``)
compares the kernels without OpenMP's busy-waiting suffering from oversubscription.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import machine  # pylint: disable=g-import-not-at-top


def _randomise_batchnorm(model, seed: int = 0):
  import torch  # pylint: disable=g-import-not-at-top
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):  # pylint: disable=protected-access
        m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
        m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
  return model.eval()


def _cases(nets: list[str]):
  """Yields (name, batch, jax_fn, torch_fn); each fn runs one forward pass to completion."""
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from third_party import convert  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  if "wav2lip" in nets:
    from lipsync.models.wav2lip import Wav2Lip as TorchWav2Lip  # pylint: disable=g-import-not-at-top
    torch.manual_seed(0)
    tmodel = _randomise_batchnorm(TorchWav2Lip())
    variables = convert.convert_state_dict("wav2lip", tmodel.state_dict())
    module = convert.module_for("wav2lip")
    fwd = jax.jit(module.apply)
    for batch in (1, 16):
      mel = rng.uniform(-4, 4, (batch, 1, 80, 16)).astype(np.float32)
      face = rng.uniform(0, 1, (batch, 6, 96, 96)).astype(np.float32)
      jmel, jface = jax.device_put(mel.transpose(0, 2, 3, 1)), jax.device_put(face.transpose(0, 2, 3, 1))
      tmel, tface = torch.from_numpy(mel), torch.from_numpy(face)
      yield ("wav2lip", batch, lambda: fwd(variables, jmel, jface).block_until_ready(),
             lambda: tmodel(tmel, tface))

  if "syncnet_v2" in nets:
    from syncnet_python.SyncNetModel import S  # pylint: disable=g-import-not-at-top
    torch.manual_seed(0)
    tmodel = _randomise_batchnorm(S())
    variables = convert.convert_state_dict("syncnet_v2", tmodel.state_dict())
    module = convert.module_for("syncnet_v2")
    fwd = jax.jit(module.apply)
    batch = 20  # SyncNetInstance's default batch of 5-frame windows
    mfcc = rng.normal(0, 10, (batch, 1, 13, 20)).astype(np.float32)
    video = rng.uniform(0, 255, (batch, 3, 5, 224, 224)).astype(np.float32)
    jm, jv = jax.device_put(mfcc.transpose(0, 2, 3, 1)), jax.device_put(video.transpose(0, 2, 3, 4, 1))
    tm, tv = torch.from_numpy(mfcc), torch.from_numpy(video)
    yield ("syncnet_v2 (both towers)", batch, lambda: jax.block_until_ready(fwd(variables, jm, jv)),
           lambda: (tmodel.forward_aud(tm), tmodel.forward_lip(tv)))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=15)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--nets", default="wav2lip,syncnet_v2")
  parser.add_argument("--threads", type=int, default=0,
                      help="PyTorch intra-op threads (0: PyTorch's default, one per core)")
  parser.add_argument("--single_thread", action="store_true",
                      help="one thread for both frameworks (set before JAX starts)")
  args = parser.parse_args()
  if args.single_thread:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                               " intra_op_parallelism_threads=1").strip()
    args.threads = 1

  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  if args.threads:
    torch.set_num_threads(args.threads)

  print(f"CPU: {machine.cpu_model()} ({os.cpu_count()} logical cores); load average {os.getloadavg()[0]:.2f}")
  xla_threads = "1 thread" if args.single_thread else "Eigen pool, one thread per core"
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({xla_threads}); torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads; float32; medians of {args.repeats} alternating repeats\n")
  rows = []
  with torch.inference_mode():
    for name, batch, jax_fn, torch_fn in _cases(args.nets.split(",")):
      t0 = time.perf_counter()
      jax_fn()
      compile_s = time.perf_counter() - t0
      for _ in range(args.warmup):
        jax_fn()
        torch_fn()
      jt, tt = [], []
      for _ in range(args.repeats):
        t0 = time.perf_counter()
        jax_fn()
        jt.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch_fn()
        tt.append(time.perf_counter() - t0)
      jm, tm = statistics.median(jt) * 1e3, statistics.median(tt) * 1e3
      rows.append((name, batch, jm, tm, tm / jm, compile_s))
      print(f"  done: {name} batch {batch}", file=sys.stderr)

  header = ("network", "batch", "JAX jit ms", "PyTorch ms", "PyTorch/JAX", "JAX 1st call s")
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for name, batch, jm, tm, ratio, cs in rows:
    print(f"| {name} | {batch} | {jm:.1f} | {tm:.1f} | {ratio:.2f} | {cs:.1f} |")


if __name__ == "__main__":
  main()
