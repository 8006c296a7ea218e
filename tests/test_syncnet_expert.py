"""The lip-sync expert task (talkjax/tasks/syncnet.py) and LSE with the expert (talkjax/metrics/sync_expert.py).

The 2-step ``syncnet:runlocal`` smoke run is tests/test_train_loop.py's parametrised config test.
"""

import functools
import json
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from experiments import configs
from talkjax import audio as audio_lib
from talkjax import checkpoints
from talkjax.errors import CheckpointError, ConfigError, ShapeError
from talkjax.metrics import lse
from talkjax.metrics import sync_expert as sx
from talkjax.models import wav2lip
from talkjax.tasks import LossContext
from talkjax.tasks import syncnet as task
from talkjax.train.state import TrainState

DIV = 16   # tiny widths: 2..32 channels


@pytest.fixture(scope="module")
def tiny():
  """A tiny expert: config, networks, variables and a random batch (4 windows, labels 1, 0, 0, 0)."""
  config = configs.get_config("syncnet:tiny", {"model.width_divisor": DIV})
  nets = task.networks(config)
  rng = np.random.default_rng(0)
  batch = {"faces": rng.integers(0, 256, (4, 5, 48, 96, 3), dtype=np.uint8),
           "mel": rng.uniform(-4, 4, (4, 80, 16, 1)).astype(np.float32),
           "label": np.array([1, 0, 0, 0], np.float32)}
  example = {k: v[:1] for k, v in batch.items()}
  variables = jax.jit(lambda r: task.init(config, nets, r, example))(jax.random.PRNGKey(0))
  expert = sx.Expert(nets["syncnet"], variables["syncnet"], batch_size=4)
  return types.SimpleNamespace(config=config, nets=nets, variables=variables, batch=batch, expert=expert)


# --- Inputs and initialisation ---------------------------------------------------------------------------


def test_expert_face_input_stacks_frames_bgr_frame_major():
  rng = np.random.default_rng(1)
  frames = rng.integers(0, 256, (2, 5, 48, 96, 3), dtype=np.uint8)
  x = np.asarray(sx.expert_face_input(jnp.asarray(frames)))
  chex.assert_shape(x, (2, 48, 96, 15))
  for t in range(5):
    for c in range(3):   # channel 3t + c is BGR colour c of frame t
      np.testing.assert_allclose(x[..., 3 * t + c], frames[:, t, ..., 2 - c] / 255.0, atol=1e-7)
  # Whole 96x96 crops: the lower half (rows 48..95) is taken; float input is used as it is.
  full = rng.uniform(0, 1, (2, 5, 96, 96, 3)).astype(np.float32)
  y = np.asarray(sx.expert_face_input(jnp.asarray(full), rgb=False))
  np.testing.assert_allclose(y[..., 3:6], full[:, 1, 48:], atol=0)
  # 128 px crops are resized to 96 first.
  chex.assert_shape(sx.expert_face_input(jnp.zeros((1, 5, 128, 128, 3), jnp.uint8)), (1, 48, 96, 15))
  with pytest.raises(ShapeError, match=r"expected \(B, 5, H, W, 3\)"):
    sx.expert_face_input(jnp.zeros((1, 4, 48, 96, 3)))
  with pytest.raises(ShapeError, match="square crops or their lower halves"):
    sx.expert_face_input(jnp.zeros((1, 5, 40, 96, 3)))


def test_lower_halves_resize_like_the_sampler():
  crops = np.random.default_rng(2).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
  out = sx.lower_halves(crops)
  assert out.shape == (3, 48, 96, 3) and out.dtype == np.uint8
  from PIL import Image
  ref = np.asarray(Image.fromarray(crops[1]).resize((96, 96), Image.BILINEAR))[48:]
  np.testing.assert_array_equal(out[1], ref)
  with pytest.raises(ShapeError, match="square face crops"):
    sx.lower_halves(np.zeros((3, 48, 96, 3), np.uint8))


def test_torch_default_init_matches_pytorch_bounds_and_module_structure(tiny):
  v = tiny.variables["syncnet"]
  module_init = jax.eval_shape(lambda: tiny.nets["syncnet"].init(
      jax.random.PRNGKey(0), tiny.batch["mel"][:1], jnp.zeros((1, 48, 96, 15)), train=False))
  assert jax.tree.structure(v) == jax.tree.structure(module_init)
  chex.assert_trees_all_equal_shapes(v, module_init)
  conv = v["params"]["face_encoder_0"]["conv"]      # 7x7x15 -> 32 // DIV
  bound = 1.0 / np.sqrt(7 * 7 * 15)
  kernel = np.asarray(conv["kernel"])
  assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
  assert np.std(kernel) == pytest.approx(bound / np.sqrt(3), rel=0.1)     # U(-b, b)
  assert np.abs(np.asarray(conv["bias"])).max() <= bound
  bn = v["params"]["face_encoder_0"]["bn"]
  np.testing.assert_array_equal(bn["scale"], 1.0)
  np.testing.assert_array_equal(bn["bias"], 0.0)
  np.testing.assert_array_equal(v["batch_stats"]["face_encoder_0"]["bn"]["var"], 1.0)
  # Every layer draws its own values (one draw, sliced): no two kernels start equal.
  a = np.asarray(v["params"]["face_encoder_2"]["conv"]["kernel"]).ravel()
  b = np.asarray(v["params"]["face_encoder_3"]["conv"]["kernel"]).ravel()
  assert a.shape == b.shape and not np.allclose(a, b)


