"""Evaluating a folder of generated videos against their references: matching, running, reporting.

Used by ``python -m experiments.evaluate``; usable directly::

  from talkjax.metrics import runner, registry
  pairs, unmatched = runner.match("out/", "data/test/")
  result = runner.evaluate(pairs, ["psnr", "ssim", "lse"], registry.Options(weights_dir="weights"))
  runner.write_outputs(result, "eval/")

Matching: generated videos are keyed by their path relative to ``--generated`` without the
extension (``spk000/00003``); a reference with the same relative key wins, otherwise a reference
with the same file stem if exactly one exists. Files given as a list are keyed by their stem.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from talkjax import fileio
from talkjax.errors import ConfigError, TalkjaxError
from talkjax.metrics import registry

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv"})
BASE_COLUMNS = ("name", "generated", "reference", "frames", "frames_generated", "frames_reference",
                "size", "reference_size", "audio_source")
TEXT_COLUMNS = ("text_speech", "text_generated", "text_reference")


@dataclasses.dataclass(frozen=True)
class Match:
  name: str
  generated: str
  reference: str | None


@dataclasses.dataclass
class Result:
  """Everything one evaluation produced.

  Attributes:
    rows: one dict per video (``BASE_COLUMNS`` + the metrics' columns; NaN where a metric failed).
    summary: dataset-level numbers by name (``psnr``, ``lse_d``, ``fid``, ...).
    metrics: the metric names that were requested.
    errors: metric -> message for metrics that could not run at all (missing weights, ...).
    video_errors: ``{"video", "metric", "error"}`` for failures on single videos.
    unmatched: generated files without a reference.
    descriptions: metric -> one-line definition.
    settings: the options used.
  """
  rows: list[dict]
  summary: dict[str, float]
  metrics: list[str]
  errors: dict[str, str]
  video_errors: list[dict]
  unmatched: list[str]
  descriptions: dict[str, str]
  settings: dict


def _is_video(path: str) -> bool:
  return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def find_videos(root: str) -> dict[str, str]:
  """``{relative path without extension (posix): path}`` of the videos under ``root`` (recursive)."""
  if not os.path.isdir(root):
    raise ConfigError(f"{root}: not a directory")
  out = {}
  for folder, dirs, files in os.walk(root):
    dirs.sort()
    for f in sorted(files):
      if _is_video(f) and not f.startswith("."):
        path = os.path.join(folder, f)
        key = os.path.splitext(os.path.relpath(path, root))[0].replace(os.sep, "/")
        if key in out:
          raise ConfigError(f"{root}: two videos share the name {key!r} ({out[key]} and {path})")
        out[key] = path
  return out


def match(generated: str | Sequence[str], reference: str | None) -> tuple[list[Match], list[str]]:
  """Pairs generated videos with references by name; returns (matches, unmatched generated paths).

  Args:
    generated: a directory, a comma-separated list of files, or a sequence of files.
    reference: the reference directory, or None (reference-free metrics only).
  """
  if isinstance(generated, str) and os.path.isdir(generated):
    gen = find_videos(generated)
  else:
    files = [p for p in (generated.split(",") if isinstance(generated, str) else generated) if p]
    gen = {}
    for p in files:
      if not os.path.isfile(p):
        raise ConfigError(f"--generated: {p}: no such file or directory")
      key = os.path.splitext(os.path.basename(p))[0]
      if key in gen:
        raise ConfigError(f"--generated: two files share the name {key!r}")
      gen[key] = p
  if not gen:
    raise ConfigError(f"--generated: no video files found in {generated!r} "
                      f"(extensions: {', '.join(sorted(VIDEO_EXTENSIONS))})")
  if reference is None:
    return [Match(k, p, None) for k, p in gen.items()], []
  refs = find_videos(reference)
  by_stem: dict[str, list[str]] = {}
  for key, path in refs.items():
    by_stem.setdefault(key.rsplit("/", 1)[-1], []).append(path)
  matches, unmatched = [], []
  for key, path in gen.items():
    if key in refs:
      matches.append(Match(key, path, refs[key]))
      continue
    cands = by_stem.get(key.rsplit("/", 1)[-1], [])
    if len(cands) == 1:
      matches.append(Match(key, path, cands[0]))
    else:
      unmatched.append(path)
      logger.warning("%s: %s", path, "no reference with this name" if not cands else
                     f"ambiguous: {len(cands)} references share its name ({', '.join(cands[:3])})")
  return matches, unmatched


def evaluate(matches: Sequence[Match], metric_names: Sequence[str], options: registry.Options, *,
             progress: bool = True, unmatched: Sequence[str] = ()) -> Result:
  """Runs the metrics over the matched videos (see the module docstring of ``registry``)."""
  if not matches:
    raise ConfigError("no generated video has a matching reference; nothing to evaluate")
  errors: dict[str, str] = {}
  metrics: list[registry.Metric] = []
  for name in metric_names:
    m = registry.REGISTRY[name]()
    if m.needs_reference and any(p.reference is None for p in matches):
      errors[name] = f"{name} compares with reference videos: pass --reference"
      continue
    try:
      m.setup(options)
    except (TalkjaxError, ValueError, ImportError) as e:
      errors[name] = str(e)
      logger.error("%s: %s", name, e)
      continue
    metrics.append(m)
  frame_metrics = [m for m in metrics if m.kind == "frames"]
  video_metrics = [m for m in metrics if m.kind == "video"]
  rows, video_errors = [], []
  bar = tqdm(matches, desc="evaluate", unit="video", disable=not progress)
  for pair_spec in bar:
    bar.set_postfix_str(pair_spec.name[-40:])
    pair = registry.VideoPair(pair_spec.name, pair_spec.generated, pair_spec.reference, chunk=options.chunk)
    row: dict = {"name": pair.name, "generated": pair.generated, "reference": pair.reference or ""}
    for m in metrics:
      row.update({c: float("nan") for c in m.columns})
    failed_frames: set[str] = set()
    for m in frame_metrics:
      m.start(pair)
    try:
      for gen, ref in pair.aligned_chunks():
        for m in frame_metrics:
          if m.name in failed_frames:
            continue
          try:
            m.update(gen, ref)
          except (TalkjaxError, ValueError) as e:
            failed_frames.add(m.name)
            video_errors.append({"video": pair.name, "metric": m.name, "error": str(e)})
    except (TalkjaxError, ValueError, OSError) as e:
      video_errors.append({"video": pair.name, "metric": "*", "error": f"cannot read the videos: {e}"})
      logger.error("%s: %s", pair.name, e)
      rows.append(row)
      continue
    row.update({"frames": pair.num_aligned, "frames_generated": pair.num_generated,
                "frames_reference": pair.num_reference if pair.num_reference is not None else "",
                "size": f"{pair.size[1]}x{pair.size[0]}",
                "reference_size": (f"{pair.reference_size[1]}x{pair.reference_size[0]}"
                                   if pair.reference_size else "")})
    for m in frame_metrics:
      if m.name not in failed_frames:
        row.update(m.finish())
    for m in video_metrics:
      try:
        row.update(m.video(pair))
      except (TalkjaxError, ValueError, OSError) as e:
        video_errors.append({"video": pair.name, "metric": m.name, "error": str(e)})
        logger.warning("%s: %s: %s", pair.name, m.name, e)
    row["audio_source"] = pair.audio_source or ""
    rows.append(row)
  summary: dict[str, float] = {}
  for m in metrics:
    try:
      summary.update(m.summary(rows))
    except (TalkjaxError, ValueError) as e:
      errors[m.name] = f"summary failed: {e}"
  settings = {k: (v if isinstance(v, (str, int, float, bool)) or v is None else repr(v))
              for k, v in dataclasses.asdict(options).items()}
  return Result(rows=rows, summary=summary, metrics=list(metric_names), errors=errors,
                video_errors=video_errors, unmatched=list(unmatched), descriptions={
                    n: registry.REGISTRY[n].description for n in metric_names},
                settings=settings)


def _json_value(v):
  if isinstance(v, (float, np.floating)):
    v = float(v)
    if math.isnan(v):
      return None
    if math.isinf(v):
      return "inf" if v > 0 else "-inf"
  return v


def columns(result: Result) -> list[str]:
  cols = list(BASE_COLUMNS)
  for name in result.metrics:
    cols += [c for c in registry.REGISTRY[name].columns if c not in cols]
  if "vtcs" in result.metrics:
    cols += list(TEXT_COLUMNS)
  return cols


def write_outputs(result: Result, output_dir: str) -> tuple[str, str]:
  """Writes ``metrics.csv`` (one row per video) and ``summary.json`` atomically; returns their paths."""
  os.makedirs(output_dir, exist_ok=True)
  cols = columns(result)
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
  writer.writeheader()
  for row in result.rows:
    writer.writerow({c: ("" if row.get(c) is None else row.get(c, "")) for c in cols})
  csv_path = os.path.join(output_dir, "metrics.csv")
  fileio.atomic_write_text(csv_path, buf.getvalue())
  summary = {
      "summary": {k: _json_value(v) for k, v in result.summary.items()},
      "videos": len(result.rows),
      "metrics": result.metrics,
      "errors": result.errors,
      "video_errors": result.video_errors,
      "unmatched": result.unmatched,
      "definitions": result.descriptions,
      "settings": result.settings,
  }
  json_path = os.path.join(output_dir, "summary.json")
  fileio.atomic_write_text(json_path, json.dumps(summary, indent=1, sort_keys=False, allow_nan=False) + "\n")
  return csv_path, json_path


def _fmt(v) -> str:
  if isinstance(v, (float, np.floating)):
    return "nan" if math.isnan(v) else f"{v:.4f}"
  return str(v)


def format_table(result: Result, max_videos: int = 30) -> str:
  """A plain-text table: per-video metric columns (up to ``max_videos`` rows), then the summary."""
  metric_cols = [c for c in columns(result) if c not in BASE_COLUMNS and c not in TEXT_COLUMNS]
  lines = []
  if result.rows and metric_cols and len(result.rows) <= max_videos:
    header = ["video"] + metric_cols
    table = [header] + [[r["name"]] + [_fmt(r.get(c, float("nan"))) for c in metric_cols]
                        for r in result.rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for k, row in enumerate(table):
      lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                             enumerate(zip(row, widths))))
      if k == 0:
        lines.append("  ".join("-" * w for w in widths))
    lines.append("")
  lines.append(f"summary over {len(result.rows)} video(s):")
  for k, v in result.summary.items():
    lines.append(f"  {k:<22} {_fmt(v)}")
  for name, msg in result.errors.items():
    lines.append(f"  {name:<22} FAILED: {msg}")
  if result.video_errors:
    lines.append(f"  ({len(result.video_errors)} per-video error(s); see summary.json)")
  return "\n".join(lines)
