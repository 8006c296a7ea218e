"""Training throughput and peak memory of every config's ``runlocal`` variant on this machine.

  python benchmarks/train.py [--steps 60] [--configs toy_gan,dck_unet] [--variant runlocal]

Each config trains in its own subprocess (so peak RSS is that run's alone) for ``--steps`` steps in a
temporary workdir, with evaluation and image logging off and one checkpoint at the end. Reported:
the first step's time (compilation included), the median steps/s over the later log intervals, the
peak resident memory of the process and, where the device reports it, peak device memory. Configs
on the embedded corpus build it on first use (not included in the figures). A script, not a test:
run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import machine  # pylint: disable=g-import-not-at-top


def _child(name: str, variant: str, steps: int, workdir: str) -> None:
  """Runs one config and prints one JSON line of measurements."""
  import resource

  import jax

  from experiments import configs
  from talkjax.train import train_and_evaluate
  from talkjax.train.logging import quiet_library_logs

  quiet_library_logs()
  config = configs.get_config(f"{name}:{variant}" if variant else name)
  overrides = {"total_steps": steps, "log_every": max(1, steps // 10), "eval_every": 0,
               "checkpoint_every": 0}
  if "images_every" in config:
    overrides["images_every"] = 0
  configs.apply_overrides(config, overrides)
  start = time.perf_counter()
  train_and_evaluate(config, workdir)
  wall = time.perf_counter() - start
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  rates = [r["steps_per_sec"] for r in rows if "steps_per_sec" in r]
  first = next((r["first_step_seconds"] for r in rows if "first_step_seconds" in r), float("nan"))
  device_peak = None
  stats = jax.local_devices()[0].memory_stats()
  if stats and "peak_bytes_in_use" in stats:
    device_peak = stats["peak_bytes_in_use"] / 2**20
  print(json.dumps({
      "config": f"{name}:{variant}" if variant else name, "steps": steps, "batch_size": config.batch_size,
      "devices": jax.device_count(), "first_step_s": first,
      "steps_per_s": statistics.median(rates) if rates else float("nan"), "wall_s": wall,
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_device_mb": device_peak,
  }))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--configs", default="", help="comma-separated names (default: all)")
  parser.add_argument("--variant", default="runlocal")
  parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    _child(args.child, args.variant, args.steps, args.workdir)
    return

  from experiments import configs
  names = [n for n in args.configs.split(",") if n] or configs.list_configs()
  rows = []
  for name in names:
    with tempfile.TemporaryDirectory() as workdir:
      cmd = [sys.executable, os.path.abspath(__file__), f"--child={name}", f"--variant={args.variant}",
             f"--steps={args.steps}", f"--workdir={workdir}"]
      result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    lines = [l for l in result.stdout.splitlines() if l.startswith("{")]
    if result.returncode or not lines:
      print(f"{name}: failed (exit {result.returncode})\n{result.stderr[-2000:]}", file=sys.stderr)
      continue
    rows.append(json.loads(lines[-1]))

  print(f"CPU: {machine.cpu_model()}, {os.cpu_count()} cores; JAX devices per run: "
        f"{rows[0]['devices'] if rows else '?'}")
  header = ["config", "batch", "steps", "first step (s)", "steps/s", "ms/step", "peak RSS (MB)",
            "peak device (MB)"]
  table = [[r["config"], str(r["batch_size"]), str(r["steps"]), f"{r['first_step_s']:.1f}",
            f"{r['steps_per_s']:.2f}", f"{1000 / r['steps_per_s']:.1f}" if r["steps_per_s"] > 0 else "-",
            f"{r['peak_rss_mb']:.0f}", "-" if r["peak_device_mb"] is None else f"{r['peak_device_mb']:.0f}"]
           for r in rows]
  widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(header)]
  print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
  print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
  for row in table:
    print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")


if __name__ == "__main__":
  main()
