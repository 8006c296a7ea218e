"""The DCK U-Net of paper 001 (Ye et al., "Audio-Driven Talking Face Video Generation with Dynamic
Convolution Kernels", IEEE TMM 2022), NHWC, Flax Linen.

A U-Net over the face crop whose middle layers have no kernels of their own: per DCK layer, a fully
connected network maps the audio feature of the frame (Wav2Lip's audio encoder on the 80x16 mel
window) to a 1x1 kernel (a ``Cin x Cout`` matrix) and a bias, applied to that frame only
(:class:`talkjax.nn.DynamicConv`). The network outputs an attention mask ``A`` (1 channel, sigmoid)
and a motion image ``M`` (3 channels), and the frame is ``A * M + (1 - A) * input`` (eq. 7).

Layout (``F = down_features``, ``n = len(F)``, ``S`` the crop side)::

  face (S, S, 3) in [0, 1] -> [-1, 1]
  down i = 1..n : conv 4x4 stride 2 -> norm (not on the first) -> LeakyReLU(0.2)   S / 2**i, F[i-1]
  middle j = 1..num_middle (at S / 2**n, C = F[-1]):
     "dck":    x -> DynamicConv 1x1 (C x C kernel + bias from FC(audio)) -> norm -> LeakyReLU(0.2)
     "concat": (no_dck ablation) audio -> Dense -> (S/2**n, S/2**n, 16) map, fused once by spatial
               attention before the middle layers, which become static 1x1 convs
  up i = n..1   : concat(x, skip_i) -> nearest 2x -> conv 3x3 -> norm -> ReLU            S / 2**(i-1)
                  (``upsample="after_conv"``: the conv first, at the lower resolution, then 2x)
  head          : concat(x, face) -> conv 3x3 -> 4 channels: A = sigmoid, M = sigmoid; eq. (7)
                  (``blend=False``, the no_blend ablation: 3 channels, sigmoid, the frame itself)

Inputs: ``face`` (B, S, S, 3) float RGB in [0, 1]; ``mel`` (B, 80, 16, 1) Wav2Lip mel windows in
[-4, 4] (``talkjax.audio``). Output: :class:`Output` with ``image`` (B, S, S, 3) in [0, 1] and, when
blending, ``attention`` (B, S, S, 1) and ``motion`` (B, S, S, 3).

The paper's layer counts and widths did not survive in the text; the defaults here (4 down, 4 DCK,
4 up layers, widths 64-128-256-256, DCK width 256, one hidden FC layer of 256) are choices recorded
in BUILD_NOTES.md (area "dck"). Figure 7 of the paper shows four DCK layers.

Submodule names (``audio_encoder``, ``down_{i}``, ``middle_{j}``, ``up_{i}``, ``head``) are the
checkpoint layout; ``audio_encoder`` matches Wav2Lip's, so a converted Wav2Lip generator's
``params/audio_encoder`` subtree loads into it (:func:`load_audio_encoder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from talkjax.errors import CheckpointError, ConfigError
from talkjax.models.audio_encoder import MEL_BINS, MEL_STEPS, AudioEncoder
from talkjax.nn.conv_blocks import BatchNorm
from talkjax.nn.dynamic_conv import DynamicConv
from talkjax.nn.norms import instance_norm

FUSIONS = ("dck", "concat")
UPSAMPLES = ("before_conv", "after_conv")
NORMS = ("batch", "instance", "none")
AUDIO_MAP_CHANNELS = 16  # the no_dck ablation's audio feature map (paper VI-D: "16 channels")
AUDIO_FEATURES = 512


class Output(NamedTuple):
  """What :class:`DCKUNet` returns.

  Attributes:
    image: (B, S, S, 3) the generated frame in [0, 1].
    attention: (B, S, S, 1) the attention mask A in [0, 1] (None without blending).
    motion: (B, S, S, 3) the motion image M in [0, 1] (None without blending).
  """
  image: jax.Array
  attention: jax.Array | None = None
  motion: jax.Array | None = None


def blend(attention: jax.Array, motion: jax.Array, image: jax.Array) -> jax.Array:
  """Eq. (7): ``A * M + (1 - A) * I`` (pixel-wise; A broadcasts over the colour channels)."""
  return attention * motion + (1.0 - attention) * image


def _upsample2(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), method="nearest")


class _Norm(nn.Module):
  kind: str = "batch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    if self.kind == "batch":
      return BatchNorm(dtype=self.dtype, name="bn")(x, train=train)
    if self.kind == "instance":
      return instance_norm(x)
    return x


class DCKUNet(nn.Module):
  """The adapted U-Net with dynamic convolution kernels (see the module docstring).

  Attributes:
    down_features: widths of the down-sampling layers (their number is the U-Net's depth).
    up_features: widths of the up-sampling layers, deepest first (default: ``down_features``
      reversed, i.e. the mirror of the encoder).
    num_middle: number of middle layers (all DCK layers with ``fusion="dck"``).
    hyper_hidden: hidden widths of each DCK layer's fully connected network.
    fusion: ``"dck"`` (the paper) or ``"concat"`` (the no_dck ablation: audio reshaped into a
      16-channel feature map and fused by spatial attention).
    blend: output ``A * M + (1 - A) * face`` (eq. 7); False: the frame directly (no_blend ablation).
    use_audio: False zeroes the mel windows inside the network (the no_audio baseline), so the
      output cannot depend on the audio.
    freeze_audio_encoder: no gradient into the audio encoder, whose BatchNorms then always use
      their running statistics (the paper keeps Wav2Lip's pre-trained audio network fixed).
    audio_width_divisor: divides the audio encoder's widths (reduced variants; 1 to load Wav2Lip).
    norm: ``"batch"`` (PyTorch-exact BatchNorm), ``"instance"`` or ``"none"``.
    upsample: ``"before_conv"`` (nearest 2x, then the 3x3 conv at the new resolution: resize-conv)
      or ``"after_conv"`` (the conv at the lower resolution, then nearest 2x: a quarter of the
      FLOPs; the CPU variants use it).
    dtype: computation dtype (parameters stay float32).
  """
  down_features: Sequence[int] = (64, 128, 256, 256)
  up_features: Sequence[int] | None = None
  num_middle: int = 4
  hyper_hidden: Sequence[int] = (256,)
  fusion: str = "dck"
  blend: bool = True
  use_audio: bool = True
  freeze_audio_encoder: bool = False
  audio_width_divisor: int = 1
  norm: str = "batch"
  upsample: str = "before_conv"
  dtype: Any = jnp.float32

  def _check(self, face: jax.Array, mel: jax.Array) -> None:
    if self.fusion not in FUSIONS:
      raise ConfigError(f"DCKUNet.fusion: unknown {self.fusion!r}; valid: {', '.join(FUSIONS)}")
    if self.norm not in NORMS:
      raise ConfigError(f"DCKUNet.norm: unknown {self.norm!r}; valid: {', '.join(NORMS)}")
    if self.upsample not in UPSAMPLES:
      raise ConfigError(f"DCKUNet.upsample: unknown {self.upsample!r}; valid: {', '.join(UPSAMPLES)}")
    if not self.down_features or self.num_middle < 0:
      raise ConfigError(f"DCKUNet: needs at least one down-sampling layer and num_middle >= 0, got "
                        f"down_features={tuple(self.down_features)}, num_middle={self.num_middle}")
    ups = self.up_widths()
    if len(ups) != len(self.down_features):
      raise ConfigError(f"DCKUNet.up_features: needs {len(self.down_features)} widths (one per "
                        f"down-sampling layer), got {tuple(ups)}")
    if face.ndim != 4 or face.shape[-1] != 3:
      raise ValueError(f"face: expected (B, S, S, 3) RGB crops, got shape {tuple(face.shape)}")
    factor = 2 ** len(self.down_features)
    if face.shape[1] % factor or face.shape[2] % factor:
      raise ValueError(f"face: size {face.shape[1]}x{face.shape[2]} must be divisible by {factor} "
                       f"(2 ** {len(self.down_features)} down-sampling layers)")
    if mel.shape != (face.shape[0], MEL_BINS, MEL_STEPS, 1):
      raise ValueError(f"mel: expected ({face.shape[0]}, {MEL_BINS}, {MEL_STEPS}, 1) windows to match "
                       f"{face.shape[0]} faces, got shape {tuple(mel.shape)}")

  def up_widths(self) -> tuple[int, ...]:
    if self.up_features is None:
      return tuple(self.down_features)[::-1]
    return tuple(self.up_features)

  def _audio_features(self, mel: jax.Array, train: bool) -> jax.Array:
    """(B, 80, 16, 1) mel windows -> (B, 512) audio features (zeros in, with ``use_audio=False``)."""
    if not self.use_audio:
      mel = jnp.zeros_like(mel)
    encoder = AudioEncoder(residuals_at_256=1, width_divisor=self.audio_width_divisor, dtype=self.dtype,
                           name="audio_encoder")
    feats = encoder(mel.astype(self.dtype), train=train and not self.freeze_audio_encoder)
    feats = feats.reshape(feats.shape[0], -1)
    if self.freeze_audio_encoder:
      feats = jax.lax.stop_gradient(feats)
    return feats

  @nn.compact
  def __call__(self, face: jax.Array, mel: jax.Array, train: bool = False) -> Output:
    self._check(face, mel)
    face = face.astype(self.dtype)
    audio = self._audio_features(mel, train)
    x = face * 2.0 - 1.0
    skips = []
    for i, width in enumerate(self.down_features):
      x = nn.Conv(width, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), dtype=self.dtype,
                  name=f"down_{i}")(x)
      if i > 0:
        x = _Norm(self.norm, self.dtype, name=f"down_{i}_norm")(x, train)
      x = nn.leaky_relu(x, 0.2)
      skips.append(x)

    width = x.shape[-1]
    if self.fusion == "concat":
      x = self._concat_fusion(x, audio)
    for j in range(self.num_middle):
      if self.fusion == "dck":
        x = DynamicConv(width, kernel_size=1, hidden=tuple(self.hyper_hidden), dtype=self.dtype,
                        name=f"middle_{j}")(x, audio)
      else:
        x = nn.Conv(width, (1, 1), dtype=self.dtype, name=f"middle_{j}")(x)
      x = _Norm(self.norm, self.dtype, name=f"middle_{j}_norm")(x, train)
      x = nn.leaky_relu(x, 0.2)

    for k, width_up in enumerate(self.up_widths()):
      i = len(self.down_features) - 1 - k
      x = jnp.concatenate([x, skips[i]], axis=-1)
      if self.upsample == "before_conv":
        x = _upsample2(x)
      x = nn.Conv(width_up, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=f"up_{i}")(x)
      x = _Norm(self.norm, self.dtype, name=f"up_{i}_norm")(x, train)
      x = nn.relu(x)
      if self.upsample == "after_conv":
        x = _upsample2(x)

    x = jnp.concatenate([x, face * 2.0 - 1.0], axis=-1)
    if not self.blend:
      out = nn.Conv(3, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name="head")(x)
      return Output(image=nn.sigmoid(out.astype(jnp.float32)))
    out = nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name="head")(x).astype(jnp.float32)
    attention = nn.sigmoid(out[..., :1])
    motion = nn.sigmoid(out[..., 1:])
    return Output(image=blend(attention, motion, face.astype(jnp.float32)), attention=attention,
                  motion=motion)

  def _concat_fusion(self, x: jax.Array, audio: jax.Array) -> jax.Array:
    """The no_dck ablation: audio -> 16-channel map at the feature resolution, spatial-attention fused.

    DAVD-Net's spatial attention fusion in its simplest form: a 1-channel sigmoid attention map from
    the concatenated image and audio maps gates how much of the (projected) audio map is added to
    the image features at each position.
    """
    b, h, w, c = x.shape
    amap = nn.Dense(h * w * AUDIO_MAP_CHANNELS, dtype=self.dtype, name="audio_map")(audio)
    amap = nn.leaky_relu(amap.reshape(b, h, w, AUDIO_MAP_CHANNELS), 0.2)
    both = jnp.concatenate([x, amap], axis=-1)
    gate = nn.sigmoid(nn.Conv(1, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name="fusion_gate")(both))
    return x + gate * nn.Conv(c, (1, 1), dtype=self.dtype, name="fusion_proj")(amap)


def build(**overrides) -> DCKUNet:
  """The paper-scale generator, with any attribute overridden (tests use tiny widths)."""
  return DCKUNet(**overrides)


def dck_kernels(model: DCKUNet, variables: dict, face: jax.Array, mel: jax.Array) -> list[jax.Array]:
  """The kernels every DCK layer generated for each frame: a list of (B, Cin, Cout) arrays.

  The paper's Figure 7 shows them as images (input channels x output channels).
  """
  if model.fusion != "dck":
    raise ConfigError(f"dck_kernels: the model has no DCK layers (fusion={model.fusion!r})")
  _, state = model.apply(variables, face, mel, train=False,
                         capture_intermediates=lambda mdl, _: mdl.name == "kernel_head")
  inter = state["intermediates"]
  out = []
  for j in range(model.num_middle):
    flat = inter[f"middle_{j}"]["kernel_head"]["__call__"][0]
    width = int(round(np.sqrt(flat.shape[-1])))
    out.append(flat.reshape(flat.shape[0], width, width))
  return out


def _find_audio_encoder(tree: dict) -> tuple[dict, dict] | None:
  """(params, batch_stats) of an audio encoder inside a variables tree, or None."""
  params, stats = tree.get("params", {}), tree.get("batch_stats", {})
  if "audio_encoder" in params:
    return params["audio_encoder"], stats.get("audio_encoder", {})
  if any(k.startswith("block_") for k in params):  # a bare AudioEncoder
    return params, stats
  return None


def load_audio_encoder(path: str, target: dict) -> tuple[dict, dict]:
  """Reads pre-trained audio-encoder variables (e.g. a converted Wav2Lip generator) for the DCK U-Net.

  Args:
    path: a variables directory (``python -m third_party.convert --kind=wav2lip`` or ``wav2lip_syncnet``
      output, or a bare ``AudioEncoder``'s variables).
    target: ``{"params": ..., "batch_stats": ...}`` of the DCK U-Net's ``audio_encoder`` (shapes to match).

  Returns:
    ``(params, batch_stats)`` of the audio encoder, as NumPy arrays shaped like ``target``.

  Raises:
    CheckpointError: missing/unreadable file, no audio encoder in it, or mismatched shapes.
  """
  from talkjax import checkpoints

  tree = checkpoints.load_variables(path)
  found = _find_audio_encoder(tree)
  if found is None:
    raise CheckpointError(f"{path}: holds no audio encoder (expected params/audio_encoder as in a converted "
                          "Wav2Lip generator or SyncNet expert)")
  params, stats = found
  want = {"params": target["params"], "batch_stats": target.get("batch_stats", {})}
  got = {"params": params, "batch_stats": stats}
  want_shapes = {jax.tree_util.keystr(p): tuple(np.shape(v)) for p, v in jax.tree_util.tree_leaves_with_path(want)}
  got_shapes = {jax.tree_util.keystr(p): tuple(np.shape(v)) for p, v in jax.tree_util.tree_leaves_with_path(got)}
  problems = [f"missing {k}" for k in sorted(set(want_shapes) - set(got_shapes))]
  problems += [f"{k}: {got_shapes[k]} != {want_shapes[k]}" for k in sorted(set(want_shapes) & set(got_shapes))
               if got_shapes[k] != want_shapes[k]]
  if problems:
    hint = (" (the expert SyncNet's encoder has 2 residual blocks at width 256, the generator's 1: use a "
            "converted Wav2Lip generator)" if any("block_" in p for p in problems) else "")
    raise CheckpointError(f"{path}: audio encoder does not fit the DCK U-Net's: "
                          + "; ".join(problems[:8]) + hint)
  values = {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(got)}
  picked = jax.tree_util.tree_map_with_path(lambda p, _: values[jax.tree_util.keystr(p)], want)
  return picked["params"], picked["batch_stats"]
