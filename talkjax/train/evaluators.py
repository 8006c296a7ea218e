"""Evaluators: objects whose ``run(train_state)`` yields ``(name, value)`` pairs (big_vision's contract).

``config.evals`` maps an evaluator name to its settings: ``type`` (a task evaluator from
``task.evaluators(config)``, else one of :data:`GENERIC`) plus keyword arguments for its factory.
Values are scalars (logged as ``eval/<evaluator>/<name>``) or image batches ``(N, H, W, C)`` in
[0, 1] (logged as an image grid). Evaluators run in every process of a multi-process run (their
jitted functions are collective); only process 0 writes the results.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, NamedTuple

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from talkjax.errors import ConfigError
from talkjax.train import mesh as mesh_lib


class EvalContext(NamedTuple):
  """What an evaluator factory gets.

  Attributes:
    config: the run's config.
    task: the task module.
    nets: the trainable networks by name.
    players: the task's players.
    mesh: the device mesh.
    frozen: frozen variables (placed on the mesh).
    state_sharding: shardings of the train state.
    eval_batches: ``() -> iterator`` of fresh held-out *global* batches (same order every call).
    eval_step: the jitted ``make_eval_step(players)`` (shared with the trainer's image logging, so
      it compiles once): ``(state, batch, frozen) -> (terms, images)``.
  """
  config: ml_collections.ConfigDict
  task: Any
  nets: dict
  players: list
  mesh: Mesh
  frozen: dict
  state_sharding: Any
  eval_batches: Callable[[], Iterator[dict[str, jax.Array]]]
  eval_step: Callable

  def compile(self, fn: Callable) -> Callable:
    """Jits ``fn(state, batch, frozen) -> outputs`` for this mesh (outputs replicated)."""
    return jax.jit(fn, in_shardings=(self.state_sharding, mesh_lib.batch_sharding(self.mesh),
                                     mesh_lib.replicated(self.mesh)),
                   out_shardings=mesh_lib.replicated(self.mesh))

  def batches(self, num_batches: int) -> Iterator[dict[str, jax.Array]]:
    return itertools.islice(self.eval_batches(), num_batches)


class LossEvaluator:
  """Type ``"loss"``: the players' loss terms on held-out batches (eval mode), plus sample images.

  Yields ``<player>/<term>`` averaged over ``num_batches`` batches and, if the players return
  images, ``<player>/<image name>`` batches of the first batch's first ``num_images`` examples.
  """

  def __init__(self, ctx: EvalContext, num_batches: int = 4, num_images: int = 4):
    if num_batches < 1:
      raise ConfigError(f"loss evaluator: num_batches must be >= 1, got {num_batches}")
    self.ctx, self.num_batches, self.num_images = ctx, num_batches, num_images

  def run(self, train_state) -> Iterator[tuple[str, Any]]:
    totals: dict[str, float] = {}
    first_images = None
    count = 0
    for batch in self.ctx.batches(self.num_batches):
      terms, images = jax.device_get(self.ctx.eval_step(train_state, batch, self.ctx.frozen))
      for k, v in terms.items():
        totals[k] = totals.get(k, 0.0) + float(v)
      if first_images is None:
        first_images = images
      count += 1
    for k, v in totals.items():
      yield k, v / max(count, 1)
    for k, v in (first_images or {}).items():
      yield k, np.asarray(v)[:self.num_images]


GENERIC: dict[str, Callable[..., Any]] = {"loss": LossEvaluator}


def build_evaluators(config: ml_collections.ConfigDict, ctx: EvalContext) -> dict[str, Any]:
  """Instantiates ``config.evals`` (task evaluators take precedence over generic ones by type)."""
  evals = config.get("evals") or {}
  available = dict(GENERIC)
  if hasattr(ctx.task, "evaluators"):
    available.update(ctx.task.evaluators(config))
  out = {}
  for name in evals.keys():
    settings = evals[name]
    settings = settings.to_dict() if isinstance(settings, ml_collections.ConfigDict) else dict(settings)
    kind = settings.pop("type", None)
    if kind not in available:
      raise ConfigError(f"config.evals.{name}.type: unknown evaluator {kind!r}; available: "
                        f"{', '.join(sorted(available))}")
    try:
      out[name] = available[kind](ctx, **settings)
    except TypeError as e:
      raise ConfigError(f"config.evals.{name}: bad settings for evaluator {kind!r}: {e}") from e
  return out


def split_results(results: dict[str, Any]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """Separates scalar results from image batches."""
  scalars, images = {}, {}
  for k, v in results.items():
    arr = np.asarray(v)
    if arr.ndim == 0:
      scalars[k] = float(arr)
    elif arr.ndim in (3, 4):
      images[k] = arr
    else:
      raise ValueError(f"evaluator result {k!r}: expected a scalar or (N, H, W, C) images, got {arr.shape}")
  return scalars, images
