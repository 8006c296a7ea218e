"""A tiny but real GAN task: the engine's own test bed and the template for real tasks.

The generator learns a fixed image operator, ``target = blur3x3(source) @ MIX`` (a 3x3 box blur
followed by a colour mix), from random ``source`` images; a discriminator judges real targets against
generated ones (non-saturating GAN loss, instance noise from the step's rng). It exercises everything
a talking-face task needs: two players with their own optimisers, batch statistics (the generator
has a BatchNorm), the generator's output carried to the discriminator step, an optional frozen
feature network (a "perceptual" term), images to log, a task evaluator (PSNR) and a loss-weight
schedule driven by evaluation (the GAN weight switches on once the held-out L1 is low enough, like
Wav2Lip's sync weight). ``config.debug.nan_at_step`` makes the L1 term NaN at that step (tests).

Config fields read here: ``model.image_size``, ``model.features``, ``model.d_noise``,
``loss_weights.{l1,gan,features}``, ``gan_start.{metric,below}``, ``frozen.features``,
``debug.nan_at_step``.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax import checkpoints
from talkjax.tasks import Aux, FrozenNet, LossContext, Player

# Rows sum to 1, so targets stay in [0, 1] (the generator ends in a sigmoid).
MIX = np.array([[0.6, 0.3, 0.1], [0.1, 0.6, 0.3], [0.3, 0.1, 0.6]], np.float32)


def make_target(source: jax.Array) -> jax.Array:
  """The operator the generator must learn: 3x3 box blur (edge padding), then ``x @ MIX``."""
  padded = jnp.pad(source, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  h, w = source.shape[1:3]
  blurred = sum(padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0
  return blurred @ MIX


class Generator(nn.Module):
  features: int = 8

  @nn.compact
  def __call__(self, x, train: bool):
    # No bias before BatchNorm: its gradient is exactly zero in theory, and Adam would turn the
    # rounding noise into +-lr steps that differ from one device count to another.
    x = nn.Conv(self.features, (3, 3), use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(x)
    return nn.sigmoid(nn.Conv(3, (3, 3))(x))


class Discriminator(nn.Module):
  features: int = 8

  @nn.compact
  def __call__(self, x):
    x = nn.leaky_relu(nn.Conv(self.features, (3, 3), strides=2)(x), 0.2)
    x = nn.leaky_relu(nn.Conv(self.features, (3, 3), strides=2)(x), 0.2)
    return nn.Dense(1)(x.mean(axis=(1, 2)))[:, 0]


class FeatureNet(nn.Module):
  """The frozen "perceptual" network of the optional feature-matching term."""

  @nn.compact
  def __call__(self, x):
    return nn.relu(nn.Conv(4, (3, 3))(x))


def sampler(config) -> str:
  del config
  return "toy"


def batch_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
  s = config.model.image_size
  return {"source": jax.ShapeDtypeStruct((s, s, 3), jnp.float32)}


def networks(config) -> dict[str, nn.Module]:
  features = config.model.features
  return {"generator": Generator(features), "discriminator": Discriminator(features)}


def init(config, nets, rng, batch):
  """LeCun-uniform kernels, zero biases, unit scales; all random values from one draw.

  XLA compiles every random call of an init separately (flax's default init of these five layers
  takes ~10x longer to compile on CPU than the whole training step), so the toy draws once and
  slices; real tasks keep their reference initialisers.
  """
  del config
  x = batch["source"]
  abstract = {"generator": jax.eval_shape(functools.partial(nets["generator"].init, train=False), rng, x),
              "discriminator": jax.eval_shape(nets["discriminator"].init, rng, x)}
  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
  draw = jax.random.uniform(rng, (sum(math.prod(leaf.shape) for _, leaf in leaves),), minval=-1.0, maxval=1.0)
  values, offset = [], 0
  for path, leaf in leaves:
    name, size = jax.tree_util.keystr(path), math.prod(leaf.shape)
    if name.endswith("['kernel']"):
      fan_in = math.prod(leaf.shape[:-1])
      values.append(draw[offset:offset + size].reshape(leaf.shape) * math.sqrt(3.0 / fan_in))
    elif name.endswith("['scale']") or name.endswith("['var']"):
      values.append(jnp.ones(leaf.shape, leaf.dtype))
    else:
      values.append(jnp.zeros(leaf.shape, leaf.dtype))
    offset += size
  return jax.tree_util.tree_unflatten(treedef, values)


def _feature_abstract():
  return jax.eval_shape(FeatureNet().init, jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))


def save_feature_net(path: str, seed: int = 0, overwrite: bool = False) -> str:
  """Writes a random FeatureNet as a variables directory (stands in for a converted VGG19)."""
  variables = FeatureNet().init(jax.random.PRNGKey(seed), jnp.zeros((1, 8, 8, 3)))
  return checkpoints.save_variables(path, variables, overwrite=overwrite)


def frozen(config) -> list[FrozenNet]:
  del config
  return [FrozenNet(name="features", field="frozen.features", required=False, abstract=_feature_abstract,
                    how_to_make="write one with talkjax.tasks.toy.save_feature_net(DIR)")]


def initial_weights(config) -> dict[str, float]:
  w = config.loss_weights
  gan = 0.0 if config.gan_start.below is not None else float(w.gan)
  return {"l1": float(w.l1), "gan": gan, "features": float(w.features)}


def update_weights(config, weights, step, metrics):
  """Switches the GAN weight on once ``metrics[gan_start.metric] < gan_start.below``."""
  del step
  below = config.gan_start.below
  value = metrics.get(config.gan_start.metric)
  if below is not None and weights["gan"] == 0.0 and value is not None and value < below:
    weights["gan"] = float(config.loss_weights.gan)
  return weights


def players(config, nets) -> list[Player]:
  gen, disc = nets["generator"], nets["discriminator"]
  noise, nan_at = float(config.model.d_noise), int(config.debug.nan_at_step)

  def d_logits(params, x, rng):
    # Instance noise: the step's rng at work (and a classic GAN stabiliser).
    return disc.apply({"params": params["discriminator"]}, x + noise * jax.random.normal(rng, x.shape))

  def generator_loss(params, ctx: LossContext):
    source = ctx.batch["source"]
    target = make_target(source)
    variables = {"params": params["generator"], "batch_stats": ctx.batch_stats["generator"]}
    if ctx.train:
      fake, updates = gen.apply(variables, source, train=True, mutable=["batch_stats"])
      new_stats = {"generator": updates["batch_stats"]}
    else:
      fake, new_stats = gen.apply(variables, source, train=False), {}
    l1 = jnp.mean(jnp.abs(fake - target))
    if nan_at > 0:
      l1 = l1 + jnp.where(ctx.step + 1 == nan_at, jnp.nan, 0.0)
    gan = jnp.mean(jax.nn.softplus(-d_logits(params, fake, ctx.rng)))
    terms = {"l1": l1, "gan": gan}
    loss = ctx.weights["l1"] * l1 + ctx.weights["gan"] * gan
    if "features" in ctx.frozen:
      feat = functools.partial(FeatureNet().apply, ctx.frozen["features"])
      terms["features"] = jnp.mean(jnp.abs(feat(fake) - feat(target)))
      loss = loss + ctx.weights["features"] * terms["features"]
    return loss, Aux(terms=terms, batch_stats=new_stats, carry={"fake": fake},
                     images={"input": source, "output": fake, "target": target})

  def discriminator_loss(params, ctx: LossContext):
    real, fake = make_target(ctx.batch["source"]), ctx.carry["fake"]
    r_rng, f_rng = jax.random.split(ctx.rng)
    real_term = jnp.mean(jax.nn.softplus(-d_logits(params, real, r_rng)))
    fake_term = jnp.mean(jax.nn.softplus(d_logits(params, fake, f_rng)))
    return real_term + fake_term, Aux(terms={"real": real_term, "fake": fake_term})

  return [Player("generator", ("generator",), generator_loss),
          Player("discriminator", ("discriminator",), discriminator_loss)]


class PsnrEvaluator:
  """Type ``"psnr"``: PSNR (dB) of the generator's output against the target on held-out batches,
  and the first few output frames."""

  def __init__(self, ctx, num_batches: int = 2, num_frames: int = 4):
    self.ctx, self.num_batches, self.num_frames = ctx, num_batches, num_frames
    gen = ctx.nets["generator"]

    def outputs(state, batch, frozen):
      del frozen
      source = batch["source"]
      fake = gen.apply({"params": state.params["generator"], "batch_stats": state.batch_stats["generator"]},
                       source, train=False)
      mse = jnp.mean((fake - make_target(source)) ** 2, axis=(1, 2, 3))
      return jnp.mean(10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10))), fake[:num_frames]

    self._fn = ctx.compile(outputs)

  def run(self, train_state):
    values, frames = [], None
    for batch in self.ctx.batches(self.num_batches):
      psnr, out = jax.device_get(self._fn(train_state, batch, self.ctx.frozen))
      values.append(float(psnr))
      frames = out if frames is None else frames
    yield "psnr", float(np.mean(values))
    yield "frames", np.asarray(frames)


def evaluators(config):
  del config
  return {"psnr": PsnrEvaluator}
