"""Converters for Wav2Lip's checkpoints: kinds ``wav2lip``, ``wav2lip_syncnet``, ``wav2lip_disc``.

| kind | PyTorch class | published file |
| --- | --- | --- |
| ``wav2lip`` | ``models.Wav2Lip`` | ``wav2lip.pth``, ``wav2lip_gan.pth`` |
| ``wav2lip_syncnet`` | ``models.SyncNet_color`` | ``lipsync_expert.pth`` |
| ``wav2lip_disc`` | ``models.Wav2Lip_disc_qual`` | ``visual_quality_disc.pth`` |

The published files are dicts with ``state_dict`` (keys with a ``module.`` prefix when saved from
DataParallel), ``optimizer``, ``global_step`` and ``global_epoch``; ``torch_io`` unwraps them.

Conversion is driven by the Flax module itself: its variable shapes (``jax.eval_shape`` of
``init``) list every leaf; a per-kind function names the PyTorch layer behind each Flax layer, and
the leaf's PyTorch key, expected PyTorch shape and layout change follow from the layer type
(:func:`convert_by_layer_map`, shared with ``syncnet_v2``). So the expected keys and shapes can
never drift from the module.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping

import numpy as np

from third_party.convert import Converter
from third_party.converters import torch_io

# Layer types a naming function may return, and how each Flax leaf maps onto PyTorch.
CONV = "conv"                      # nn.ConvNd: kernel (*k, I, O) <- weight (O, I, *k)
CONV3D_AS_2D = "conv3d_as_2d"      # depth-1 Conv3d run as 2-D: (kh, kw, I, O) <- (O, I, 1, kh, kw)
CONV_TRANSPOSE = "conv_transpose"  # ConvTransposeNd: kernel (*k, O, I) <- weight (I, O, *k)
LINEAR = "linear"                  # nn.Linear: kernel (in, out) <- weight (out, in)
BATCHNORM = "batchnorm"            # BatchNorm: scale/bias <- weight/bias, mean/var <- running_*

LayerMap = Callable[[tuple[str, ...]], tuple[str, str]]


def _leaf_rule(layer_type: str, leaf: str, flax_shape: tuple[int, ...]):
  """Returns (PyTorch key suffix, expected PyTorch shape, to-Flax function) for one leaf."""
  if layer_type == BATCHNORM:
    suffix = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}[leaf]
    return suffix, flax_shape, lambda a: a
  if leaf == "bias":
    return "bias", flax_shape, lambda a: a
  if leaf != "kernel":
    raise KeyError(leaf)
  if layer_type == CONV:
    nd = len(flax_shape) - 2
    torch_shape = (flax_shape[-1], flax_shape[-2]) + tuple(flax_shape[:nd])
    return "weight", torch_shape, torch_io.conv_kernel
  if layer_type == CONV3D_AS_2D:
    kh, kw, cin, cout = flax_shape
    return "weight", (cout, cin, 1, kh, kw), lambda a: torch_io.conv_kernel(a[:, :, 0])
  if layer_type == CONV_TRANSPOSE:
    nd = len(flax_shape) - 2
    torch_shape = (flax_shape[-1], flax_shape[-2]) + tuple(flax_shape[:nd])
    return "weight", torch_shape, torch_io.conv_transpose_kernel
  if layer_type == LINEAR:
    return "weight", (flax_shape[1], flax_shape[0]), torch_io.linear_kernel
  raise ValueError(f"unknown layer type {layer_type!r}")


def convert_by_layer_map(sd: Mapping[str, np.ndarray], source: str, shapes: Mapping,
                         layer_map: LayerMap) -> dict:
  """Fills a Flax variables tree with the shapes in ``shapes`` from a PyTorch state dict.

  Args:
    sd: the unwrapped state dict (``torch_io.unwrap_state_dict``).
    source: file name for error messages.
    shapes: ``jax.eval_shape(module.init, ...)`` of the target module.
    layer_map: maps a Flax layer path (the leaf's path without the leaf name, e.g.
      ``("audio_encoder", "block_3", "bn")``) to ``(pytorch_prefix, layer_type)``.

  Raises:
    CheckpointError: listing every missing, unknown or mis-shaped key, or non-finite weights.
  """
  import jax  # pylint: disable=g-import-not-at-top
  reader = torch_io.StateDictReader(sd, source)
  out: dict = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(shapes):
    names = tuple(p.key for p in path)
    collection, layer, leaf_name = names[0], names[1:-1], names[-1]
    prefix, layer_type = layer_map(layer)
    suffix, torch_shape, to_flax = _leaf_rule(layer_type, leaf_name, tuple(leaf.shape))
    value = to_flax(reader.take(f"{prefix}.{suffix}", torch_shape)).astype(np.float32)
    node = out.setdefault(collection, {})
    for name in layer:
      node = node.setdefault(name, {})
    node[leaf_name] = np.ascontiguousarray(value)
  reader.finish()
  return out


def _conv_block(prefix: str, sub: str) -> tuple[str, str]:
  """Wav2Lip's ``Conv2d``/``Conv2dTranspose``/``nonorm_Conv2d``: ``conv_block.0`` conv, ``.1`` BN."""
  if sub == "conv":
    return f"{prefix}.conv_block.0", CONV
  if sub == "conv_transpose":
    return f"{prefix}.conv_block.0", CONV_TRANSPOSE
  if sub == "bn":
    return f"{prefix}.conv_block.1", BATCHNORM
  raise KeyError(sub)


