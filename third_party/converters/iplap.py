"""Converters for IP_LAP's published checkpoints (Zhong et al., CVPR 2023, github.com/Weizhi-Zhong/IP_LAP).

| kind | PyTorch class | published file | section (owner) |
| --- | --- | --- | --- |
| ``iplap_landmark`` | ``models.landmark_generator.Landmark_generator`` | ``landmarkgenerator_checkpoint.pth`` | landmarks |
| ``iplap_renderer`` | ``models.video_renderer.Renderer`` | ``renderer_checkpoint.pth`` | renderers |

One section per kind below; each registers itself in :data:`CONVERTERS`. Both files are dicts with
``state_dict`` (DataParallel's ``module.`` prefix possible), ``optimizer``, ``global_step`` and
``global_epoch``; ``torch_io.unwrap_state_dict`` unwraps them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import numpy as np

from talkjax.errors import CheckpointError
from third_party.convert import Converter
from third_party.converters import torch_io
from third_party.converters import wav2lip as w2l

CONVERTERS: dict[str, Converter] = {}


# ==================================================================================================
# Kind ``iplap_landmark`` (owner: landmarks engineer): IP_LAP's ``models.landmark_generator.
# Landmark_generator(T=5, d_model=512, nlayers=4, nhead=4, dim_feedforward=1024)`` ->
# ``talkjax.models.iplap_landmark.IPLAPLandmarkGenerator``.
#
# Published file: ``landmarkgenerator_checkpoint.pth`` = {"state_dict", "optimizer", "global_step",
# "global_epoch"}. Key layout (PyTorch -> Flax, under params / batch_stats):
#   mel_encoder.{i}.conv_block.{0,1}.*      -> encoders/mel_encoder/block_{i}/{conv,bn}  (i < 13, Conv2d)
#   ref_encoder.{i}.conv_block.{0,1}.*      -> encoders/ref_encoder/block_{i}/{conv,bn}  (i < 20, Conv1d)
#   pose_encoder.{i}.conv_block.{0,1}.*     -> encoders/pose_encoder/block_{i}/{conv,bn} (i < 21, Conv1d)
#   Norm.{weight,bias}                      -> encoders/norm/{scale,bias} (the shared LayerNorm)
#   fusion_transformer.modality.weight (4, 512)            -> modality
#   fusion_transformer.position_{v,a}.pe (1, 512, 512)     -> none: fixed sinusoids, checked, not stored
#   fusion_transformer.transformer_encoder.layers.{i}.self_attn.in_proj_{weight,bias}
#                                           -> transformer/layers_{i}/self_attn/in_proj/{kernel,bias}
#   ....layers.{i}.self_attn.out_proj.*, linear1.*, linear2.*, norm1.*, norm2.*
#                                           -> transformer/layers_{i}/... (Linear: weight transposed)
#   mouse_keypoint_map.*, jaw_keypoint_map.* -> lip_head, jaw_head
# Inputs of the converted model: landmarks normalised to [0, 1] in IP_LAP's crop, Wav2Lip mel windows.
# ==================================================================================================

LANDMARK_POSITION_BUFFERS = ("fusion_transformer.position_v.pe", "fusion_transformer.position_a.pe")
_LAYERNORM = "layernorm"
_EMBEDDING = "embedding"
_IN_PROJ = "in_proj"


def _landmark_layer_map(layer: tuple[str, ...]) -> tuple[str, str]:
  """Flax layer path of ``IPLAPLandmarkGenerator`` (under params/batch_stats) -> (PyTorch prefix, type)."""
  if layer == ("modality",):
    return "fusion_transformer.modality", _EMBEDDING
  if layer == ("encoders", "norm"):
    return "Norm", _LAYERNORM
  if layer[0] == "encoders" and len(layer) == 4 and layer[2].startswith("block_"):
    index = layer[2][len("block_"):]
    sub = {"conv": ("0", w2l.CONV), "bn": ("1", w2l.BATCHNORM)}[layer[3]]
    return f"{layer[1]}.{index}.conv_block.{sub[0]}", sub[1]
  if layer[0] == "transformer":
    base = f"fusion_transformer.transformer_encoder.layers.{layer[1][len('layers_'):]}"
    if layer[2:] == ("self_attn", "in_proj"):
      return f"{base}.self_attn.in_proj", _IN_PROJ
    if layer[2:] == ("self_attn", "out_proj"):
      return f"{base}.self_attn.out_proj", w2l.LINEAR
    if layer[2] in ("linear1", "linear2"):
      return f"{base}.{layer[2]}", w2l.LINEAR
    if layer[2] in ("norm1", "norm2"):
      return f"{base}.{layer[2]}", _LAYERNORM
  if layer == ("lip_head",):
    return "mouse_keypoint_map", w2l.LINEAR
  if layer == ("jaw_head",):
    return "jaw_keypoint_map", w2l.LINEAR
  raise KeyError(f"no PyTorch counterpart for Flax layer {'/'.join(layer)}")


def _landmark_leaf(prefix: str, layer_type: str, leaf: str, shape: tuple[int, ...]):
  """(PyTorch key, PyTorch shape, to-Flax function) of one Flax leaf."""
  same = lambda a: a  # noqa: E731
  if layer_type == w2l.CONV and leaf == "kernel":
    nd = len(shape) - 2
    return f"{prefix}.weight", (shape[-1], shape[-2]) + tuple(shape[:nd]), torch_io.conv_kernel
  if layer_type in (w2l.CONV, w2l.LINEAR) and leaf == "bias":
    return f"{prefix}.bias", shape, same
  if layer_type == w2l.LINEAR and leaf == "kernel":
    return f"{prefix}.weight", (shape[1], shape[0]), torch_io.linear_kernel
  if layer_type == _IN_PROJ:
    if leaf == "kernel":
      return f"{prefix}_weight", (shape[1], shape[0]), torch_io.linear_kernel
    return f"{prefix}_bias", shape, same
  if layer_type == w2l.BATCHNORM:
    suffix = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}[leaf]
    return f"{prefix}.{suffix}", shape, same
  if layer_type == _LAYERNORM:
    return f"{prefix}.{ {'scale': 'weight', 'bias': 'bias'}[leaf]}", shape, same
  if layer_type == _EMBEDDING:
    return f"{prefix}.weight", shape, same
  raise KeyError(f"{prefix}: no rule for leaf {leaf!r} of a {layer_type} layer")


@functools.lru_cache(maxsize=1)
def _landmark_shapes():
  import jax  # pylint: disable=g-import-not-at-top
  module, inputs = _build_landmark(), _landmark_inputs(1)
  return jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs))


def convert_landmark(sd: Mapping[str, np.ndarray], source: str = "<state_dict>") -> dict:
  """Maps an IP_LAP landmark-generator state dict onto ``IPLAPLandmarkGenerator`` variables.

  Strict: every missing, unknown or mis-shaped key is listed in one ``CheckpointError``. The two
  positional-encoding buffers are not parameters in talkjax (the sinusoids are computed); they are
  checked against them, so a file whose buffers differ is refused rather than silently changed.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from talkjax.models import iplap_landmark  # pylint: disable=g-import-not-at-top
  if "mel_encoder.0.conv_block.0.weight" not in sd and any(k.startswith("translation.") for k in sd):
    raise CheckpointError(f"{source}: this is IP_LAP's renderer, not its landmark generator "
                          "(use --kind=iplap_renderer)")
  reader = torch_io.StateDictReader(sd, source)
  out: dict = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(_landmark_shapes()):
    names = tuple(p.key for p in path)
    collection, layer, leaf_name = names[0], names[1:-1], names[-1]
    if collection == "params" and not layer:       # a parameter directly on the module: "modality"
      layer, leaf_name = (leaf_name,), "embedding"
    prefix, layer_type = _landmark_layer_map(layer)
    key, torch_shape, to_flax = _landmark_leaf(prefix, layer_type, leaf_name, tuple(leaf.shape))
    node = out.setdefault(collection, {})
    for name in names[1:-1]:
      node = node.setdefault(name, {})
    node[names[-1]] = np.ascontiguousarray(to_flax(reader.take(key, torch_shape)).astype(np.float32))
  bad_buffers = []
  for key in LANDMARK_POSITION_BUFFERS:
    if not reader.has(key):
      continue   # checkpoints saved without persistent buffers are fine
    pe = reader.take(key)
    if pe.ndim != 3 or pe.shape[0] != 1 or pe.shape[2] != iplap_landmark.D_MODEL:
      bad_buffers.append(f"{key}: shape {pe.shape}, expected (1, max_len, {iplap_landmark.D_MODEL})")
      continue
    expected = iplap_landmark.sinusoidal_positions(pe.shape[1], pe.shape[2])
    if not np.allclose(pe[0], expected, atol=1e-4):
      worst = float(np.abs(pe[0] - expected).max())
      bad_buffers.append(f"{key}: differs from the sinusoidal table by up to {worst:.3g}")
  reader.finish()
  if bad_buffers:
    raise CheckpointError(f"{source}: positional-encoding buffers are not IP_LAP's sinusoids: "
                          + "; ".join(bad_buffers))
  return out


