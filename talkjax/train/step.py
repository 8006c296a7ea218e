"""Pure step functions: one training update (all players in order) and loss evaluation.

They close over the task's players and the optimisers only; everything that changes is an explicit
argument (state, batch, frozen variables), so they jit once and run on any mesh.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from talkjax.tasks import Aux, LossContext, Player
from talkjax.train.state import TrainState

PyTree = Any
FINITE = "all_finite"


def _normalise_aux(aux: Any, player: Player) -> Aux:
  if not isinstance(aux, Aux):
    raise TypeError(f"player {player.name!r}: loss_fn must return (loss, talkjax.tasks.Aux), got {type(aux)}")
  aux = Aux(terms=dict(aux.terms or {}), batch_stats=dict(aux.batch_stats or {}),
            images=dict(aux.images or {}), carry=dict(aux.carry or {}))
  foreign = sorted(set(aux.batch_stats) - set(player.networks))
  if foreign:
    raise ValueError(f"player {player.name!r} returned batch_stats for {foreign}, which it does not "
                     f"own (its networks: {list(player.networks)})")
  return aux


def _call_player(player: Player, params: dict, ctx: LossContext):
  loss, aux = player.loss_fn(params, ctx)
  return loss, _normalise_aux(aux, player)


def make_train_step(players: Sequence[Player],
                    txs: dict[str, optax.GradientTransformation]) -> Callable:
  """Returns ``train_step(state, batch, frozen) -> (new_state, metrics)``.

  Metrics: ``<player>/loss``, ``<player>/<term>``, ``grad_norm/<network>`` (float32 scalars) and
  ``all_finite`` (bool: every one of them is finite). Per-step randomness is
  ``fold_in(fold_in(state.rng, state.step), player_index)``.
  """

  def train_step(state: TrainState, batch: dict, frozen: dict):
    step_rng = jax.random.fold_in(state.rng, state.step)
    params, batch_stats, opt_state = dict(state.params), dict(state.batch_stats), dict(state.opt_state)
    carry: dict = {}
    metrics: dict = {}
    for index, player in enumerate(players):
      ctx = LossContext(batch_stats=batch_stats, frozen=frozen, batch=batch,
                        rng=jax.random.fold_in(step_rng, index), step=state.step, weights=state.weights,
                        carry=carry, train=True)
      own = {n: params[n] for n in player.networks}

      def loss_of_own(own_params, ctx=ctx, player=player):
        return _call_player(player, {**params, **own_params}, ctx)

      (loss, aux), grads = jax.value_and_grad(loss_of_own, has_aux=True)(own)
      for name in player.networks:
        updates, opt_state[name] = txs[name].update(grads[name], opt_state[name], params[name])
        params[name] = optax.apply_updates(params[name], updates)
        metrics[f"grad_norm/{name}"] = optax.tree.norm(grads[name])
      batch_stats.update(aux.batch_stats)
      carry = {**carry, **jax.lax.stop_gradient(aux.carry)}
      metrics[f"{player.name}/loss"] = loss
      metrics.update({f"{player.name}/{k}": v for k, v in aux.terms.items()})
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    metrics[FINITE] = jnp.all(jnp.stack([jnp.isfinite(v) for v in metrics.values()]))
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    return new_state, metrics

  return train_step


def make_eval_step(players: Sequence[Player], max_images: int = 4) -> Callable:
  """Returns ``eval_step(state, batch, frozen) -> (terms, images)`` with ``ctx.train = False``.

  ``terms`` holds ``<player>/loss`` and ``<player>/<term>``; ``images`` the first ``max_images``
  examples of every image the players return, as ``<player>/<name>``. The state is not changed.
  """

  def eval_step(state: TrainState, batch: dict, frozen: dict):
    rng = jax.random.fold_in(state.rng, state.step)
    carry: dict = {}
    terms: dict = {}
    images: dict = {}
    for index, player in enumerate(players):
      ctx = LossContext(batch_stats=state.batch_stats, frozen=frozen, batch=batch,
                        rng=jax.random.fold_in(rng, index), step=state.step, weights=state.weights,
                        carry=carry, train=False)
      loss, aux = _call_player(player, state.params, ctx)
      carry = {**carry, **aux.carry}
      terms[f"{player.name}/loss"] = jnp.asarray(loss, jnp.float32)
      terms.update({f"{player.name}/{k}": jnp.asarray(v, jnp.float32) for k, v in aux.terms.items()})
      images.update({f"{player.name}/{k}": jnp.clip(v[:max_images].astype(jnp.float32), 0.0, 1.0)
                     for k, v in aux.images.items()})
    return terms, images

  return eval_step
