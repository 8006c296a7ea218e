"""What the absl entry points share: ``--config.x.y=v`` overrides, configs, clean exits on errors."""

from __future__ import annotations

import contextlib
import sys

from absl import app, flags, logging

from experiments import configs
from talkjax.errors import TalkjaxError

# The ``--config.x.y=v`` arguments of this process, in command-line order.
overrides: list = []


def _parse_flags(argv):
  # absl would reject --config.x.y=v as unknown flags: take them out first, apply them later.
  rest, found = configs.split_override_args(argv)
  overrides.extend(found)
  return flags.FLAGS(rest)


def run(main) -> None:
  """``app.run(main)`` with the override arguments taken out of absl's way."""
  app.run(main, flags_parser=_parse_flags)


def resolve_config(config_arg: str | None, workdir: str | None):
  """The config for an inference command: ``--config`` with overrides if given; else the workdir's
  ``config.json`` with the overrides applied, or None (the caller reads the workdir's as it is)."""
  if config_arg:
    return configs.get_config(config_arg, overrides)
  if overrides:
    from talkjax.generate import read_workdir_config  # pylint: disable=g-import-not-at-top
    return configs.apply_overrides(read_workdir_config(workdir), overrides)
  return None


@contextlib.contextmanager
def exit_on_error():
  """Ends the process with status 1 and one log line (no traceback) on a talkjax error."""
  try:
    yield
  except TalkjaxError as e:
    logging.error("%s: %s", type(e).__name__, e)
    sys.exit(1)
