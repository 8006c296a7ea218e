"""Tests of the Grain pipelines (talkjax.data.loader), the embedded corpus cache and the trainer's seam."""

import os
import threading

import chex
import grain
import jax
import ml_collections
import numpy as np
import pytest

from talkjax.data import embedded, loader, samplers
from talkjax.data import preprocess as pre
from talkjax.train import data_source




@pytest.fixture(scope="session")
def corpus(tiny_corpus) -> str:
  return tiny_corpus


def _equal(a: dict, b: dict) -> bool:
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_batches_are_deterministic_and_split_across_processes(corpus):
  kw = dict(root=corpus, split="train", seed=3, image_size=48)
  whole = samplers.make_sampler("syncnet", batch_size=4, **kw)
  again = samplers.make_sampler("syncnet", batch_size=4, **kw)
  halves = [samplers.make_sampler("syncnet", batch_size=2, process_index=p, process_count=2, **kw)
            for p in (0, 1)]
  for g in (0, 7):
    assert _equal(whole[g], again[g])
    joined = {k: np.concatenate([halves[0][g][k], halves[1][g][k]]) for k in whole[g]}
    assert _equal(whole[g], joined)  # global batch g = process 0's part, then process 1's
  other = samplers.make_sampler("syncnet", batch_size=4, root=corpus, split="train", seed=4, image_size=48)
  assert not _equal(whole[0], other[0])
  # Epochs: every eligible segment once per epoch, in a new order each epoch.
  smp = samplers.sampler("landmarks", loader.SegmentDataset(corpus, "train"))
  ds = loader.build_dataset(smp, batch_size=1, seed=0)
  n = smp.num_items
  firsts = [[_first_segment(ds[e * n + j], smp) for j in range(n)] for e in range(2)]
  assert sorted(firsts[0]) == sorted(firsts[1]) == list(range(n)) and firsts[0] != firsts[1]


def _first_segment(batch, smp) -> int:
  target = batch["target"][0]  # jaw and lips: pose alone is shared by the two clips of a pair
  for j, i in enumerate(smp._items):
    points = smp.data.segment(i).arrays["landmarks"][:, 74:] / 96.0
    if any(np.allclose(points[t:t + 5], target) for t in range(len(points) - 4)):
      return j
  raise AssertionError("example not found")


def test_eval_split_holds_only_held_out_speakers(corpus):
  index = pre.load_index(corpus)
  train, held = loader.SegmentDataset(corpus, "train"), loader.SegmentDataset(corpus, "eval")
  assert held.speakers == index["splits"]["eval"]["speakers"] and len(held.speakers) == 1
  assert not set(train.speakers) & set(held.speakers)
  assert len(train) + len(held) == index["records"]
  resplit = loader.SegmentDataset(corpus, "eval", eval_speakers=["spk000", "spk001"])
  assert resplit.speakers == ["spk000", "spk001"]
  batch = samplers.make_sampler("dck_pairs", root=corpus, split="eval", batch_size=2, seed=0)[0]
  chex.assert_shape(batch["source"], (2, 128, 128, 3))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resumed_iterator_yields_what_an_uninterrupted_one_would(corpus, num_workers):
  kw = dict(root=corpus, split="train", batch_size=2, seed=1, image_size=32)
  expected = [samplers.make_sampler("renderer", **kw)[g] for g in range(6)]  # random access: the reference
  ds = samplers.make_sampler("renderer", num_workers=num_workers, num_threads=1, prefetch=2, **kw)
  if num_workers:
    assert isinstance(ds, grain.IterDataset)

  def start():
    return iter(ds) if num_workers else loader.make_iterator(ds, num_threads=1, prefetch=2)

  first = start()
  for g in range(3):
    assert _equal(next(first), expected[g])
  state = first.get_state()
  assert _equal(next(first), expected[3])  # the uninterrupted stream goes on as the reference does
  resumed = start()
  resumed.set_state(state)
  for g in range(3, 6):
    assert _equal(next(resumed), expected[g])
  if num_workers:
    first.close()
    resumed.close()


