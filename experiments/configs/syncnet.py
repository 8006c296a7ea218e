r"""Wav2Lip's lip-sync expert SyncNet (talkjax/tasks/syncnet.py): the sync judge of the generator configs.

Learns to tell whether 5 lower-half face frames and a 0.2 s mel window are in sync (BCE on the cosine
similarity of the two 512-d embeddings). Negatives come from the same segment, shifted by >= 5 frames.

Commands:
  python -m experiments.train --config=syncnet --workdir=/tmp/syncnet                   # paper scale
  python -m experiments.train --config=syncnet:runlocal --workdir=/tmp/syncnet_local    # 2-core CPU
  python -m talkjax.metrics.sync_expert --workdir=/tmp/syncnet_local --check            # acceptance
  python -m talkjax.tasks.syncnet --workdir=/tmp/syncnet_local --output=/tmp/expert     # export

then point a generator config's ``frozen.syncnet`` at ``/tmp/expert`` (variables of
``SyncNetColor(width_divisor=model.width_divisor)``, the layout of ``third_party.convert
--kind=wav2lip_syncnet``, which a converted ``lipsync_expert.pth`` has too).

Expected: ``runlocal`` (widths / 4, batch 32 windows each with its in-sync audio and an off-sync
window (``data.negatives = 1``), 2000 steps, Adam 1e-3 with a cosine decay, on the embedded
``runlocal_excerpts`` corpus; 18 minutes on the idle 2-core CPU) leaves the 0.69 plateau within the
first 100 steps and ends with a held-out (two unseen speakers) accuracy of 0.895 (seed 0) and 0.875
(seed 1) by ``sync_expert --check`` (0.892 and 0.886 on 4,096 other held-out pairs; one pair per
window as in Wav2Lip: 0.869 and 0.825; the 0.9 target is not reached) and a ground-truth LSE-C above the
LSE-C of the same clip with the audio 10 frames late on every held-out clip
(``eval/lse/clips_better`` = 1); figures and curves in BUILD_NOTES.md 5.2. The paper-scale config
(full widths, batch 64, Adam 1e-4, one pair per window: Wav2Lip's ``color_syncnet_train.py``) needs
a GPU.

Auxiliary mouth-shape loss (session 8, BUILD_NOTES.md 5.2): ``--config.data.mouth=True
--config.loss_weights.mouth=1.0 --config.data.corpus="{'speakers': 48, 'clips': 1}"
--config.eval_every=500 --config.evals.lse.max_clips=8`` passed ``--check`` once (0.912, seed 0, 1027 s);
not yet the ``runlocal`` default (one seed).

Variants (comma-separated):
  ``runlocal``  reduced widths and steps on the small embedded corpus: the CPU budget run.
  ``wav2lip``   Wav2Lip's recipe unchanged (no balanced loss, lr 1e-4, no warm-up, any-shift
                negatives are still >= min_shift): the "before" run of the 0.69-trap study.
  ``scaled``    a learnable scale and offset on the cosine (p = sigmoid(s cos + b)); studied, not
                the default: the exported expert then needs the head to read probabilities.
  ``tiny``      a minute network for smoke runs and tests (not a result).
"""

import ml_collections

from experiments.configs import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, wav2lip=False, scaled=False, tiny=False)
  c = ml_collections.ConfigDict()
  c.task = "syncnet"
  c.seed = 0
  c.batch_size = 64                       # Wav2Lip's syncnet_batch_size
  c.total_steps = 200_000
  c.log_every = 100
  c.checkpoint_every = 10_000             # Wav2Lip's syncnet_checkpoint_interval
  c.keep_checkpoints = 3
  c.keep_checkpoint_period = None
  c.async_checkpoints = True
  c.eval_every = 10_000                   # Wav2Lip's syncnet_eval_interval
  c.images_every = 10_000

  c.mesh = ml_collections.ConfigDict(dict(shape=(-1,), axes=("data",), shard_params_min_size=None))
  # The stored IP_LAP crops resized to 96 px (the expert's input), lower halves; negatives from the
  # same segment at >= 5 frames.
  c.data = ml_collections.ConfigDict(dict(
      kind="corpus", root=None, cache_dir=None, preset="default", num_threads=2, prefetch=4,
      corpus=None,                        # overrides of the preset, e.g. "{'speakers': 24, 'clips': 1}"
      image_size=96, min_shift=5, flip=False, color_jitter=0.0,
      negatives=0,                        # off-sync windows per face window; 0: Wav2Lip's one 50/50 pair
      mouth=False))                       # the mouth-shape targets of loss_weights.mouth

  c.model = ml_collections.ConfigDict(dict(
      width_divisor=1,        # 1: Wav2Lip's widths (a converted lipsync_expert.pth fits)
      audio_width_divisor=None,  # the audio branch's own divisor (None: width_divisor; 5.2 studies 2)
      head="cosine",          # p = cos (Wav2Lip); "scaled": p = sigmoid(s * cos + b), s and b learnt
      scale_init=10.0,        # "scaled" only: initial s (b = -s/2)
  ))
  c.loss = ml_collections.ConfigDict(dict(
      balance=True,           # mean of the per-class mean BCEs
      hard_negatives=0,       # > 0: keep the M off-sync candidates closest to the face (of data.negatives)
  ))
  c.loss_weights = ml_collections.ConfigDict(dict(bce=1.0, mouth=0.0))
  c.optim = ml_collections.ConfigDict()
  c.optim.syncnet = ml_collections.ConfigDict(dict(name="adam", lr=1e-4, warmup_steps=1000))
  c.optim.sync_head = ml_collections.ConfigDict(dict(name="adam", lr=1e-3))
  c.optim.mouth_probe = ml_collections.ConfigDict(dict(name="adam", lr=1e-3))
  c.evals = ml_collections.ConfigDict()
  c.evals.sync = ml_collections.ConfigDict(dict(type="sync", num_batches=16))
  c.evals.lse = ml_collections.ConfigDict(dict(type="lse", shift=10, max_clips=0))

  if arg.runlocal or arg.tiny:
    c.batch_size = 32
    c.total_steps = 2000                  # with cosine decay (BUILD_NOTES.md 5.2)
    c.log_every = 25
    c.checkpoint_every = 500
    c.eval_every = 250
    c.images_every = 500
    c.data.preset = "runlocal_excerpts"     # 12 speakers (2 held out); speech excerpts, as for dck_unet
    c.data.negatives = 1                  # each window with its audio and an off-sync window
    c.model.width_divisor = 4
    c.optim.syncnet.lr = 1e-3             # 3e-4 to 1.5e-3 equal within seed noise (BUILD_NOTES.md 5.2)
    c.optim.syncnet.warmup_steps = 100
    c.optim.syncnet.decay = "cosine"      # to 0 at total_steps: the final steps settle the embedding
    c.evals.sync.num_batches = 8
  if arg.tiny:
    c.batch_size = 8
    c.total_steps = 10
    c.log_every = 5
    c.checkpoint_every = c.eval_every = c.images_every = 10
    c.data.negatives = 0
    c.model.width_divisor = 16
    c.optim.syncnet.lr = 3e-4
    c.optim.syncnet.warmup_steps = 0
    c.evals.sync.num_batches = 1
    c.evals.lse.max_clips = 1
  if arg.wav2lip:
    c.data.negatives = 0
    c.loss.balance = False
    c.optim.syncnet.lr = 1e-4
    c.optim.syncnet.warmup_steps = 0
  if arg.scaled:
    c.model.head = "scaled"
  c.lock()
  return c
