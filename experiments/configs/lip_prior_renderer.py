r"""Paper 004's alignment + rendering model (talkjax/tasks/lip_prior.py, model ``lip_prior_renderer``).

Wu et al., "Talking Face Generation with Lip and Identity Priors" (CAVW 2025), section 3.2: an
alignment model (reference and occluded-face encoders, ResBlock fusion, SPADE on the 5 driving
sketches, flows and per-reference weights, the image and two feature levels aggregated and
concatenated with the occluded face's) and a rendering model (multi-reference lip module averaging 5
lip references, audio-aware cross-attention with 1x1 q/k/v convolutions, SPADE + PixelShuffle
decoder) at 128 px. Loss ``2.5 L_w + 4 L_r + 1000 L_s + 0.25 L_g + 2.5 L_f`` (patch GAN + feature
matching); ref-N 3 for the alignment in training, 5 lip references; Adam 1e-4 and the rest as IP_LAP,
which the paper follows (batch 96, warp loss alone first). Inference: 25 references by lip openness
(the paper's Table 2 optimum), the 5 lip references spread over them.

Commands:
  python -m experiments.train --config=lip_prior_renderer --workdir=/tmp/lip_prior_renderer
  python -m experiments.train --config=lip_prior_renderer:runlocal --workdir=/tmp/lip_prior_local
  (ablations: add ``,no_ali`` / ``,no_lip`` / ``,no_aud`` to the variant list)
  python -m experiments.generate --config=lip_prior_renderer --workdir=DIR --landmark_workdir=DIR2 \
      --face=FACE --audio=AUDIO --output=OUT.mp4

VGG19: ``--config.frozen.vgg19=DIR`` (torchvision's weights converted by ``python -m third_party.convert
--kind=vgg19``); without it the random-feature fallback of talkjax/tasks/renderer.py is used.

Variants (comma-separated): ``no_ali`` (no alignment model: no flow, no warped references, no warp
loss), ``no_lip`` (no multi-reference lip module), ``no_aud`` (no audio-aware cross-attention), the
paper's Table 1 ablations; ``runlocal`` (CPU-sized: the renderer family's 64 px, 640 steps of batch 8, VGG
relu1_1 + relu2_1 at one scale, no GAN; reduced widths, 3 references of which 2 align, 3 lip
references; under 20 minutes on 2 cores), ``gan`` (keep
the discriminator in runlocal), ``steps=<int>``, ``warmup=<int>``. Expected held-out figures
(``render/openness_r`` >= 0.8, ``render/psnr``, ``render/ssim`` for the model and its ablations):
BUILD_NOTES.md.
"""

import ml_collections

from experiments.configs.iplap_renderer import renderer_config


def get_config(arg=None):
  ablations = dict(no_ali=False, no_lip=False, no_aud=False)
  c, arg = renderer_config("lip_prior_renderer", arg, extra_variants=ablations, batch_size=96,
                           num_references=5, warp="exact", gan=True)
  c.task = "lip_prior"
  # Widths the paper omits follow IP_LAP (its base); see talkjax/models/lip_prior_renderer.py.
  c.model = ml_collections.ConfigDict(dict(
      name="lip_prior_renderer", width=32, features=256, spade_hidden=256, fusion_blocks=2,
      num_lip_references=5, train_align_references=3, align=not arg.no_ali, lip=not arg.no_lip,
      audio=not arg.no_aud, audio_width_divisor=1, attention_scaled=True, attention_gamma_init=0.0,
      warp="exact"))
  c.evals.render.num_references = 25
  c.inference.num_references = 25
  if arg.runlocal:
    # The renderer family's CPU setting (experiments/configs/iplap_renderer.py: 64 px, VGG relu1_1 +
    # relu2_1 at one scale + pixel L1, no GAN) with IP_LAP's widths / 2 (full size) and / 8 (half
    # size), one residual block per fusion module, 3 references (2 align), 3 lip references.
    c.model.update(dict(width=16, features=32, spade_hidden=32, fusion_blocks=1, num_lip_references=3,
                        train_align_references=2, audio_width_divisor=4))
    # 640 steps, not the family's 700: this model's step is ~15 % slower (1.7 s after the warm-up on
    # 2 cores), and 700 steps took 23 minutes (BUILD_NOTES.md 5.4).
    c.total_steps = arg.steps or 640
    c.eval_every = c.checkpoint_every = c.images_every = 320
    c.data.num_references = 3
    c.evals.render.num_references = 3
    c.inference.num_references = 3
  if arg.no_ali:
    c.warmup_steps = 0              # Nothing to warm up without the alignment model's warp loss.
    c.loss_weights.warp = 0.0
  c.lock()
  return c