def _build_landmark(**overrides):
  from talkjax.models import iplap_landmark  # pylint: disable=g-import-not-at-top
  return iplap_landmark.IPLAPLandmarkGenerator(**overrides)


def _landmark_inputs(batch_size: int = 1, **unused_overrides) -> tuple:
  from talkjax.models import iplap_landmark  # pylint: disable=g-import-not-at-top
  return iplap_landmark.example_inputs(batch_size)


LANDMARK_CONVERTER = Converter(
    build=_build_landmark,
    convert=convert_landmark,
    example_inputs=_landmark_inputs,
    inputs_doc=("__call__(mel (B, T, 80, 16, 1), pose (B, T, 74, 2), reference_pose (B, Nl, 74, 2), "
                "reference_content (B, Nl, 57, 2), train=False): T = 5 Wav2Lip mel windows in [-4, 4], each "
                "centred on its frame (start int(80 (f - 2) / 25)); landmarks (x, y) in [0, 1] of each "
                "frame's IP_LAP crop box, in talkjax.landmarks order (pose 74, jaw 17, lips 40; IP_LAP's "
                "sorted order); Nl = 15 reference frames. Returns (B, T, 57, 2): jaw then lips, the same "
                "values IP_LAP returns as (B*T, 2, 57)."))

CONVERTERS["iplap_landmark"] = LANDMARK_CONVERTER


