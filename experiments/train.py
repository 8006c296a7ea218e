r"""Trains a talkjax experiment: ``python -m experiments.train --config=NAME[:ARGS] --workdir=DIR``.

Override any config field with ``--config.x.y=VALUE``; run again with the same ``--workdir`` to resume.
``--multihost`` calls ``jax.distributed.initialize()`` first (cluster auto-detection, or the explicit
``--coordinator_address/--num_processes/--process_id``). Available configs: ``experiments/configs/``.
"""

import sys

from absl import app, flags, logging
import jax

from experiments import configs
from talkjax.errors import TalkjaxError

_CONFIG = flags.DEFINE_string("config", None, "NAME[:ARGS], one of: " + ", ".join(configs.list_configs()))
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs (resumes from it).")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (--multihost).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (--multihost).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (--multihost).")
flags.mark_flags_as_required(["config", "workdir"])

_overrides: list = []


def _parse_flags(argv):
  # absl would reject --config.x.y=v as unknown flags: take them out first, apply them after.
  rest, overrides = configs.split_override_args(argv)
  _overrides.extend(overrides)
  return flags.FLAGS(rest)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _MULTIHOST.value:
    # CPU-only clusters need an explicit cross-process collectives backend; GPUs/TPUs ignore this.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  from talkjax.train import train_and_evaluate  # After distributed init: it may touch devices.
  from talkjax.train.logging import quiet_library_logs
  quiet_library_logs()
  try:
    config = configs.get_config(_CONFIG.value, _overrides)
    train_and_evaluate(config, _WORKDIR.value)
  except TalkjaxError as e:
    logging.error("%s: %s", type(e).__name__, e)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