def test_config_errors_name_the_field():
  with pytest.raises(ConfigError, match=r"config.data.image_size = 128: .* set it to 96"):
    task.batch_spec(configs.get_config("syncnet:tiny", {"data.image_size": 128}))
  with pytest.raises(ConfigError, match=r"config.data.negatives = -1: .* an integer >= 0"):
    task.batch_spec(configs.get_config("syncnet:tiny", {"data.negatives": -1}))
  with pytest.raises(ConfigError, match=r"config.model.head: unknown 'softmax'"):
    task.networks(configs.get_config("syncnet:tiny", {"model.head": "softmax"}))


# --- Loss -------------------------------------------------------------------------------------------------


def test_bce_and_balanced_mean_on_a_hand_computed_case():
  p = jnp.array([0.9, 0.2, 0.6, 1.0])
  y = jnp.array([1.0, 0.0, 0.0, 0.0])
  per = np.asarray(task.bce_terms(p, y, logits=False))
  np.testing.assert_allclose(per, [-np.log(0.9), -np.log(0.8), -np.log(0.4), 100.0], rtol=1e-6)
  # nn.BCELoss (the PyTorch reference): same values, clamped logs included.
  ref = torch.nn.functional.binary_cross_entropy(torch.tensor(np.asarray(p)), torch.tensor(np.asarray(y)),
                                                 reduction="none").numpy()
  np.testing.assert_allclose(per, ref, rtol=1e-6)
  balanced = float(task.balanced_mean(jnp.asarray(per), y))
  assert balanced == pytest.approx(0.5 * -np.log(0.9) + 0.5 * (-np.log(0.8) - np.log(0.4) + 100.0) / 3, rel=1e-6)
  # Logit form: softplus(z) - y z = BCE(sigmoid(z), y).
  z = jnp.array([2.0, -1.0, 0.3, 0.0])
  np.testing.assert_allclose(task.bce_terms(z, y, logits=True),
                             task.bce_terms(jax.nn.sigmoid(z), y, logits=False), rtol=1e-5)


def test_balanced_mean_gives_each_class_half_the_weight():
  y = jnp.array([1.0, 0.0, 0.0, 0.0])
  weights = np.asarray(jax.grad(task.balanced_mean)(jnp.ones(4), y))
  np.testing.assert_allclose(weights, [0.5, 1 / 6, 1 / 6, 1 / 6], rtol=1e-6)
  # A batch of one class: the plain mean.
  np.testing.assert_allclose(jax.grad(task.balanced_mean)(jnp.ones(4), jnp.zeros(4)), [0.25] * 4, rtol=1e-6)
  assert float(task.balanced_mean(jnp.array([1.0, 3.0]), jnp.array([1.0, 1.0]))) == pytest.approx(2.0)


def _loss_and_grads(config, nets, variables, batch, train, weights=None):
  """The task's loss (and its gradients) on ``batch`` with the tiny expert's variables (and those of
  the other networks of ``nets``)."""
  (player,) = task.players(config, nets)
  ctx = LossContext(batch_stats={"syncnet": variables["syncnet"]["batch_stats"]}, frozen={},
                    batch=jax.tree.map(jnp.asarray, batch), rng=jax.random.PRNGKey(0), step=jnp.int32(0),
                    weights=jax.tree.map(jnp.float32, weights or {"bce": 1.0}), carry={}, train=train)
  fn = jax.jit(jax.value_and_grad(lambda p: player.loss_fn(p, ctx), has_aux=True))
  return fn({name: variables[name]["params"] for name in player.networks})


