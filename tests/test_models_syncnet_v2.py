"""joonson SyncNet against syncnet_python's ``SyncNetModel.S`` with random weights and BN statistics."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from syncnet_python.SyncNetModel import S as TorchSyncNet

from talkjax.models.syncnet_v2 import SyncNetV2, _first_lip_conv_cpu, _first_lip_conv_xla
from third_party import convert
from third_party.converters.syncnet_v2 import syncnet_v2_layer_map
from parity import rel_err, randomise_batchnorm

RTOL = 1e-5


@pytest.fixture(scope="module")
def nets():
  torch.manual_seed(0)
  ref = randomise_batchnorm(TorchSyncNet())
  return ref, convert.convert_state_dict("syncnet_v2", ref.state_dict())


def test_syncnet_v2_matches_syncnet_python_and_is_not_normalised(nets):
  ref, variables = nets
  rng = np.random.default_rng(0)
  # MFCCs of int16-scaled audio have magnitudes of tens; frames are raw BGR 0..255.
  mfcc = rng.normal(0.0, 10.0, (2, 13, 20, 1)).astype(np.float32)
  video = rng.uniform(0.0, 255.0, (2, 5, 224, 224, 3)).astype(np.float32)
  with torch.no_grad():
    want_a = ref.forward_aud(torch.from_numpy(mfcc.transpose(0, 3, 1, 2).copy())).numpy()
    want_v = ref.forward_lip(torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy())).numpy()
  net = SyncNetV2()
  got_a = jax.jit(functools.partial(net.apply, method="embed_audio"))(variables, mfcc)
  got_v = jax.jit(functools.partial(net.apply, method="embed_face"))(variables, video)
  chex.assert_shape([got_a, got_v], (2, 1024))
  err_a, err_v = rel_err(got_a, want_a), rel_err(got_v, want_v)
  print(f"syncnet_v2 parity: audio {err_a:.2e}, video {err_v:.2e}")
  assert err_a < RTOL and err_v < RTOL
  # LSE-D uses raw embeddings: their norms are whatever the network makes them, not 1.
  np.testing.assert_allclose(np.linalg.norm(got_v, axis=1), np.linalg.norm(want_v, axis=1), rtol=1e-5)
  assert abs(float(np.linalg.norm(got_v[0])) - 1.0) > 0.1
  both = jax.eval_shape(net.apply, variables, mfcc, video)
  chex.assert_shape(list(both), (2, 1024))


def test_lip_tower_kernels_are_stored_2d_after_the_first_conv(nets):
  _, variables = nets
  lip = variables["params"]["lip_cnn"]
  chex.assert_shape(lip["conv_1"]["kernel"], (5, 7, 7, 3, 96))
  chex.assert_shape(lip["conv_2"]["kernel"], (5, 5, 96, 256))
  chex.assert_shape(lip["conv_6"]["kernel"], (6, 6, 256, 512))
  chex.assert_shape(variables["params"]["audio_cnn"]["conv_6"]["kernel"], (5, 4, 256, 512))
  assert syncnet_v2_layer_map(("lip_cnn", "bn_3")) == ("netcnnlip.9", "batchnorm")
  assert syncnet_v2_layer_map(("audio_fc", "dense_2")) == ("netfcaud.3", "linear")


def test_embedding_dim_override():
  net = SyncNetV2(embedding_dim=64)
  a, v = jax.eval_shape(net.init_with_output, jax.random.key(0), jnp.zeros((3, 13, 20, 1)),
                        jnp.zeros((3, 5, 224, 224, 3)))[0]
  chex.assert_shape([a, v], (3, 64))


@pytest.mark.parametrize("method,shape,match", [
    ("embed_audio", (2, 1, 13, 20), "mfcc"),          # NCHW by mistake
    ("embed_face", (2, 3, 5, 224, 224), "video"),     # NCDHW by mistake
    ("embed_face", (2, 4, 224, 224, 3), "video"),     # wrong number of frames
])
def test_bad_input_shapes_are_named(method, shape, match):
  net = SyncNetV2()
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(functools.partial(net.init, method=method), jax.random.key(0), jnp.zeros(shape))


@pytest.mark.parametrize("shape", [(2, 5, 40, 36, 3), (1, 5, 31, 29, 3), (1, 5, 30, 30, 2)])
def test_cpu_gemm_form_of_first_lip_conv_equals_the_convolution(shape):
  """The CPU path (space-to-depth + one GEMM) against lax's Conv3d, odd and even sizes."""
  rng = np.random.default_rng(1)
  x = rng.uniform(0, 255, shape).astype(np.float32)
  w = rng.standard_normal((5, 7, 7, shape[-1], 8)).astype(np.float32)
  want = jax.jit(_first_lip_conv_xla)(x, w)
  got = jax.jit(_first_lip_conv_cpu)(x, w)
  chex.assert_shape(got, (shape[0], (shape[2] - 7) // 2 + 1, (shape[3] - 7) // 2 + 1, 8))
  assert rel_err(got, want) < RTOL
