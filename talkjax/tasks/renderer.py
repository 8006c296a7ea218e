"""Task ``renderer``: landmark-to-face renderers trained on the ``renderer`` sampler.

``config.model.name`` picks the network (:data:`MODELS`): ``iplap_renderer`` (IP_LAP's renderer,
``talkjax.models.iplap_renderer``) or ``gaussian_renderer`` (paper 000's Gaussian-blur-guided one,
``talkjax.models.gaussian_renderer``; ``model.mask_blur=False`` is its ``no_gs`` ablation). Paper 004's
``lip_prior_renderer`` is meant to join through :func:`register_model` plus its own ``forward``.

Networks: ``generator`` (the renderer) and, when ``gan.enabled``, ``discriminator`` (pix2pixHD's
multi-scale PatchGAN, instance norm, as IP_LAP). Frozen: ``vgg19`` for the perceptual losses.

Losses: the reusable assembly every renderer of this family shares (IP_LAP ``train_video_renderer.py``,
paper 000 eq. L = lw Lw + lr Lr + ls Ls, paper 004 section 3.2.3):

=====================  ==========================================================  =============
weight name            term                                                        IP_LAP / 000
=====================  ==========================================================  =============
``warp``               multi-scale VGG L1 between the aggregated warped reference  2.5 / 2.5
                       image and the target (``warp_loss``)
``perceptual``         multi-scale VGG L1, generated vs target                     4 / 4
``style``              Gram-matrix L1 at full scale, generated vs target           1000 / 1000
                       (IP_LAP: 4 x 250)
``gan``                LSGAN generator term of the multi-scale D                   0.25 / -
``feature_matching``   pix2pixHD feature matching (per layer 4/(n+1), per D 1/n)   2.5 / -
``l1``                 pixel L1, generated vs target (not in the papers)            0 / 0
=====================  ==========================================================  =============

Warm-up (IP_LAP trains the warp loss alone for its first 25 epochs): for ``warmup_steps`` steps the
generator's loss is ``warp * L_warp`` only; the other terms are skipped (``lax.cond``: no VGG pass on
the generated face, logged as 0) and the translation module gets no gradient. The discriminator
trains throughout, as in IP_LAP. Held-out evaluation always computes every term.

To reuse the assembly for another renderer: write ``forward(model, variables, inputs, train) ->
(RenderStep, new_batch_stats)`` and register it with :func:`register_model`; :func:`generator_loss`
and :func:`discriminator_loss` do the rest (see :class:`RenderStep`, :class:`RenderInputs`).

VGG19: ``frozen.vgg19`` names a converted torchvision VGG19 variables directory (``python -m
third_party.convert --kind=vgg19 --input=vgg19-dcbb9e9d.pth --output=DIR``). No pretrained weights
exist on the development machine, so when it is None the task uses a *random-feature perceptual
loss*: a fixed VGG19 with He-normal random weights (seed ``perceptual.random_init_seed``), written once
to ``perceptual.random_init_dir`` and loaded like a converted one. Random multi-layer conv features
still measure local structure at several scales (Ulyanov et al. 2018's deep image prior and He et al.
2016's random-weight texture synthesis rely on the same property); the figures in BUILD_NOTES.md say
which network each run used.

Evaluator ``render_clips`` (:class:`RenderClipsEvaluator`): held-out speakers, whole frame ranges of
clips, ground-truth sketches, references chosen by the inference rule; yields lip-sync (openness
correlation), seam, PSNR/SSIM figures and sample images.

Config fields read here: ``model.*`` (see :func:`build_model`), ``data.image_size``,
``data.num_references``, ``loss_weights.*``, ``warmup_steps``, ``gan.{enabled, ndf, n_layers, num_d}``,
``perceptual.{layers, num_scales, random_init_dir, random_init_seed}``, ``frozen.vgg19``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, NamedTuple

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax import checkpoints, fileio, losses
from talkjax import landmarks as lm
from talkjax.errors import ConfigError
from talkjax.models import pix2pixhd
from talkjax.models import vgg19 as vgg19_lib
from talkjax.tasks import Aux, FrozenNet, LossContext, Player

NUM_SKETCHES = 5            # The renderer sampler's window: frames t-2 .. t+2 (2k + 1, k = 2).
MEL_OFFSET = -2             # IP_LAP centres the mel window on the target frame.
IMAGE_KEYS = ("target", "sketches", "references", "reference_sketches")


# --------------------------------------------------------------------------------------------------
# Models


class RenderInputs(NamedTuple):
  """One batch as float32 arrays in [0, 1] (mel in [-4, 4]); shapes as the renderer sampler's."""
  target: jax.Array             # (B, S, S, 3)
  sketches: jax.Array           # (B, 5, S, S, 3)
  references: jax.Array         # (B, N, S, S, 3)
  reference_sketches: jax.Array  # (B, N, S, S, 3)
  mel: jax.Array                # (B, 80, 16, 1)