def test_task_loss_equals_bce_on_the_cosine_computed_by_hand(tiny):
  (player,) = task.players(tiny.config, tiny.nets)
  assert player.networks == ("syncnet",) and tiny.config.loss.balance
  (loss, aux), _ = _loss_and_grads(tiny.config, tiny.nets, tiny.variables, tiny.batch, train=False)
  # By hand: the two embeddings (eval mode), their cosine, BCE.
  a, v = tiny.expert.embed_mels(tiny.batch["mel"]), tiny.expert.embed_faces(tiny.batch["faces"])
  cos = np.sum(a * v, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(v, axis=-1)
  y = tiny.batch["label"]
  per = -(y * np.log(cos) + (1 - y) * np.log(1 - cos))
  # The objective is balanced: the one positive weighs as much as the three negatives together; the
  # logged "bce" is Wav2Lip's plain mean.
  assert float(loss) == pytest.approx(0.5 * per[0] + 0.5 * per[1:].mean(), rel=1e-4)
  assert float(aux.terms["bce"]) == pytest.approx(per.mean(), rel=1e-4)
  assert float(wav2lip.expert_sync_loss(jnp.asarray(a), jnp.asarray(v), jnp.asarray(y))) == pytest.approx(
      per.mean(), rel=1e-4)
  assert float(aux.terms["p_in_sync"]) == pytest.approx(cos[0], rel=1e-4)
  assert float(aux.terms["p_off_sync"]) == pytest.approx(cos[1:].mean(), rel=1e-4)
  assert float(aux.terms["accuracy"]) == pytest.approx(np.mean((cos > 0.5) == (y > 0.5)))
  assert aux.batch_stats == {}
  chex.assert_shape(aux.images["faces"], (4, 48, 480, 3))


def test_task_loss_with_negatives_pairs_each_face_with_its_audio_windows(tiny):
  # data.negatives = 2: each window comes with 3 mels (in sync, 2 off); the face is embedded once.
  config = configs.get_config("syncnet:tiny", {"model.width_divisor": DIV, "data.negatives": 2})
  spec = task.batch_spec(config)
  chex.assert_shape([spec["mel"], spec["label"]], [(3, 80, 16, 1), (3,)])
  rng = np.random.default_rng(5)
  batch = {"faces": tiny.batch["faces"][:2], "mel": rng.uniform(-4, 4, (2, 3, 80, 16, 1)).astype(np.float32),
           "label": np.array([[1, 0, 0], [1, 0, 0]], np.float32)}
  # init takes such a batch and builds the same variables.
  abstract = jax.eval_shape(lambda r: task.init(config, tiny.nets, r, batch), jax.random.PRNGKey(0))
  chex.assert_trees_all_equal_shapes(abstract, tiny.variables)
  (loss, aux), _ = _loss_and_grads(config, tiny.nets, tiny.variables, batch, train=False)
  v = tiny.expert.embed_faces(batch["faces"])                                  # (2, D)
  a = tiny.expert.embed_mels(batch["mel"].reshape(6, 80, 16, 1)).reshape(2, 3, -1)
  cos = np.einsum("bpd,bd->bp", a, v) / np.linalg.norm(a, axis=-1) / np.linalg.norm(v, axis=-1)[:, None]
  y = batch["label"]
  per = -(y * np.log(cos) + (1 - y) * np.log(1 - cos))
  assert float(loss) == pytest.approx(0.5 * per[:, 0].mean() + 0.5 * per[:, 1:].mean(), rel=1e-4)
  assert float(aux.terms["p_in_sync"]) == pytest.approx(cos[:, 0].mean(), rel=1e-4)
  assert float(aux.terms["p_off_sync"]) == pytest.approx(cos[:, 1:].mean(), rel=1e-4)
  # The evaluator judges the in-sync pair and the first off-sync one of each window (balanced classes).
  state = TrainState(step=jnp.int32(0), rng=jax.random.PRNGKey(0),
                     params={"syncnet": tiny.variables["syncnet"]["params"]},
                     batch_stats={"syncnet": tiny.variables["syncnet"]["batch_stats"]}, opt_state={}, weights={})
  ectx = types.SimpleNamespace(nets=tiny.nets, frozen={}, compile=jax.jit,
                               batches=lambda n: iter([jax.tree.map(jnp.asarray, batch)] * n))
  results = dict(task.SyncEvaluator(ectx, num_batches=1).run(state))
  assert results["p_in_sync"] == pytest.approx(cos[:, 0].mean(), rel=1e-4)
  assert results["p_off_sync"] == pytest.approx(cos[:, 1].mean(), rel=1e-4)


def test_hard_negatives_train_on_the_off_sync_windows_closest_to_the_face(tiny):
  # data.negatives = 3 candidates, loss.hard_negatives = 1: each window keeps its in-sync pair and the
  # candidate whose audio embedding is closest to its face's.
  config = configs.get_config("syncnet:tiny", {"model.width_divisor": DIV, "data.negatives": 3,
                                               "loss.hard_negatives": 1})
  rng = np.random.default_rng(11)
  batch = {"faces": tiny.batch["faces"], "mel": rng.uniform(-4, 4, (4, 4, 80, 16, 1)).astype(np.float32),
           "label": np.tile(np.array([1, 0, 0, 0], np.float32), (4, 1))}
  # Eval mode, by hand: cosines of all 4 pairs per window; the hardest off-sync one is kept.
  v = tiny.expert.embed_faces(batch["faces"])
  a = tiny.expert.embed_mels(batch["mel"].reshape(16, 80, 16, 1)).reshape(4, 4, -1)
  cos = np.einsum("bpd,bd->bp", a, v) / np.linalg.norm(a, axis=-1) / np.linalg.norm(v, axis=-1)[:, None]
  hardest = 1 + np.argmax(cos[:, 1:], axis=1)
  assert len(set(hardest.tolist())) > 1          # the choice differs between windows
  per_pos, per_neg = -np.log(cos[:, 0]), -np.log(1 - cos[np.arange(4), hardest])
  (loss, aux), _ = _loss_and_grads(config, tiny.nets, tiny.variables, batch, train=False)
  assert float(loss) == pytest.approx(0.5 * per_pos.mean() + 0.5 * per_neg.mean(), rel=1e-4)
  assert float(aux.terms["p_off_sync"]) == pytest.approx(cos[np.arange(4), hardest].mean(), rel=1e-4)
  assert float(aux.terms["p_off_sync"]) > cos[:, 1:].mean()
  # Train mode: loss, gradients and BatchNorm statistics are those of the plain K = 1 loss on the
  # kept pairs (the candidates are scored with batch statistics, as the kept pairs then are).
  expert, variables = tiny.nets["syncnet"], tiny.variables["syncnet"]
  face_in = sx.expert_face_input(jnp.asarray(batch["faces"]))
  a_all, _ = expert.apply(variables, jnp.asarray(batch["mel"].reshape(16, 80, 16, 1)), method="embed_audio",
                          train=True, mutable=["batch_stats"])
  v_train, _ = expert.apply(variables, face_in, method="embed_face", train=True, mutable=["batch_stats"])
  cos_t = np.asarray(task.pair_cosine(a_all.reshape(4, 4, -1), v_train))
  keep = 1 + np.argmax(cos_t[:, 1:], axis=1)
  kept = {"faces": batch["faces"], "mel": batch["mel"][np.arange(4)[:, None], np.stack([np.zeros(4, int), keep], 1)],
          "label": np.tile(np.array([1, 0], np.float32), (4, 1))}
  chex.assert_shape(kept["mel"], (4, 2, 80, 16, 1))
  plain = configs.get_config("syncnet:tiny", {"model.width_divisor": DIV, "data.negatives": 1})
  (loss_h, aux_h), grads_h = _loss_and_grads(config, tiny.nets, tiny.variables, batch, train=True)
  (loss_p, aux_p), grads_p = _loss_and_grads(plain, tiny.nets, tiny.variables, kept, train=True)
  assert float(loss_h) == pytest.approx(float(loss_p), rel=1e-5)
  chex.assert_trees_all_close(grads_h, grads_p, rtol=1e-4, atol=1e-6)
  chex.assert_trees_all_close(aux_h.batch_stats, aux_p.batch_stats, rtol=1e-5, atol=1e-6)
  assert jax.tree.structure(aux_h.batch_stats["syncnet"]) == jax.tree.structure(variables["batch_stats"])


def test_hard_negatives_config():
  assert configs.get_config("syncnet").loss.hard_negatives == 0
  assert task.hard_negatives(configs.get_config("syncnet:tiny", {"data.negatives": 3, "loss.hard_negatives": 2})) == 2
  for k, m, match in ((3, -1, "an integer >= 0"), (3, 3, "needs data.negatives > hard_negatives"),
                      (0, 1, "needs data.negatives")):
    config = configs.get_config("syncnet:tiny", {"data.negatives": k, "loss.hard_negatives": m})
    with pytest.raises(ConfigError, match=rf"config.loss.hard_negatives = {m}.*{match}"):
      task.batch_spec(config)
  for bad in (1.5, "one"):   # refused when the override is applied (the field is an integer)
    with pytest.raises(ConfigError, match="hard_negatives"):
      task.batch_spec(configs.get_config("syncnet:tiny", {"data.negatives": 3, "loss.hard_negatives": bad}))


def test_mouth_loss_adds_the_probes_squared_errors_on_both_embeddings(tiny):
  # loss_weights.mouth = w: linear read-outs of the 5 frames' mouth shape from each embedding.
  config = configs.get_config("syncnet:tiny", {"model.width_divisor": DIV, "data.negatives": 1,
                                               "data.mouth": True, "loss_weights.mouth": 0.5})
  nets = task.networks(config)
  assert set(nets) == {"syncnet", "mouth_probe"} and task.initial_weights(config) == {"bce": 1.0, "mouth": 0.5}
  spec = task.batch_spec(config)
  chex.assert_shape([spec["face_mouth"], spec["mel_mouth"]], [(5, 2), (2, 5, 2)])
  rng = np.random.default_rng(12)
  batch = {"faces": tiny.batch["faces"], "mel": rng.uniform(-4, 4, (4, 2, 80, 16, 1)).astype(np.float32),
           "label": np.tile(np.array([1, 0], np.float32), (4, 1)),
           "face_mouth": rng.normal(size=(4, 5, 2)).astype(np.float32),
           "mel_mouth": rng.normal(size=(4, 2, 5, 2)).astype(np.float32)}
  variables = jax.jit(lambda r: task.init(config, nets, r, {k: v[:1] for k, v in batch.items()}))(
      jax.random.PRNGKey(0))
  chex.assert_trees_all_equal_shapes(variables["syncnet"], tiny.variables["syncnet"])
  variables = {**variables, "syncnet": tiny.variables["syncnet"]}
  probe = variables["mouth_probe"]["params"]
  chex.assert_shape([probe["audio"]["kernel"], probe["face"]["kernel"]], [(32, 10), (32, 10)])
  weights = {"bce": 1.0, "mouth": 0.5}
  (loss, aux), grads = _loss_and_grads(config, nets, variables, batch, train=False, weights=weights)
  # By hand (eval mode): unit embeddings, their cosines and BCE, then each read-out's mean squared error.
  v = tiny.expert.embed_faces(batch["faces"])
  a = tiny.expert.embed_mels(batch["mel"].reshape(8, 80, 16, 1)).reshape(4, 2, -1)
  v, a = v / np.linalg.norm(v, axis=-1, keepdims=True), a / np.linalg.norm(a, axis=-1, keepdims=True)
  cos = np.einsum("bpd,bd->bp", a, v)
  bce = 0.5 * -np.log(cos[:, 0]).mean() + 0.5 * -np.log(1 - cos[:, 1]).mean()
  read = lambda x, p: x @ np.asarray(p["kernel"]) + np.asarray(p["bias"])
  err_a = np.mean((read(a, probe["audio"]) - batch["mel_mouth"].reshape(4, 2, 10)) ** 2)
  err_v = np.mean((read(v, probe["face"]) - batch["face_mouth"].reshape(4, 10)) ** 2)
  assert float(aux.terms["mouth_audio"]) == pytest.approx(err_a, rel=1e-4)
  assert float(aux.terms["mouth_face"]) == pytest.approx(err_v, rel=1e-4)
  assert float(loss) == pytest.approx(bce + 0.5 * (err_a + err_v), rel=1e-4)
  assert float(jnp.abs(grads["mouth_probe"]["face"]["kernel"]).max()) > 0
  # The read-outs train the encoders: with the BCE switched off, both branches still get gradients.
  _, grads = _loss_and_grads(config, nets, variables, batch, train=False, weights={"bce": 0.0, "mouth": 1.0})
  g = grads["syncnet"]
  assert float(jnp.abs(g["face_encoder_0"]["conv"]["kernel"]).max()) > 0
  assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g["audio_encoder"])) > 0


