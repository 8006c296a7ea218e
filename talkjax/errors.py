"""Exception types raised by talkjax.

Every error caused by bad user input is a ``ValueError`` subclass whose message names the offending
file (or argument) and the problem, so callers can catch ``ValueError`` broadly or one kind narrowly.
"""

from __future__ import annotations

import os


class TalkjaxError(Exception):
  """Base class of talkjax's own errors."""


class MediaError(TalkjaxError, ValueError):
  """A media file is missing, unreadable, corrupt or unsuitable.

  Attributes:
    path: the file concerned.
    problem: a short description of what is wrong.
  """

  def __init__(self, path: str | os.PathLike[str], problem: str):
    self.path = os.fspath(path)
    self.problem = problem
    super().__init__(f"{self.path}: {problem}")


class AudioError(MediaError):
  """Audio could not be loaded or is unusable (no stream, empty, silent, NaN...)."""


class VideoError(MediaError):
  """Video could not be decoded or written."""


class NoFaceError(MediaError):
  """No face was found where one is required."""


class CheckpointError(TalkjaxError, ValueError):
  """A checkpoint or weights file is missing, unsafe, corrupt or does not match the model."""


class ConfigError(TalkjaxError, ValueError):
  """An experiment configuration is invalid (unknown name, field or variant)."""


class ArgumentError(TalkjaxError, ValueError):
  """A function argument is invalid (wrong value, type or combination)."""


class ShapeError(ArgumentError):
  """An array argument has the wrong shape, rank or dtype."""
