"""Converter for joonson's SyncNet (``syncnet_v2.model``, a bare state dict): kind ``syncnet_v2``.

PyTorch keys (``SyncNetModel.S``): ``netcnnaud.{0,4,8,11,14,18}`` Conv2d with BatchNorm2d at the
next index, ``netfcaud.{0,1,3}`` Linear/BatchNorm1d/Linear; ``netcnnlip.*`` (Conv3d/BatchNorm3d at
the same indices) and ``netfclip.*`` likewise. The lip tower's depth-1 Conv3d kernels
``(O, I, 1, kh, kw)`` become 2-D Flax kernels (see ``talkjax.models.syncnet_v2``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import numpy as np

from third_party.convert import Converter
from third_party.converters.wav2lip import BATCHNORM, CONV, CONV3D_AS_2D, LINEAR, convert_by_layer_map

_CNN_CONV_INDEX = (0, 4, 8, 11, 14, 18)   # conv_1..conv_6; each BatchNorm sits at index + 1
_FC_INDEX = {"dense_1": 0, "bn": 1, "dense_2": 3}


def syncnet_v2_layer_map(layer: tuple[str, ...]) -> tuple[str, str]:
  tower, name = layer
  if tower in ("audio_cnn", "lip_cnn"):
    m = re.fullmatch(r"(conv|bn)_(\d)", name)
    if not m:
      raise KeyError(layer)
    idx = _CNN_CONV_INDEX[int(m.group(2)) - 1]
    prefix = "netcnnaud" if tower == "audio_cnn" else "netcnnlip"
    if m.group(1) == "bn":
      return f"{prefix}.{idx + 1}", BATCHNORM
    depth_squeezed = tower == "lip_cnn" and m.group(2) != "1"
    return f"{prefix}.{idx}", CONV3D_AS_2D if depth_squeezed else CONV
  prefix = {"audio_fc": "netfcaud", "lip_fc": "netfclip"}[tower]
  return f"{prefix}.{_FC_INDEX[name]}", BATCHNORM if name == "bn" else LINEAR


def _build(**overrides):
  from talkjax.models.syncnet_v2 import SyncNetV2  # pylint: disable=g-import-not-at-top
  return SyncNetV2(**overrides)


def _example_inputs(batch_size: int) -> tuple:
  rng = np.random.default_rng(batch_size)
  mfcc = rng.normal(0.0, 10.0, (batch_size, 13, 20, 1)).astype(np.float32)
  video = rng.uniform(0.0, 255.0, (batch_size, 5, 224, 224, 3)).astype(np.float32)
  return mfcc, video


@functools.lru_cache(maxsize=None)
def _shapes():
  import jax  # pylint: disable=g-import-not-at-top
  module = _build()
  inputs = _example_inputs(1)
  return jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs))


def _convert(sd: Mapping[str, np.ndarray], source: str) -> dict:
  return convert_by_layer_map(sd, source, _shapes(), syncnet_v2_layer_map)


CONVERTERS: dict[str, Converter] = {
    "syncnet_v2": Converter(
        build=_build,
        convert=_convert,
        example_inputs=_example_inputs,
        inputs_doc=("embed_audio(mfcc (N, 13, 20, 1): 13 MFCCs x 20 steps of 10 ms), "
                    "embed_face(video (N, 5, 224, 224, 3): 5 frames BGR 0..255); both -> (N, 1024), "
                    "not normalised; __call__(mfcc, video) returns both.")),
}
