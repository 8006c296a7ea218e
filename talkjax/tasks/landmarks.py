"""Task ``landmarks``: the audio-to-landmark stage (IP_LAP's transformer, paper 000's DCT generator).

``config.model.name`` picks the network:

- ``"iplap_landmark"``: :class:`talkjax.models.iplap_landmark.IPLAPLandmarkGenerator` (paper 004 3.1);
- ``"dct_landmark"``: :class:`talkjax.models.dct_landmark.DCTLandmarkGenerator` (paper 000 3.1.2;
  ``model.use_dacn=False`` is its ``no_dcf`` ablation).

Data: the ``landmarks`` sampler (``talkjax.data.samplers.LandmarksSampler``): per example T = 5
consecutive frames' pose landmarks ``pose (T, 74, 2)`` and centred mel windows ``mel (T, 80, 16, 1)``,
``Nl`` reference landmark sets ``reference (Nl, 131, 2)`` from other frames of the segment and the
target jaw + lips ``target (T, 57, 2)``; landmarks normalised in each frame's IP_LAP crop.
``config.model.normalization`` picks the frame the network sees: ``"crop"`` (those coordinates,
IP_LAP's protocol) or ``"pose"`` (each frame re-expressed in the box of its own pose points, which
removes the mouth opening that leaks into the crop-normalised pose points; predictions and losses
are in crop coordinates either way): see ``talkjax.models.landmark_inference.apply_model``.
``config.model.offset`` (default False, the papers' absolute regression) makes the network predict
offsets from the nose-anchored mean reference content (``landmark_inference.reference_prior``), its
heads zero-initialised (the ``runlocal`` configs).

One player, ``generator``; loss ``sum_k loss_weights[k] * term_k`` over the terms named in
``config.loss_weights`` (all four are computed and logged):

- ``l1``: IP_LAP's L1, the mean absolute error over all content coordinates (``nn.L1Loss``);
- ``velocity``: IP_LAP's velocity loss, the mean over frame pairs of the Euclidean distance between
  predicted and true frame-to-frame differences of all 114 coordinates
  (``F.pairwise_distance``, eps 1e-6 added to the difference as PyTorch does);
- ``region_l1``: paper 000's eq. L1, per frame the lips' plus the jaw's L1 error, each a mean over
  its own coordinates (the paper's norms normalised by their element counts, so lambda_c = 1 keeps
  the two terms balanced as in IP_LAP), averaged over frames;
- ``continuity``: paper 000's L_c, per frame pair the Euclidean norm of the difference between
  predicted and true frame-to-frame motion of the lips plus that of the jaw, averaged over pairs.

IP_LAP trains ``l1 + velocity``, paper 000 ``region_l1 + continuity`` (lambda_c = 1).

Evaluator ``"landmarks"`` (:class:`LandmarkEvaluator`, held-out split): lip/jaw landmark errors in
pixels at ``image_size`` (128: IP_LAP's crop), the same for the "mean lip shape of the reference
frames" baseline, their ratio, the Pearson correlation of predicted and true inner-mouth opening
(``talkjax.landmarks.inner_mouth_opening``), the same two figures with every example driven by
another example's audio (a control: how much of the result comes from the audio), and sketches of
truth vs prediction.

Config fields read here: ``model.*`` (:func:`make_model`, ``model.normalization``),
``data.{num_frames,num_references,mel_offset}``, ``loss_weights.{l1,velocity,region_l1,continuity}``,
``infer.{margin,batch_size}``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax import landmarks as lm
from talkjax.errors import ConfigError
from talkjax.models import dct_landmark, iplap_landmark, landmark_inference
from talkjax.tasks import Aux, LossContext, Player

MODEL_NAMES = ("iplap_landmark", "dct_landmark")
LOSS_TERMS = ("l1", "velocity", "region_l1", "continuity")
NUM_LIP_COORDS = 2 * lm.NUM_LIPS
_PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance's default eps


# --- Model ----------------------------------------------------------------------------------------

def make_model(model_config) -> nn.Module:
  """The landmark generator ``model_config.name`` names, with the config's widths."""
  m = model_config
  name = m.get("name")
  if name == "iplap_landmark":
    return iplap_landmark.IPLAPLandmarkGenerator(
        width_divisor=int(m.width_divisor), num_layers=int(m.num_layers), num_heads=int(m.num_heads),
        dim_feedforward=int(m.dim_feedforward), dropout=float(m.dropout),
        zero_init_heads=predicts_offset(model_config))
  if name == "dct_landmark":
    return dct_landmark.DCTLandmarkGenerator(
        width_divisor=int(m.width_divisor), num_layers=int(m.num_layers), num_heads=int(m.num_heads),
        dim_feedforward=int(m.dim_feedforward), dropout=float(m.dropout), block_size=int(m.block_size),
        halo=int(m.halo), dacn_width=int(m.dacn_width), dacn_kernel=int(m.dacn_kernel),
        dacn_hidden=tuple(int(v) for v in m.dacn_hidden), condition=tuple(str(v) for v in m.condition),
        use_dacn=bool(m.use_dacn), zero_init_heads=predicts_offset(model_config))
  raise ConfigError(f"config.model.name: unknown landmark model {name!r}; valid: {', '.join(MODEL_NAMES)}")