def _indexed(name: str) -> str:
  """``face_encoder_blocks_3_1`` -> ``face_encoder_blocks.3.1``; ``block_4`` -> ``4``."""
  m = re.fullmatch(r"([a-z_]+?)((?:_\d+)+)", name)
  if not m:
    raise KeyError(name)
  base, idx = m.groups()
  idx = idx[1:].replace("_", ".")
  return idx if base == "block" else f"{base}.{idx}"


def _map_audio_or_blocks(layer: tuple[str, ...]) -> tuple[str, str]:
  if layer[0] == "audio_encoder":           # ("audio_encoder", "block_i", sub)
    return _conv_block(f"audio_encoder.{_indexed(layer[1])}", layer[2])
  return _conv_block(_indexed(layer[0]), layer[1])


def wav2lip_layer_map(layer: tuple[str, ...]) -> tuple[str, str]:
  if layer == ("output_conv",):
    return "output_block.1", CONV
  if layer[0] == "output_block":
    return _conv_block("output_block.0", layer[1])
  return _map_audio_or_blocks(layer)


def syncnet_color_layer_map(layer: tuple[str, ...]) -> tuple[str, str]:
  return _map_audio_or_blocks(layer)


def disc_layer_map(layer: tuple[str, ...]) -> tuple[str, str]:
  if layer == ("binary_pred",):
    return "binary_pred.0", CONV
  return _map_audio_or_blocks(layer)


@functools.lru_cache(maxsize=None)
def variable_shapes(kind: str):
  """Shapes of the default module's variables (cached: tracing the generator takes a moment)."""
  import jax  # pylint: disable=g-import-not-at-top
  entry = CONVERTERS[kind]
  module = entry.build()
  inputs = entry.example_inputs(1)
  return jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs))


def _converter(kind: str, layer_map: LayerMap):
  def convert(sd: Mapping[str, np.ndarray], source: str) -> dict:
    return convert_by_layer_map(sd, source, variable_shapes(kind), layer_map)
  return convert


def _rng(batch_size: int):
  return np.random.default_rng(batch_size)


def _mel(rng, n):
  return rng.uniform(-4.0, 4.0, (n, 80, 16, 1)).astype(np.float32)


def _build_wav2lip(**overrides):
  from talkjax.models.wav2lip import Wav2Lip  # pylint: disable=g-import-not-at-top
  return Wav2Lip(**overrides)


def _build_syncnet(**overrides):
  from talkjax.models.wav2lip import SyncNetColor  # pylint: disable=g-import-not-at-top
  return SyncNetColor(**overrides)


def _build_disc(**overrides):
  from talkjax.models.wav2lip import Wav2LipDisc  # pylint: disable=g-import-not-at-top
  return Wav2LipDisc(**overrides)


def _wav2lip_inputs(batch_size: int) -> tuple:
  rng = _rng(batch_size)
  face = rng.uniform(0.0, 1.0, (batch_size, 96, 96, 6)).astype(np.float32)
  face[:, 48:, :, :3] = 0.0
  return _mel(rng, batch_size), face


def _syncnet_inputs(batch_size: int) -> tuple:
  rng = _rng(batch_size)
  return _mel(rng, batch_size), rng.uniform(0.0, 1.0, (batch_size, 48, 96, 15)).astype(np.float32)


def _disc_inputs(batch_size: int) -> tuple:
  return (_rng(batch_size).uniform(0.0, 1.0, (batch_size, 96, 96, 3)).astype(np.float32),)


CONVERTERS: dict[str, Converter] = {
    "wav2lip": Converter(
        build=_build_wav2lip,
        convert=_converter("wav2lip", wav2lip_layer_map),
        example_inputs=_wav2lip_inputs,
        inputs_doc=("__call__(mel, face): mel (N, 80, 16, 1) [H=mel bins, W=frames] Wav2Lip mel in [-4, 4]; "
                    "face (N, 96, 96, 6) = [target with rows 48: zeroed, reference], BGR in [0, 1]; "
                    "also (B, T, ...) windows. Returns (N, 96, 96, 3) BGR in [0, 1].")),
    "wav2lip_syncnet": Converter(
        build=_build_syncnet,
        convert=_converter("wav2lip_syncnet", syncnet_color_layer_map),
        example_inputs=_syncnet_inputs,
        inputs_doc=("embed_audio(mel (N, 80, 16, 1)), embed_face(face (N, 48, 96, 15): lower halves of 5 "
                    "frames, channel 3*t+c, BGR in [0, 1]); both -> (N, 512) L2-normalised; "
                    "__call__(mel, face) returns both.")),
    "wav2lip_disc": Converter(
        build=_build_disc,
        convert=_converter("wav2lip_disc", disc_layer_map),
        example_inputs=_disc_inputs,
        inputs_doc=("__call__(face): full face (N, 96, 96, 3) or (B, T, 96, 96, 3), BGR in [0, 1] (the "
                    "lower half is taken inside); returns P(real) (N, 1), logits=True for pre-sigmoid.")),
}
