"""``train_and_evaluate(config, workdir)``: the training loop every talkjax experiment runs."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from talkjax import checkpoints, fileio, tasks
from talkjax.errors import ConfigError, TalkjaxError
from talkjax.train import data_source as data_lib
from talkjax.train import evaluators as eval_lib
from talkjax.train import logging as log_lib
from talkjax.train import mesh as mesh_lib
from talkjax.train import frozen as frozen_lib
from talkjax.train import state as state_lib
from talkjax.train import step as step_lib

REQUIRED_FIELDS = ("seed", "task", "batch_size", "total_steps", "log_every", "checkpoint_every",
                   "eval_every", "mesh", "data")
MAX_IMAGES = 4  # Examples per logged image grid.


class TrainingDivergedError(TalkjaxError, FloatingPointError):
  """A loss term (or gradient norm) became NaN or inf; the run stopped without saving that state."""


def validate_config(config: ml_collections.ConfigDict) -> None:
  missing = [f for f in REQUIRED_FIELDS if f not in config]
  if missing:
    raise ConfigError(f"config lacks required field(s) {', '.join(missing)} (every config needs "
                      f"{', '.join(REQUIRED_FIELDS)})")
  for field in ("batch_size", "total_steps", "log_every"):
    if not isinstance(config[field], int) or config[field] < 1:
      raise ConfigError(f"config.{field} must be a positive integer, got {config[field]!r}")
  for field in ("checkpoint_every", "eval_every"):
    if not isinstance(config[field], int) or config[field] < 0:
      raise ConfigError(f"config.{field} must be an integer >= 0 (0: off), got {config[field]!r}")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in (d.items() if isinstance(d, dict) else []):
    key = f"{prefix}{k}"
    out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
  return out


def _save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the resolved config to ``<workdir>/config.json``; warns about changes on resume."""
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      try:
        old = json.load(f)
      except json.JSONDecodeError:
        old = {}
    new, old = _flatten(json.loads(text)), _flatten(old)
    changed = sorted(k for k in set(new) | set(old) if new.get(k) != old.get(k))
    if changed:
      stamp = time.strftime("%Y%m%d-%H%M%S")
      os.replace(path, os.path.join(workdir, f"config.{stamp}.json"))
      logging.warning("workdir %s: config differs from the previous run in %s (old config kept as "
                      "config.%s.json)", workdir, ", ".join(changed[:10]), stamp)
  fileio.atomic_write_text(path, text + "\n")


class _Preemption:
  """SIGTERM -> save a checkpoint at the next step boundary and return normally.

  In a multi-process run JAX's coordination service catches the preemption notice and every process
  reaches the same sync point (``reached_preemption_sync_point``); one process alone receiving a
  signal must not make it save on its own, which would deadlock the collective save.
  """

  def __init__(self):
    self._flag = False
    self._old = None
    self._multi = jax.process_count() > 1
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._old = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del frame
    if self._flag:  # A second SIGTERM: the graceful stop is taking too long; die the default way.
      signal.signal(signum, self._old if self._old is not None else signal.SIG_DFL)
      os.kill(os.getpid(), signum)
      return
    logging.warning("SIGTERM received: saving a checkpoint at the end of this step, then exiting "
                    "(send it again to exit at once)")
    self._flag = True

  def requested(self, step: int) -> bool:
    if self._multi:
      from jax.experimental import multihost_utils
      try:
        return bool(multihost_utils.reached_preemption_sync_point(step))
      except RuntimeError:  # No preemption service (e.g. a cluster without it): nothing to sync on.
        return False
    return self._flag

  def close(self) -> None:
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)
      self._old = None


def _check_finite(step: int, metrics: dict, checkpointer: checkpoints.TrainCheckpointer) -> None:
  if bool(jax.device_get(metrics[step_lib.FINITE])):
    return
  values = jax.device_get({k: v for k, v in metrics.items() if k != step_lib.FINITE})
  bad = [(k, float(v)) for k, v in values.items() if not np.isfinite(v)]
  # Name the most specific culprit first: a loss term, then a player's total, then gradient norms
  # (usually a consequence).
  bad.sort(key=lambda kv: (kv[0].startswith("grad_norm/"), kv[0].endswith("/loss")))
  checkpointer.wait()
  last = checkpointer.latest_step()
  where = (f"the last good checkpoint is step {last} in {checkpointer.directory}" if last is not None
           else "no checkpoint had been saved yet")
  raise TrainingDivergedError(f"non-finite loss at step {step}: {bad[0][0]} = {bad[0][1]}"
                              + (f" (also {', '.join(k for k, _ in bad[1:6])})" if len(bad) > 1 else "")
                              + f"; stopped without saving; {where}")


