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