class RenderStep(NamedTuple):
  """What a renderer's ``forward`` gives the loss assembly.

  Attributes:
    image: ``(B, S, S, 3)`` generated face in [0, 1].
    warped: ``(B, S, S, 3)`` aggregated warped reference image (the warp loss's input), or None.
    images: extra images to log (name -> (B, S, S, C) in [0, 1]).
  """
  image: jax.Array
  warped: jax.Array | None
  images: dict


def _renderer_forward(model: nn.Module, variables: dict, x: RenderInputs, train: bool):
  """``forward`` of IPLAPRenderer-like modules (their ``__call__`` and ``guiding_input``)."""
  args = (x.target, x.sketches, x.references, x.reference_sketches, x.mel)
  if train:
    out, updates = model.apply(variables, *args, train=True, mutable=["batch_stats"])
    stats = updates["batch_stats"]
  else:
    out, stats = model.apply(variables, *args, train=False), None
  guide = model.guiding_input(x.target, x.sketches)[..., :3]
  images = {"guide": guide, "sketch": x.sketches[:, NUM_SKETCHES // 2], "reference": x.references[:, 0],
            "warped": out.warped.image}
  return RenderStep(image=out.image, warped=out.warped.image, images=images), stats


def _iplap_model(config):
  from talkjax.models import iplap_renderer  # pylint: disable=g-import-not-at-top
  m = config.model
  return iplap_renderer.IPLAPRenderer(width=m.width, features=m.features, spade_hidden=m.spade_hidden,
                                      adain_hidden=m.adain_hidden, audio_width_divisor=m.audio_width_divisor,
                                      warp=m.warp)


def _gaussian_model(config):
  from talkjax.models import gaussian_renderer  # pylint: disable=g-import-not-at-top
  m = config.model
  return gaussian_renderer.GaussianRenderer(
      width=m.width, features=m.features, spade_hidden=m.spade_hidden, adain_hidden=m.adain_hidden,
      audio_width_divisor=m.audio_width_divisor, warp=m.warp, mask_blur=bool(m.mask_blur),
      blur_kernel=int(m.blur_kernel), blur_sigma=float(m.blur_sigma))


@dataclasses.dataclass(frozen=True)
class ModelEntry:
  """A renderer this task can train: ``build(config) -> module`` and its ``forward``."""
  build: Callable[[Any], nn.Module]
  forward: Callable[[nn.Module, dict, RenderInputs, bool], tuple[RenderStep, Any]]


MODELS: dict[str, ModelEntry] = {
    "iplap_renderer": ModelEntry(_iplap_model, _renderer_forward),
    "gaussian_renderer": ModelEntry(_gaussian_model, _renderer_forward),
}


def register_model(name: str, entry: ModelEntry) -> None:
  """Adds a renderer (e.g. paper 004's ``lip_prior_renderer``) to :data:`MODELS`."""
  MODELS[name] = entry


def model_entry(config) -> ModelEntry:
  name = config.model.name
  if name not in MODELS:
    raise ConfigError(f"config.model.name: unknown renderer {name!r}; valid: {', '.join(sorted(MODELS))}")
  return MODELS[name]


def build_model(config) -> nn.Module:
  """The renderer ``config.model.name`` names, with the widths of ``config.model``."""
  return model_entry(config).build(config)


def to_inputs(batch: dict) -> RenderInputs:
  """A sampler batch (uint8 images) -> float32 :class:`RenderInputs`."""
  def img(key):
    x = batch[key]
    return x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
  return RenderInputs(target=img("target"), sketches=img("sketches"), references=img("references"),
                      reference_sketches=img("reference_sketches"), mel=batch["mel"].astype(jnp.float32))


# --------------------------------------------------------------------------------------------------
# Task contract


def sampler(config) -> str:
  del config
  return "renderer"


def batch_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
  s, n = int(config.data.image_size), int(config.data.num_references)
  if s % 2:
    raise ConfigError(f"config.data.image_size must be even (the renderers work at S and S/2), got {s}")
  u8 = jnp.uint8
  return {"target": jax.ShapeDtypeStruct((s, s, 3), u8),
          "sketches": jax.ShapeDtypeStruct((NUM_SKETCHES, s, s, 3), u8),
          "references": jax.ShapeDtypeStruct((n, s, s, 3), u8),
          "reference_sketches": jax.ShapeDtypeStruct((n, s, s, 3), u8),
          "mel": jax.ShapeDtypeStruct((80, 16, 1), jnp.float32)}


def _discriminator(config) -> nn.Module:
  g = config.gan
  return pix2pixhd.MultiscaleDiscriminator(in_channels=3, ndf=int(g.ndf), n_layers=int(g.n_layers),
                                           num_d=int(g.num_d), norm="instance")


def networks(config) -> dict[str, nn.Module]:
  nets = {"generator": build_model(config)}
  if config.gan.enabled:
    nets["discriminator"] = _discriminator(config)
  return nets


def _rbg_key(rng: jax.Array) -> jax.Array:
  """An ``"rbg"`` key from the engine's threefry key: XLA:CPU compiles threefry bits once per
  parameter tensor (the renderer has ~200), RngBitGenerator once; same distributions."""
  data = jax.random.key_data(rng) if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) else rng
  data = jnp.concatenate([jnp.asarray(data, jnp.uint32).reshape(-1), jnp.asarray([0x52, 0x44], jnp.uint32)])
  return jax.random.wrap_key_data(data[:4], impl="rbg")