def test_trainer_data_source_gets_corpus_batches(corpus):
  smp = samplers.sampler("wav2lip", loader.SegmentDataset(corpus, "train"), image_size=48)
  spec = {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in smp.spec().items()}
  config = ml_collections.ConfigDict(dict(kind="corpus", root=corpus, cache_dir=None, num_threads=1,
                                          prefetch=2, image_size=48))
  source = data_source.make_data_source(config, sampler="wav2lip", spec=spec, batch_size=2, seed=0,
                                        process_index=0, process_count=1)
  batch = next(source.train)
  for key, s in spec.items():
    chex.assert_shape(batch[key], (2,) + s.shape)
  assert _equal(next(iter(source.eval())), next(iter(source.eval())))  # the same held-out batches every time
  assert hasattr(source.train, "get_state") and hasattr(source.train, "set_state")


def test_dataset_root_resolves_a_data_config(corpus, tmp_path):
  from conftest import TINY_CORPUS  # pylint: disable=g-import-not-at-top

  cache_dir = os.path.dirname(os.path.dirname(corpus))   # <cache>/corpus-runlocal-<hash>/data
  config = ml_collections.ConfigDict(dict(kind="corpus", root=None, cache_dir=cache_dir, preset="runlocal",
                                          corpus=dict(TINY_CORPUS), image_size=48, num_threads=1, prefetch=2))
  # data.corpus overrides the preset's parameters: the already-built tiny corpus, not a new build.
  assert embedded.dataset_root(config) == corpus
  assert embedded.dataset_root(config.to_dict()) == corpus
  # The sampler options ignore it (it says where the data is, not how to sample it).
  smp = samplers.sampler("wav2lip", loader.SegmentDataset(corpus, "train"), image_size=48)
  spec = {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in smp.spec().items()}
  source = data_source.make_data_source(config, sampler="wav2lip", spec=spec, batch_size=2, seed=0,
                                        process_index=0, process_count=1)
  chex.assert_shape(next(source.train)["frames"], (2,) + spec["frames"].shape)
  # data.root wins, expanded to an absolute path.
  assert embedded.dataset_root(dict(root=os.path.relpath(corpus), corpus=dict(speakers=99))) == corpus
  with pytest.raises(ValueError, match=r"unknown parameters \['voices'\]"):
    embedded.dataset_root(dict(root=None, cache_dir=str(tmp_path), preset="runlocal", corpus=dict(voices=2)))


def test_embedded_corpus_is_built_once_under_a_lock(tmp_path, monkeypatch):
  from talkjax.data import synthetic

  builds = []
  real = synthetic.make_corpus

  def counting(*args, **kwargs):
    builds.append(args[0])
    return real(*args, **kwargs)

  monkeypatch.setattr(synthetic, "make_corpus", counting)
  small = dict(speakers=2, clips=1, duration=1.0, video_size=64, size=64, face_size=64)
  roots = []
  threads = [threading.Thread(target=lambda: roots.append(
      embedded.ensure_corpus(str(tmp_path), preset="runlocal", progress=False, workers=0, **small)))
      for _ in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert len(builds) == 1 and len(roots) == 2 and roots[0] == roots[1]
  root = roots[0]
  assert root == os.path.join(embedded.corpus_dir(str(tmp_path), "runlocal", **small), "data")
  assert sorted(os.listdir(os.path.dirname(root))) == ["data", "raw"]  # no partial directory left
  index = pre.load_index(root)
  assert index["clips"] == 4 and len(index["splits"]["eval"]["speakers"]) == 1
  assert embedded.ensure_corpus(str(tmp_path), preset="runlocal", progress=False, **small) == root
  assert len(builds) == 1
  # Other parameters (or other generator code) -> another directory.
  assert embedded.corpus_dir(str(tmp_path), "runlocal", **dict(small, seed=1)) != os.path.dirname(root)
  with pytest.raises(ValueError, match="unknown 'huge'"):
    embedded.ensure_corpus(str(tmp_path), preset="huge")