def _mean_metrics(history: list[dict]) -> dict[str, float]:
  history = jax.device_get(history)
  keys = [k for k in history[0] if k != step_lib.FINITE]
  return {k: float(np.mean([h[k] for h in history])) for k in keys}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> state_lib.TrainState:
  """Trains ``config.task`` per ``config``, resuming from ``workdir`` if it holds checkpoints.

  Writes ``<workdir>/config.json``, ``checkpoints/<step>/``, ``tensorboard/`` and ``metrics.jsonl``.
  Returns the final train state. Raises :class:`TrainingDivergedError` on a NaN/inf loss. On SIGTERM
  it saves a checkpoint and returns early.
  """
  validate_config(config)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  if is_main:
    _save_config(config, workdir)

  task = tasks.get(config.task)
  nets = task.networks(config)
  spec = task.batch_spec(config)
  players = list(task.players(config, nets))
  owners: dict[str, list[str]] = {n: [] for n in nets}
  for p in players:
    for n in p.networks:
      if n not in owners:
        raise ConfigError(f"task {config.task!r}: player {p.name!r} owns unknown network {n!r} "
                          f"(networks: {', '.join(nets)})")
      owners[n].append(p.name)
  bad_owners = {n: o for n, o in owners.items() if len(o) != 1}
  if bad_owners:
    raise ConfigError(f"task {config.task!r}: every network needs exactly one player; got {bad_owners}")

  mesh = mesh_lib.make_mesh(config.mesh)
  n_data, n_proc = mesh_lib.data_size(mesh), jax.process_count()
  if config.batch_size % n_data or config.batch_size % n_proc:
    raise ConfigError(f"config.batch_size={config.batch_size} must be divisible by the data axis "
                      f"({n_data} devices) and by the number of processes ({n_proc})")
  total_steps = config.total_steps

  optimizers = {n: state_lib.make_optimizer(config, n, total_steps) for n in nets}
  txs = {n: tx for n, (tx, _) in optimizers.items()}
  schedules = {n: sched for n, (_, sched) in optimizers.items()}
  weights = state_lib.initial_weights(task, config)
  init_fn = state_lib.make_init_fn(task, config, nets, txs, spec, weights, config.seed)
  abstract = jax.eval_shape(init_fn)
  state_sharding = mesh_lib.param_sharding(abstract, mesh, config.mesh.get("shard_params_min_size"))
  target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, state_sharding)
  frozen = mesh_lib.put_replicated(frozen_lib.load_frozen(task, config), mesh)

  data = data_lib.make_data_source(config.data, sampler=task.sampler(config), spec=spec,
                                   batch_size=config.batch_size // n_proc, seed=config.seed)
  checkpointer = checkpoints.TrainCheckpointer(
      os.path.join(workdir, "checkpoints"), keep=config.get("keep_checkpoints", 3),
      keep_period=config.get("keep_checkpoint_period"), async_save=config.get("async_checkpoints", True))
  writer = log_lib.MetricWriter(workdir, enabled=is_main)
  preemption = _Preemption()
  try:
    if checkpointer.latest_step() is not None:
      state = checkpointer.restore(target, data_iterator=data.train)
      logging.info("Resumed from %s at step %d", checkpointer.directory, int(jax.device_get(state.step)))
    else:
      state = jax.jit(init_fn, out_shardings=state_sharding)()
      counts = {n: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.params[n])) for n in nets}
      logging.info("Initialised %s", ", ".join(f"{n}: {c:,} params" for n, c in counts.items()))
      writer.text("config", "```\n" + config.to_json_best_effort(indent=2) + "\n```")

    batch_sh, repl = mesh_lib.batch_sharding(mesh), mesh_lib.replicated(mesh)
    train_step = jax.jit(step_lib.make_train_step(players, txs),
                         in_shardings=(state_sharding, batch_sh, repl),
                         out_shardings=(state_sharding, repl), donate_argnums=(0,))
    eval_step = jax.jit(step_lib.make_eval_step(players, max_images=MAX_IMAGES),
                        in_shardings=(state_sharding, batch_sh, repl), out_shardings=repl)
    eval_batches = lambda: (mesh_lib.global_batch(b, mesh) for b in data.eval())  # noqa: E731
    ctx = eval_lib.EvalContext(config=config, task=task, nets=nets, players=players, mesh=mesh,
                               frozen=frozen, state_sharding=state_sharding, eval_batches=eval_batches,
                               eval_step=eval_step)
    evaluators = eval_lib.build_evaluators(config, ctx)
    state = _run(config, state, task, train_step, eval_step, evaluators, data, frozen, mesh,
                 checkpointer, writer, preemption, schedules)
  finally:
    preemption.close()
    writer.close()
    checkpointer.close()
  return state


