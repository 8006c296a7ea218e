r"""Paper 000's DCT landmark generator (Tang, Liu, Li 2025, section 3.1; talkjax/tasks/landmarks.py).

IP_LAP's encoders and token stream, split along channels: one half through SALA (self-attention +
local attention over overlapping blocks), the other through DACN (a convolution over the tokens with
kernels generated from the pooled audio/pose/reference features), an alignment network, then lip and
jaw heads. Loss L1 + lambda_c * continuity (lambda_c = 1); batch 32, Adam 1e-4, T = 5 consecutive
target frames and 5 random reference frames (section 3.3.1).

Commands:
  python -m experiments.train --config=dct_landmark --workdir=/tmp/dct_lm                     # paper scale
  python -m experiments.train --config=dct_landmark:runlocal --workdir=/tmp/dct_lm_local
  python -m experiments.train --config=dct_landmark:runlocal,no_dcf --workdir=/tmp/dct_lm_local_no_dcf
  python -m experiments.generate_landmarks --config=dct_landmark:runlocal --workdir=/tmp/dct_lm_local \
      --face=face.mp4 --audio=speech.wav --output=/tmp/landmarks_out

Expected: ``runlocal`` (d_model 128, the embedded ``runlocal`` corpus) trains for about 20 minutes on
the 2-core CPU and ends with a held-out ``eval/landmarks/lip_l1_ratio`` under 0.5 and
``eval/landmarks/openness_r`` above 0.7; the figures of both variants and of ``iplap_landmark`` on the
same split are in BUILD_NOTES.md ("landmarks"). The paper-scale model needs a GPU.

Variants (comma-separated):
  ``runlocal``  d_model 128 (encoder widths / 4), batch 16: the CPU budget run.
  ``no_dcf``    ablation (paper Table 4): a plain transformer encoder instead of the DACN half.
  ``ip_lap_frame``  the network sees IP_LAP's crop coordinates (the papers' protocol) instead of
                each frame's pose-point box; the crop box includes the chin, so the mouth opening
                leaks into the pose input (BUILD_NOTES.md "landmarks" measures it).
  ``tiny``      a minute network for tests and smoke runs (not a result).
"""

import ml_collections

from experiments.configs import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, no_dcf=False, ip_lap_frame=False, tiny=False)
  c = ml_collections.ConfigDict()
  c.task = "landmarks"
  c.seed = 0
  c.batch_size = 32
  c.total_steps = 100_000   # The paper trains 1500 epochs of LRS2; no step count.
  c.log_every = 100
  c.checkpoint_every = 5000
  c.keep_checkpoints = 3
  c.keep_checkpoint_period = None
  c.async_checkpoints = True
  c.eval_every = 5000
  c.images_every = 0        # The loss returns no images (sketches are drawn by the evaluator).

  c.mesh = ml_collections.ConfigDict(dict(shape=(-1,), axes=("data",), shard_params_min_size=None))
  # The landmarks sampler with paper 000's settings: 5 consecutive target frames, 5 random references
  # from the other frames, centred mel windows.
  c.data = ml_collections.ConfigDict(dict(
      kind="corpus", root=None, cache_dir=None, preset="default", num_threads=2, prefetch=4,
      num_frames=5, num_references=5, mel_offset=-2))

  # d_model 512 split in two halves of 256; widths the paper does not give are BUILD_NOTES.md choices.
  c.model = ml_collections.ConfigDict(dict(
      name="dct_landmark", width_divisor=1, num_layers=4, num_heads=4, dim_feedforward=512, dropout=0.1,
      block_size=5, halo=2,                 # SALA: query blocks of 5 tokens, keys from the block +- 2
      dacn_width=64, dacn_kernel=3,         # DACN: a 3-tap dynamic conv over tokens in a 64-wide bottleneck
      dacn_hidden=(256,),                   # its hypernetwork: pooled features -> 256 -> kernel + bias
      condition=("audio", "pose", "reference"),  # which pooled embeddings generate the kernels
      use_dacn=not arg.no_dcf,
      normalization="crop" if arg.ip_lap_frame else "pose",
      offset=False))  # as in iplap_landmark.py: absolute coordinates (runlocal: offsets)
  c.optim = ml_collections.ConfigDict()
  c.optim.generator = ml_collections.ConfigDict(dict(name="adam", lr=1e-4, warmup_steps=0, decay="constant"))
  c.loss_weights = ml_collections.ConfigDict(dict(region_l1=1.0, continuity=1.0))  # lambda_c = 1
  c.evals = ml_collections.ConfigDict()
  c.evals.landmarks = ml_collections.ConfigDict(dict(type="landmarks", num_batches=8, image_size=128))
  c.infer = ml_collections.ConfigDict(dict(margin=5, batch_size=64))

  if arg.runlocal or arg.tiny:
    c.batch_size = 16
    c.total_steps = 3000
    c.log_every = 50
    c.checkpoint_every = 1000
    c.eval_every = 500
    c.data.preset = "runlocal"
    # Predict offsets from the mean reference jaw + lips (zero-initialised heads): with the papers'
    # absolute regression the CPU budget ends at the population-mean shape, deaf to the audio
    # (lip L1 1.3x the mean-reference baseline, openness r < 0; BUILD_NOTES.md "landmarks").
    c.model.offset = True
    c.model.width_divisor = 4
    c.model.dim_feedforward = 128
    c.model.dacn_width = 32
    c.model.dacn_hidden = (64,)
    c.optim.generator.update(dict(lr=1e-3, warmup_steps=100, decay="cosine"))
    c.evals.landmarks.num_batches = 16
  if arg.tiny:
    c.batch_size = 8
    c.total_steps = 20
    c.log_every = 10
    c.checkpoint_every = c.eval_every = 20
    c.data.num_references = 3
    c.model.width_divisor = 16
    c.model.num_layers = 1
    c.model.num_heads = 2
    c.model.dim_feedforward = 16
    c.model.dacn_width = 8
    c.model.dacn_hidden = (8,)
    c.evals.landmarks.num_batches = 1
    c.infer.batch_size = 8
  c.lock()
  return c