def init(config, nets, rng, batch):
  del config
  g_rng, d_rng = jax.random.split(_rbg_key(rng))
  x = to_inputs(batch)
  out = {"generator": nets["generator"].init(g_rng, x.target, x.sketches, x.references, x.reference_sketches,
                                             x.mel, train=False)}
  if "discriminator" in nets:
    out["discriminator"] = nets["discriminator"].init(d_rng, x.target)
  return out


def initial_weights(config) -> dict[str, float]:
  w = config.loss_weights
  names = ("warp", "perceptual", "style", "gan", "feature_matching", "l1")
  out = {k: float(w[k]) for k in names}
  if not config.gan.enabled and (out["gan"] or out["feature_matching"]):
    raise ConfigError("loss_weights.gan / feature_matching are non-zero but gan.enabled is False")
  return out


# --------------------------------------------------------------------------------------------------
# Perceptual network


def _vgg(config) -> vgg19_lib.VGG19Features:
  return vgg19_lib.VGG19Features(input_range="0_1", layers=tuple(config.perceptual.layers))


def _vgg_abstract():
  full = vgg19_lib.VGG19Features(input_range="0_1", layers=(vgg19_lib.RELU_NAMES[-1],))
  return jax.eval_shape(full.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))


def random_vgg19_variables(seed: int = 0) -> dict:
  """A VGG19 (conv1_1 .. conv5_1) with He-normal weights and zero biases (NumPy, float32).

  He scaling keeps the activation scale through the ReLU stack, so every layer of the random-feature
  perceptual loss contributes at a comparable magnitude (Flax's default LeCun init would shrink
  relu5_1 by ~2^-6).
  """
  rng = np.random.default_rng([seed, 19])
  params, cin = {}, 3
  for name, cout in vgg19_lib.conv_channels().items():
    std = np.sqrt(2.0 / (9 * cin))
    params[name] = {"kernel": (rng.standard_normal((3, 3, cin, cout)) * std).astype(np.float32),
                    "bias": np.zeros((cout,), np.float32)}
    cin = cout
  return {"params": params}


def ensure_random_vgg19(directory: str, seed: int = 0) -> str:
  """Writes :func:`random_vgg19_variables` to ``directory`` unless it is there (locked, atomic)."""
  directory = os.path.abspath(os.path.expanduser(directory))
  if os.path.isdir(directory):
    return directory
  os.makedirs(os.path.dirname(directory), exist_ok=True)
  with fileio.file_lock(directory + ".lock"):
    if not os.path.isdir(directory):
      logging.info("Writing a random-feature VGG19 (He init, seed %d) to %s", seed, directory)
      checkpoints.save_variables(directory, random_vgg19_variables(seed))
  return directory


def frozen(config) -> list[FrozenNet]:
  if config.frozen.vgg19 is not None:
    return [FrozenNet(name="vgg19", field="frozen.vgg19", convert_kind="vgg19", abstract=_vgg_abstract)]
  if config.perceptual.random_init_dir is None:
    raise ConfigError("config.frozen.vgg19 and config.perceptual.random_init_dir are both None: the "
                      "perceptual losses need a VGG19 (convert torchvision's with `python -m "
                      "third_party.convert --kind=vgg19 ...`) or a directory for the random-feature fallback")
  ensure_random_vgg19(config.perceptual.random_init_dir, int(config.perceptual.random_init_seed))
  return [FrozenNet(name="vgg19", field="perceptual.random_init_dir", abstract=_vgg_abstract,
                    how_to_make="it is written automatically by talkjax.tasks.renderer.ensure_random_vgg19")]


def features_fn(config, ctx: LossContext) -> Callable[[jax.Array], dict]:
  """Images (N, H, W, 3) RGB [0, 1] -> VGG feature dict, with the frozen VGG19 of ``ctx``."""
  vgg = _vgg(config)
  variables = ctx.frozen["vgg19"]
  return lambda images: vgg.apply(variables, images)


# --------------------------------------------------------------------------------------------------
# Reusable loss assembly


