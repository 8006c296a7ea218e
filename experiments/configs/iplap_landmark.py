r"""IP_LAP's audio-to-landmark transformer (paper 004 section 3.1; talkjax/tasks/landmarks.py).

T = 5 frames of centred mel windows and pose landmarks plus Nl = 15 reference landmark sets ->
the T frames' jaw and lip landmarks; loss L1 + velocity (IP_LAP's ``train_landmarks_generator.py``);
batch 128, Adam 1e-4. Load IP_LAP's published generator with
``python -m third_party.convert --kind=iplap_landmark --input=landmarkgenerator_checkpoint.pth --output=DIR``.

Commands:
  python -m experiments.train --config=iplap_landmark --workdir=/tmp/iplap_lm          # paper scale
  python -m experiments.train --config=iplap_landmark:runlocal --workdir=/tmp/iplap_lm_local
  python -m experiments.generate_landmarks --config=iplap_landmark:runlocal --workdir=/tmp/iplap_lm_local \
      --face=face.mp4 --audio=speech.wav --output=/tmp/landmarks_out

Expected: ``runlocal`` (d_model 128, 2000 steps of batch 16, the embedded ``runlocal`` corpus) trains
in about 10 minutes on the 2-core CPU (the budget is 20) and ends with a held-out
``eval/landmarks/lip_l1_ratio`` (model / mean-reference-lips baseline) under 0.5 and
``eval/landmarks/openness_r`` above 0.7; the measured figures are in BUILD_NOTES.md ("landmarks").
The paper-scale model (13.7M parameters) needs a GPU.

Variants (comma-separated):
  ``runlocal``  d_model 128 (all widths / 4), batch 16, offsets from the nose-anchored mean
                reference shape (``model.offset``; the papers regress absolute coordinates): the CPU
                budget run.
  ``ip_lap_frame``  the network sees IP_LAP's crop coordinates (the papers' protocol) instead of
                each frame's pose-point box; the crop box includes the chin, so the mouth opening
                leaks into the pose input (BUILD_NOTES.md "landmarks" measures it).
  ``tiny``      a minute network for tests and smoke runs (not a result).
"""

import ml_collections

from experiments.configs import parse_arg


def landmark_config(arg, *, model: dict, loss_weights: dict, batch_size: int, num_references: int,
                    eval_batches: int) -> ml_collections.ConfigDict:
  """The ``landmarks`` task config shared by both landmark generators (unlocked).

  Args:
    arg: the parsed variants (``runlocal``, ``tiny`` and ``ip_lap_frame`` are read here).
    model: the paper-scale ``config.model`` fields; ``normalization`` and ``offset`` are added here.
    loss_weights: ``config.loss_weights``.
    batch_size, num_references: the paper's batch and Nl.
    eval_batches: held-out batches per evaluation at paper scale.

  ``runlocal`` and ``tiny`` set the run control, data, optimiser and shared model fields (widths
  divided by 4 / 16, offsets from the nose-anchored mean reference shape); the caller sets its own
  model's.
  """
  c = ml_collections.ConfigDict()
  c.task = "landmarks"
  c.seed = 0
  c.batch_size = batch_size
  c.total_steps = 100_000   # Neither paper publishes a step count; IP_LAP evaluates every 5000 steps.
  c.log_every = 100
  c.checkpoint_every = 5000
  c.keep_checkpoints = 3
  c.keep_checkpoint_period = None
  c.async_checkpoints = True
  c.eval_every = 5000
  c.images_every = 0        # The loss returns no images (sketches are drawn by the evaluator).

  c.mesh = ml_collections.ConfigDict(dict(shape=(-1,), axes=("data",), shard_params_min_size=None))
  # The landmarks sampler (talkjax.data.samplers): T = 5 consecutive target frames, Nl references from
  # the segment's other frames, centred mel windows.
  c.data = ml_collections.ConfigDict(dict(
      kind="corpus", root=None, cache_dir=None, preset="default", num_threads=2, prefetch=4,
      num_frames=5, num_references=num_references, mel_offset=-2))

  # normalization "pose": the network sees each frame's landmarks in the box of its own pose points,
  # so the mouth opening cannot leak in through the crop box (ip_lap_frame: IP_LAP's crop frame).
  # offset False: the papers regress absolute coordinates (runlocal predicts offsets, see below).
  c.model = ml_collections.ConfigDict(dict(
      model, normalization="crop" if arg.ip_lap_frame else "pose", offset=False))
  c.optim = ml_collections.ConfigDict()
  c.optim.generator = ml_collections.ConfigDict(dict(name="adam", lr=1e-4, warmup_steps=0, decay="constant"))
  c.loss_weights = ml_collections.ConfigDict(loss_weights)
  # Held-out speakers: loss terms, landmark errors vs the mean-reference baseline, mouth-opening r.
  c.evals = ml_collections.ConfigDict()
  c.evals.landmarks = ml_collections.ConfigDict(dict(type="landmarks", num_batches=eval_batches,
                                                     image_size=128))
  # Inference (experiments.generate_landmarks, talkjax.models.landmark_inference): the crop margin in
  # source pixels (the training crops' +-5 px, so the model sees the normalisation it was trained on)
  # and windows per batch.
  c.infer = ml_collections.ConfigDict(dict(margin=5, batch_size=64))

  if arg.runlocal or arg.tiny:
    c.batch_size = 16
    c.total_steps = 2000
    c.log_every = 50
    c.checkpoint_every = 1000
    c.eval_every = 500
    c.data.preset = "runlocal"
    # Predict offsets from the nose-anchored mean reference jaw + lips (zero-initialised heads): with
    # the papers' absolute regression the CPU budget ends at the population-mean shape, deaf to the
    # audio
    # (lip L1 1.3x the mean-reference baseline, openness r < 0; BUILD_NOTES.md "landmarks").
    c.model.offset = True
    c.model.width_divisor = 4
    # A short run: a larger step with warm-up, annealed to 0 (cosine) for the final precision.
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
    c.evals.landmarks.num_batches = 1
    c.infer.batch_size = 8
  return c


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, ip_lap_frame=False, tiny=False)
  # IP_LAP's train_landmarks_generator.py: batch 128, Nl = 15, L1 + velocity, Adam 1e-4.
  c = landmark_config(
      arg, batch_size=128, num_references=15, eval_batches=4,
      model=dict(name="iplap_landmark", width_divisor=1, num_layers=4, num_heads=4, dim_feedforward=1024,
                 dropout=0.1),
      loss_weights=dict(l1=1.0, velocity=1.0))
  if arg.runlocal or arg.tiny:
    c.model.dim_feedforward = 256
  if arg.tiny:
    c.model.dim_feedforward = 32
  c.lock()
  return c