def test_mouth_loss_config():
  assert configs.get_config("syncnet").loss_weights.mouth == 0.0
  assert "mouth_probe" not in task.networks(configs.get_config("syncnet:tiny"))
  for overrides, match in (({"loss_weights.mouth": 1.0}, "needs config.data.mouth = True"),
                           ({"loss_weights.mouth": -1.0, "data.mouth": True}, "a number >= 0"),
                           ({"loss_weights.mouth": 1.0, "data.mouth": True, "data.negatives": 3,
                             "loss.hard_negatives": 1}, "does not combine with config.loss.hard_negatives")):
    with pytest.raises(ConfigError, match=match):
      task.batch_spec(configs.get_config("syncnet:tiny", overrides))


def test_corpus_override_reaches_the_embedded_corpus(monkeypatch):
  # --config.data.corpus="{'speakers': 24, 'clips': 1}" (the session-7 runs of BUILD_NOTES.md 5.2).
  from talkjax.data import embedded  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(embedded, "ensure_corpus", lambda cache_dir, **kw: calls.append(kw) or "/nowhere")
  config = configs.get_config("syncnet:runlocal", [("data.corpus", "{'speakers': 24, 'clips': 1}")])
  assert task.dataset_root(config) == "/nowhere"
  assert calls[-1]["preset"] == "runlocal_excerpts"
  assert (calls[-1]["speakers"], calls[-1]["clips"]) == (24, 1)
  assert configs.get_config("syncnet:runlocal").data.corpus is None
  task.dataset_root(configs.get_config("syncnet:runlocal"))
  assert "speakers" not in calls[-1]