def perceptual_and_style(features: Callable, pred: jax.Array, target: jax.Array, num_scales: int,
                         with_style: bool) -> tuple[jax.Array, jax.Array]:
  """IP_LAP's ``PerceptualLoss``, its two parts kept apart: (sum over scales of the per-layer VGG L1,
  Gram L1 at full scale). One VGG pass per scale over ``concat(pred, target)``; no gradient into
  ``target``."""
  n = pred.shape[0]
  target = jax.lax.stop_gradient(target)
  perc, style = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)
  for s in range(num_scales):
    feats = features(jnp.concatenate([pred, target], axis=0))
    fa = {k: v[:n] for k, v in feats.items()}
    fb = {k: v[n:] for k, v in feats.items()}
    perc = perc + losses.perceptual_loss(fa, fb)
    if s == 0 and with_style:
      style = losses.style_loss(fa, fb)
    if s != num_scales - 1:
      pred, target = losses.downsample_half(pred), losses.downsample_half(target)
  return perc, style


def warp_loss(features: Callable, warped: jax.Array, target: jax.Array, num_scales: int) -> jax.Array:
  """``L_w``: the multi-scale perceptual L1 of the aggregated warped reference against the target."""
  return perceptual_and_style(features, warped, target, num_scales, with_style=False)[0]


def adversarial_terms(disc: nn.Module, d_params: dict, fake: jax.Array, real: jax.Array) -> dict:
  """Generator-side GAN terms: LSGAN ``gan`` and pix2pixHD ``feature_matching`` (weight 1 inside;
  IP_LAP's 2.5 is ``loss_weights.feature_matching``). D's parameters get no gradient here."""
  d_params = jax.lax.stop_gradient(d_params)
  fake_out = disc.apply({"params": d_params}, fake)
  real_out = jax.lax.stop_gradient(disc.apply({"params": d_params}, real))
  return {"gan": losses.lsgan_g_loss(fake_out),
          "feature_matching": losses.feature_matching_loss(fake_out, real_out)}


def weighted_total(terms: dict, weights: dict) -> jax.Array:
  """``sum_k weights[k] * terms[k]`` over the terms present."""
  return sum(weights[k] * v for k, v in terms.items())


def generation_terms(config, features: Callable, step: RenderStep, target: jax.Array, params: dict,
                     nets: dict) -> dict:
  """Every generator term but the warp loss (perceptual, style, gan, feature_matching, l1)."""
  p = config.perceptual
  perc, style = perceptual_and_style(features, step.image, target, int(p.num_scales), with_style=True)
  terms = {"perceptual": perc, "style": style, "l1": losses.l1(step.image, jax.lax.stop_gradient(target))}
  if "discriminator" in nets:
    terms.update(adversarial_terms(nets["discriminator"], params["discriminator"], step.image, target))
  return terms


def generator_loss(config, nets: dict, params: dict, ctx: LossContext):
  """The generator player's loss for any registered renderer (see the module docstring)."""
  model, entry = nets["generator"], model_entry(config)
  x = to_inputs(ctx.batch)
  variables = {"params": params["generator"], "batch_stats": ctx.batch_stats["generator"]}
  step, stats = entry.forward(model, variables, x, ctx.train)
  feats = features_fn(config, ctx)
  num_scales = int(config.perceptual.num_scales)
  terms = {}
  if step.warped is not None:   # None: a renderer without an alignment stage (no warp loss, no warm-up)
    terms["warp"] = warp_loss(feats, step.warped, x.target, num_scales)

  def gen(_):
    return generation_terms(config, feats, step, x.target, params, nets)

  warmup = int(config.warmup_steps)
  if ctx.train and warmup > 0 and step.warped is not None:
    names = ("perceptual", "style", "l1") + (("gan", "feature_matching") if "discriminator" in nets else ())
    zeros = lambda _: {k: jnp.zeros((), jnp.float32) for k in names}  # noqa: E731
    terms.update(jax.lax.cond(ctx.step >= warmup, gen, zeros, None))
  else:
    terms.update(gen(None))
  loss = weighted_total(terms, ctx.weights)
  images = {"target": x.target, "output": step.image, **step.images}
  new_stats = {"generator": stats} if ctx.train else {}
  return loss, Aux(terms=terms, batch_stats=new_stats, images=images, carry={"fake": step.image})


def discriminator_loss(config, nets: dict, params: dict, ctx: LossContext):
  """pix2pixHD's ``0.5 * (LSGAN(D(real), 1) + LSGAN(D(fake), 0))`` on the generator's carried output."""
  del config
  disc = nets["discriminator"]
  real = to_inputs(ctx.batch).target
  fake = ctx.carry["fake"]
  real_out = disc.apply({"params": params["discriminator"]}, real)
  fake_out = disc.apply({"params": params["discriminator"]}, fake)
  loss = losses.lsgan_d_loss(real_out, fake_out)
  terms = {"real": losses.lsgan_loss(real_out, True), "fake": losses.lsgan_loss(fake_out, False)}
  return loss, Aux(terms=terms)


def players(config, nets) -> list[Player]:
  out = [Player("generator", ("generator",), lambda params, ctx: generator_loss(config, nets, params, ctx))]
  if "discriminator" in nets:
    out.append(Player("discriminator", ("discriminator",),
                      lambda params, ctx: discriminator_loss(config, nets, params, ctx)))
  return out