def _shapes(config) -> tuple[int, int]:
  data = config.get("data") or {}
  t = int(data.get("num_frames", iplap_landmark.NUM_FRAMES))
  nl = int(data.get("num_references", iplap_landmark.NUM_REFERENCES))
  if t < 2 or nl < 1:
    raise ConfigError(f"config.data: num_frames must be >= 2 (the motion losses need frame pairs) and "
                      f"num_references >= 1; got {t}, {nl}")
  return t, nl


def normalization(config) -> str:
  """The coordinate frame the network works in (``config.model.normalization``, default "crop")."""
  value = config.model.get("normalization", "crop")
  if value not in landmark_inference.NORMALIZATIONS:
    raise ConfigError(f"config.model.normalization: expected one of "
                      f"{', '.join(landmark_inference.NORMALIZATIONS)}, got {value!r}")
  return value


def predicts_offset(model_config) -> bool:
  """Whether the network predicts offsets from the nose-anchored reference prior (``model.offset``)."""
  value = model_config.get("offset", False)
  if not isinstance(value, bool):
    raise ConfigError(f"config.model.offset: expected True or False, got {value!r}")
  return value


def coordinate_settings(config) -> dict[str, Any]:
  """How the network's coordinates relate to the crop (``apply_model``'s ``normalization``, ``offset``)."""
  return {"normalization": normalization(config), "offset": predicts_offset(config.model)}


def predict(model: nn.Module, variables: dict, batch: dict, *, normalization: str = "crop",
            offset: bool = False, train: bool = False, rngs=None):
  """Runs ``model`` on a ``landmarks`` batch; returns the (B, T, 57, 2) content in the target frames'
  crop coordinates and, with ``train``, the updated batch statistics."""
  return landmark_inference.apply_model(model, variables, batch["mel"], batch["pose"], batch["reference"],
                                        normalization=normalization, offset=offset, train=train, rngs=rngs)


# --- Losses ---------------------------------------------------------------------------------------

def _check_pair(pred, target, what: str) -> None:
  if pred.shape != target.shape or pred.ndim != 4 or pred.shape[-2:] != (lm.NUM_CONTENT, 2):
    raise ValueError(f"{what}: expected two (B, T, {lm.NUM_CONTENT}, 2) arrays of one shape, got "
                     f"{tuple(pred.shape)} and {tuple(target.shape)}")


def l1_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """IP_LAP's L1: mean absolute error over every content coordinate."""
  _check_pair(pred, target, "l1_loss")
  return jnp.mean(jnp.abs(pred - target))


def velocity_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """IP_LAP's velocity loss: mean over (example, frame pair) of ``||dpred - dtarget + eps||_2``.

  ``d`` is the frame-to-frame difference of all 57 x 2 coordinates; eps = 1e-6 is added to the
  difference as ``torch.nn.functional.pairwise_distance`` does.
  """
  _check_pair(pred, target, "velocity_loss")
  b, t = pred.shape[:2]
  dp = (pred[:, 1:] - pred[:, :-1]).reshape(b, t - 1, -1)
  dt = (target[:, 1:] - target[:, :-1]).reshape(b, t - 1, -1)
  return jnp.mean(jnp.sqrt(jnp.sum(jnp.square(dp - dt + _PAIRWISE_EPS), axis=-1)))


