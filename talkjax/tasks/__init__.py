"""Task registry and the contract between a trainable system and the training engine.

A *task* is one module ``talkjax/tasks/<name>.py``, chosen by ``config.task``. It says what to train
on, which networks learn, and what each optimisation player minimises; the engine
(:mod:`talkjax.train`) owns everything else (meshes, jit, optimisers, checkpoints, logging, data
plumbing). Module-level functions, no base classes. Every function receives the resolved
``ml_collections.ConfigDict``.

Required functions:

``sampler(config) -> str``
  The data sampler (scheme) the task trains on: "wav2lip", "syncnet", "dck_pairs", "landmarks",
  "renderer", ... (``talkjax.train.data_source`` hands it to the data package). Tasks trained on
  ``config.data.kind == "random"`` may return any name.

``batch_spec(config) -> dict[str, jax.ShapeDtypeStruct]``
  The keys of one *example* and their shapes/dtypes without the batch axis (e.g. ``"face":
  (96, 96, 6) float32``). Batches reaching the loss functions have a leading batch axis. The random
  data source draws floats uniformly from [0, 1), uint8 from [0, 255] and other integers from {0, 1}.

``networks(config) -> dict[str, flax.linen.Module]``
  The trainable networks by name (e.g. ``{"generator": ..., "discriminator": ...}``). Every name
  needs optimiser settings in ``config.optim.<name>`` (see ``talkjax.train.state.make_optimizer``).

``init(config, nets, rng, batch) -> dict[str, variables]``
  Initial variables of every network (``{"params": ..., "batch_stats": ...}``, batch_stats only if
  the network has them) from an example batch (leading axis 1). Runs under ``jax.jit`` with known
  output shardings, so it must be a pure function of ``rng`` and ``batch``.

``players(config, nets) -> list[Player]``
  The optimisation players in step order (a GAN: generator then discriminator; a plain task: one
  player). Each player updates the networks it owns with their own optimisers; a later player sees
  the params already updated by earlier players of the same step, plus their ``Aux.carry``.

Optional functions:

``frozen(config) -> list[FrozenNet]``
  Pre-trained auxiliary networks (an expert SyncNet, VGG19, a flow estimator) loaded with
  ``talkjax.checkpoints.load_variables`` from the directory in ``config.<FrozenNet.field>``. Their
  variables reach the loss functions as ``ctx.frozen[name]`` and are never updated.

``evaluators(config) -> dict[str, factory]``
  Task-specific evaluators by type name. ``factory(ctx, **kwargs)`` gets a
  ``talkjax.train.evaluators.EvalContext`` and the evaluator's config entries (except ``type``) and
  returns an object whose ``run(train_state)`` yields ``(name, value)`` pairs; a value is a scalar,
  or a ``(N, H, W, C)`` image batch in [0, 1] logged as images. The engine's generic evaluators
  (``"loss"``) are always available. Configs pick evaluators by name: ``config.evals.<name>.type``.

``initial_weights(config) -> dict[str, float]``
  Loss weights at step 0 (default: ``config.loss_weights``). Weights live in the train state as
  float32 scalars: changing them never recompiles, and they are checkpointed with the run.

``update_weights(config, weights, step, metrics) -> dict[str, float]``
  Host-side schedule hook, called after each evaluation with the current weights (Python floats),
  the step and the evaluators' scalar results (``{"<eval name>/<metric>": value}``). E.g. Wav2Lip's
  sync weight switching from 0 to 0.03 once the expert's held-out sync loss drops below 0.75.
  Step-based schedules need no hook: loss functions get ``ctx.step`` and can compute them in-graph.

Loss functions: ``loss_fn(params, ctx) -> (scalar loss, Aux)``, where ``params`` holds *every*
network's params by name (gradients are taken only w.r.t. the player's own networks) and ``ctx`` is a
:class:`LossContext`. Call networks in training mode when ``ctx.train`` is true (batch statistics
updated, dropout on) and return the updated ``batch_stats`` of the networks the player owns in
``Aux.batch_stats``; with ``ctx.train`` false (evaluation), use running statistics.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any, Callable, NamedTuple

from talkjax.errors import ConfigError

PyTree = Any

_REQUIRED = ("sampler", "batch_spec", "networks", "init", "players")


class LossContext(NamedTuple):
  """Everything a loss function sees besides the params.

  Attributes:
    batch_stats: every network's batch statistics by network name (``{}`` for networks without).
    frozen: frozen auxiliary networks' variables by name (only those configured).
    batch: the global batch (dict of arrays with a leading batch axis).
    rng: a PRNG key unique to this step and player (``fold_in`` of the run's key).
    step: int32 scalar, the number of updates done before this one (0 at the first step).
    weights: loss weights by name (float32 scalars; see ``initial_weights``/``update_weights``).
    carry: ``Aux.carry`` of the earlier players of this step, merged (gradients stopped).
    train: True in the training step, False in evaluation.
  """
  batch_stats: dict
  frozen: dict
  batch: dict
  rng: Any
  step: Any
  weights: dict
  carry: dict
  train: bool


class Aux(NamedTuple):
  """What a loss function returns besides the scalar loss.

  Attributes:
    terms: named scalar loss terms (logged as ``<player>/<term>`` and checked for NaN/inf).
    batch_stats: updated batch statistics, only for networks the player owns.
    images: named image batches ``(B, H, W, C)`` in [0, 1] (C = 1 or 3), e.g. input/output/target;
      the engine logs the first few examples as a grid.
    carry: arrays handed to later players of the same step (e.g. the generator's output for the
      discriminator step, so the generator is not run twice).
  """
  terms: dict | None = None
  batch_stats: dict | None = None
  images: dict | None = None
  carry: dict | None = None


class Player(NamedTuple):
  """One optimisation player: a loss minimised over the params of ``networks``."""
  name: str
  networks: tuple[str, ...]
  loss_fn: Callable[[dict, LossContext], tuple[Any, Aux]]


class FrozenNet(NamedTuple):
  """A frozen, pre-trained auxiliary network read from a variables directory.

  Attributes:
    name: key in ``ctx.frozen``.
    field: dotted config field holding the directory (e.g. ``"frozen.syncnet"``).
    convert_kind: ``third_party.convert`` kind that produces the directory from the PyTorch
      checkpoint (used in error messages), or None.
    required: if False, an unset field (None) simply leaves the network out of ``ctx.frozen``.
    abstract: optional ``() -> variables tree of jax.ShapeDtypeStruct`` (e.g. from
      ``jax.eval_shape(module.init, ...)``); the loaded file is checked against it.
    how_to_make: extra hint for the error message when the file is missing.
  """
  name: str
  field: str
  convert_kind: str | None = None
  required: bool = True
  abstract: Callable[[], PyTree] | None = None
  how_to_make: str | None = None


def list_tasks() -> list[str]:
  """Names of the task modules in this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get(name: str) -> ModuleType:
  """Imports and checks the task module ``talkjax.tasks.<name>``.

  Raises:
    ConfigError: unknown task, or a module missing part of the contract.
  """
  available = list_tasks()
  if name not in available:
    raise ConfigError(f"config.task: unknown task {name!r}; available tasks: {', '.join(available)}")
  module = importlib.import_module(f"{__name__}.{name}")
  missing = [f for f in _REQUIRED if not callable(getattr(module, f, None))]
  if missing:
    raise ConfigError(f"task module {module.__name__} lacks required function(s): {', '.join(missing)}")
  return module