# --------------------------------------------------------------------------------------------------
# Whole-clip rendering (evaluation and two-stage generation share it)


def select_references(landmarks: np.ndarray, num: int, candidates: np.ndarray | None = None) -> np.ndarray:
  """Reference frames by lip openness, IP_LAP's inference rule.

  The candidate frames are sorted by inner-mouth opening (``talkjax.landmarks.inner_mouth_opening``)
  and ``num`` are taken at evenly spaced ranks from the most closed to the most open mouth, so the
  references span the speaker's mouth shapes (IP_LAP: ``linspace(0, T-1, 25)`` over the sorted frames).
  A single candidate (a photo) is repeated.

  Args:
    landmarks: ``(T, 131, 2)`` landmarks of the face video (any consistent coordinates).
    num: how many references.
    candidates: frame indices allowed (default all).

  Returns:
    ``(num,)`` int64 frame indices.
  """
  landmarks = np.asarray(landmarks, np.float64)
  cand = np.arange(len(landmarks)) if candidates is None else np.asarray(candidates, np.int64)
  if len(cand) == 0 or num < 1:
    raise ValueError(f"select_references: need at least one candidate frame and num >= 1 "
                     f"(got {len(cand)}, {num})")
  opening = lm.inner_mouth_opening(landmarks[cand])
  order = cand[np.argsort(opening, kind="stable")]
  ranks = np.linspace(0, len(order) - 1, num).astype(np.int64)   # int(torch.linspace(...)), as IP_LAP
  return order[ranks]


def sketch_windows(landmarks_norm: np.ndarray, size: int, frames: np.ndarray) -> np.ndarray:
  """``(len(frames), 5, size, size, 3)`` uint8 sketches of frames ``t-2 .. t+2`` (clamped at the ends)."""
  landmarks_norm = np.asarray(landmarks_norm)
  total = len(landmarks_norm)
  half = NUM_SKETCHES // 2
  cache: dict[int, np.ndarray] = {}
  out = np.zeros((len(frames), NUM_SKETCHES, size, size, 3), np.uint8)
  for i, t in enumerate(np.asarray(frames, np.int64)):
    for j, u in enumerate(range(t - half, t + half + 1)):
      u = int(np.clip(u, 0, total - 1))
      if u not in cache:
        cache[u] = lm.draw_sketch(landmarks_norm[u], size)
      out[i, j] = cache[u]
  return out


def make_render_fn(model: nn.Module, forward: Callable | None = None, with_warped: bool = False) -> Callable:
  """``fn(variables, batch) -> (B, S, S, 3)`` float32 generated faces (eval mode), for jit.

  ``forward`` is the model's registered ``ModelEntry.forward`` (default: IPLAPRenderer-like modules);
  with ``with_warped`` the function returns ``(faces, aggregated warped references or None)``.
  """
  forward = forward or _renderer_forward

  def render(variables, batch):
    step, _ = forward(model, variables, to_inputs(batch), False)
    return (step.image, step.warped) if with_warped else step.image
  return render


def render_batches(render: Callable, crops: np.ndarray, landmarks_norm: np.ndarray, mel_windows: np.ndarray,
                   ref_crops: np.ndarray, ref_landmarks_norm: np.ndarray, batch_size: int,
                   multiple: int = 1, frames: np.ndarray | None = None):
  """Renders frames of one clip in batches; yields ``(frame indices, (b, S, S, 3) float32)``.

  Args:
    render: ``render(batch) -> images`` or a tuple of image batches (e.g. a jitted
      :func:`make_render_fn` with variables bound).
    crops: ``(T, S, S, 3)`` uint8 face crops (their upper halves guide the renderer).
    landmarks_norm: ``(T, 131, 2)`` driving landmarks normalised to the crops ([0, 1]).
    mel_windows: ``(T, 80, 16, 1)`` the mel window of each frame (centred: offset -2).
    ref_crops, ref_landmarks_norm: ``(N, S, S, 3)`` reference crops and ``(N, 131, 2)`` their landmarks.
    batch_size: frames per call; the last batch is padded (by repeating its last frame) to a multiple
      of ``multiple`` (the mesh's data axis) and the padding dropped from the result.
    frames: which frames to render (default all ``T``).
  """
  size = crops.shape[1]
  frames = np.arange(len(crops)) if frames is None else np.asarray(frames, np.int64)
  refs = np.asarray(ref_crops, np.uint8)
  ref_sk = lm.draw_sketches(np.asarray(ref_landmarks_norm), size)
  for start in range(0, len(frames), batch_size):
    ts = frames[start:start + batch_size]
    n = len(ts)
    padded = np.concatenate([ts, np.repeat(ts[-1:], (-n) % max(multiple, 1))])
    batch = {"target": crops[padded], "sketches": sketch_windows(landmarks_norm, size, padded),
             "references": np.repeat(refs[None], len(padded), axis=0),
             "reference_sketches": np.repeat(ref_sk[None], len(padded), axis=0),
             "mel": np.asarray(mel_windows[padded], np.float32)}
    out = render(batch)
    if isinstance(out, tuple):
      yield ts, tuple(None if o is None else np.asarray(o)[:n] for o in out)
    else:
      yield ts, np.asarray(out)[:n]


