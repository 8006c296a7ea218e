"""Face detection + mesh throughput: detection on every frame vs tracking (detector only when lost).

Runs on a real face (``skimage.data.astronaut()``) animated with a smooth random affine motion (pan,
roll, zoom), at 256x256 and at 1280x720, and prints a table of frames/s. Frames are rendered before
timing; the timings cover everything talkjax does per frame (validation, PIL conversion, resizing
and cropping, the TFLite models, decoding, NMS, ROI updates) and the clip post-processing.

  python benchmarks/faces.py [--frames 150] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from talkjax import faces  # noqa: E402


def _photo() -> np.ndarray:
  import skimage.data  # test/benchmark dependency only
  return skimage.data.astronaut()


def _motion(t: int, rng_phase: np.ndarray) -> tuple[float, float, float, float]:
  """Smooth head-like motion: pan of a few photo pixels, +-5 degrees of roll, +-6% zoom."""
  s = t / 25.0
  wave = lambda amp, hz, phase: amp * math.sin(2 * math.pi * hz * s + phase)  # noqa: E731
  return (wave(8, 0.3, rng_phase[0]), wave(6, 0.4, rng_phase[1]), wave(5, 0.25, rng_phase[2]),
          1 + wave(0.06, 0.2, 0.0))


def render_clip(size: str, num_frames: int) -> list[np.ndarray]:
  """Frames of the moving astronaut: ``"256"`` (a 256x256 face crop) or ``"720p"`` (1280x720)."""
  photo = Image.fromarray(_photo())
  phase = np.random.default_rng(0).uniform(0, 2 * math.pi, 3)
  if size == "256":
    out_w, out_h, unit, centre = 256, 256, 1.0, (224.0, 150.0)
  else:
    # A 1280x720 frame of the photo magnified 3.3x: the face is ~320 px wide, as in HDTF-like videos.
    out_w, out_h, unit, centre = 1280, 720, 0.3, (224.0, 150.0)
  frames = []
  for t in range(num_frames):
    tx, ty, deg, zoom = _motion(t, phase)
    a = math.radians(deg)
    mat = unit * zoom * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    off = np.array(centre) + np.array([tx, ty]) - mat @ np.array([out_w / 2, out_h / 2])
    data = (mat[0, 0], mat[0, 1], off[0], mat[1, 0], mat[1, 1], off[1])
    frames.append(np.asarray(photo.transform((out_w, out_h), Image.AFFINE, data, Image.BILINEAR)))
  return frames


def _time(fn, repeats: int = 3) -> tuple[float, float]:
  """Best wall-clock and process-CPU seconds over ``repeats`` runs (CPU time is the steadier figure
  on a shared machine; with 1 interpreter thread it equals wall time on an idle one)."""
  best_wall = best_cpu = math.inf
  for _ in range(repeats):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    best_wall = min(best_wall, time.perf_counter() - wall)
    best_cpu = min(best_cpu, time.process_time() - cpu)
  return best_wall, best_cpu


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--frames", type=int, default=150)
  parser.add_argument("--threads", type=int, default=1, help="TFLite interpreter threads")
  args = parser.parse_args()
  n = args.frames
  detector = faces.FaceDetector("short", num_threads=args.threads)
  rows = []
  for size in ("256", "720p"):
    frames = render_clip(size, n)
    every = faces.FaceTracker(detector, fallback=None, redetect_every=1, refine=False,
                              num_threads=args.threads)
    tracking = faces.FaceTracker(detector, num_threads=args.threads)
    results = {}

    def run_detector():
      for f in frames:
        detector(f)

    def run_every():
      results["every"] = faces.track_faces(frames, tracker=every, keep_mesh=False)

    def run_tracking():
      results["tracking"] = faces.track_faces(frames, tracker=tracking, keep_mesh=False)

    for name, fn in (("detector only (short range)", run_detector),
                     ("detect + mesh every frame", run_every),
                     ("tracking (detect when lost)", run_tracking)):
      wall, cpu = _time(fn)
      key = "every" if "every" in name else "tracking" if "tracking" in name else None
      runs = results[key].detector_runs if key else n
      found = results[key].num_detected if key else "-"
      rows.append((size, name, n / wall, n / cpu, 1000 * cpu / n, runs, found))
    # Agreement of the two modes (mean landmark distance), a sanity check of tracking.
    gap = np.nanmean(np.linalg.norm(results["every"].landmarks - results["tracking"].landmarks, axis=-1))
    rows.append((size, f"landmarks, tracking vs every frame: {gap:.2f} px", None, None, None, None, ""))
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  print(f"\n{n} frames per clip, {args.threads} interpreter thread(s), {os.cpu_count()} CPU cores, "
        f"load average {load:.1f}\n")
  print(f"| {'frame':5} | {'mode':44} | {'frames/s (wall)':>15} | {'frames/s (CPU)':>14} "
        f"| {'CPU ms/frame':>12} | {'detector runs':>13} | {'faces':>5} |")
  print(f"| {'-' * 5} | {'-' * 44} | {'-' * 15} | {'-' * 14} | {'-' * 12} | {'-' * 13} | {'-' * 5} |")
  for size, name, fps, cpu_fps, ms, runs, found in rows:
    if fps is None:
      print(f"| {size:5} | {name:44} | {'':15} | {'':14} | {'':12} | {'':13} | {'':5} |")
    else:
      print(f"| {size:5} | {name:44} | {fps:15.1f} | {cpu_fps:14.1f} | {ms:12.2f} | {runs:13d} "
            f"| {found!s:>5} |")


if __name__ == "__main__":
  main()