def test_generator_sync_loss_is_bce_against_label_one(tiny):
  frames = tiny.batch["faces"][:2].astype(np.float32) / 255.0     # generated frames: float in [0, 1]
  got = jax.jit(task.generator_sync_loss)(
      tiny.variables["syncnet"], jnp.asarray(tiny.batch["mel"][:2]), jnp.asarray(frames))
  p = tiny.expert.probabilities(tiny.batch["faces"][:2], tiny.batch["mel"][:2])
  assert float(got) == pytest.approx(-np.mean(np.log(p)), rel=1e-4)


def test_scaled_head_starts_at_probability_one_half_at_its_centre():
  head = task.SyncHead(scale_init=10.0)
  params = head.init(jax.random.PRNGKey(0), jnp.zeros(1))["params"]
  p = task.sync_probability(jnp.array([0.5, 0.6, 0.4]), params, head)
  np.testing.assert_allclose(p, [0.5, 1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(1.0))], rtol=1e-5)
  np.testing.assert_allclose(task.sync_probability(jnp.array([1.2, -0.1, 0.3])), [1.0, 0.0, 0.3])


# --- Evaluation -------------------------------------------------------------------------------------------


def test_sync_metrics_on_a_constructed_case():
  p = np.array([0.9, 0.7, 0.4, 0.6, 0.2, 0.1])
  y = np.array([1, 1, 1, 0, 0, 0])
  m = sx.sync_metrics(p, y)
  assert m["accuracy"] == pytest.approx(4 / 6)            # 0.4 (pos) and 0.6 (neg) are wrong
  assert m["balanced_accuracy"] == pytest.approx(0.5 * (2 / 3 + 2 / 3))
  assert m["auc"] == pytest.approx(8 / 9)                 # 8 of the 9 (pos, neg) pairs ranked right
  assert m["bce"] == pytest.approx(-np.mean(np.log([0.9, 0.7, 0.4, 0.4, 0.8, 0.9])))
  assert (m["p_in_sync"], m["p_off_sync"]) == pytest.approx((2.0 / 3, 0.3))
  assert m["num_pairs"] == 6
  assert sx.roc_auc(np.array([0.5, 0.5, 0.5]), np.array([1, 0, 0])) == pytest.approx(0.5)   # ties
  assert sx.sync_metrics(np.array([0.7]), np.array([1]))["accuracy"] == 1.0


def test_sync_evaluator_on_windows_paired_with_both_labels(tiny):
  # Each window appears twice, once labelled in sync and once off: whatever the network says, the
  # accuracy is exactly 1/2, the AUC 1/2 and both classes' mean probabilities are equal.
  b = tiny.batch
  batch = {"faces": np.concatenate([b["faces"], b["faces"]]), "mel": np.concatenate([b["mel"], b["mel"]]),
           "label": np.array([1, 1, 1, 1, 0, 0, 0, 0], np.float32)}
  state = TrainState(step=jnp.int32(0), rng=jax.random.PRNGKey(0), params={"syncnet": tiny.variables["syncnet"]["params"]},
                     batch_stats={"syncnet": tiny.variables["syncnet"]["batch_stats"]}, opt_state={}, weights={})
  ctx = types.SimpleNamespace(nets=tiny.nets, frozen={}, compile=jax.jit,
                              batches=lambda n: iter([jax.tree.map(jnp.asarray, batch)] * n))
  results = dict(task.SyncEvaluator(ctx, num_batches=2).run(state))
  assert results["accuracy"] == pytest.approx(0.5)
  assert results["auc"] == pytest.approx(0.5)
  assert results["p_in_sync"] == pytest.approx(results["p_off_sync"])
  chex.assert_shape(results["windows"], (4, 48, 480, 3))
  p = tiny.expert.probabilities(b["faces"], b["mel"])
  assert results["p_in_sync"] == pytest.approx(p.mean(), rel=1e-5)
  assert results["accuracy"] == sx.sync_metrics(np.concatenate([p, p]), batch["label"])["accuracy"]


