"""Task ``dck_unet``: paper 001's DCK U-Net trained on paired clips (same pose, different speech).

Training (paper IV-B): a pair of videos ``V_a``, ``V_b`` of one person with the same head motion and
different speech. The generator takes frame t of the source clip (its face and pose) and the target
clip's mel window at t, and must output frame t of the target clip: ``G(V_a, A_b) ~ V_b`` (and the
other way round: the ``dck_pairs`` sampler swaps the roles at random). The synthetic corpus's
``--pairs`` clips are exactly such pairs.

Players:
  generator:      ``l1 * L1(G, V_b) + gan * LSGAN_G(D(G)) + mask * mean(A)`` (eqs. 3-5; the mask
                  term is the paper's "mask loss" on the attention mask, IV-D; weights in
                  ``config.loss_weights``)
  discriminator:  ``LSGAN_D(D(V_b), D(G))`` (eq. 4), a PatchGAN (pix2pixHD's, one scale by default)

Evaluator ``"lipsync"`` (held-out speakers): PSNR/SSIM of the generated crops against the target
clip, and the lip-sync figure: Pearson r between mouth openness measured on generated crops and on
the ground-truth target crops (``talkjax.data.synthetic.measure_mouth_openness`` with the target's
crop-space landmarks). See :class:`LipSyncEvaluator` for exactly which frames.

Inference hook :func:`inference`: the loose face crop of preprocessing at ``model.image_size`` and
direct paste-back (the paper's "direct cover"), for ``talkjax.generate``.

Config fields read here: ``model.*`` (:func:`make_generator`), ``disc.{ndf,n_layers,num_d,norm}``,
``loss_weights.{l1,gan,mask}``, ``data.{image_size,mel_offset}``, ``infer.{batch_size,face_scale,dtype}``.
"""

from __future__ import annotations

import os

import dm_pix
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax import losses
from talkjax.errors import ConfigError
from talkjax.generate.hooks import CropSpec
from talkjax.models import dck_unet as dck
from talkjax.models.pix2pixhd import MultiscaleDiscriminator
from talkjax.tasks import Aux, LossContext, Player

WEIGHTS = ("l1", "gan", "mask")


def _opt(config, group: str, key: str, default=None):
  node = config.get(group)
  return default if node is None or key not in node else node[key]


def make_generator(config) -> dck.DCKUNet:
  """The DCK U-Net described by ``config.model``."""
  m = config.model
  up = m.get("up_features")
  return dck.DCKUNet(
      down_features=tuple(int(v) for v in m.down_features),
      up_features=None if up is None else tuple(int(v) for v in up),
      num_middle=int(m.num_middle),
      hyper_hidden=tuple(int(v) for v in m.hyper_hidden),
      fusion=str(m.fusion),
      blend=bool(m.blend),
      use_audio=bool(m.use_audio),
      freeze_audio_encoder=bool(m.get("freeze_audio_encoder", False)),
      audio_width_divisor=int(m.get("audio_width_divisor", 1)),
      norm=str(m.get("norm", "batch")),
      upsample=str(m.get("upsample", "before_conv")),
  )


def make_discriminator(config) -> MultiscaleDiscriminator:
  d = config.disc
  return MultiscaleDiscriminator(in_channels=3, ndf=int(d.ndf), n_layers=int(d.n_layers), num_d=int(d.num_d),
                                 norm=str(d.norm))


def _image_size(config) -> int:
  size = int(config.model.image_size)
  data_size = _opt(config, "data", "image_size")
  if data_size is not None and int(data_size) != size:
    raise ConfigError(f"config.data.image_size ({data_size}) must equal config.model.image_size ({size}): "
                      "the sampler resizes the crops to what the model takes")
  return size


