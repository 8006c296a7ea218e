"""Atomic file output: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator

# mkstemp creates files readable by the owner only; finished outputs get the usual permissions
# (0666 minus the process umask), read once at import because os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[str]:
  """Yields a temporary path next to ``path``; renames it onto ``path`` if the block succeeds.

  The temporary file lives in the destination directory (so the final ``os.replace`` is atomic on
  POSIX) and keeps the destination's extension (so writers that pick a format from the name, like
  FFmpeg muxers, still work). On any exception the temporary file is removed and ``path`` is left
  as it was.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path)) or "."
  os.makedirs(directory, exist_ok=True)
  base = os.path.basename(path)
  if suffix is None:
    suffix = os.path.splitext(base)[1]
  fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".partial{suffix}", dir=directory)
  os.close(fd)
  os.chmod(tmp, _FILE_MODE)
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
  """Writes ``text`` (UTF-8) to ``path`` atomically."""
  atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
  """Holds an exclusive ``flock`` on ``path`` (created if missing) across processes."""
  with open(path, "a+") as f:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f.fileno(), fcntl.LOCK_UN)