# --- LSE with the expert ---------------------------------------------------------------------------------


class CodeExpert:
  """A synthetic "expert" with known embeddings: frame t of a clip is painted with grey level
  ``codes[t]`` and mel column j holds ``codes[frame of j]``; both embed to the one-hot vector of their
  code (window: its first frame / first column), silence (-4) to the last unit vector."""

  def __init__(self, num_codes):
    self.n = num_codes

  def _onehot(self, idx):
    return np.eye(self.n + 1)[idx]

  def embed_faces(self, frames):
    return self._onehot(frames[:, 0, 0, 0, 0].astype(int))

  def embed_mels(self, mels):
    first = mels[:, 0, 0, 0]
    return self._onehot(np.where(first <= sx.SILENCE, self.n, np.rint(first).astype(int)))


def _coded_clip(num_frames=60, seed=0):
  codes = np.random.default_rng(seed).permutation(num_frames).astype(np.uint8) % 200
  faces = np.broadcast_to(codes[:, None, None, None], (num_frames, 48, 96, 3)).astype(np.uint8)
  mel_frames = audio_lib.num_mel_frames(num_frames * 640)
  frame_of = _frame_of(mel_frames, num_frames)
  mel = np.broadcast_to(codes[frame_of].astype(np.float32), (80, mel_frames)).copy()
  return faces, mel, codes


@pytest.mark.parametrize("delay", [0, 3, 10, -7])
def test_lse_detects_a_planted_offset(delay):
  faces, mel, codes = _coded_clip()
  # Delaying the audio by d frames (d * 3.2 mel frames: whole frames only where 80 d / 25 is an integer).
  shifted = sx.shift_mel(mel, delay) if delay % 5 == 0 else _roll_frames(mel, codes, delay)
  score = sx.score_windows(CodeExpert(200), faces, shifted)
  assert score.offset == -delay
  assert score.num_windows == 60 - 5
  assert score.mean_distances.shape == (31,)
  # With one-hot codes the matching offset has distance 0 except where the audio left the clip.
  assert score.lse_d == pytest.approx(abs(delay) / 55 if delay else 0.0, abs=1e-12)