# --------------------------------------------------------------------------------------------------
# Evaluation on held-out clips


@dataclasses.dataclass
class EvalClip:
  """A held-out clip for evaluation: crops, landmarks in crop pixels, mel windows (offset -2)."""
  name: str
  crops: np.ndarray        # (T, S, S, 3) uint8
  landmarks: np.ndarray    # (T, 131, 2) float32, crop pixels
  mel: np.ndarray          # (T, 80, 16, 1) float32
  frames: np.ndarray       # frames to render (their 5-sketch windows and mel windows are real)
  references: np.ndarray   # reference frame indices (disjoint from ``frames``)


def _resize_crops(crops: np.ndarray, size: int) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if crops.shape[1:3] == (size, size):
    return crops
  return np.stack([np.asarray(Image.fromarray(c).resize((size, size), Image.BILINEAR)) for c in crops])


def _split_frames(valid: np.ndarray, num_frames: int, num_refs: int) -> tuple[np.ndarray, np.ndarray]:
  """Evaluated frames: a run of ``num_frames`` valid frames in the middle; references from the rest."""
  idx = np.flatnonzero(valid)
  if len(idx) == 0:
    return idx, idx
  start = max(0, (len(idx) - num_frames) // 2)
  frames = idx[start:start + num_frames]
  others = np.setdiff1d(np.arange(len(valid)), np.arange(frames[0] - 2, frames[-1] + 3))
  return frames, others


def corpus_eval_clips(root: str, image_size: int, num_clips: int, num_frames: int,
                      num_references: int) -> list[EvalClip]:
  """The first ``num_clips`` segments of the held-out split of a preprocessed dataset."""
  from talkjax.data import loader  # pylint: disable=g-import-not-at-top
  data = loader.SegmentDataset(root, "eval")
  stored = int(data.settings["size"])
  clips = []
  for i, entry in enumerate(data.segments):
    if len(clips) >= num_clips:
      break
    total = int(entry["num_frames"])
    valid = loader.windows_ok(entry, (MEL_OFFSET,)) & (np.arange(total) >= 2) & (np.arange(total) < total - 2)
    frames, others = _split_frames(valid, num_frames, num_references)
    if len(frames) < 2 or len(others) == 0:
      continue
    seg = data.segment(i)
    points = np.asarray(seg.arrays["landmarks"], np.float32) * (image_size / stored)
    mel = np.zeros((total, 80, 16, 1), np.float32)
    for t in frames:
      mel[t] = seg.mel_window(int(t), MEL_OFFSET)
    refs = select_references(points, num_references, others)
    crops = _resize_crops(data.frames(i, np.arange(total)), image_size)
    clips.append(EvalClip(name=str(entry["key"]), crops=crops, landmarks=points, mel=mel, frames=frames,
                          references=refs))
  if not clips:
    raise ConfigError(f"{root}: no held-out segment long enough for the render_clips evaluator")
  return clips


def synthetic_eval_clips(image_size: int, num_clips: int, num_frames: int, num_references: int,
                         seed: int = 12345) -> list[EvalClip]:
  """Held-out clips made in memory by the synthetic generator (for ``data.kind="random"`` runs):
  IP_LAP training crops (landmark box +-5 px) at ``image_size``, centred mel windows."""
  from talkjax import audio as audio_lib  # pylint: disable=g-import-not-at-top
  from talkjax import faces  # pylint: disable=g-import-not-at-top
  from talkjax.data import synthetic  # pylint: disable=g-import-not-at-top
  clips = []
  total = num_frames + num_references + 8
  for j in range(num_clips):
    clip = synthetic.generate_clip((seed, j, 0), speaker=j, size=max(128, image_size),
                                   duration=max(1.0, total / synthetic.FPS))
    boxes = faces.ip_lap_boxes(clip.landmarks, margin=faces.IP_LAP_TRAIN_MARGIN)
    crops = np.stack([faces.crop(f, b, image_size) for f, b in zip(clip.frames, boxes)]).astype(np.uint8)
    points = faces.to_crop_coords(clip.landmarks, boxes, image_size)
    mel = audio_lib.mel_windows(audio_lib.melspectrogram(clip.audio), len(crops), synthetic.FPS, MEL_OFFSET)
    n = len(crops)
    valid = (np.arange(n) >= 2) & (np.arange(n) < n - 2) & (audio_lib.mel_start(np.arange(n), synthetic.FPS,
                                                                                MEL_OFFSET) >= 0)
    frames, others = _split_frames(valid, num_frames, num_references)
    clips.append(EvalClip(name=f"synthetic-{seed}-{j}", crops=crops, landmarks=points, mel=mel[..., None],
                          frames=frames, references=select_references(points, num_references, others)))
  return clips


def _dataset_root(config) -> str | None:
  data = config.data
  if data.get("kind", "corpus") != "corpus":
    return None
  from talkjax.data import embedded  # pylint: disable=g-import-not-at-top
  return embedded.dataset_root(data)


def seam_discontinuity(images: np.ndarray) -> np.ndarray:
  """Per image: mean |I[H/2] - I[H/2 - 1]| over columns and channels, in 8-bit levels.

  Rows ``H/2 - 1`` and ``H/2`` sit on either side of the mask's upper edge (rows ``>= H/2`` are the
  masked, generated region), so a visible seam shows up as a large vertical step there. Compare
  with the same figure on the ground truth (faces have real edges there too).
  """
  x = np.asarray(images, np.float64)
  if x.dtype != np.uint8 and x.max() <= 1.0 + 1e-6:
    x = x * 255.0
  h = x.shape[1]
  return np.mean(np.abs(x[:, h // 2] - x[:, h // 2 - 1]), axis=(1, 2))


def fixed_lip_polygons(landmarks: np.ndarray) -> np.ndarray:
  """``landmarks`` with every frame's lips replaced by the clip's most open lips, moved to that frame's
  lip centroid: a measurement polygon whose size does not follow the ground-truth mouth.

  ``measure_mouth_openness`` counts dark pixels inside the outer-lip polygon, and a polygon that
  grows with the true opening makes even a static dark blob at the mouth correlate with it; measured
  inside this fixed-size polygon, only the pixels can make the figure follow the speech.
  """
  points = np.asarray(landmarks, np.float64).copy()
  lips = points[:, lm.LIPS_SLICE]
  widest = int(np.argmax(lm.inner_mouth_opening(points)))
  template = lips[widest] - lips[widest].mean(axis=0)
  points[:, lm.LIPS_SLICE] = template[None] + lips.mean(axis=1, keepdims=True)
  return points


def clip_metrics(generated: np.ndarray, truth: np.ndarray, landmarks: np.ndarray) -> dict[str, np.ndarray]:
  """Per-frame figures of generated crops against the ground-truth crops (both float [0, 1]).

  ``openness_gen`` / ``openness_gt``: ``talkjax.data.synthetic.measure_mouth_openness`` on each, with the
  ground-truth crop landmarks (the driving sketches' own); ``fixed_gen`` / ``fixed_gt``: the same inside
  :func:`fixed_lip_polygons` (a polygon that does not follow the true mouth); ``seam_gen`` / ``seam_gt``:
  :func:`seam_discontinuity`; ``psnr``, ``ssim`` (whole crop, ``talkjax.metrics.image`` definitions on
  the 8-bit frames) and ``psnr_lower`` (rows >= H/2).
  """
  from talkjax.data.synthetic import measure_mouth_openness  # pylint: disable=g-import-not-at-top
  from talkjax.metrics import image as image_metrics  # pylint: disable=g-import-not-at-top
  gen8 = np.clip(np.rint(generated * 255.0), 0, 255).astype(np.uint8)
  gt8 = np.clip(np.rint(truth * 255.0), 0, 255).astype(np.uint8)
  h = generated.shape[1]
  psnr, ssim = image_metrics.psnr_ssim(gen8, gt8)
  fixed = fixed_lip_polygons(landmarks)
  return {"openness_gen": measure_mouth_openness(gen8, landmarks),
          "openness_gt": measure_mouth_openness(gt8, landmarks),
          "fixed_gen": measure_mouth_openness(gen8, fixed), "fixed_gt": measure_mouth_openness(gt8, fixed),
          "seam_gen": seam_discontinuity(gen8), "seam_gt": seam_discontinuity(gt8),
          "psnr": psnr, "psnr_lower": image_metrics.psnr(gen8[:, h // 2:], gt8[:, h // 2:]), "ssim": ssim}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) < 2 or a.std() < 1e-12 or b.std() < 1e-12:
    return 0.0
  return float(np.corrcoef(a, b)[0, 1])


def summarize(per_frame: dict[str, np.ndarray]) -> dict[str, float]:
  """Scalar figures from pooled per-frame results (see :class:`RenderClipsEvaluator`)."""
  seam = float(np.mean(per_frame["seam_gen"]) - np.mean(per_frame["seam_gt"]))
  return {"openness_r": _pearson(per_frame["openness_gen"], per_frame["openness_gt"]),
          "openness_r_fixed": _pearson(per_frame["fixed_gen"], per_frame["fixed_gt"]),
          "seam": seam, "seam_abs": float(np.mean(np.abs(per_frame["seam_gen"] - per_frame["seam_gt"]))),
          "psnr": float(np.mean(per_frame["psnr"])), "psnr_lower": float(np.mean(per_frame["psnr_lower"])),
          "ssim": float(np.mean(per_frame["ssim"]))}


class RenderClipsEvaluator:
  """Type ``"render_clips"``: renders held-out clips frame by frame with ground-truth sketches.

  Clips: the first ``num_clips`` segments of the held-out speakers (``config.data.root`` or the
  embedded corpus; with ``data.kind="random"``, clips made in memory by the synthetic generator). In
  each, ``num_frames`` consecutive frames whose 5-sketch window and centred mel window are real are
  rendered; ``num_references`` references come from the *other* frames of the clip by the inference
  rule (:func:`select_references`), so no target frame is its own reference.

  Yields ``openness_r`` (Pearson correlation, over all rendered frames pooled, of mouth openness
  measured on the generated crops against the same measure on the ground-truth crops), ``seam``
  (mean :func:`seam_discontinuity` of the generated crops minus that of the ground truth, 8-bit
  levels; lower is smoother), ``seam_abs``, ``psnr``, ``psnr_lower``, ``ssim``; ``openness_r_fixed``
  (the correlation measured inside a fixed-size lip polygon, :func:`fixed_lip_polygons`); the openness
  and PSNR figures of the flow module's aggregated warped references (``warped_openness_r``,
  ``warped_openness_r_fixed``, ``warped_psnr``: how much of the mouth comes from warping the
  references alone); and an image strip (ground truth, warped references, generated) of the first clip.
  """

  def __init__(self, ctx, num_clips: int = 4, num_frames: int = 32, num_references: int = 5,
               batch_size: int = 8, num_images: int = 4):
    from talkjax.train import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
    config = ctx.config
    self.ctx, self.batch_size, self.num_images = ctx, int(batch_size), int(num_images)
    self.multiple = mesh_lib.data_size(ctx.mesh)
    size = int(config.data.image_size)
    root = _dataset_root(config)
    if root is None:
      self.clips = synthetic_eval_clips(size, num_clips, num_frames, num_references)
    else:
      self.clips = corpus_eval_clips(root, size, num_clips, num_frames, num_references)
    render = make_render_fn(ctx.nets["generator"], model_entry(config).forward, with_warped=True)

    def fn(state, batch, frozen):
      del frozen
      variables = {"params": state.params["generator"], "batch_stats": state.batch_stats["generator"]}
      return render(variables, batch)

    self._fn = ctx.compile(fn)

  def run(self, train_state):
    from talkjax.train import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
    pooled: dict[str, list] = {}
    strip = None

    def call(batch):
      batch = mesh_lib.global_batch(batch, self.ctx.mesh)
      return jax.device_get(self._fn(train_state, batch, self.ctx.frozen))

    warped_pooled: dict[str, list] = {}
    for k, clip in enumerate(self.clips):
      gen = np.zeros((len(clip.frames),) + clip.crops.shape[1:], np.float32)
      warped = np.zeros_like(gen)
      pos = {int(t): i for i, t in enumerate(clip.frames)}
      norm = clip.landmarks / clip.crops.shape[1]
      for ts, (images, warps) in render_batches(call, clip.crops, norm, clip.mel, clip.crops[clip.references],
                                                norm[clip.references], self.batch_size, self.multiple,
                                                clip.frames):
        rows = [pos[int(t)] for t in ts]
        gen[rows] = images
        if warps is not None:
          warped[rows] = warps
        else:
          warped = None
      truth = clip.crops[clip.frames].astype(np.float32) / 255.0
      for key, v in clip_metrics(gen, truth, clip.landmarks[clip.frames]).items():
        pooled.setdefault(key, []).append(v)
      if warped is not None:
        for key, v in clip_metrics(np.clip(warped, 0.0, 1.0), truth, clip.landmarks[clip.frames]).items():
          warped_pooled.setdefault(key, []).append(v)
      if k == 0:
        m = min(self.num_images, len(gen))
        rows = [truth[:m]] + ([np.clip(warped[:m], 0.0, 1.0)] if warped is not None else []) + [gen[:m]]
        strip = np.concatenate(rows, axis=1)
    for key, value in summarize({k: np.concatenate(v) for k, v in pooled.items()}).items():
      yield key, value
    if warped_pooled:   # Models without an alignment stage (paper 004's no_ali) have no warped image.
      warped_figures = summarize({k: np.concatenate(v) for k, v in warped_pooled.items()})
      for key in ("openness_r", "openness_r_fixed", "psnr"):
        yield f"warped_{key}", warped_figures[key]
    yield "frames", strip


def evaluators(config):
  del config
  return {"render_clips": RenderClipsEvaluator}


TWO_STAGE = True   # generation needs a landmark model (``landmark_workdir``)


def inference(config, variables, **kwargs):
  """The generation hook (``talkjax.generate.hooks``): two-stage generation with this renderer.

  ``kwargs``: ``landmark_workdir`` (default ``config.inference.landmark_workdir``), ``predictor``,
  ``batch_size``, ``landmark_step`` (see ``talkjax.generate.two_stage.make_renderer``).
  """
  from talkjax.generate import two_stage  # pylint: disable=g-import-not-at-top
  return two_stage.make_renderer(config, variables, **kwargs)