def _run(config, state, task, train_step, eval_step, evaluators, data, frozen, mesh, checkpointer,
         writer, preemption, schedules):
  total_steps = config.total_steps
  images_every = config.get("images_every", config.eval_every)
  step = int(jax.device_get(state.step))
  if step >= total_steps:
    logging.info("Already at step %d >= total_steps %d: nothing to train", step, total_steps)
    return state
  first_step = step
  throughput = None
  history: list[dict] = []
  pending = None  # (step, metrics) dispatched but not yet checked for NaN.
  t0 = time.perf_counter()
  while step < total_steps:
    local_batch = next(data.train)
    if step == first_step:
      data_lib.check_batch(local_batch, task.batch_spec(config), config.batch_size // jax.process_count(),
                           task.sampler(config))
    batch = mesh_lib.global_batch(local_batch, mesh)
    state, metrics = train_step(state, batch, frozen)
    step += 1
    # Check the previous step while this one runs: one step of lag keeps the device busy.
    if pending is not None:
      _check_finite(*pending, checkpointer)
    pending = (step, metrics)
    history.append(metrics)
    if step == first_step + 1:
      _check_finite(*pending, checkpointer)
      first_seconds = time.perf_counter() - t0
      logging.info("Step %d took %.1f s (includes compilation)", step, first_seconds)
      writer.scalars(step, {"first_step_seconds": first_seconds})
      throughput = log_lib.Throughput(step, total_steps)

    is_log = step % config.log_every == 0 or step == total_steps
    is_images = images_every > 0 and step % images_every == 0
    is_eval = config.eval_every > 0 and step % config.eval_every == 0
    is_ckpt = (config.checkpoint_every > 0 and step % config.checkpoint_every == 0) or step == total_steps
    stop = preemption.requested(step)
    if not (is_log or is_images or is_eval or is_ckpt or stop):
      continue
    _check_finite(*pending, checkpointer)

    if is_log:
      values = _mean_metrics(history)
      history = []
      rate, eta = throughput.update(step) if step > first_step + 1 else (float("nan"), float("nan"))
      extra = {f"lr/{n}": float(s(step - 1)) for n, s in schedules.items()}
      extra.update({f"weights/{k}": float(v) for k, v in jax.device_get(state.weights).items()})
      if np.isfinite(rate):
        extra["steps_per_sec"] = rate
      writer.scalars(step, {**{f"train/{k}": v for k, v in values.items()}, **extra})
      log_lib.log_console(log_lib.console_line(step, total_steps, values, rate, eta))

    if is_images:
      _, images = jax.device_get(eval_step(state, batch, frozen))
      for tag, group in log_lib.group_images(images).items():
        writer.images(step, f"train/{tag}", group)

    if is_eval and evaluators:
      start = time.perf_counter()
      results = {}
      for name, evaluator in evaluators.items():
        for key, value in evaluator.run(state):
          results[f"{name}/{key}"] = value
      scalars, images = eval_lib.split_results(results)
      writer.scalars(step, {f"eval/{k}": v for k, v in scalars.items()})
      for tag, group in log_lib.group_images(images).items():
        writer.images(step, f"eval/{tag}", group)
      log_lib.log_console(f"eval at step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()))
      state = _update_weights(config, task, state, step, scalars, mesh)
      if throughput is not None:
        throughput.reset(step)  # Evaluation time is not training throughput.
      logging.info("evaluation took %.1f s", time.perf_counter() - start)

    if is_ckpt or stop:
      checkpointer.save(step, state, data.train)
    writer.flush()
    if stop:
      logging.warning("Preempted: checkpoint saved at step %d; exiting", step)
      break
  if pending is not None:
    _check_finite(*pending, checkpointer)
  return state


def _update_weights(config, task, state, step, scalars, mesh):
  if not hasattr(task, "update_weights"):
    return state
  old = {k: float(v) for k, v in jax.device_get(state.weights).items()}
  new = task.update_weights(config, dict(old), step, dict(scalars))
  if set(new) != set(old):
    raise ValueError(f"task {config.task!r}: update_weights changed the weight names {sorted(old)} "
                     f"-> {sorted(new)}")
  if new == old:
    return state
  logging.info("Loss weights at step %d: %s", step, ", ".join(f"{k} {old[k]:g} -> {new[k]:g}"
                                                                for k in new if new[k] != old[k]))
  weights = mesh_lib.put_replicated({k: np.float32(v) for k, v in new.items()}, mesh)
  return state.replace(weights=weights)