# ==================================================================================================
# Kind ``iplap_renderer`` (owner: renderers engineer): IP_LAP's ``models.video_renderer.Renderer``
# -> ``talkjax.models.iplap_renderer.IPLAPRenderer``.
#
# Published file: ``renderer_checkpoint.pth`` = {"state_dict", "optimizer", "global_step",
# "global_epoch"} (keys may carry DataParallel's ``module.`` prefix; torch_io strips it). Key layout:
#   flow_module.conv{1,2}.*, flow_module.conv{1,2}_bn.* (BatchNorm), flow_module.spade_layer_{1,2,4}.
#   {spade_layer_{1,2}.{conv1,gamma,beta}, conv_{1,2}}.*, flow_module.conv_4.*, flow_module.conv_5.{0,2}.*,
#   translation.audio_encoder.{i}.conv_block.{0,1}.* (Wav2Lip's audio encoder), translation.conv{1,2}
#   (no bias) + conv{1,2}_bn, translation.spade_{1,2,4}.*, translation.adain_{1,2}.adain_layer_{1,2}.
#   {mlp_shared.0, mlp_gamma, mlp_beta}.* + adain_{1,2}.conv_{1,2}.*, translation.conv_last.weight.
#   perceptual.model.network.{i}.{weight,bias}: the frozen torchvision VGG19 of IP_LAP's loss, skipped
#   (talkjax keeps the perceptual network out of the model; convert it with --kind=vgg19 if wanted).
# Widths (conv1, conv2, SPADE hidden, AdaIN hidden, audio encoder) are read off the file, so reduced
# variants convert too. Inputs of the converted model: BGR images in [0, 1] (IP_LAP reads cv2 frames).
# ==================================================================================================

_PERCEPTUAL_KEY = re.compile(r"^perceptual\.model\.network\.\d+\.(weight|bias)$")


def _renderer_layer_map(layer: tuple[str, ...]) -> tuple[str, str]:
  """Flax layer path of ``IPLAPRenderer`` -> (PyTorch prefix, layer type)."""
  if layer[:2] == ("translation", "audio_encoder"):   # ("block_{i}", "conv"|"bn") of Wav2Lip's Conv2d
    index = layer[2][len("block_"):]
    sub = {"conv": ("0", w2l.CONV), "bn": ("1", w2l.BATCHNORM)}[layer[3]]
    return f"translation.audio_encoder.{index}.conv_block.{sub[0]}", sub[1]
  name = layer[-1]
  parent = ".".join(layer[:-1])
  if name.endswith("_bn"):
    return f"{parent}.{name}", w2l.BATCHNORM
  if name in ("conv_5_0", "conv_5_2"):                   # nn.Sequential(conv, ReLU, conv, Sigmoid)
    return f"{parent}.conv_5.{name[-1]}", w2l.CONV
  if name == "mlp_shared":                               # nn.Sequential(Linear, ReLU)
    return f"{parent}.mlp_shared.0", w2l.LINEAR
  if name in ("mlp_gamma", "mlp_beta"):
    return f"{parent}.{name}", w2l.LINEAR
  return ".".join(layer), w2l.CONV


