r"""DCK U-Net (paper 001, talkjax/tasks/dck_unet.py): audio-driven face video with dynamic kernels.

The generator takes frame t of one clip of a synthetic pair (face, pose) and the other clip's mel
window at t and must output that clip's frame t (same head motion, different speech); a PatchGAN
judges the frames (L1 + LSGAN + attention-mask loss).

Commands:
  python -m experiments.train --config=dck_unet --workdir=/tmp/dck             # paper scale, 256 px
  python -m experiments.train --config=dck_unet:runlocal --workdir=/tmp/dck_local
  python -m experiments.train --config=dck_unet:runlocal,no_dck --workdir=/tmp/dck_local_no_dck
  python -m experiments.generate --config=dck_unet:runlocal --workdir=/tmp/dck_local \
      --face=face.mp4 --audio=speech.wav --output=out.mp4

Expected: ``runlocal`` (128 px crops, reduced widths, the embedded ``runlocal_excerpts`` corpus: 12
speakers, 2 held out, speech cut from longer utterances so that the two clips of a pair are
independent in mouth opening, see talkjax/data/embedded.py) trains in 16 minutes on an idle 2-core
CPU with the corpus built. Measured: held-out ``eval/lipsync/openness_r`` 0.80 (mouth openness on
generated crops vs ground truth), ``no_audio`` 0.055 (it copies the source mouth), ``no_dck`` 0.75,
``no_blend`` 0.55; PSNR 33.5 dB and SSIM 0.956 against the ground-truth clip (every variant:
BUILD_NOTES.md 5.1). The paper-scale config needs a GPU
(about 85M parameters, 67M of them in the four DCK hypernetworks).

Variants (comma-separated):
  ``runlocal``  128 px, reduced widths, 1500 steps: the CPU budget run.
  ``no_dck``    ablation (paper Table I): audio features reshaped into a 16-channel map and fused by
                spatial attention; the middle layers are static 1x1 convolutions.
  ``no_blend``  ablation (paper Table I): the network outputs the frame directly (no A, M).
  ``no_audio``  baseline: zero mel windows, so the output cannot follow the speech.
  ``tiny``      a minute network at 64 px for tests, notebooks and smoke runs (not a result).
"""

import ml_collections

from experiments.configs import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, no_dck=False, no_blend=False, no_audio=False, tiny=False)
  c = ml_collections.ConfigDict()
  c.task = "dck_unet"
  c.seed = 0
  c.batch_size = 16
  c.total_steps = 200_000
  c.log_every = 100
  c.checkpoint_every = 5000
  c.keep_checkpoints = 3
  c.keep_checkpoint_period = None
  c.async_checkpoints = True
  c.eval_every = 5000
  c.images_every = 5000

  c.mesh = ml_collections.ConfigDict(dict(shape=(-1,), axes=("data",), shard_params_min_size=None))
  # Paired clips of the embedded synthetic corpus (data.root=None) or of a preprocessed dataset
  # (experiments.preprocess); the sampler's loose face crops, resized to image_size, and the
  # centred mel window (offset -2 frames: the synthetic mouth is shown at the frame's time).
  c.data = ml_collections.ConfigDict(dict(
      kind="corpus", root=None, cache_dir=None, preset="default", num_threads=2, prefetch=4,
      image_size=256, mel_offset=-2, swap=True))

  c.model = ml_collections.ConfigDict(dict(
      image_size=256,
      down_features=(64, 128, 256, 256),   # 256 -> 16 px; the DCKs work on 16x16x256 features
      num_middle=4,                        # all DCK layers (the paper's Figure 7 shows four)
      hyper_hidden=(256,),                 # each DCK layer's FC network: 512 -> 256 -> 256x256 + 256
      fusion="dck",                        # "concat": the no_dck ablation
      blend=True,
      use_audio=True,
      norm="batch",
      upsample="before_conv",              # resize-conv decoder
      audio_width_divisor=1,
      audio_encoder_init="",               # a converted Wav2Lip generator (third_party.convert
                                           # --kind=wav2lip) to start the audio network from
      freeze_audio_encoder=False,          # True keeps it fixed, as the paper does with Wav2Lip's
  ))
  c.disc = ml_collections.ConfigDict(dict(ndf=64, n_layers=3, num_d=1, norm="instance"))
  c.optim = ml_collections.ConfigDict()
  c.optim.generator = ml_collections.ConfigDict(dict(name="adam", lr=1e-4, b1=0.5, b2=0.999))
  c.optim.discriminator = ml_collections.ConfigDict(dict(name="adam", lr=1e-4, b1=0.5, b2=0.999))
  # Eq. (5): L = L_rec + lambda * L_adv (lambda lost in the text: 0.01, pix2pix's 1:100 ratio of the
  # adversarial to the L1 term), plus a small penalty on the mean attention (the "mask loss").
  c.loss_weights = ml_collections.ConfigDict(dict(l1=1.0, gan=0.01, mask=0.01))
  c.evals = ml_collections.ConfigDict()
  c.evals.holdout = ml_collections.ConfigDict(dict(type="loss", num_batches=4))
  c.evals.lipsync = ml_collections.ConfigDict(dict(type="lipsync", num_batches=4, all_frames=True,
                                                   max_frames=4000))
  # Generation (talkjax.generate): frames per generator call, loose-crop scale (as preprocessing),
  # compute dtype ("bfloat16" on GPUs/TPUs).
  c.infer = ml_collections.ConfigDict(dict(batch_size=16, face_scale=1.5, dtype="float32"))

  if arg.runlocal or arg.tiny:
    c.total_steps = 1500
    c.log_every = 50
    c.checkpoint_every = 500
    c.eval_every = 500
    c.images_every = 500
    c.data.preset = "runlocal_excerpts"
    c.data.image_size = c.model.image_size = 128
    c.model.down_features = (16, 32, 64, 64)    # 128 -> 8 px
    c.model.hyper_hidden = (64,)
    c.model.audio_width_divisor = 4
    c.model.upsample = "after_conv"             # decoder convs at the lower resolution: 1/4 the FLOPs
    c.disc.ndf = 8
    c.optim.generator.lr = c.optim.discriminator.lr = 3e-4
    c.evals.holdout.num_batches = 2
    c.evals.lipsync.max_frames = 1200
  if arg.tiny:
    c.batch_size = 8
    c.total_steps = 20
    c.log_every = 10
    c.checkpoint_every = c.eval_every = c.images_every = 20
    c.data.image_size = c.model.image_size = 64
    c.model.down_features = (8, 16, 16)         # 64 -> 8 px
    c.model.num_middle = 2
    c.model.hyper_hidden = (16,)
    c.model.audio_width_divisor = 16
    c.disc.ndf = 8
    c.disc.n_layers = 2
    c.evals.holdout.num_batches = 1
    c.evals.lipsync.num_batches = 1
    c.evals.lipsync.max_frames = 64
    c.infer.batch_size = 8
  if arg.no_dck:
    c.model.fusion = "concat"
  if arg.no_blend:
    c.model.blend = False
  if arg.no_audio:
    c.model.use_audio = False
  c.lock()
  return c