def to_float(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] (the samplers' images) -> float32 [0, 1]; float input is taken as already in [0, 1]."""
  if jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


# --- The task contract ---------------------------------------------------------------------------


def sampler(config) -> str:
  del config
  return "dck_pairs"


def batch_spec(config) -> dict[str, jax.ShapeDtypeStruct]:
  s = _image_size(config)
  return {"source": jax.ShapeDtypeStruct((s, s, 3), jnp.uint8),
          "target": jax.ShapeDtypeStruct((s, s, 3), jnp.uint8),
          "target_mel": jax.ShapeDtypeStruct((80, 16, 1), jnp.float32),
          "source_landmarks": jax.ShapeDtypeStruct((131, 2), jnp.float32),
          "target_landmarks": jax.ShapeDtypeStruct((131, 2), jnp.float32)}


def networks(config) -> dict[str, nn.Module]:
  return {"generator": make_generator(config), "discriminator": make_discriminator(config)}


def init(config, nets, rng, batch):
  # Non-partitionable threefry for the ~100 initialiser call sites: XLA:CPU compiles this init about
  # 3.5x faster (2-3 min -> under 1 min on the shared 2-core machine). The values are the same on
  # any mesh either way; only the bit stream differs from the partitionable default.
  with jax.threefry_partitionable(False):
    return _init(config, nets, rng, batch)


def _init(config, nets, rng, batch):
  g_rng, d_rng = jax.random.split(rng)
  source = to_float(batch["source"])
  gen_vars = dict(nets["generator"].init(g_rng, source, batch["target_mel"], train=False))
  path = config.model.get("audio_encoder_init")
  if path:
    # Pre-trained audio network (the paper uses Wav2Lip's): constants folded into the initial state.
    params, stats = dck.load_audio_encoder(
        os.path.expanduser(str(path)),
        {"params": gen_vars["params"]["audio_encoder"], "batch_stats": gen_vars["batch_stats"]["audio_encoder"]})
    gen_vars["params"] = {**gen_vars["params"], "audio_encoder": jax.tree.map(jnp.asarray, params)}
    gen_vars["batch_stats"] = {**gen_vars["batch_stats"], "audio_encoder": jax.tree.map(jnp.asarray, stats)}
  disc_vars = nets["discriminator"].init(d_rng, source * 2.0 - 1.0)
  return {"generator": gen_vars, "discriminator": disc_vars}


def initial_weights(config) -> dict[str, float]:
  w = config.loss_weights
  unknown = sorted(set(w.keys()) - set(WEIGHTS))
  if unknown:
    raise ConfigError(f"config.loss_weights: unknown term(s) {unknown}; valid: {', '.join(WEIGHTS)}")
  return {k: float(w.get(k, 0.0)) for k in WEIGHTS}


def run_generator(gen: dck.DCKUNet, gen_variables: dict, source: jax.Array, mel: jax.Array,
                  train: bool) -> tuple[dck.Output, dict]:
  """Runs the generator; returns its output and (in training) the updated batch statistics."""
  if train:
    out, updates = gen.apply(gen_variables, source, mel, train=True, mutable=["batch_stats"])
    return out, updates.get("batch_stats", {})
  return gen.apply(gen_variables, source, mel, train=False), {}


def players(config, nets) -> list[Player]:
  gen, disc = nets["generator"], nets["discriminator"]

  def d_out(params, images):
    return disc.apply({"params": params["discriminator"]}, images * 2.0 - 1.0)

  def generator_loss(params, ctx: LossContext):
    source, target = to_float(ctx.batch["source"]), to_float(ctx.batch["target"])
    variables = {"params": params["generator"], "batch_stats": ctx.batch_stats["generator"]}
    out, stats = run_generator(gen, variables, source, ctx.batch["target_mel"], ctx.train)
    fake = out.image
    l1 = losses.l1(fake, target)
    gan = losses.lsgan_g_loss(d_out(params, fake))
    terms = {"l1": l1, "gan": gan}
    loss = ctx.weights["l1"] * l1 + ctx.weights["gan"] * gan
    images = {"source": source, "output": fake, "target": target}
    if out.attention is not None:
      terms["mask"] = jnp.mean(out.attention)
      loss = loss + ctx.weights["mask"] * terms["mask"]
      images.update(attention=out.attention, motion=out.motion)
    return loss, Aux(terms=terms, batch_stats={"generator": stats} if ctx.train else {},
                     carry={"fake": fake}, images=images)

  def discriminator_loss(params, ctx: LossContext):
    real, fake = to_float(ctx.batch["target"]), ctx.carry["fake"]
    real_out, fake_out = d_out(params, real), d_out(params, fake)
    real_term, fake_term = losses.lsgan_loss(real_out, True), losses.lsgan_loss(fake_out, False)
    return 0.5 * (real_term + fake_term), Aux(terms={"real": real_term, "fake": fake_term})

  return [Player("generator", ("generator",), generator_loss),
          Player("discriminator", ("discriminator",), discriminator_loss)]


# --- Evaluation ----------------------------------------------------------------------------------


def pearson(a: np.ndarray, b: np.ndarray) -> float:
  """Pearson correlation of two 1-D arrays; 0 when either is constant (no linear relation to find)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1 or a.size < 2:
    raise ValueError(f"pearson: expected two 1-D arrays of equal length >= 2, got {a.shape} and {b.shape}")
  a, b = a - a.mean(), b - b.mean()
  denom = np.sqrt((a * a).sum() * (b * b).sum())
  return float((a * b).sum() / denom) if denom > 0 else 0.0


def openness(crops: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
  """Mouth openness of (N, S, S, 3) crops (uint8 or float [0, 1]) with (N, 131, 2) landmarks in [0, 1]
  of the crop (the samplers' normalisation), via the synthetic corpus's pixel yardstick."""
  from talkjax.data.synthetic import measure_mouth_openness

  crops = np.asarray(crops)
  points = np.asarray(landmarks, np.float64) * crops.shape[1]
  return measure_mouth_openness(crops, points)


def _dataset_root(config) -> str | None:
  """The preprocessed dataset the run trains on (None for ``data.kind="random"``)."""
  data = config.data
  if data.get("kind", "corpus") != "corpus":
    return None
  from talkjax.data import embedded

  return embedded.dataset_root(data)


def held_out_frames(root: str, *, image_size: int, mel_offset: int, split: str = "eval",
                    max_frames: int | None = None):
  """Every frame of every held-out pair, both directions, in a fixed order.

  Yields dicts shaped like one ``dck_pairs`` example (``source``, ``target``, ``target_mel``,
  ``target_landmarks``) for ``(a -> b)`` then ``(b -> a)`` of each pair (``SegmentDataset.pairs()``
  order), frames in time order, skipping frames whose mel window at ``mel_offset`` is not real audio
  in both clips (the sampler's rule); at most ``max_frames`` of them.
  """
  from talkjax.data import loader, samplers

  data = loader.SegmentDataset(root, split)
  count = 0
  for a, b in data.pairs():
    ok = loader.windows_ok(data.segments[a], (mel_offset,)) & loader.windows_ok(data.segments[b], (mel_offset,))
    frames = np.flatnonzero(ok)
    if not frames.size:
      continue
    segs = {a: data.segment(a), b: data.segment(b)}
    stored = int(data.settings["face_size"])
    for src, tgt in ((a, b), (b, a)):
      # Read a segment's frames in blocks: one record read per frame either way, but fewer calls.
      for start in range(0, frames.size, 32):
        ts = frames[start:start + 32]
        if max_frames is not None:
          ts = ts[:max(0, max_frames - count)]
        if not ts.size:
          return
        source = samplers._resize(data.frames(src, ts, "face"), image_size)
        target = samplers._resize(data.frames(tgt, ts, "face"), image_size)
        points = {i: np.asarray(segs[i].arrays["face_landmarks"][ts], np.float32) / np.float32(stored)
                  for i in (src, tgt)}
        for k, t in enumerate(ts):
          yield {"source": source[k], "target": target[k], "target_mel": segs[tgt].mel_window(int(t), mel_offset),
                 "source_landmarks": points[src][k], "target_landmarks": points[tgt][k]}
          count += 1


def _plausible(points: np.ndarray) -> bool:
  """Landmarks in [0, 1] crop units (random-data smoke runs have none worth measuring)."""
  return bool(np.all(np.isfinite(points)) and points.min() >= -1.0 and points.max() <= 2.0
              and np.all(np.ptp(points, axis=1) > 0.05))


class LipSyncEvaluator:
  """Type ``"lipsync"``: image quality and lip sync of the generator on held-out speakers.

  Frames: with ``config.data.kind == "corpus"`` and ``all_frames`` (default), every frame of every
  held-out pair in both directions (:func:`held_out_frames`; at most ``max_frames``); otherwise the
  first ``num_batches`` batches of the engine's held-out stream (``dck_pairs`` eval split: random
  frames of held-out pairs, seeded, so the same frames every evaluation).

  Yields ``psnr`` and ``ssim`` (generated vs target crop, [0, 1], mean over frames; SSIM with the
  usual 11-tap Gaussian window), ``openness_r`` (Pearson r, over all frames, between
  ``measure_mouth_openness`` of the generated crops, inside the lip outline of the *input* (source)
  frame's crop-space landmarks, and of the ground-truth target crops with their own landmarks),
  ``openness_r_source`` (the same for the unchanged source crops: what copying the input scores;
  not 0 on the synthetic pairs, whose two utterances share their silent starts and ends),
  ``openness_gt``/``openness_gen`` (means), ``num_frames``, and image batches
  (``frames``: source | output | target; ``attention``; ``kernels``: the first DCK layer's kernels
  as Cin x Cout images, the paper's Figure 7).
  """

  def __init__(self, ctx, num_batches: int = 4, all_frames: bool = True, max_frames: int = 2000,
               num_images: int = 4):
    self.ctx, self.num_batches, self.num_images = ctx, int(num_batches), int(num_images)
    self.max_frames = int(max_frames)
    config = ctx.config
    self.root = _dataset_root(config) if all_frames else None
    self.image_size = _image_size(config)
    self.mel_offset = int(_opt(config, "data", "mel_offset", -2))
    gen = ctx.nets["generator"]
    self.gen = gen

    def outputs(state, batch, frozen):
      del frozen
      variables = {"params": state.params["generator"], "batch_stats": state.batch_stats["generator"]}
      source, target = to_float(batch["source"]), to_float(batch["target"])
      out = gen.apply(variables, source, batch["target_mel"], train=False)
      psnr = 10.0 * jnp.log10(1.0 / jnp.maximum(jnp.mean((out.image - target) ** 2, axis=(1, 2, 3)), 1e-10))
      ssim = dm_pix.ssim(out.image, target)
      generated = jnp.clip(jnp.round(out.image * 255.0), 0, 255).astype(jnp.uint8)
      attention = out.attention if out.attention is not None else jnp.zeros_like(out.image[..., :1])
      return psnr, ssim, generated, attention

    self._fn = ctx.compile(outputs)
    self._kernels = jax.jit(lambda v, f, m: dck.dck_kernels(gen, v, f, m)[0]) if gen.fusion == "dck" else None
    self._global_batch = int(config.batch_size)

  def _batches(self):
    if self.root is None:
      yield from ((b, None) for b in self.ctx.batches(self.num_batches))
      return
    from talkjax.train import mesh as mesh_lib

    examples = held_out_frames(self.root, image_size=self.image_size, mel_offset=self.mel_offset,
                               max_frames=self.max_frames)
    spec = batch_spec(self.ctx.config)
    while True:
      chunk = [e for _, e in zip(range(self._global_batch), examples)]
      if not chunk:
        return
      n = len(chunk)
      # Pad to the global batch (shapes fixed: one compilation); padded rows are dropped below.
      chunk += [chunk[-1]] * (self._global_batch - n)
      batch = {k: np.stack([e[k] for e in chunk]).astype(spec[k].dtype) for k in spec}
      if jax.process_count() > 1:
        raise ConfigError("lipsync evaluator: all_frames=True is single-process; set all_frames=False")
      yield mesh_lib.global_batch(batch, self.ctx.mesh), n

  def run(self, train_state):
    psnrs, ssims, gt_open, gen_open, src_open = [], [], [], [], []
    first = None
    for batch, n in self._batches():
      psnr, ssim, generated, attention = jax.device_get(self._fn(train_state, batch, self.ctx.frozen))
      host = jax.device_get(batch)
      n = len(psnr) if n is None else n
      source, target = np.asarray(host["source"])[:n], np.asarray(host["target"])[:n]
      src_points = np.asarray(host["source_landmarks"])[:n]
      tgt_points = np.asarray(host["target_landmarks"])[:n]
      psnrs.append(psnr[:n])
      ssims.append(ssim[:n])
      if _plausible(src_points) and _plausible(tgt_points):
        # Generated crops are measured inside the *input* frame's lip outline (what a user of the model
        # has), never the target's, whose outline alone would leak the answer (BUILD_NOTES.md, dck).
        gt_open.append(openness(target, tgt_points))
        gen_open.append(openness(generated[:n], src_points))
        src_open.append(openness(source, src_points))
      if first is None:
        k = min(self.num_images, n)
        first = (source[:k], generated[:k], target[:k], attention[:k], host["target_mel"][:k], host["source"][:k])
    if first is None:
      raise ConfigError("lipsync evaluator: no held-out frames (is the eval split empty?)")
    yield "psnr", float(np.mean(np.concatenate(psnrs)))
    yield "ssim", float(np.mean(np.concatenate(ssims)))
    yield "num_frames", float(sum(len(p) for p in psnrs))
    if gt_open:
      gt, gen, src = np.concatenate(gt_open), np.concatenate(gen_open), np.concatenate(src_open)
      yield "openness_r", pearson(gen, gt)
      yield "openness_r_source", pearson(src, gt)
      yield "openness_gt", float(gt.mean())
      yield "openness_gen", float(gen.mean())
    source, generated, target, attention, mels, raw_source = first
    yield "frames", np.concatenate([source, generated, target], axis=2).astype(np.float32) / 255.0
    yield "attention", np.asarray(attention, np.float32)
    if self._kernels is not None and self.gen.num_middle > 0:
      variables = {"params": train_state.params["generator"], "batch_stats": train_state.batch_stats["generator"]}
      kernels = np.asarray(self._kernels(jax.device_get(variables), to_float(jnp.asarray(raw_source)),
                                         jnp.asarray(mels)))
      scale = np.max(np.abs(kernels), axis=(1, 2), keepdims=True) + 1e-8
      yield "kernels", (0.5 + 0.5 * kernels / scale)[..., None].astype(np.float32)


def evaluators(config):
  del config
  return {"lipsync": LipSyncEvaluator}


# --- Inference hook (talkjax.generate) -----------------------------------------------------------


class Renderer:
  """The DCK U-Net as a ``talkjax.generate`` renderer: loose face crops in, generated crops out."""

  def __init__(self, config, variables: dict, batch_size: int | None = None, paste: str = "direct",
               dtype: str | None = None):
    dtype = str(dtype or _opt(config, "infer", "dtype", "float32"))
    if dtype not in ("float32", "bfloat16"):
      raise ConfigError(f"inference dtype: expected float32 or bfloat16, got {dtype!r}")
    self.gen = make_generator(config).clone(dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
    size = _image_size(config)
    self.crop = CropSpec(kind="loose", size=size, scale=float(_opt(config, "infer", "face_scale", 1.5)),
                         paste=paste)
    self.mel_offset = int(_opt(config, "data", "mel_offset", -2))
    self.batch_size = int(batch_size or _opt(config, "infer", "batch_size", 16))
    gv = variables["generator"]
    self.variables = {"params": gv["params"], "batch_stats": gv.get("batch_stats", {})}

    gen = self.gen

    @jax.jit
    def run(variables, crops, mels):
      out = gen.apply(variables, crops.astype(jnp.float32) / 255.0, mels, train=False)
      return jnp.clip(jnp.round(out.image.astype(jnp.float32) * 255.0), 0, 255).astype(jnp.uint8)

    self._run = run

  def generate_chunk(self, crops, crop_landmarks, mel_windows, frame_indices):
    del crop_landmarks, frame_indices
    crops = np.asarray(crops, np.uint8)
    mels = np.asarray(mel_windows, np.float32).reshape(len(crops), 80, 16, 1)
    n = len(crops)
    pad = self.batch_size - n
    if pad > 0:  # one compiled shape for every chunk
      crops = np.concatenate([crops, np.repeat(crops[-1:], pad, axis=0)])
      mels = np.concatenate([mels, np.repeat(mels[-1:], pad, axis=0)])
    return np.asarray(self._run(self.variables, crops, mels))[:n]


def inference(config, variables, **kwargs) -> Renderer:
  """The inference hook (``talkjax.generate.hooks``): a :class:`Renderer` for trained ``variables``."""
  return Renderer(config, variables, **kwargs)

