r"""IP_LAP's renderer (talkjax/tasks/renderer.py, model ``iplap_renderer``): sketches + references -> face.

The published architecture (flow module with SPADE on the 5 driving sketches and per-reference
weights, translation module with SPADE, AdaIN on the audio and PixelShuffle) at 128 px, trained as in
IP_LAP's ``train_video_renderer.py``: 3 references, Adam 1e-4 (D: betas 0.5, 0.999), loss
``2.5 warp + 4 perceptual + 1000 style + 0.25 LSGAN + 2.5 feature matching``, warp loss alone first.

Commands:
  python -m experiments.train --config=iplap_renderer --workdir=/tmp/iplap_renderer
  python -m experiments.train --config=iplap_renderer:runlocal --workdir=/tmp/iplap_renderer_local

VGG19: ``--config.frozen.vgg19=DIR`` with torchvision's weights converted by ``python -m
third_party.convert --kind=vgg19 --input=vgg19-dcbb9e9d.pth --output=DIR``; without it the random-feature
fallback (a fixed He-initialised VGG19, see talkjax/tasks/renderer.py) is used.

Expected: the full run needs an accelerator (batch 96 at 128 px; IP_LAP trained on 4 GPUs); its
warm-up of 12,000 steps is IP_LAP's 25 epochs of LRS2 at batch 96. ``runlocal`` (64 px, reduced
widths, 2 references, VGG relu1_1 + relu2_1 at one scale + pixel L1, no GAN, embedded runlocal corpus,
700 steps of batch 8) trains in under 20 minutes on an idle 2-core CPU; the held-out figures it
reaches are in BUILD_NOTES.md
(``render/openness_r``, ``render/seam``, ``render/psnr``, ``render/ssim``).

Variants (comma-separated): ``runlocal`` (CPU-sized), ``gan`` (keep the discriminator in runlocal),
``steps=<int>`` (total steps), ``warmup=<int>`` (warp-only steps).
"""

import os

import ml_collections

from experiments.configs import parse_arg

PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def random_vgg_dir(seed: int = 0) -> str:
  """Where the random-feature VGG19 fallback is written on first use (the talkjax cache)."""
  cache = os.environ.get("TALKJAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "talkjax")
  return os.path.join(cache, f"vgg19-random-he-seed{seed}")


def renderer_config(name: str, arg, extra_variants=None, **defaults):
  """The config shared by the renderers (unlocked) and the parsed variants.

  ``defaults`` are the model's paper settings (batch_size, num_references, warp, mask_blur, gan);
  ``extra_variants`` are the model's own variants (``parse_arg`` keywords).
  """
  arg = parse_arg(arg, runlocal=False, gan=False, steps=0, warmup=-1, **(extra_variants or {}))
  c = ml_collections.ConfigDict()
  c.task = "renderer"
  c.seed = 0
  c.batch_size = defaults.get("batch_size", 96)
  c.total_steps = 100_000
  c.warmup_steps = 12_000
  c.log_every = 100
  c.checkpoint_every = 2_000
  c.keep_checkpoints = 3
  c.keep_checkpoint_period = None
  c.async_checkpoints = True
  c.eval_every = 2_000
  c.images_every = 2_000

  c.mesh = ml_collections.ConfigDict(dict(shape=(-1,), axes=("data",), shard_params_min_size=None))
  c.data = ml_collections.ConfigDict(dict(
      kind="corpus", root=None, cache_dir=None, preset="default", num_threads=2, prefetch=4, num_workers=0,
      image_size=128, num_references=defaults.get("num_references", 3), crop="image", flip=False,
      color_jitter=0.0))

  c.model = ml_collections.ConfigDict(dict(
      name=name, width=32, features=256, spade_hidden=256, adain_hidden=128, audio_width_divisor=1,
      warp=defaults.get("warp", "iplap"), mask_blur=defaults.get("mask_blur", True), blur_kernel=5,
      blur_sigma=1.0))
  c.gan = ml_collections.ConfigDict(dict(enabled=defaults.get("gan", True), ndf=64, n_layers=3, num_d=2))
  gan_on = c.gan.enabled
  c.loss_weights = ml_collections.ConfigDict(dict(
      warp=2.5, perceptual=4.0, style=1000.0, gan=0.25 if gan_on else 0.0,
      feature_matching=2.5 if gan_on else 0.0, l1=0.0))
  c.perceptual = ml_collections.ConfigDict(dict(
      layers=PERCEPTUAL_LAYERS, num_scales=2, random_init_dir=random_vgg_dir(0), random_init_seed=0))
  c.frozen = ml_collections.ConfigDict(dict(vgg19=None))
  c.optim = ml_collections.ConfigDict()
  c.optim.generator = ml_collections.ConfigDict(dict(name="adam", lr=1e-4, b1=0.9, b2=0.999))
  c.optim.discriminator = ml_collections.ConfigDict(dict(name="adam", lr=1e-4, b1=0.5, b2=0.999))
  c.evals = ml_collections.ConfigDict()
  c.evals.holdout = ml_collections.ConfigDict(dict(type="loss", num_batches=4))
  c.evals.render = ml_collections.ConfigDict(dict(type="render_clips", num_clips=8, num_frames=48,
                                                  num_references=5, batch_size=16))
  # Two-stage generation (experiments/generate.py): references picked from the face video by lip
  # openness, IP_LAP's inference crop (landmark box +-25 px) and a feathered paste-back.
  # ``landmark_workdir``: the audio-to-landmark model (``--landmark_workdir`` / this field).
  c.inference = ml_collections.ConfigDict(dict(num_references=5, margin=25, batch_size=8, mask="face",
                                                feather=0.05, landmark_workdir=""))

  if arg.runlocal:
    # CPU budget (about 20 minutes on 2 idle cores): 64 px crops, IP_LAP's widths / 2 (h1) and / 8
    # (h2, SPADE, AdaIN), 2 references, VGG relu1_1 + relu2_1 at one scale plus pixel L1, no GAN
    # (its D would cost as much as the generator here, and the acceptance figures measure geometry).
    # Measured (BUILD_NOTES.md 5.4): about 1.5 s per step at batch 8 after the warp-only warm-up, so
    # 700 steps; held-out openness r was already >= 0.86 at step 500 of the 1,000-step runs.
    c.batch_size = 8
    c.total_steps = 700
    c.warmup_steps = 100
    c.log_every = 20
    c.checkpoint_every = 350
    c.eval_every = 350
    c.images_every = 350
    c.data.preset = "runlocal"
    c.data.image_size = 64
    c.data.num_references = 2
    c.model.update(dict(width=16, features=32, spade_hidden=32, adain_hidden=32, audio_width_divisor=4))
    c.perceptual.layers = ("relu1_1", "relu2_1")
    c.perceptual.num_scales = 1
    c.loss_weights.l1 = 1.0
    c.optim.generator.lr = 4e-4
    c.gan.enabled = arg.gan
    c.gan.update(dict(ndf=16, n_layers=2, num_d=1))
    c.loss_weights.gan = 0.25 if arg.gan else 0.0
    c.loss_weights.feature_matching = 2.5 if arg.gan else 0.0
    c.evals.holdout.num_batches = 2
    c.evals.render.update(dict(num_clips=8, num_frames=40, num_references=3, batch_size=8))
    c.inference.num_references = 3
  if arg.steps:
    c.total_steps = arg.steps
  if arg.warmup >= 0:
    c.warmup_steps = arg.warmup
  return c, arg


def get_config(arg=None):
  c, _ = renderer_config("iplap_renderer", arg)
  c.lock()
  return c
