"""Task ``syncnet``: Wav2Lip's lip-sync expert (``SyncNet_color``) trained on talking-face data.

The expert (:class:`talkjax.models.wav2lip.SyncNetColor`) embeds a mel window ``(80, 16, 1)`` and the
lower halves of 5 consecutive 96x96 face crops stacked on channels ``(48, 96, 15)``, BGR in [0, 1] (the
layout of the published ``lipsync_expert.pth``, so a converted checkpoint can be fine-tuned here and an
expert trained here can replace it). Both embeddings are ReLU outputs with unit L2 norm, so their
cosine similarity is in [0, 1] and *is* the probability "in sync"; the loss is Wav2Lip's BCE on it.

Training data: the ``syncnet`` sampler (:class:`talkjax.data.samplers.SyncNetSampler`): 5 lower halves
with the mel window starting at the first frame (label 1) or at a frame of the same segment at least
``data.min_shift`` frames away (label 0), labels 50/50 per example, RGB uint8; or, with
``data.negatives = K``, each window with both kinds: ``mel (1 + K, 80, 16, 1)``, ``label (1 + K,)``.
The conversion to the expert's input (BGR, [0, 1], frames stacked frame-major on channels) happens
on the device (:func:`expert_face_input`).

The 0.69 trap (users of Wav2Lip's ``color_syncnet_train.py`` see the BCE sit at ln 2 for tens of
thousands of steps): what this task changes and why is measured in BUILD_NOTES.md ("syncnet_expert").
The knobs, all in the config:

- ``loss.balance``: each batch's BCE is the mean of the positives' mean and the negatives' mean, so a
  batch with 27 positives and 37 negatives cannot be "solved" by shifting every probability towards
  the majority label (with 50/50 labels per example that drift is what the first steps learn).
- ``model.head``: ``"cosine"`` (Wav2Lip: p = cos) or ``"scaled"`` (p = sigmoid(s * cos + b) with a
  learnable s, b in a separate network ``sync_head``, so the exported ``syncnet`` variables keep
  Wav2Lip's layout; the generator's sync loss then needs the head too: see :func:`sync_probability`).
- ``optim.syncnet``: learning rate and warm-up.
- ``data.min_shift``: negatives at least this many frames off (Wav2Lip took any other window,
  including 1-frame shifts that look and sound almost the same).
- ``data.negatives`` (batch composition): 0 is Wav2Lip's one pair per face window with a 50/50
  label; K >= 1 gives every window its in-sync audio and K off-sync windows of the same segment,
  so the face encoder (nine tenths of a step's compute) serves 1 + K labelled pairs and every
  window is contrasted with its own wrong audio.
- ``loss.hard_negatives = M`` (hard-negative mining, with ``data.negatives = K > M``): the K off-sync
  candidates are embedded without gradient and each window keeps the M whose audio is closest to its
  face (highest cosine); the loss, its backward pass and the BatchNorm statistics then see the
  in-sync pair and those M, as with ``data.negatives = M``. The errors a trained expert makes are
  off-sync windows whose mouth moves much as the in-sync one does (BUILD_NOTES.md 5.2), and a random
  candidate is mostly an easy one. The logged training ``accuracy`` and ``p_off_sync`` are then those
  of the kept (hard) pairs; the ``sync`` evaluator still judges a random off-sync window.

- ``loss_weights.mouth = w`` with ``data.mouth = True`` (auxiliary mouth-shape loss): linear read-outs
  (``mouth_probe``, not exported) of each window's inner lip opening and in-window width change (from
  the landmarks every preprocessed dataset has) from the face and from the audio embedding, trained
  with weight ``w`` beside the BCE. BUILD_NOTES.md 5.2 (session 8) has the runs.

Evaluators (``config.evals.<name>.type``): ``"sync"`` (held-out accuracy at threshold 0.5, BCE,
balanced accuracy, ROC AUC, mean probability of in/off-sync pairs) and ``"lse"`` (LSE-C/LSE-D with the
expert on every held-out clip, and the same clips with the audio shifted: the acceptance check).

Using a trained expert as another config's sync loss: :func:`export_expert` (or ``python -m
talkjax.tasks.syncnet --workdir=W --output=DIR``) writes the ``syncnet`` network's variables; the
generator config points its ``frozen.syncnet`` field at ``DIR`` and its task declares
:func:`frozen_expert` and calls :func:`generator_sync_loss`.

Config fields read here: ``data.{image_size, negatives}``,
``model.{width_divisor, audio_width_divisor, head, scale_init}``,
``loss.{balance, hard_negatives}``, ``loss_weights.bce``.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from typing import Any, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax import checkpoints, losses
from talkjax.errors import ConfigError
from talkjax.metrics import sync_expert
from talkjax.metrics.sync_expert import expert_face_input
from talkjax.data.samplers import MOUTH_FEATURES
from talkjax.models import wav2lip
from talkjax.tasks import Aux, FrozenNet, LossContext, Player

EXPERT = "syncnet"          # the trained network's name in the train state (and export)
HEAD = "sync_head"          # the optional learnable scale/offset on the cosine
MOUTH = "mouth_probe"       # the optional linear read-outs of the mouth shape (training only)
T = wav2lip.SYNC_T
SIZE = wav2lip.FACE_SIZE
HEADS = ("cosine", "scaled")


# --- Model, head and loss ------------------------------------------------------------------------------


class SyncHead(nn.Module):
  """``p = sigmoid(exp(log_scale) * cos + bias)``: a learnable temperature and offset on the cosine.

  Initialised so that ``p(cos = centre) = 0.5`` with slope ``scale`` (``scale_init``); the scale is
  parametrised by its log so it stays positive.
  """
  scale_init: float = 10.0
  centre: float = 0.5

  @nn.compact
  def __call__(self, cos: jax.Array) -> jax.Array:
    log_scale = self.param("log_scale", nn.initializers.constant(math.log(self.scale_init)), ())
    bias = self.param("bias", nn.initializers.constant(-self.scale_init * self.centre), ())
    return jnp.exp(log_scale) * cos + bias       # the logit


class MouthProbe(nn.Module):
  """Linear read-outs of the 5 frames' mouth shape from the face and the audio embedding.

  The auxiliary ``mouth`` loss (``loss_weights.mouth``): each embedding must tell how open and how wide
  the mouth is on the frames it stands for (the ``syncnet`` sampler's ``face_mouth`` / ``mel_mouth``,
  from the landmarks every preprocessed dataset has). Not part of the exported expert.
  """
  features: int

  @nn.compact
  def __call__(self, audio: jax.Array, face: jax.Array) -> tuple[jax.Array, jax.Array]:
    return nn.Dense(self.features, name="audio")(audio), nn.Dense(self.features, name="face")(face)


def mouth_weight(config) -> float:
  """``config.loss_weights.mouth`` (0: off); > 0 needs ``config.data.mouth``."""
  w = config.loss_weights.get("mouth") or 0.0
  if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
    raise ConfigError(f"config.loss_weights.mouth = {w!r}: the mouth-shape loss's weight, a number >= 0")
  if w and not config.data.get("mouth"):
    raise ConfigError("config.loss_weights.mouth > 0 needs config.data.mouth = True (the sampler's mouth targets)")
  if w and hard_negatives(config):
    raise ConfigError("config.loss_weights.mouth > 0 does not combine with config.loss.hard_negatives")
  return float(w)


def _check_config(config) -> None:
  size = int(config.data.get("image_size") or 0)
  if size != SIZE:
    raise ConfigError(f"config.data.image_size = {size}: the expert SyncNet takes the lower halves of "
                      f"{SIZE}x{SIZE} crops; set it to {SIZE} (the sampler resizes the stored crops)")
  if config.model.head not in HEADS:
    raise ConfigError(f"config.model.head: unknown {config.model.head!r}; valid: {', '.join(HEADS)}")
  negatives(config)
  hard_negatives(config)
  audio_width_divisor(config)
  mouth_weight(config)
  if config.loss.balance not in (True, False):
    raise ConfigError(f"config.loss.balance must be true or false, got {config.loss.balance!r}")


def sampler(config) -> str:
  del config
  return "syncnet"


def negatives(config) -> int:
  """``config.data.negatives``: off-sync windows per face window (0: one pair with a 50/50 label)."""
  k = config.data.get("negatives") or 0
  if isinstance(k, bool) or int(k) != k or k < 0:
    raise ConfigError(f"config.data.negatives = {k!r}: off-sync windows per face window, an integer >= 0")
  return int(k)


def hard_negatives(config) -> int:
  """``config.loss.hard_negatives``: train on the M off-sync candidates closest to the face (0: all K)."""
  m = config.loss.get("hard_negatives") or 0
  if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 0:
    raise ConfigError(f"config.loss.hard_negatives = {m!r}: off-sync windows kept per face window, an integer "
                      ">= 0 (0: all of data.negatives)")
  k = negatives(config)
  if m and m >= k:
    raise ConfigError(f"config.loss.hard_negatives = {m} with config.data.negatives = {k}: mining keeps the M "
                      "hardest of K candidates, so it needs data.negatives > hard_negatives")
  return int(m)


def audio_width_divisor(config) -> int | None:
  """``config.model.audio_width_divisor``: the audio branch's own divisor (None: ``width_divisor``)."""
  a = config.model.get("audio_width_divisor")
  if a is None:
    return None
  if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or not 1 <= a <= 32 or 32 % a:
    raise ConfigError(f"config.model.audio_width_divisor = {a!r}: the audio branch's width divisor, None or a "
                      "divisor of 32 (1, 2, 4, 8, 16, 32)")
  return int(a)


