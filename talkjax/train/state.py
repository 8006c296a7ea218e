"""The explicit training state, per-network optimisers and state initialisation."""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from talkjax.errors import ConfigError

PyTree = Any

# Defaults follow the reference implementations: Adam with lr 1e-4 (Wav2Lip, IP_LAP).
OPTIMIZER_DEFAULTS = dict(
    name="adam",           # adam | adamw | sgd
    lr=1e-4,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    momentum=0.9,          # sgd only
    weight_decay=0.0,      # decoupled (adamw) or added to the gradient (adam, sgd)
    grad_clip_norm=None,   # clip each network's gradient to this global norm
    warmup_steps=0,        # linear warm-up from 0
    decay="constant",      # constant | cosine (to 0 at total_steps) | step (x decay_rate every decay_steps)
    decay_steps=0,
    decay_rate=0.1,
)


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a pytree, saved whole in checkpoints.

  Attributes:
    step: int32 scalar, number of completed updates.
    rng: the run's base PRNG key (raw uint32 key data); step ``i`` uses ``fold_in(rng, i)``.
    params: trainable params by network name.
    batch_stats: batch statistics by network name (``{}`` for networks without).
    opt_state: optimiser state by network name.
    weights: loss weights by name (float32 scalars), changed by schedules without recompiling.
  """
  step: jax.Array
  rng: jax.Array
  params: dict
  batch_stats: dict
  opt_state: dict
  weights: dict


def _optimizer_settings(config: ml_collections.ConfigDict, network: str) -> dict:
  optim = config.get("optim")
  if optim is None or network not in optim:
    have = ", ".join(sorted(optim.keys())) if optim is not None else "none"
    raise ConfigError(f"config.optim.{network} is missing: every trainable network needs optimiser "
                      f"settings (have: {have})")
  settings = dict(OPTIMIZER_DEFAULTS)
  given = optim[network]
  given = given.to_dict() if isinstance(given, ml_collections.ConfigDict) else dict(given)
  unknown = sorted(set(given) - set(settings))
  if unknown:
    raise ConfigError(f"config.optim.{network}: unknown field(s) {', '.join(unknown)}; valid fields: "
                      f"{', '.join(sorted(settings))}")
  settings.update(given)
  return settings


def make_schedule(settings: dict, total_steps: int, network: str = "?") -> optax.Schedule:
  lr, warmup = float(settings["lr"]), int(settings["warmup_steps"])
  decay = settings["decay"]
  if decay == "constant":
    main = optax.constant_schedule(lr)
  elif decay == "cosine":
    main = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup))
  elif decay == "step":
    if int(settings["decay_steps"]) <= 0:
      raise ConfigError(f"config.optim.{network}.decay_steps must be > 0 for decay='step'")
    main = optax.exponential_decay(lr, int(settings["decay_steps"]), float(settings["decay_rate"]),
                                   staircase=True)
  else:
    raise ConfigError(f"config.optim.{network}.decay: unknown {decay!r}; valid: constant, cosine, step")
  if warmup > 0:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def make_optimizer(config: ml_collections.ConfigDict, network: str,
                   total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optax optimiser of one network from ``config.optim.<network>`` (fields: OPTIMIZER_DEFAULTS).

  Returns the transformation and its learning-rate schedule (for logging).
  """
  s = _optimizer_settings(config, network)
  schedule = make_schedule(s, total_steps, network)
  chain = []
  if s["grad_clip_norm"] is not None:
    chain.append(optax.clip_by_global_norm(float(s["grad_clip_norm"])))
  name, wd = s["name"], float(s["weight_decay"])
  if name == "adam":
    if wd:
      chain.append(optax.add_decayed_weights(wd))
    chain.append(optax.adam(schedule, b1=float(s["b1"]), b2=float(s["b2"]), eps=float(s["eps"])))
  elif name == "adamw":
    chain.append(optax.adamw(schedule, b1=float(s["b1"]), b2=float(s["b2"]), eps=float(s["eps"]),
                             weight_decay=wd))
  elif name == "sgd":
    if wd:
      chain.append(optax.add_decayed_weights(wd))
    chain.append(optax.sgd(schedule, momentum=float(s["momentum"]) or None))
  else:
    raise ConfigError(f"config.optim.{network}.name: unknown optimiser {name!r}; valid: adam, adamw, sgd")
  return optax.chain(*chain), schedule


def initial_weights(task: Any, config: ml_collections.ConfigDict) -> dict[str, float]:
  """Loss weights at step 0: the task's ``initial_weights`` hook or ``config.loss_weights``."""
  if hasattr(task, "initial_weights"):
    weights = task.initial_weights(config)
  else:
    weights = config.get("loss_weights") or {}
    weights = weights.to_dict() if isinstance(weights, ml_collections.ConfigDict) else dict(weights)
  for name, value in weights.items():
    if not isinstance(value, (int, float)) or isinstance(value, bool):
      raise ConfigError(f"loss weight {name!r} must be a number, got {value!r}")
  return {k: float(v) for k, v in weights.items()}


def example_batch(spec: dict[str, jax.ShapeDtypeStruct], batch_size: int = 1) -> dict[str, jax.Array]:
  """Zeros shaped like a batch of ``spec`` (for initialisation)."""
  return {k: jnp.zeros((batch_size,) + tuple(v.shape), v.dtype) for k, v in spec.items()}


def make_init_fn(task: Any, config: ml_collections.ConfigDict, nets: dict, txs: dict,
                 spec: dict[str, jax.ShapeDtypeStruct], weights: dict[str, float],
                 seed: int) -> Callable[[], TrainState]:
  """A pure function building the step-0 state (meant for ``jax.jit(..., out_shardings=...)``)."""

  def init() -> TrainState:
    rng = jax.random.PRNGKey(seed)
    init_rng, base_rng = jax.random.split(rng)
    variables = task.init(config, nets, init_rng, example_batch(spec))
    if set(variables) != set(nets):
      raise ValueError(f"task {config.task}: init returned variables for {sorted(variables)}, "
                       f"networks are {sorted(nets)}")
    params = {n: variables[n]["params"] for n in nets}
    batch_stats = {n: variables[n].get("batch_stats", {}) for n in nets}
    opt_state = {n: txs[n].init(params[n]) for n in nets}
    return TrainState(step=jnp.zeros((), jnp.int32), rng=base_rng, params=params,
                      batch_stats=batch_stats, opt_state=opt_state,
                      weights={k: jnp.asarray(v, jnp.float32) for k, v in weights.items()})

  return init
