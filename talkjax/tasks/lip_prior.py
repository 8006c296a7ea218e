"""Task ``lip_prior``: paper 004's alignment + rendering model (``talkjax.models.lip_prior_renderer``).

Wu et al., "Talking Face Generation with Lip and Identity Priors" (CAVW 2025), section 3.2. The task is
the landmark-to-face renderer family's (:mod:`talkjax.tasks.renderer`) with this model plugged in
(``renderer.register_model("lip_prior_renderer", ...)``): the same ``renderer`` sampler, VGG19 (or the
random-feature fallback), pix2pixHD discriminator, held-out ``render_clips`` evaluator and two-stage
generation; what is specific lives here:

- References. The sampler draws ``data.num_references`` other frames of the clip. In training the
  alignment model sees the first ``model.train_align_references`` of them (the paper: ref-N = 3 in
  training) and the lip module the lower halves of ``model.num_lip_references`` of them (the paper: 5
  lip references), chosen by ``lip_prior_renderer.lip_references``. At evaluation and inference the
  alignment model takes every reference it is given (the inference rule picks them by lip openness)
  and the lip references are spread over them the same way.
- Loss (section 3.2.3): ``L = 2.5 L_w + 4 L_r + 1000 L_s + 0.25 L_g + 2.5 L_f`` assembled from
  :mod:`talkjax.tasks.renderer`'s parts (``warp_loss`` on the aggregated warped reference,
  ``generation_terms``: multi-scale VGG L1, Gram style, LSGAN, feature matching). Without the alignment
  model (ablation ``no_ali``) there is no warped image and no ``L_w``; its warm-up must then be 0.
- Warm-up: as IP_LAP (the base the paper follows), the warp loss alone for ``warmup_steps`` steps.
- Initialisation: :func:`talkjax.models.lip_prior_renderer.init_variables` (one random draw; Flax's
  per-leaf initialisers take minutes to compile on a CPU).

The held-out evaluator (``render_clips``: openness correlation, seam, PSNR/SSIM) and the generation
hook (``inference``: ``python -m experiments.generate --config=lip_prior_renderer --workdir=DIR
--landmark_workdir=DIR2 ...``) are the renderer family's; they call the model with the references the
inference rule picks, and the model spreads its lip references over them.

Config fields read here (besides :mod:`talkjax.tasks.renderer`'s): ``model.{width, features,
spade_hidden, fusion_blocks, num_lip_references, train_align_references, align, lip, audio,
audio_width_divisor, attention_scaled, attention_gamma_init, warp}``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from talkjax.errors import ConfigError
from talkjax.models import lip_prior_renderer as lpr
from talkjax.models.iplap_renderer import mask_lower_half_hard
from talkjax.tasks import Aux, LossContext, Player
from talkjax.tasks import renderer as base

MODEL_NAME = "lip_prior_renderer"

# The renderer family's parts used unchanged.
sampler = base.sampler
batch_spec = base.batch_spec
frozen = base.frozen
evaluators = base.evaluators
inference = base.inference   # Two-stage generation (talkjax.generate.two_stage) builds the model by name.
TWO_STAGE = base.TWO_STAGE


def build_model(config) -> lpr.LipPriorRenderer:
  """The renderer with the widths and switches of ``config.model``."""
  m = config.model
  if m.name != MODEL_NAME:
    raise ConfigError(f"config.model.name: task 'lip_prior' trains {MODEL_NAME!r}, got {m.name!r}")
  return lpr.LipPriorRenderer(
      width=int(m.width), features=int(m.features), spade_hidden=int(m.spade_hidden),
      fusion_blocks=int(m.fusion_blocks), num_lip_references=int(m.num_lip_references), align=bool(m.align),
      lip=bool(m.lip), audio=bool(m.audio), audio_width_divisor=int(m.audio_width_divisor),
      attention_scaled=bool(m.attention_scaled), attention_gamma_init=float(m.attention_gamma_init),
      warp=str(m.warp))


def model_inputs(model: lpr.LipPriorRenderer, x: base.RenderInputs, align_references: int = 0
                 ) -> tuple[tuple, dict]:
  """``(args, kwargs)`` of ``model.apply`` for a batch: the alignment references (the first
  ``align_references`` if > 0, else all) and the lip references spread over all of them."""
  lip_images, lip_sketches = lpr.lip_references(x.references, x.reference_sketches, model.num_lip_references)
  refs, ref_sketches = x.references, x.reference_sketches
  if align_references > 0:
    refs, ref_sketches = refs[:, :align_references], ref_sketches[:, :align_references]
  args = (x.target, x.sketches, refs, ref_sketches, x.mel)
  return args, dict(lip_images=lip_images, lip_sketches=lip_sketches)


def forward(model: lpr.LipPriorRenderer, variables: dict, x: base.RenderInputs, train: bool,
            align_references: int = 0):
  """Runs the renderer on a batch; returns ``(renderer.RenderStep, new batch_stats or None)``.

  ``align_references``: see :func:`model_inputs` (training uses ``model.train_align_references``).
  """
  args, kwargs = model_inputs(model, x, align_references)
  if train:
    out, updates = model.apply(variables, *args, train=True, mutable=["batch_stats"], **kwargs)
    stats = updates["batch_stats"]
  else:
    out, stats = model.apply(variables, *args, train=False, **kwargs), None
  images = {"guide": mask_lower_half_hard(x.target), "sketch": x.sketches[:, x.sketches.shape[1] // 2],
            "reference": x.references[:, 0], "lip_reference": kwargs["lip_images"][:, 0]}
  warped = None
  if out.aligned is not None:
    warped = out.aligned.image
    images["warped"] = warped
  return base.RenderStep(image=out.image, warped=warped, images=images), stats


# Lets the renderer family's helpers (build_model, make_render_fn users, two-stage generation) find it.
base.register_model(MODEL_NAME, base.ModelEntry(build_model, forward))


# --------------------------------------------------------------------------------------------------
# Task contract


def networks(config):
  nets = {"generator": build_model(config)}
  if config.gan.enabled:
    nets["discriminator"] = base.networks(config)["discriminator"]
  return nets


def init(config, nets, rng, batch):
  """Generator variables by ``lip_prior_renderer.init_variables`` (one random draw; Flax's per-leaf
  initialisers take minutes to compile on a CPU), the discriminator by its own ``init``."""
  g_rng, d_rng = jax.random.split(rng)
  x = base.to_inputs(batch)
  args, kwargs = model_inputs(nets["generator"], x, _check_references(config))
  out = {"generator": lpr.init_variables(nets["generator"], g_rng, *args, **kwargs)}
  if "discriminator" in nets:
    out["discriminator"] = nets["discriminator"].init(d_rng, x.target)
  return out


def initial_weights(config) -> dict[str, float]:
  weights = base.initial_weights(config)
  if not config.model.align:
    if int(config.warmup_steps) > 0:
      raise ConfigError("config.warmup_steps trains the warp loss alone, but model.align is False (ablation "
                        "no_ali: no alignment model, no warp loss); set warmup_steps to 0")
    weights["warp"] = 0.0
  return weights


def _check_references(config) -> int:
  n, a = int(config.data.num_references), int(config.model.train_align_references)
  if a < 0 or a > n:
    raise ConfigError(f"config.model.train_align_references ({a}) must be in [0, data.num_references = {n}] "
                      "(0: all)")
  return a


def generator_loss(config, nets: dict, params: dict, ctx: LossContext):
  """The generator's loss: ``renderer``'s assembly with this model's reference split and no warp term
  without the alignment model."""
  model = nets["generator"]
  x = base.to_inputs(ctx.batch)
  variables = {"params": params["generator"], "batch_stats": ctx.batch_stats["generator"]}
  step, stats = forward(model, variables, x, ctx.train, align_references=_check_references(config))
  feats = base.features_fn(config, ctx)
  terms = {}
  if step.warped is not None:
    terms["warp"] = base.warp_loss(feats, step.warped, x.target, int(config.perceptual.num_scales))

  def gen(_):
    return base.generation_terms(config, feats, step, x.target, params, nets)

  warmup = int(config.warmup_steps)
  if ctx.train and warmup > 0 and step.warped is not None:
    names = ("perceptual", "style", "l1") + (("gan", "feature_matching") if "discriminator" in nets else ())
    zeros = lambda _: {k: jnp.zeros((), jnp.float32) for k in names}  # noqa: E731
    terms.update(jax.lax.cond(ctx.step >= warmup, gen, zeros, None))
  else:
    terms.update(gen(None))
  loss = base.weighted_total(terms, ctx.weights)
  images = {"target": x.target, "output": step.image, **step.images}
  new_stats = {"generator": stats} if ctx.train else {}
  return loss, Aux(terms=terms, batch_stats=new_stats, images=images, carry={"fake": step.image})


def players(config, nets) -> list[Player]:
  _check_references(config)
  out = [Player("generator", ("generator",), functools.partial(generator_loss, config, nets))]
  if "discriminator" in nets:
    out.append(Player("discriminator", ("discriminator",),
                      functools.partial(base.discriminator_loss, config, nets)))
  return out
