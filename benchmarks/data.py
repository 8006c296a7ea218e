"""Data pipeline throughput: preprocessing frames/s and sampler samples/s (prints tables, not a test).

  python benchmarks/data.py [--workdir /tmp/talkjax-data-bench] [--seconds 4]

1. Preprocessing: the synthetic corpus (256 px video, 4 speakers x 2 pairs x 4 s) with sidecar
   landmarks, in this process and with 2 worker processes; real-detector (MediaPipe) preprocessing
   of the astronaut photo animated into 10 s clips at 256x256 and at 1280x720 (face ~320 px).
2. Samplers: every sampler at 128 and 256 px (datasets stored at that size, so no resizing), with
   the batch size its reference trains with (renderer: 16 here), single-threaded random access and
   through a Grain iterator with 2 threads (``config.data`` defaults) and with 2 worker processes.

Inputs are built once under ``--workdir`` and reused; the datasets are preprocessed anew each run. Wall-clock and process CPU time are both given:
on a shared machine the CPU figure is the steadier one (threads add up; worker processes are not
counted in the parent's CPU time).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from talkjax import video  # noqa: E402
from talkjax.data import loader, samplers, synthetic  # noqa: E402
from talkjax.data import preprocess as pre  # noqa: E402

BATCH = {"wav2lip": 16, "syncnet": 64, "dck_pairs": 16, "landmarks": 128, "renderer": 16}


def _astronaut_clip(path: str, width: int, height: int, seconds: float) -> None:
  import skimage.data  # benchmark/test dependency only

  photo = Image.fromarray(skimage.data.astronaut())
  unit = 256.0 / min(width, height) if height < 500 else 0.3  # 720p: the face magnified ~3.3x
  n = int(seconds * 25)

  def frames():
    for t in range(n):
      a = math.radians(5 * math.sin(t / 9))
      rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
      mat = unit * (1 + 0.05 * math.sin(t / 13)) * rot
      centre = np.array([224.0 + 8 * math.sin(t / 7), 150.0 + 5 * math.cos(t / 11)])
      off = centre - mat @ [width / 2, height / 2]
      affine = (mat[0, 0], mat[0, 1], off[0], mat[1, 0], mat[1, 1], off[1])
      yield np.asarray(photo.transform((width, height), Image.AFFINE, affine, Image.BILINEAR))

  tone = (0.3 * np.sin(2 * np.pi * 180 * np.arange(n * 640) / 16000)).astype(np.float32)
  video.write_video(path, frames(), 25, audio=tone, preset="veryfast")


def _timed(fn):
  wall, cpu = time.perf_counter(), time.process_time()
  out = fn()
  return out, time.perf_counter() - wall, time.process_time() - cpu


def bench_preprocess(work: str) -> tuple[dict, list[str]]:
  syn = os.path.join(work, "syn256")
  synthetic.make_corpus(syn, speakers=4, clips=2, seed=0, size=256, pairs=True, duration=4.0, progress=False)
  astro = os.path.join(work, "astro")
  os.makedirs(os.path.join(astro, "a256"), exist_ok=True)
  os.makedirs(os.path.join(astro, "a720"), exist_ok=True)
  for sub, w, h in (("a256", 256, 256), ("a720", 1280, 720)):
    path = os.path.join(astro, sub, "clip.mp4")
    if not os.path.exists(path):
      _astronaut_clip(path, w, h, 10.0)
  rows, roots = [], {}
  runs = [("sidecar, synthetic 256 px -> 128/128", syn, "data128",
           dict(landmarks="sidecar", size=128, face_size=128), 0),
          ("sidecar, synthetic 256 px -> 256/256", syn, "data256",
           dict(landmarks="sidecar", size=256, face_size=256), 0),
          ("sidecar, synthetic 256 px -> 128/256, 2 workers", syn, "data_w2",
           dict(landmarks="sidecar", size=128, face_size=256), 2),
          ("mediapipe, astronaut 256x256 -> 128/256", os.path.join(astro, "a256"), "mp256",
           dict(landmarks="mediapipe", size=128, face_size=256), 0),
          ("mediapipe, astronaut 1280x720 -> 128/256", os.path.join(astro, "a720"), "mp720",
           dict(landmarks="mediapipe", size=128, face_size=256), 0)]
  for label, src, name, settings, workers in runs:
    out = os.path.join(work, name)
    shutil.rmtree(out, ignore_errors=True)
    index, wall, cpu = _timed(lambda: pre.preprocess(src, out, workers=workers, progress=False, **settings))
    frames = index["frames"]
    per_cpu = f"{frames / cpu:.0f}" if workers == 0 else "(in workers)"
    rows.append(f"| {label} | {frames} | {frames / wall:.0f} | {per_cpu} | {workers} |")
    roots[name] = out
  table = ["| preprocessing | frames | frames/s (wall) | frames/s (CPU of this process) | workers |",
           "| --- | --- | --- | --- | --- |"] + rows
  return roots, table


def bench_samplers(roots: dict, seconds: float) -> list[str]:
  rows = []
  for size, root in ((128, roots["data128"]), (256, roots["data256"])):
    for name in samplers.SAMPLERS:
      b = BATCH[name]
      ds = samplers.make_sampler(name, root=root, split="train", batch_size=b, seed=0)
      ds[0]  # warm up: readers open, page cache
      n, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
      while time.perf_counter() - wall0 < seconds:
        ds[1 + n]
        n += 1
      wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
      it = loader.make_iterator(ds, num_threads=2, prefetch=4)
      next(it)
      m, t0 = 0, time.perf_counter()
      while time.perf_counter() - t0 < seconds:
        next(it)
        m += 1
      threaded = m * b / (time.perf_counter() - t0)
      mp = samplers.make_sampler(name, root=root, split="train", batch_size=b, seed=0, num_workers=2)
      it2 = iter(mp)
      next(it2)
      k, t1 = 0, time.perf_counter()
      while time.perf_counter() - t1 < seconds:
        next(it2)
        k += 1
      workers = k * b / (time.perf_counter() - t1)
      it2.close()
      shown = "-" if name == "landmarks" else str(size)
      rows.append(f"| {name} | {shown} | {b} | {n * b / wall:.0f} | {n * b / cpu:.0f} | {threaded:.0f} | "
                  f"{workers:.0f} |")
  return ["| sampler | image px | batch | samples/s (1 thread, wall) | samples/s (CPU) | "
          "samples/s (2 threads) | samples/s (2 worker processes) |",
          "| --- | --- | --- | --- | --- | --- | --- |"] + rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="/tmp/talkjax-data-bench")
  parser.add_argument("--seconds", type=float, default=4.0, help="time per sampler measurement")
  args = parser.parse_args()
  os.makedirs(args.workdir, exist_ok=True)
  roots, table = bench_preprocess(args.workdir)
  print("\n".join(table))
  print()
  print("\n".join(bench_samplers(roots, args.seconds)))
  print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
  main()
