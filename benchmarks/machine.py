"""What the benchmark tables name as their machine."""

from __future__ import annotations

import platform
import subprocess


def cpu_model() -> str:
  """The CPU's model name from ``lscpu`` (``platform.processor()`` where lscpu is missing)."""
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
      if line.lower().startswith("model name"):
        return line.split(":", 1)[1].strip()
  except (OSError, subprocess.CalledProcessError):
    pass
  return platform.processor() or "unknown"
