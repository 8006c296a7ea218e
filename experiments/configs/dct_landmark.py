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

Expected: ``runlocal`` (d_model 128, 2000 steps of batch 16, the embedded ``runlocal`` corpus) trains
in about 10 minutes on the 2-core CPU (the budget is 20) and ends with a held-out
``eval/landmarks/lip_l1_ratio`` under 0.5 and ``eval/landmarks/openness_r`` above 0.7; the figures of
both variants and of ``iplap_landmark`` on the same split are in BUILD_NOTES.md ("landmarks").
The paper-scale model needs a GPU.

Variants (comma-separated):
  ``runlocal``  d_model 128 (encoder widths / 4), batch 16, offsets from the nose-anchored mean
                reference shape (``model.offset``; the papers regress absolute coordinates): the CPU
                budget run.
  ``no_dcf``    ablation (paper Table 4): a plain transformer encoder instead of the DACN half.
  ``ip_lap_frame``  the network sees IP_LAP's crop coordinates (the papers' protocol) instead of
                each frame's pose-point box; the crop box includes the chin, so the mouth opening
                leaks into the pose input (BUILD_NOTES.md "landmarks" measures it).
  ``tiny``      a minute network for tests and smoke runs (not a result).
"""

from experiments.configs import parse_arg
from experiments.configs.iplap_landmark import landmark_config


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, no_dcf=False, ip_lap_frame=False, tiny=False)
  # Paper 000 section 3.3.1: batch 32, 5 random references, L1 + lambda_c continuity (lambda_c = 1).
  # d_model 512 split in two halves of 256; widths the paper does not give are BUILD_NOTES.md choices.
  c = landmark_config(
      arg, batch_size=32, num_references=5, eval_batches=8,
      model=dict(
          name="dct_landmark", width_divisor=1, num_layers=4, num_heads=4, dim_feedforward=512, dropout=0.1,
          block_size=5, halo=2,                 # SALA: query blocks of 5 tokens, keys from the block +- 2
          dacn_width=64, dacn_kernel=3,         # DACN: a 3-tap dynamic conv over tokens in a 64-wide bottleneck
          dacn_hidden=(256,),                   # its hypernetwork: pooled features -> 256 -> kernel + bias
          condition=("audio", "pose", "reference"),  # which pooled embeddings generate the kernels
          use_dacn=not arg.no_dcf),
      loss_weights=dict(region_l1=1.0, continuity=1.0))
  if arg.runlocal or arg.tiny:
    c.model.dim_feedforward = 128
    c.model.dacn_width = 32
    c.model.dacn_hidden = (64,)
  if arg.tiny:
    c.model.dim_feedforward = 16
    c.model.dacn_width = 8
    c.model.dacn_hidden = (8,)
  c.lock()
  return c
