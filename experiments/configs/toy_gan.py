r"""Toy GAN (talkjax/tasks/toy.py): the engine's smoke test and the template for real configs.

A 2-layer generator learns a fixed blur + colour-mix operator on random 32x32 images against a
2-layer discriminator; the GAN weight switches on once the held-out L1 drops below 0.05 (the same
pattern as Wav2Lip's sync-loss switch).

Command:
  python -m experiments.train --config=toy_gan --workdir=/tmp/toy_gan
  python -m experiments.train --config=toy_gan:runlocal --workdir=/tmp/toy_gan_local

Expected (2-core CPU, 1 JAX device): the full run (2000 steps, batch 64, 32x32) ends with a held-out
``eval/quality/psnr`` of about 40 dB (``eval/holdout/generator/l1`` ~ 0.008); the GAN weight switches
from 0 to 0.01 at the first evaluation (step 250). It takes 3 min of CPU time (10 min wall on a
heavily shared machine, ~4 steps/s). ``runlocal`` (100 steps, batch 8, 16x16) reaches ~28 dB in
about 30 s of CPU time, most of it compilation.

Variants (comma-separated): ``runlocal`` (tiny and fast), ``no_gan`` (ablation: L1 only, one fewer
loss term; the discriminator still trains), ``nan_at=<step>`` (makes the L1 term NaN at that step:
tests the divergence handling).
"""

import ml_collections

from experiments.configs import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, no_gan=False, nan_at=0)
  c = ml_collections.ConfigDict()
  c.task = "toy"
  c.seed = 0
  c.batch_size = 64
  c.total_steps = 2000
  c.log_every = 50
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.keep_checkpoint_period = None
  c.async_checkpoints = True
  c.eval_every = 250
  c.images_every = 250

  c.mesh = ml_collections.ConfigDict(dict(shape=(-1,), axes=("data",), shard_params_min_size=None))
  c.data = ml_collections.ConfigDict(dict(kind="random", root=None, cache_dir=None, num_threads=2,
                                          prefetch=4))

  c.model = ml_collections.ConfigDict(dict(image_size=32, features=16, d_noise=0.05))
  c.optim = ml_collections.ConfigDict()
  c.optim.generator = ml_collections.ConfigDict(dict(name="adam", lr=3e-3, b1=0.5, b2=0.999))
  c.optim.discriminator = ml_collections.ConfigDict(dict(name="adam", lr=1e-3, b1=0.5, b2=0.999))
  c.loss_weights = ml_collections.ConfigDict(dict(l1=1.0, gan=0.0 if arg.no_gan else 0.01, features=1.0))
  c.gan_start = ml_collections.ConfigDict(dict(metric="holdout/generator/l1", below=0.05))
  c.frozen = ml_collections.ConfigDict(dict(features=None))  # a variables dir (toy.save_feature_net)
  c.evals = ml_collections.ConfigDict()
  c.evals.holdout = ml_collections.ConfigDict(dict(type="loss", num_batches=2))
  c.evals.quality = ml_collections.ConfigDict(dict(type="psnr", num_batches=2))
  c.debug = ml_collections.ConfigDict(dict(nan_at_step=arg.nan_at))

  if arg.runlocal:
    c.batch_size = 8
    c.total_steps = 100
    c.log_every = 10
    c.checkpoint_every = 50
    c.eval_every = 50
    c.images_every = 50
    c.model.image_size = 16
    c.model.features = 8
    c.evals.holdout.num_batches = 1
    c.evals.quality.num_batches = 1
  c.lock()
  return c
