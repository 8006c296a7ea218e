r"""Trains a talkjax experiment: ``python -m experiments.train --config=NAME[:ARGS] --workdir=DIR``.

Override any config field with ``--config.x.y=VALUE``; run again with the same ``--workdir`` to resume.
``--multihost`` calls ``jax.distributed.initialize()`` first (cluster auto-detection, or the explicit
``--coordinator_address/--num_processes/--process_id``). Available configs: ``experiments/configs/``.
"""


from absl import app, flags
import jax

from experiments import cli, configs

_CONFIG = flags.DEFINE_string("config", None, "NAME[:ARGS], one of: " + ", ".join(configs.list_configs()))
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs (resumes from it).")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (--multihost).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (--multihost).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (--multihost).")
flags.mark_flags_as_required(["config", "workdir"])


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
  with cli.exit_on_error():
    train_and_evaluate(configs.get_config(_CONFIG.value, cli.overrides), _WORKDIR.value)


if __name__ == "__main__":
  cli.run(main)
