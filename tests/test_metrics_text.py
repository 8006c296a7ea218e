"""VTCS and its text metrics (paper 003) on transcripts whose scores are computed by hand."""

import math

import numpy as np
import pytest

from talkjax.errors import ArgumentError
from talkjax.metrics import vtcs


def test_normalisation():
  assert vtcs.normalize("  Hello,   WORLD!\tIt's  fine_ok. ") == "hello world it's fine ok"
  assert vtcs.words("") == [] and vtcs.words(" ?! ") == []
  with pytest.raises(ArgumentError, match="str"):
    vtcs.normalize(None)


def test_scores_of_one_substitution_by_hand():
  hyp, ref = "The cat sat on THE mat.", "the cat sat on a mat"
  # Clipped n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths, so no brevity penalty.
  assert vtcs.bleu(hyp, ref) == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, rel=1e-12)
  assert vtcs.wer(hyp, ref) == pytest.approx(1 / 6)
  assert vtcs.cer(hyp, ref) == pytest.approx(3 / 20)           # "the" -> "a": 1 substitution + 2 deletions
  assert vtcs.rouge_l(hyp, ref) == pytest.approx(5 / 6)        # LCS "the cat sat on mat"
  assert vtcs.bleu(ref, ref) == pytest.approx(1.0) and vtcs.wer(ref, ref) == 0.0


def test_brevity_penalty_smoothing_and_empty_texts():
  hyp, ref = "the cat", "the cat sat on the mat"
  assert vtcs.bleu(hyp, ref) == 0.0                            # no 3-grams at all
  assert vtcs.bleu(hyp, ref, smoothing="add1") == pytest.approx(math.exp(1 - 6 / 2))
  assert vtcs.wer("", ref) == 1.0 and vtcs.wer("", "") == 0.0 and vtcs.wer("a", "") == math.inf
  assert vtcs.bleu("", ref) == 0.0 and vtcs.rouge_l("", ref) == 0.0
  # Word error rate counts insertions too, so it can exceed 1 (as in the paper's tables).
  assert vtcs.wer("a b c d", "x") == 4.0
  with pytest.raises(ArgumentError, match="smoothing"):
    vtcs.bleu(hyp, ref, smoothing="magic")


def test_vtcs_reductions_by_hand():
  gen, gt = [0.2, 0.5, 0.1], [0.8, 0.5, 0.9]                 # differences -0.6, 0, -0.8
  assert vtcs.vtcs(gen, gt) == pytest.approx(1.0 / 3)          # ||d||_2 / N
  assert vtcs.vtcs(gen, gt, reduction="mean_abs") == pytest.approx(1.4 / 3)
  assert vtcs.vtcs(gt, gt) == 0.0
  with pytest.raises(ArgumentError, match="equal-length"):
    vtcs.vtcs([0.1], [0.1, 0.2])


def test_pluggable_recognisers_and_summary():
  # A lip reader that "reads" the generated video (mean pixel value < 128) badly and the real one well.
  speech = {"clip0": "bring the red book", "clip1": "open the door"}
  def speech_to_text(audio, sr):
    assert sr == 16000
    return speech[f"clip{int(audio[0])}"]
  def lip_reader(frames):
    k = int(frames[0, 0, 0, 1])
    real = frames.mean() >= 128
    return speech[f"clip{k}"] if real else ["bring a red book", "open door"][k]
  videos = []
  for k in range(2):
    gen = np.zeros((3, 4, 4, 3), np.uint8); gen[..., 1] = k
    ref = np.full((3, 4, 4, 3), 200, np.uint8); ref[0, 0, 0, 1] = k
    videos.append(vtcs.transcribe(gen, np.full(10, k, np.float32), 16000, speech_to_text=speech_to_text,
                                  lip_reader=lip_reader, frames_reference=ref))
  assert videos[0].generated == "bring a red book" and videos[1].ground_truth == "open the door"
  s = vtcs.summarise(videos)
  # WER: 1/4 and 1/3 for the generated videos, 0 for the real ones.
  assert s["wer"] == pytest.approx((1 / 4 + 1 / 3) / 2)
  assert s["vtcs_w"] == pytest.approx(math.hypot(1 / 4, 1 / 3) / 2)
  b0 = vtcs.bleu("bring a red book", "bring the red book")
  assert b0 == 0.0 and s["bleu"] == 0.0                          # no matching 3-grams in either
  # The real videos read perfectly: BLEU 1 for the 4-word sentence, but 0 for the 3-word one (it has
  # no 4-gram to match: unsmoothed sentence BLEU), so the differences are (-1, 0).
  assert videos[1].ground_truth_scores.bleu == 0.0
  assert s["vtcs_b"] == pytest.approx(math.hypot(1.0, 0.0) / 2)
  # ROUGE-L: LCS 3 of 4/4 words and 2 of 2/3 words.
  assert s["rouge_l"] == pytest.approx((3 / 4 + 2 * (1.0 * 2 / 3) / (1.0 + 2 / 3)) / 2)