def batch_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
  _check_config(config)
  k = negatives(config)
  pairs = (1 + k,) if k else ()
  spec = {"faces": jax.ShapeDtypeStruct((T, SIZE - SIZE // 2, SIZE, 3), jnp.uint8),
          "mel": jax.ShapeDtypeStruct(pairs + (80, 16, 1), jnp.float32),
          "label": jax.ShapeDtypeStruct(pairs, jnp.float32)}
  if config.data.get("mouth"):
    spec.update(face_mouth=jax.ShapeDtypeStruct((T, MOUTH_FEATURES), jnp.float32),
                mel_mouth=jax.ShapeDtypeStruct(pairs + (T, MOUTH_FEATURES), jnp.float32))
  return spec


def networks(config) -> dict[str, nn.Module]:
  _check_config(config)
  nets = {EXPERT: wav2lip.SyncNetColor(width_divisor=int(config.model.width_divisor),
                                       audio_width_divisor=audio_width_divisor(config))}
  if config.model.head == "scaled":
    nets[HEAD] = SyncHead(scale_init=float(config.model.scale_init))
  if mouth_weight(config):
    nets[MOUTH] = MouthProbe(features=T * MOUTH_FEATURES)
  return nets


def torch_default_init(abstract: Any, rng: jax.Array) -> Any:
  """PyTorch's default initialisation of a Conv+BatchNorm network, drawn in one random call.

  Conv kernels and biases ``U(+-1/sqrt(fan_in))`` (``kaiming_uniform_(a=sqrt(5))`` and PyTorch's
  bias rule; fan_in = kh * kw * C_in of the layer's kernel), BatchNorm scale 1, bias 0, running mean
  0, variance 1. The same distribution as the modules' own initialisers, but XLA:CPU compiles each
  ``jax.random`` call of an init separately: the expert's 40-odd calls took 80-100 s to compile on
  this machine, one call takes seconds.
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
  names = [jax.tree_util.keystr(p) for p, _ in leaves]
  kernels = {n[:-len("['kernel']")]: leaf.shape for n, (_, leaf) in zip(names, leaves) if n.endswith("['kernel']")}
  total = sum(math.prod(leaf.shape) for _, leaf in leaves)
  draw = jax.random.uniform(rng, (total,), jnp.float32, -1.0, 1.0)
  out, offset = [], 0
  for name, (_, leaf) in zip(names, leaves):
    size = math.prod(leaf.shape)
    parent = name.rsplit("[", 1)[0]
    if name.endswith("['kernel']"):
      bound = 1.0 / math.sqrt(math.prod(leaf.shape[:-1]))
      value = draw[offset:offset + size].reshape(leaf.shape) * bound
    elif name.endswith("['bias']") and parent in kernels:
      bound = 1.0 / math.sqrt(math.prod(kernels[parent][:-1]))
      value = draw[offset:offset + size].reshape(leaf.shape) * bound
    elif name.endswith("['scale']") or name.endswith("['var']"):
      value = jnp.ones(leaf.shape, leaf.dtype)
    elif name.endswith("['bias']") or name.endswith("['mean']"):
      value = jnp.zeros(leaf.shape, leaf.dtype)
    else:
      raise ValueError(f"torch_default_init: no rule for {name}")
    out.append(value.astype(leaf.dtype))
    offset += size
  return jax.tree_util.tree_unflatten(treedef, out)


def init(config, nets, rng, batch):
  expert = nets[EXPERT]
  face = expert_face_input(batch["faces"])
  mel = batch["mel"].reshape((-1,) + batch["mel"].shape[-3:])
  abstract = jax.eval_shape(functools.partial(expert.init, train=False), rng, mel, face)
  variables = {EXPERT: torch_default_init(abstract, rng)}
  if HEAD in nets:
    variables[HEAD] = nets[HEAD].init(rng, jnp.zeros((1,), jnp.float32))
  if MOUTH in nets:
    width = abstract["params"]["face_encoder_" + str(len(wav2lip.SYNCNET_FACE_ENCODER) - 1)]["conv"]["kernel"].shape[-1]
    variables[MOUTH] = nets[MOUTH].init(rng, jnp.zeros((1, width)), jnp.zeros((1, width)))
  del config
  return variables


def bce_terms(p_or_logit: jax.Array, labels: jax.Array, *, logits: bool) -> jax.Array:
  """Per-example BCE. Probabilities are clipped to [0, 1] and each log to >= -100 (``nn.BCELoss``)."""
  y = labels.astype(jnp.float32)
  if logits:
    return jax.nn.softplus(p_or_logit) - y * p_or_logit
  return losses.bce_terms(jnp.clip(p_or_logit, 0.0, 1.0), y)


def balanced_mean(values: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean of the positives' mean and the negatives' mean; the plain mean if a class is absent."""
  y = labels.astype(jnp.float32)
  n_pos, n_neg = jnp.sum(y), jnp.sum(1.0 - y)
  both = (n_pos > 0) & (n_neg > 0)
  pos = jnp.sum(values * y) / jnp.maximum(n_pos, 1.0)
  neg = jnp.sum(values * (1.0 - y)) / jnp.maximum(n_neg, 1.0)
  return jnp.where(both, 0.5 * (pos + neg), jnp.mean(values))


def sync_probability(cos: jax.Array, head_params: Any = None, head: SyncHead | None = None) -> jax.Array:
  """The expert's probability "in sync": the cosine itself (Wav2Lip), or the head's sigmoid."""
  if head_params is None:
    return jnp.clip(cos, 0.0, 1.0)
  return jax.nn.sigmoid((head or SyncHead()).apply({"params": head_params}, cos))


def _apply(expert: wav2lip.SyncNetColor, variables: dict, train: bool, *inputs: jax.Array,
           method: str | None = None) -> tuple[Any, dict]:
  """``(expert output, new batch_stats)``: batch statistics when ``train`` (``{}`` otherwise)."""
  if train:
    out, updates = expert.apply(variables, *inputs, method=method, train=True, mutable=["batch_stats"])
    return out, updates["batch_stats"]
  return expert.apply(variables, *inputs, method=method, train=False), {}


def embed(expert: wav2lip.SyncNetColor, variables: dict, mel: jax.Array, face: jax.Array,
          train: bool) -> tuple[jax.Array, jax.Array, dict]:
  """``(audio_embedding, face_embedding, new batch_stats or {})``.

  ``mel`` is ``(B, 80, 16, 1)`` or ``(B, P, 80, 16, 1)`` (P windows of audio per face window: the
  audio embedding is then ``(B, P, 512)``, the face's ``(B, 512)`` computed once).
  """
  lead = mel.shape[:-3]
  (a, v), stats = _apply(expert, variables, train, mel.reshape((-1,) + mel.shape[-3:]), face)
  return a.reshape(lead + a.shape[-1:]), v, stats


def embed_hardest(expert: wav2lip.SyncNetColor, variables: dict, mel: jax.Array, face: jax.Array,
                  labels: jax.Array, hard: int, train: bool) -> tuple[jax.Array, jax.Array, dict, jax.Array]:
  """:func:`embed` on the in-sync window and the ``hard`` off-sync candidates closest to the face.

  ``mel`` is ``(B, 1 + K, 80, 16, 1)`` with the in-sync window first, ``labels`` ``(B, 1 + K)``. The K
  candidates are embedded without gradient (the audio branch is a tenth of a step's compute) and
  ranked by their cosine with the window's face; only the kept pairs get a backward pass and feed
  the audio branch's BatchNorm statistics. Returns ``(audio (B, 1 + hard, D), face (B, D), new
  batch_stats or {}, labels (B, 1 + hard))``.
  """
  window = mel.shape[-3:]
  a_all, _ = _apply(expert, variables, train, mel.reshape((-1,) + window), method="embed_audio")
  a_all = jax.lax.stop_gradient(a_all).reshape(mel.shape[:2] + a_all.shape[-1:])
  v, face_stats = _apply(expert, variables, train, face, method="embed_face")
  cos = pair_cosine(a_all[:, 1:], jax.lax.stop_gradient(v))                # (B, K)
  pick = jnp.argsort(-cos, axis=1)[:, :hard] + 1                             # (B, hard), highest first
  keep = jnp.concatenate([jnp.zeros_like(pick[:, :1]), pick], axis=1)        # (B, 1 + hard)
  kept = jnp.take_along_axis(mel, keep[:, :, None, None, None], axis=1)
  a, audio_stats = _apply(expert, variables, train, kept.reshape((-1,) + window), method="embed_audio")
  stats = {**face_stats, "audio_encoder": audio_stats["audio_encoder"]} if train else {}
  return a.reshape(kept.shape[:2] + a.shape[-1:]), v, stats, jnp.take_along_axis(labels, keep, axis=1)


def pair_cosine(a: jax.Array, v: jax.Array) -> jax.Array:
  """Cosine of each audio embedding (``(B, D)`` or ``(B, P, D)``) with its window's face ``(B, D)``."""
  return wav2lip.cosine_similarity(a, v if a.ndim == v.ndim else v[:, None, :])


def _preview(faces: jax.Array) -> jax.Array:
  """The 5 lower halves side by side, RGB in [0, 1]: ``(B, 48, 480, 3)``."""
  x = faces.astype(jnp.float32) / 255.0
  return jnp.concatenate([x[:, k] for k in range(x.shape[1])], axis=2)


def players(config, nets) -> list[Player]:
  expert = nets[EXPERT]
  head = nets.get(HEAD)
  balance = bool(config.loss.balance)
  hard = hard_negatives(config)
  probe = nets.get(MOUTH)
  owned = (EXPERT,) + tuple(n for n in (HEAD, MOUTH) if n in nets)

  def loss_fn(params, ctx: LossContext):
    labels = ctx.batch["label"]
    face = expert_face_input(ctx.batch["faces"])
    variables = {"params": params[EXPERT], "batch_stats": ctx.batch_stats[EXPERT]}
    mel = ctx.batch["mel"]
    if hard:
      a, v, stats, labels = embed_hardest(expert, variables, mel, face, labels, hard, ctx.train)
    else:
      a, v, stats = embed(expert, variables, mel, face, ctx.train)
    cos = pair_cosine(a, v)
    if head is not None:
      logit = head.apply({"params": params[HEAD]}, cos)
      per_example = bce_terms(logit, labels, logits=True)
      p = jax.nn.sigmoid(logit)
    else:
      p = jnp.clip(cos, 0.0, 1.0)
      per_example = bce_terms(p, labels, logits=False)
    bce = jnp.mean(per_example)
    objective = balanced_mean(per_example, labels) if balance else bce
    y = labels.astype(jnp.float32)
    terms = {
        "bce": bce,
        "accuracy": jnp.mean(((p > 0.5) == (y > 0.5)).astype(jnp.float32)),
        "p_in_sync": jnp.sum(p * y) / jnp.maximum(jnp.sum(y), 1.0),
        "p_off_sync": jnp.sum(p * (1 - y)) / jnp.maximum(jnp.sum(1 - y), 1.0),
        "cos_mean": jnp.mean(cos),
    }
    total = ctx.weights["bce"] * objective
    if probe is not None:
      a_hat, v_hat = probe.apply({"params": params[MOUTH]}, a, v)
      a_err = jnp.mean(jnp.square(a_hat - ctx.batch["mel_mouth"].reshape(a_hat.shape)))
      v_err = jnp.mean(jnp.square(v_hat - ctx.batch["face_mouth"].reshape(v_hat.shape)))
      terms.update(mouth_audio=a_err, mouth_face=v_err)
      total = total + ctx.weights["mouth"] * (a_err + v_err)
    aux = Aux(terms=terms, batch_stats={EXPERT: stats} if stats else {},
              images={"faces": _preview(ctx.batch["faces"])})
    return total, aux

  return [Player("expert", owned, loss_fn)]


def initial_weights(config) -> dict[str, float]:
  weights = {"bce": float(config.loss_weights.bce)}
  if mouth_weight(config):
    weights["mouth"] = mouth_weight(config)
  return weights


# --- Evaluators -------------------------------------------------------------------------------------------


class SyncEvaluator:
  """Type ``"sync"``: the expert on ``num_batches`` held-out batches (eval mode, running statistics).

  Yields ``accuracy`` (in-sync vs off-sync at ``threshold`` on the probability), ``balanced_accuracy``,
  ``bce`` (Wav2Lip's loss), ``auc``, ``p_in_sync``, ``p_off_sync`` over all examples seen, and
  ``windows``: the first batch's first 4 windows (5 lower halves side by side).
  """

  def __init__(self, ctx, num_batches: int = 4, threshold: float = 0.5):
    if num_batches < 1:
      raise ConfigError(f"sync evaluator: num_batches must be >= 1, got {num_batches}")
    self.ctx, self.num_batches, self.threshold = ctx, int(num_batches), float(threshold)
    expert, head = ctx.nets[EXPERT], ctx.nets.get(HEAD)

    def probabilities(state, batch, frozen):
      del frozen
      variables = {"params": state.params[EXPERT], "batch_stats": state.batch_stats[EXPERT]}
      mel, label = batch["mel"], batch["label"]
      if mel.ndim == 5:   # data.negatives >= 1: the in-sync pair and the first off-sync one (balanced)
        mel, label = mel[:, :2], label[:, :2]
      a, v, _ = embed(expert, variables, mel, expert_face_input(batch["faces"]), False)
      cos = pair_cosine(a, v)
      return sync_probability(cos, state.params.get(HEAD), head), label, _preview(batch["faces"][:4])

    self._fn = ctx.compile(probabilities)

  def run(self, train_state) -> Iterator[tuple[str, Any]]:
    ps, ys, images = [], [], None
    for batch in self.ctx.batches(self.num_batches):
      p, y, preview = jax.device_get(self._fn(train_state, batch, self.ctx.frozen))
      ps.append(np.asarray(p))
      ys.append(np.asarray(y))
      images = preview if images is None else images
    yield from sync_expert.sync_metrics(np.concatenate(ps), np.concatenate(ys), self.threshold).items()
    yield "windows", np.asarray(images)


class LseEvaluator:
  """Type ``"lse"``: LSE-C / LSE-D with this expert on held-out clips, in sync and with shifted audio.

  Scores every held-out segment of the training data (``config.data``: the embedded corpus or
  ``data.root``; at most ``max_clips`` if > 0) with :func:`talkjax.metrics.sync_expert.shift_test`.
  Yields ``lse_c``, ``lse_d``, ``offset_abs`` (mean |AV offset| of the ground-truth clips: 0 for a
  perfect expert), ``lse_c_shifted``, ``lse_d_shifted``, ``offset_shifted`` (the audio delayed by
  ``shift`` frames: -shift for a perfect expert) and ``clips_better`` (fraction of clips whose
  ground-truth LSE-C exceeds the shifted one's; the acceptance asks for 1). A learnable
  ``sync_head`` is monotone in the cosine, so it does not change these distances and is not used.
  """

  def __init__(self, ctx, shift: int = 10, max_clips: int = 0, batch_size: int = 64, vshift: int = 15):
    self.ctx, self.shift, self.max_clips = ctx, int(shift), int(max_clips)
    self.batch_size, self.vshift = int(batch_size), int(vshift)
    self._clips = None

  def run(self, train_state) -> Iterator[tuple[str, Any]]:
    if self._clips is None:  # Read once, on the first evaluation.
      self._clips = sync_expert.load_clips(dataset_root(self.ctx.config), "eval", self.max_clips or None)
    variables = jax.device_get({"params": train_state.params[EXPERT],
                                "batch_stats": train_state.batch_stats[EXPERT]})
    expert = sync_expert.Expert(self.ctx.nets[EXPERT], variables, batch_size=self.batch_size)
    report = sync_expert.shift_test(expert, self._clips, shift=self.shift, vshift=self.vshift)
    yield from report.summary().items()


def dataset_root(config) -> str:
  """The dataset the config trains on (building the embedded corpus if ``data.root`` is None)."""
  from talkjax.data import embedded  # pylint: disable=g-import-not-at-top
  return embedded.dataset_root(config.data, progress=True)


def evaluators(config):
  del config
  return {"sync": SyncEvaluator, "lse": LseEvaluator}


# --- Using the trained expert elsewhere ---------------------------------------------------------------------


def export_expert(workdir: str | os.PathLike[str], output: str | os.PathLike[str], *, step: int | None = None,
                  overwrite: bool = False) -> str:
  """Writes the trained expert of a ``syncnet`` run (``<workdir>/checkpoints``) as a variables directory.

  The result has the layout of ``third_party.convert --kind=wav2lip_syncnet`` (``params`` and
  ``batch_stats`` of :class:`~talkjax.models.wav2lip.SyncNetColor`), so everything that takes a
  converted ``lipsync_expert.pth`` takes it (``frozen.syncnet`` of the generator configs,
  :func:`talkjax.metrics.sync_expert.load_expert`). The widths are implied by the shapes
  (:func:`talkjax.metrics.sync_expert.expert_module`).
  """
  directory = os.path.join(os.path.abspath(os.fspath(workdir)), "checkpoints")
  return checkpoints.export_network(directory, EXPERT, output, step=step, overwrite=overwrite)


def expert_abstract(width_divisor: int = 1, audio_width_divisor: int | None = None) -> Any:
  """Shapes of :class:`SyncNetColor` variables (for ``FrozenNet.abstract``)."""
  module = wav2lip.SyncNetColor(width_divisor=width_divisor, audio_width_divisor=audio_width_divisor)
  return jax.eval_shape(functools.partial(module.init, train=False), jax.random.PRNGKey(0),
                        jnp.zeros((1, 80, 16, 1)), jnp.zeros((1, SIZE // 2, SIZE, 3 * T)))


def frozen_expert(field: str = "frozen.syncnet", *, width_divisor: int = 1, audio_width_divisor: int | None = None,
                  required: bool = True) -> FrozenNet:
  """The ``FrozenNet`` a generator task declares for its sync loss (variables dir in ``config.<field>``)."""
  return FrozenNet(name=EXPERT, field=field, convert_kind="wav2lip_syncnet", required=required,
                   abstract=functools.partial(expert_abstract, width_divisor, audio_width_divisor),
                   how_to_make="or train one: python -m experiments.train --config=syncnet --workdir=W, then "
                               "python -m talkjax.tasks.syncnet --workdir=W --output=DIR")


def generator_sync_loss(variables: dict, mel: jax.Array, frames: jax.Array, *, rgb: bool = True) -> jax.Array:
  """Wav2Lip's generator sync loss: mean BCE(cos(audio, face), 1) with the frozen expert (eval mode).

  Args:
    variables: the expert's variables (``ctx.frozen["syncnet"]``).
    mel: ``(B, 80, 16, 1)`` the window of the first of the 5 frames (the ``wav2lip`` sampler's ``mel``).
    frames: ``(B, 5, H, W, 3)`` generated frames in [0, 1] (square crops or their lower halves; see
      :func:`expert_face_input`).
    rgb: the frames are RGB (talkjax's convention) rather than BGR.

  The expert's widths are read from the variables' shapes (:func:`sync_expert.expert_module`).
  """
  expert = sync_expert.expert_module(variables)
  a, v = expert.apply(variables, mel, expert_face_input(frames, rgb=rgb), train=False)
  return wav2lip.expert_sync_loss(a, v, jnp.ones(a.shape[:1]))


def main(argv: list[str] | None = None) -> int:
  """``python -m talkjax.tasks.syncnet --workdir=W --output=DIR [--step=N] [--overwrite]``."""
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(prog="python -m talkjax.tasks.syncnet",
                                   description="Export a trained syncnet expert as a variables directory.")
  parser.add_argument("--workdir", required=True, help="the training run's --workdir")
  parser.add_argument("--output", required=True, help="variables directory to write")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
  parser.add_argument("--overwrite", action="store_true")
  args = parser.parse_args(argv)
  from talkjax.errors import TalkjaxError  # pylint: disable=g-import-not-at-top
  try:
    path = export_expert(args.workdir, args.output, step=args.step, overwrite=args.overwrite)
  except TalkjaxError as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    return 1
  print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
