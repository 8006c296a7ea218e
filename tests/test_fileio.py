"""Atomic output files."""

import os
import stat

import pytest

from talkjax import fileio


def test_atomic_path_renames_on_success_with_normal_permissions(tmp_path):
  target = tmp_path / "sub" / "out.bin"
  with fileio.atomic_path(target) as tmp:
    assert tmp.endswith(".bin") and os.path.dirname(tmp) == str(target.parent)
    with open(tmp, "wb") as f:
      f.write(b"abc")
    assert not target.exists()
  assert target.read_bytes() == b"abc"
  mode = stat.S_IMODE(os.stat(target).st_mode)
  assert mode & stat.S_IRGRP and mode & stat.S_IROTH, oct(mode)
  assert os.listdir(target.parent) == ["out.bin"]


def test_atomic_path_leaves_nothing_on_error_and_keeps_old_file(tmp_path):
  target = tmp_path / "out.txt"
  fileio.atomic_write_text(target, "old")
  with pytest.raises(RuntimeError):
    with fileio.atomic_path(target) as tmp:
      with open(tmp, "w") as f:
        f.write("new, half written")
      raise RuntimeError("crash")
  assert target.read_text() == "old"
  assert os.listdir(tmp_path) == ["out.txt"]


def test_file_lock_excludes_other_processes(tmp_path):
  import subprocess
  import sys
  lock = tmp_path / "x.lock"
  probe = ("import fcntl, sys\nf = open(sys.argv[1], 'a+')\n"
           "try:\n  fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)\n  print('free')\n"
           "except BlockingIOError:\n  print('held')\n")
  with fileio.file_lock(lock):
    held = subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, text=True)
  after = subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, text=True)
  assert held.stdout.strip() == "held" and after.stdout.strip() == "free"