def _renderer_overrides(sd: Mapping[str, np.ndarray], source: str = "<state_dict>") -> dict:
  """``IPLAPRenderer`` widths read off a renderer state dict (IP_LAP's: 32, 256, 256, 128, 1)."""
  needed = ("flow_module.conv1.weight", "flow_module.conv2.weight",
            "flow_module.spade_layer_1.spade_layer_1.conv1.weight",
            "translation.adain_1.adain_layer_1.mlp_shared.0.weight",
            "translation.audio_encoder.0.conv_block.0.weight")
  missing = [k for k in needed if k not in sd]
  if missing:
    hint = ""
    if any(k.startswith(("landmark_encoder", "mel_encoder", "transformer")) for k in sd):
      hint = " (this looks like IP_LAP's landmark generator: use --kind=iplap_landmark)"
    raise CheckpointError(f"{source}: not an IP_LAP renderer state dict: missing {', '.join(missing)}{hint}; "
                          f"first keys: {sorted(sd)[:5]}")
  audio32 = int(np.shape(sd[needed[4]])[0])
  if 32 % audio32:
    raise CheckpointError(f"{source}: {needed[4]} has {audio32} output channels; expected 32 (or a "
                          "divisor of it)")
  return {"width": int(np.shape(sd[needed[0]])[0]), "features": int(np.shape(sd[needed[1]])[0]),
          "spade_hidden": int(np.shape(sd[needed[2]])[0]), "adain_hidden": int(np.shape(sd[needed[3]])[0]),
          "audio_width_divisor": 32 // audio32}


@functools.lru_cache(maxsize=8)
def _renderer_shapes(overrides: tuple[tuple[str, int], ...]):
  import jax  # pylint: disable=g-import-not-at-top
  from talkjax.models import iplap_renderer  # pylint: disable=g-import-not-at-top
  module = iplap_renderer.build(**dict(overrides))
  inputs = iplap_renderer.example_inputs(1, image_size=16, num_references=1)
  return jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs))


def convert_renderer(sd: Mapping[str, np.ndarray], source: str = "<state_dict>") -> dict:
  """Maps an IP_LAP renderer state dict onto ``IPLAPRenderer`` variables (params + batch_stats)."""
  kept = {k: v for k, v in sd.items() if not _PERCEPTUAL_KEY.match(k)}
  overrides = _renderer_overrides(kept, source)
  return w2l.convert_by_layer_map(kept, source, _renderer_shapes(tuple(sorted(overrides.items()))),
                                  _renderer_layer_map)


def _build_renderer(**overrides):
  from talkjax.models import iplap_renderer  # pylint: disable=g-import-not-at-top
  return iplap_renderer.build(**overrides)


def _renderer_inputs(batch_size: int = 1, **unused_overrides) -> tuple:
  from talkjax.models import iplap_renderer  # pylint: disable=g-import-not-at-top
  return iplap_renderer.example_inputs(batch_size, image_size=32, num_references=2)


RENDERER_CONVERTER = Converter(
    build=_build_renderer,
    convert=convert_renderer,
    example_inputs=_renderer_inputs,
    infer_overrides=_renderer_overrides,
    inputs_doc=("__call__(face (B, H, W, 3), sketches (B, 5, H, W, 3), ref_images (B, N, H, W, 3), "
                "ref_sketches (B, N, H, W, 3), mel (B, 80, 16, 1)): images BGR in [0, 1] (IP_LAP reads cv2 "
                "frames), H = W = 128 for the published file; sketches are IP_LAP's 125-edge drawings "
                "(grey 224 on black) / 255; the face's lower half is masked inside; mel is the Wav2Lip "
                "mel window centred on the target (offset -2 frames). Returns RendererOutput(image (B, H, W, "
                "3) BGR in [0, 1], warped: aggregated warped features/image, flows, weights)."))


CONVERTERS["iplap_renderer"] = RENDERER_CONVERTER