def _regions(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(B, T, 57, 2) content -> lips (B, T, 80) and jaw (B, T, 34) coordinate vectors."""
  b, t = x.shape[:2]
  return x[:, :, lm.NUM_JAW:].reshape(b, t, -1), x[:, :, :lm.NUM_JAW].reshape(b, t, -1)


def region_l1_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Paper 000's L1: mean over frames of (lip mean abs error + jaw mean abs error)."""
  _check_pair(pred, target, "region_l1_loss")
  (pl, pj), (tl, tj) = _regions(pred), _regions(target)
  return jnp.mean(jnp.abs(pl - tl)) + jnp.mean(jnp.abs(pj - tj))


def continuity_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Paper 000's L_c: mean over frame pairs of ``||dlips - dlips*||_2 + ||djaw - djaw*||_2``.

  ``d`` are frame-to-frame differences of each region's coordinates (lips 80, jaw 34 values); the
  norm gets PyTorch's pairwise eps (1e-6 added to the difference) so it has a gradient at zero.
  """
  _check_pair(pred, target, "continuity_loss")
  total = 0.0
  for p, t in zip(_regions(pred), _regions(target)):
    diff = (p[:, 1:] - p[:, :-1]) - (t[:, 1:] - t[:, :-1])
    total = total + jnp.mean(jnp.sqrt(jnp.sum(jnp.square(diff + _PAIRWISE_EPS), axis=-1)))
  return total


LOSSES = {"l1": l1_loss, "velocity": velocity_loss, "region_l1": region_l1_loss,
          "continuity": continuity_loss}


# --- Task contract ---------------------------------------------------------------------------------

def sampler(config) -> str:
  del config
  return "landmarks"


def batch_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
  t, nl = _shapes(config)
  f32 = jnp.float32
  return {"pose": jax.ShapeDtypeStruct((t, lm.NUM_POSE, 2), f32),
          "mel": jax.ShapeDtypeStruct((t, 80, 16, 1), f32),
          "reference": jax.ShapeDtypeStruct((nl, lm.NUM_POINTS, 2), f32),
          "target": jax.ShapeDtypeStruct((t, lm.NUM_CONTENT, 2), f32)}


def networks(config) -> dict[str, nn.Module]:
  return {"generator": make_model(config.model)}


def rbg_key(rng: jax.Array) -> jax.Array:
  """An ``"rbg"`` PRNG key derived from a (raw or typed) threefry key, for initialisation and dropout.

  XLA:CPU compiles threefry bit generation separately at every place random bits are drawn: the
  ~120 parameter tensors of these generators and up to 33 dropout sites in a training step. With
  ``RngBitGenerator`` bits, compilation is 3-4x faster (measured on this machine: audio encoder
  initialisation 19 vs 4.6 CPU-seconds; one SALA layer's training gradient 9.5 vs 2.9, 2.0 without
  dropout). Values differ from threefry's, distributions do not; dropout masks stay a pure function
  of the step's key (resuming reproduces them), though not guaranteed equal across device counts.
  """
  pair = jax.random.split(rng, 2)
  data = jax.random.key_data(pair) if jnp.issubdtype(pair.dtype, jax.dtypes.prng_key) else pair
  return jax.random.wrap_key_data(jnp.asarray(data, jnp.uint32).reshape(4), impl="rbg")


def init_variables(model: nn.Module, rng: jax.Array, batch: dict) -> dict:
  """``model``'s variables from an example ``landmarks`` batch (any batch size)."""
  key = rbg_key(rng)
  params_rng, dropout_rng = jax.random.split(key)
  # BatchNorm in training needs > 1 value per channel; the engine's example batch has B = 1, so
  # initialise in eval mode (running statistics start at 0 / 1 either way).
  return model.init({"params": params_rng, "dropout": dropout_rng}, batch["mel"], batch["pose"],
                    *iplap_landmark.split_reference(batch["reference"]), train=False)


def init(config, nets, rng, batch):
  del config
  return {"generator": init_variables(nets["generator"], rng, batch)}


def initial_weights(config) -> dict[str, float]:
  weights = config.loss_weights
  weights = weights.to_dict() if hasattr(weights, "to_dict") else dict(weights)
  unknown = sorted(set(weights) - set(LOSS_TERMS))
  if unknown or not weights:
    raise ConfigError(f"config.loss_weights: unknown term(s) {unknown}; valid terms: {', '.join(LOSS_TERMS)}")
  return {k: float(v) for k, v in weights.items()}


def players(config, nets) -> list[Player]:
  gen = nets["generator"]
  weighted = tuple(initial_weights(config))
  frame = coordinate_settings(config)

  def generator_loss(params, ctx: LossContext):
    variables = {"params": params["generator"], "batch_stats": ctx.batch_stats["generator"]}
    if ctx.train:
      pred, stats = predict(gen, variables, ctx.batch, **frame, train=True,
                            rngs={"dropout": rbg_key(ctx.rng)})
      new_stats = {"generator": stats}
    else:
      pred, new_stats = predict(gen, variables, ctx.batch, **frame), {}
    target = ctx.batch["target"]
    terms = {name: fn(pred, target) for name, fn in LOSSES.items()}
    terms["lip_l1"] = jnp.mean(jnp.abs(pred[:, :, lm.NUM_JAW:] - target[:, :, lm.NUM_JAW:]))
    loss = sum(ctx.weights[k] * terms[k] for k in weighted)
    return loss, Aux(terms=terms, batch_stats=new_stats)

  return [Player("generator", ("generator",), generator_loss)]


# --- Evaluation ------------------------------------------------------------------------------------

def pearson_r(a: np.ndarray, b: np.ndarray) -> float:
  """Pearson correlation of two 1-D samples (0.0 when either is constant)."""
  a = np.asarray(a, np.float64).ravel() - np.mean(a)
  b = np.asarray(b, np.float64).ravel() - np.mean(b)
  denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
  return float(np.sum(a * b) / denom) if denom > 0 else 0.0


def landmark_metrics(pred: np.ndarray, target: np.ndarray, pose: np.ndarray, reference: np.ndarray,
                     image_size: int = 128) -> dict[str, float]:
  """Held-out figures of predicted content landmarks (all arrays normalised in their crops).

  Args:
    pred, target: (B, T, 57, 2) predicted and true jaw + lips.
    pose: (B, T, 74, 2) the frames' pose landmarks (to assemble full faces for the mouth opening).
    reference: (B, Nl, 131, 2) the reference landmarks; their mean lips / jaw are the baseline.
    image_size: crop size in pixels the errors are expressed at.

  Returns:
    ``lip_l1_px`` / ``jaw_l1_px``: mean absolute coordinate error (pixels); ``lip_lmd_px``: mean
    Euclidean distance per lip point; ``baseline_*``: the same for the mean reference shape;
    ``lip_l1_ratio`` = lip_l1_px / baseline_lip_l1_px; ``openness_r`` / ``baseline_openness_r``:
    Pearson r of the inner-lip distance (points 13-14) against the truth over all frames;
    ``openness_mae_px``.
  """
  pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
  ref_content = np.asarray(reference, np.float64)[:, :, lm.CONTENT_SLICE]
  baseline = np.broadcast_to(ref_content.mean(axis=1, keepdims=True), target.shape)
  s = float(image_size)
  jaw, lips = slice(0, lm.NUM_JAW), slice(lm.NUM_JAW, lm.NUM_CONTENT)

  def full(content):
    return np.concatenate([np.asarray(pose, np.float64), content], axis=2)

  out = {}
  for prefix, guess in (("", pred), ("baseline_", baseline)):
    err = guess - target
    out[f"{prefix}lip_l1_px"] = float(np.mean(np.abs(err[:, :, lips])) * s)
    out[f"{prefix}jaw_l1_px"] = float(np.mean(np.abs(err[:, :, jaw])) * s)
    out[f"{prefix}lip_lmd_px"] = float(np.mean(np.linalg.norm(err[:, :, lips], axis=-1)) * s)
    opening, true_opening = lm.inner_mouth_opening(full(guess)), lm.inner_mouth_opening(full(target))
    out[f"{prefix}openness_r"] = pearson_r(opening, true_opening)
    out[f"{prefix}openness_mae_px"] = float(np.mean(np.abs(opening - true_opening)) * s)
  out["lip_l1_ratio"] = out["lip_l1_px"] / max(out["baseline_lip_l1_px"], 1e-12)
  return out


def sketch_pairs(pred: np.ndarray, target: np.ndarray, pose: np.ndarray, size: int) -> np.ndarray:
  """(N, size, 2*size, 3) float images in [0, 1]: true sketch | predicted sketch of each frame."""
  pose = np.asarray(pose, np.float32)
  truth = lm.draw_sketches(np.concatenate([pose, np.asarray(target, np.float32)], axis=1), size)
  guess = lm.draw_sketches(np.concatenate([pose, np.asarray(pred, np.float32)], axis=1), size)
  return np.concatenate([truth, guess], axis=2).astype(np.float32) / 255.0


class LandmarkEvaluator:
  """Type ``"landmarks"``: landmark errors, baseline and mouth-opening correlation on held-out batches.

  Runs the generator in eval mode on the first ``num_batches`` held-out batches (the same ones at
  every evaluation) and yields the loss terms (``loss/<term>``, batch means), :func:`landmark_metrics`
  over all their frames, ``other_audio_lip_l1_px`` / ``other_audio_openness_r`` (the same frames
  predicted from the audio of the batch's previous example: near the baseline and near 0 when the
  lips really follow the audio), and ``sketches``: true | predicted sketches of the middle frame of
  the first ``num_sketches`` examples. (One jitted function gives all of them: the generic ``"loss"``
  evaluator would compile the model a second time.)
  """

  def __init__(self, ctx, num_batches: int = 8, image_size: int = 128, num_sketches: int = 4,
               sketch_size: int = 96):
    if num_batches < 1:
      raise ConfigError(f"landmarks evaluator: num_batches must be >= 1, got {num_batches}")
    self.ctx, self.num_batches, self.image_size = ctx, int(num_batches), int(image_size)
    self.num_sketches, self.sketch_size = int(num_sketches), int(sketch_size)
    gen = ctx.nets["generator"]
    frame = coordinate_settings(ctx.config)

    def outputs(state, batch, frozen):
      del frozen
      variables = {"params": state.params["generator"], "batch_stats": state.batch_stats["generator"]}
      pred = predict(gen, variables, batch, **frame)
      # Control: the same frames driven by another example's audio (the batch rolled by one).
      other = predict(gen, variables, {**batch, "mel": jnp.roll(batch["mel"], 1, axis=0)}, **frame)
      return pred, other, {name: fn(pred, batch["target"]) for name, fn in LOSSES.items()}

    self._fn = ctx.compile(outputs)

  def run(self, train_state):
    preds, others, targets, poses, refs, terms = [], [], [], [], [], []
    for batch in self.ctx.batches(self.num_batches):
      pred, other, losses = jax.device_get(self._fn(train_state, batch, self.ctx.frozen))
      preds.append(np.asarray(pred))
      others.append(np.asarray(other))
      terms.append(losses)
      targets.append(np.asarray(jax.device_get(batch["target"])))
      poses.append(np.asarray(jax.device_get(batch["pose"])))
      refs.append(np.asarray(jax.device_get(batch["reference"])))
    for name in LOSSES:
      yield f"loss/{name}", float(np.mean([float(t[name]) for t in terms]))
    pred, target, pose = np.concatenate(preds), np.concatenate(targets), np.concatenate(poses)
    ref = np.concatenate(refs)
    yield from landmark_metrics(pred, target, pose, ref, self.image_size).items()
    control = landmark_metrics(np.concatenate(others), target, pose, ref, self.image_size)
    for key in ("lip_l1_px", "openness_r"):
      yield f"other_audio_{key}", control[key]
    n, mid = min(self.num_sketches, len(pred)), pred.shape[1] // 2
    yield "sketches", sketch_pairs(pred[:n, mid], target[:n, mid], pose[:n, mid], self.sketch_size)


def evaluators(config):
  del config
  return {"landmarks": LandmarkEvaluator}


def inference_settings(config) -> dict[str, Any]:
  """What :mod:`talkjax.models.landmark_inference` needs besides the network (from ``config``)."""
  t, nl = _shapes(config)
  data = config.get("data") or {}
  infer = config.get("infer") or {}
  return {"num_frames": t, "num_references": nl, "mel_offset": int(data.get("mel_offset", -2)),
          "margin": float(infer.get("margin", 5)), "batch_size": int(infer.get("batch_size", 64)),
          **coordinate_settings(config)}