def _frame_of(mel_frames, num_frames):
  # The last frame whose window starts at or before mel column j: max v with int(80 v / 25) <= j.
  j = np.arange(mel_frames)
  return np.minimum(-((-(j + 1) * 25) // 80) - 1, num_frames - 1)


def _roll_frames(mel, codes, delay):
  frame_of = _frame_of(mel.shape[1], len(codes))
  src = frame_of - delay
  out = np.where((src >= 0) & (src < len(codes)), codes[np.clip(src, 0, len(codes) - 1)], -4.0)
  return np.broadcast_to(out.astype(np.float32), mel.shape).copy()


def test_lse_confidence_drops_when_the_audio_is_shifted():
  faces, mel, _ = _coded_clip(seed=3)
  clip = sx.Clip(key="coded", faces=faces, mel=mel)
  report = sx.shift_test(CodeExpert(200), [clip], shift=10)
  truth, shifted = report.truth[0], report.shifted[0]
  assert (truth.offset, shifted.offset) == (0, -10)
  # mdist is 1 at every non-matching offset: LSE-C = 1 - min.
  assert truth.lse_c == pytest.approx(1.0) and truth.lse_d == pytest.approx(0.0)
  assert shifted.lse_d == pytest.approx(10 / 55) and shifted.lse_c == pytest.approx(1 - 10 / 55)
  summary = report.summary()
  assert summary["clips_better"] == 1.0 and summary["offset_shifted"] == -10.0
  assert "not better" not in report.table()


def test_cosine_distances_equal_one_minus_cosine_with_zero_padding():
  rng = np.random.default_rng(4)
  v, a = rng.normal(size=(6, 8)), rng.normal(size=(6, 8))
  d = sx.cosine_distances(v, a, vshift=2)
  chex.assert_shape(d, (6, 5))
  cos = lambda x, y: x @ y / np.linalg.norm(x) / np.linalg.norm(y)  # noqa: E731
  for i in range(6):
    for k in range(5):
      j = i + k - 2
      assert d[i, k] == pytest.approx(1 - cos(v[i], a[j]) if 0 <= j < 6 else 1.0)
  # The score is joonson's rule on these distances (lse.score_from_distances, reused).
  s = lse.score_from_distances(d, 2)
  assert s.lse_d == pytest.approx(d.mean(0).min())


def test_shift_mel_equals_the_mel_of_delayed_audio():
  wav = np.random.default_rng(5).normal(0, 0.1, 16000 * 2).astype(np.float32)
  delayed = np.concatenate([np.zeros(6400, np.float32), wav])[:wav.size]   # 10 frames at 25 fps
  ref = audio_lib.melspectrogram(delayed)
  got = sx.shift_mel(audio_lib.melspectrogram(wav), 10)
  # Away from the junction (the STFT window straddles it for +-2 frames) and from the end (where the
  # delayed clip's STFT runs into its padding) the columns are equal.
  np.testing.assert_allclose(got[:, 35:159], ref[:, 35:159], atol=1e-4)
  np.testing.assert_array_equal(got[:, :30], sx.SILENCE)
  np.testing.assert_array_equal(ref[:, :30], sx.SILENCE)
  np.testing.assert_array_equal(sx.shift_mel(got, -10)[:, :-32], got[:, 32:])


def test_num_windows_follows_joonsons_rule():
  assert sx.num_windows(75, audio_lib.num_mel_frames(75 * 640)) == 70
  assert sx.num_windows(100, audio_lib.num_mel_frames(75 * 640)) == 70     # audio shorter than video
  assert sx.num_windows(5, 100) == 0
  with pytest.raises(ValueError, match="needs at least 6 frames"):
    sx.score_windows(CodeExpert(10), np.zeros((5, 48, 96, 3), np.uint8), np.zeros((80, 100), np.float32))


def test_shift_test_on_held_out_corpus_clips(tiny_corpus):
  clips = sx.load_clips(tiny_corpus, "eval", max_clips=1)
  c = clips[0]
  assert c.faces.shape[1:] == (48, 96, 3) and c.faces.dtype == np.uint8
  assert c.mel.shape[0] == 80 and c.fps == 25.0
  # Every window of the clip has real audio: T - 5 windows.
  assert sx.num_windows(len(c.faces), c.mel.shape[1], c.frame0, c.mel0, c.fps) == len(c.faces) - 5


def test_check_cli_reads_the_runs_data_from_its_config(tiny, tiny_corpus, tmp_path, capsys):
  v = jax.device_get(tiny.variables["syncnet"])
  state = {"step": np.int32(1), "params": {"syncnet": v["params"]}, "batch_stats": {"syncnet": v["batch_stats"]}}
  run = tmp_path / "run"
  with checkpoints.TrainCheckpointer(run / "checkpoints", async_save=False) as ckpt:
    ckpt.save(1, state)
  # The run's config.json names its data (here a dataset root): no --data_root or --preset needed.
  (run / "config.json").write_text(json.dumps({"data": {"kind": "corpus", "root": tiny_corpus}}))
  out = tmp_path / "check.json"
  assert sx.main(["--workdir", str(run), "--accuracy_batches", "1", "--max_clips", "1", "--json", str(out)]) == 0
  report = json.loads(out.read_text())
  assert len(report["clips"]) == 1 and report["clips"][0]["clip"] in {c.key for c in sx.load_clips(
      tiny_corpus, "eval", max_clips=1)}
  assert 0.0 <= report["summary"]["sync/accuracy"] <= 1.0
  assert report["summary"]["sync/num_pairs"] == 64     # one batch of the default 64
  # --check states the verdict with the accuracy's standard error (an untrained expert fails).
  capsys.readouterr()
  assert sx.main(["--workdir", str(run), "--accuracy_batches", "1", "--max_clips", "1", "--check"]) == 1
  acc = report["summary"]["sync/accuracy"]
  assert f"held-out accuracy {acc:.3f} +- {np.sqrt(acc * (1 - acc) / 64):.3f} on 64 pairs" in capsys.readouterr().out
  (run / "config.json").write_text("{not json")
  assert sx.main(["--workdir", str(run), "--accuracy_batches", "1", "--max_clips", "1"]) == 1
  assert "unreadable run config" in capsys.readouterr().err


# --- Export and loading ---------------------------------------------------------------------------------


def test_export_and_load_expert_round_trip(tiny, tmp_path):
  v = jax.device_get(tiny.variables["syncnet"])
  state = {"step": np.int32(3), "params": {"syncnet": v["params"]}, "batch_stats": {"syncnet": v["batch_stats"]}}
  with checkpoints.TrainCheckpointer(tmp_path / "run" / "checkpoints", async_save=False) as ckpt:
    ckpt.save(3, state)
  out = task.export_expert(tmp_path / "run", tmp_path / "expert")
  expert = sx.load_expert(out, batch_size=4)
  assert expert.module.width_divisor == DIV
  chex.assert_trees_all_close(jax.device_get(expert.variables), v)
  # The CLI does the same and names the problem when the run does not exist.
  assert task.main(["--workdir", str(tmp_path / "run"), "--output", str(tmp_path / "expert2")]) == 0
  assert task.main(["--workdir", str(tmp_path / "nope"), "--output", str(tmp_path / "x")]) == 1
  # Variables of another network are refused with the reason.
  checkpoints.save_variables(tmp_path / "other", {"params": {"dense": {"kernel": np.zeros((2, 2))}}})
  with pytest.raises(CheckpointError, match="not the variables of a Wav2Lip expert SyncNet"):
    sx.load_expert(tmp_path / "other")
  frozen = task.frozen_expert(width_divisor=DIV)
  assert frozen.field == "frozen.syncnet" and frozen.convert_kind == "wav2lip_syncnet"
  chex.assert_trees_all_equal_shapes(frozen.abstract(), v)


def test_wider_audio_branch_keeps_one_embedding_size_and_travels_with_the_variables(tmp_path):
  """``audio_width_divisor``: the audio branch's own widths, its last 1x1 block at the face's width;
  an exported expert, the frozen-net shapes and the generator's sync loss all read it back."""
  module = wav2lip.SyncNetColor(width_divisor=DIV, audio_width_divisor=DIV // 2)
  rng = np.random.default_rng(3)
  mel = jnp.asarray(rng.uniform(-4, 4, (3, 80, 16, 1)), jnp.float32)
  face = jnp.asarray(rng.uniform(0, 1, (3, 48, 96, 15)), jnp.float32)
  v = jax.jit(functools.partial(module.init, train=False))(jax.random.PRNGKey(0), mel, face)
  audio = v["params"]["audio_encoder"]
  assert audio["block_0"]["conv"]["kernel"].shape == (3, 3, 1, 32 // (DIV // 2))       # 4 features
  assert audio["block_13"]["conv"]["kernel"].shape[-2:] == (512 // (DIV // 2), 512 // DIV)  # 64 -> 32
  assert v["params"]["face_encoder_0"]["conv"]["kernel"].shape[-1] == 32 // DIV
  a, f = module.apply(v, mel, face)
  chex.assert_shape([a, f], (3, 512 // DIV))
  assert (sx.width_divisor_of(v), sx.audio_width_divisor_of(v)) == (DIV, DIV // 2)
  same = wav2lip.SyncNetColor(width_divisor=DIV)
  assert sx.expert_module(v) == module and sx.expert_module(jax.eval_shape(
      functools.partial(same.init, train=False), jax.random.PRNGKey(0), mel, face)) == same
  # Export layout: load_expert rebuilds the same module and scores exactly as it.
  checkpoints.save_variables(tmp_path / "expert", jax.device_get(v))
  expert = sx.load_expert(tmp_path / "expert", batch_size=3)
  assert expert.module == module
  frames = rng.integers(0, 256, (3, 5, 48, 96, 3), dtype=np.uint8)
  p = expert.probabilities(frames, np.asarray(mel))
  a, f = module.apply(v, mel, sx.expert_face_input(jnp.asarray(frames)))
  np.testing.assert_allclose(p, np.clip(np.sum(np.asarray(a) * np.asarray(f), -1), 0, 1), rtol=1e-5, atol=1e-6)
  got = task.generator_sync_loss(v, mel, jnp.asarray(frames, jnp.float32) / 255.0)
  assert float(got) == pytest.approx(-np.mean(np.log(p)), rel=1e-4)
  frozen = task.frozen_expert(width_divisor=DIV, audio_width_divisor=DIV // 2)
  chex.assert_trees_all_equal_shapes(frozen.abstract(), v)
  # An audio branch that is no divisor's, or that does not match its first layer, is refused by name.
  odd = jax.tree.map(np.asarray, jax.device_get(v))
  odd["params"]["audio_encoder"]["block_0"]["conv"]["kernel"] = np.zeros((3, 3, 1, 3), np.float32)
  with pytest.raises(CheckpointError, match="3 first audio-layer features: not 32 // d"):
    sx.expert_module(odd)
  odd["params"]["audio_encoder"]["block_0"]["conv"]["kernel"] = np.zeros((3, 3, 1, 32 // DIV), np.float32)
  checkpoints.save_variables(tmp_path / "odd", odd)
  fits = rf"does not fit SyncNetColor\(width_divisor={DIV}, audio_width_divisor=None\)"
  with pytest.raises(CheckpointError, match=fits):
    sx.load_expert(tmp_path / "odd")


def test_audio_width_divisor_config():
  assert configs.get_config("syncnet").model.audio_width_divisor is None          # Wav2Lip's widths
  assert task.networks(configs.get_config("syncnet:runlocal")).get("syncnet").audio_width_divisor is None
  wider = task.networks(configs.get_config("syncnet:runlocal", {"model.audio_width_divisor": 2}))["syncnet"]
  assert (wider.width_divisor, wider.audio_width_divisor) == (4, 2)
  for bad in (3, 0, 64, True, 2.5, "two"):
    with pytest.raises(ConfigError, match="audio_width_divisor"):
      task.networks(configs.get_config("syncnet:runlocal", {"model.audio_width_divisor": bad}))


@pytest.mark.parametrize("case", ["zero_embedding", "opposite", "identical"])
def test_loss_gradients_stay_finite_at_the_edges(case):
  """A ReLU-ended embedding can be all zero and the cosine can hit 0 or 1 exactly: the training run
  that hit this stopped with a NaN gradient norm at step 286 (norm and log clamps gave 0 * inf)."""
  from talkjax.models import wav2lip
  b = jnp.ones((3, 8))
  a = {"zero_embedding": jnp.zeros((3, 8)).at[1].set(1.0), "opposite": -b, "identical": b}[case]
  labels = jnp.array([1.0, 0.0, 1.0])

  def expert(a):
    return wav2lip.expert_sync_loss(wav2lip._l2_normalize(a), wav2lip._l2_normalize(b), labels)

  def balanced(a):
    cos = wav2lip.cosine_similarity(wav2lip._l2_normalize(a), b)
    return task.bce_terms(cos, labels, logits=False).sum()

  for fn in (expert, balanced):
    value, grad = jax.value_and_grad(fn)(a)
    assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all(), (case, fn.__name__)
