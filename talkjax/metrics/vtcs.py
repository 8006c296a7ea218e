"""Lip-readability: BLEU, WER, CER, ROUGE-L and VTCS-B / VTCS-W (OpFlowTalker, paper 003, eq. 9).

Three texts per video, from pluggable recognisers (any callables; talkjax ships none):

- ``T_speech = speech_to_text(audio, sample_rate)``: what the driving speech says;
- ``T_gen = lip_reader(generated_frames)``: what a lip reader reads off the generated video;
- ``T_gt = lip_reader(reference_frames)``: what it reads off the real video.

Per video, BLEU / WER / CER / ROUGE-L score ``T_gen`` (hypothesis) against ``T_speech``
(reference); the dataset values are the means over videos. Then

  VTCS-B = (1/N) || BLEU(T_gen, T_speech) - BLEU(T_gt, T_speech) ||_2
  VTCS-W = (1/N) || WER(T_gen, T_speech)  - WER(T_gt, T_speech)  ||_2

with the norm over the vector of the N videos' differences (``reduction="paper"``). The paper
prints the sum inside the norm (``1/N sum ||.||_2``), which for scalars is the mean absolute
difference; its published values (Table 2: 0.02 for methods whose BLEU is 0.8 below the ground
truth, on LRS2's 1243 test clips) are only consistent with ``||d||_2 / N`` (= RMS(d) / sqrt(N)),
so that is the default; ``reduction="mean_abs"`` gives the literal reading. Both are 0 for the
ground truth itself.

Text normalisation (applied to every text): Unicode NFKC, lower case, every character that is not
a letter, digit, apostrophe or whitespace becomes a space, runs of whitespace collapse to one
space, trimmed.

- **WER** = word-level Levenshtein distance / number of reference words (may exceed 1).
- **CER** = character-level Levenshtein distance / number of reference characters, spaces
  included (on the normalised strings).
- **BLEU** (Papineni et al. 2002), sentence level: up to 4-grams, clipped n-gram precisions,
  uniform weights, brevity penalty ``exp(1 - r / c)`` when the hypothesis (c words) is shorter
  than the reference (r words). Unsmoothed by default (a missing 4-gram match gives 0, as in
  corpus-style BLEU on one sentence); ``smoothing="add1"`` adds 1 to the matches and the totals
  of n-gram orders >= 2 (Lin & Och 2004), the usual choice for short sentences.
- **ROUGE-L** (Lin 2004): longest common word subsequence; ``P = LCS / |hyp|``, ``R = LCS / |ref|``,
  F = ``(1 + b^2) P R / (R + b^2 P)`` with ``b = 1`` (F1, as the ``rouge-score`` package reports).

Empty texts: an empty reference gives WER/CER 0 for an empty hypothesis and inf otherwise (a
clear signal rather than a silent division); BLEU and ROUGE-L of an empty text are 0.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from talkjax.errors import ArgumentError

MAX_ORDER = 4
SMOOTHINGS = ("none", "add1")
REDUCTIONS = ("paper", "mean_abs")

SpeechToText = Callable[[np.ndarray, int], str]
LipReader = Callable[[np.ndarray], str]

_NOT_WORD = re.compile(r"[^\w'\s]|_", re.UNICODE)
_SPACES = re.compile(r"\s+", re.UNICODE)


def normalize(text: str) -> str:
  """NFKC, lower case, punctuation -> space, collapsed whitespace (see the module docstring)."""
  if not isinstance(text, str):
    raise ArgumentError(f"text: expected a str from the recogniser, got {type(text).__name__}")
  text = unicodedata.normalize("NFKC", text).lower()
  return _SPACES.sub(" ", _NOT_WORD.sub(" ", text)).strip()


def words(text: str) -> list[str]:
  t = normalize(text)
  return t.split(" ") if t else []


def edit_distance(a: Sequence, b: Sequence) -> int:
  """Levenshtein distance (unit-cost insertions, deletions, substitutions)."""
  prev = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    cur = [i] + [0] * len(b)
    for j, y in enumerate(b, 1):
      cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
    prev = cur
  return prev[-1]


def _error_rate(hyp: Sequence, ref: Sequence) -> float:
  if not ref:
    return 0.0 if not hyp else float("inf")
  return edit_distance(hyp, ref) / len(ref)


def wer(hypothesis: str, reference: str) -> float:
  """Word error rate of ``hypothesis`` against ``reference``."""
  return _error_rate(words(hypothesis), words(reference))


def cer(hypothesis: str, reference: str) -> float:
  """Character error rate (spaces count as characters)."""
  return _error_rate(list(normalize(hypothesis)), list(normalize(reference)))


def _ngrams(tokens: Sequence[str], n: int) -> collections.Counter:
  return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu(hypothesis: str, reference: str, max_order: int = MAX_ORDER, smoothing: str = "none") -> float:
  """Sentence BLEU of ``hypothesis`` against one ``reference`` (see the module docstring)."""
  if smoothing not in SMOOTHINGS:
    raise ArgumentError(f"bleu: smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
  hyp, ref = words(hypothesis), words(reference)
  if not hyp or not ref:
    return 0.0
  log_p = 0.0
  for n in range(1, max_order + 1):
    h, r = _ngrams(hyp, n), _ngrams(ref, n)
    matches = sum(min(c, r[g]) for g, c in h.items())
    total = max(len(hyp) - n + 1, 0)
    if smoothing == "add1" and n >= 2:
      matches, total = matches + 1, total + 1
    if matches == 0 or total == 0:
      return 0.0
    log_p += math.log(matches / total) / max_order
  bp = 1.0 if len(hyp) > len(ref) else math.exp(1.0 - len(ref) / len(hyp))
  return bp * math.exp(log_p)


def _lcs(a: Sequence, b: Sequence) -> int:
  prev = [0] * (len(b) + 1)
  for x in a:
    cur = [0]
    for j, y in enumerate(b, 1):
      cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
    prev = cur
  return prev[-1]


def rouge_l(hypothesis: str, reference: str, beta: float = 1.0) -> float:
  """ROUGE-L F-measure over words."""
  hyp, ref = words(hypothesis), words(reference)
  if not hyp or not ref:
    return 0.0
  lcs = _lcs(hyp, ref)
  if lcs == 0:
    return 0.0
  p, r = lcs / len(hyp), lcs / len(ref)
  return (1 + beta ** 2) * p * r / (r + beta ** 2 * p)


@dataclasses.dataclass(frozen=True)
class TextScores:
  """One hypothesis scored against the speech transcript."""
  bleu: float
  wer: float
  cer: float
  rouge_l: float


def score_text(hypothesis: str, speech: str, smoothing: str = "none") -> TextScores:
  return TextScores(bleu=bleu(hypothesis, speech, smoothing=smoothing), wer=wer(hypothesis, speech),
                    cer=cer(hypothesis, speech), rouge_l=rouge_l(hypothesis, speech))


def vtcs(generated: Sequence[float], ground_truth: Sequence[float], reduction: str = "paper") -> float:
  """VTCS from per-video scores of the generated and the real videos (BLEU -> VTCS-B, WER -> VTCS-W)."""
  if reduction not in REDUCTIONS:
    raise ArgumentError(f"vtcs: reduction must be one of {REDUCTIONS}, got {reduction!r}")
  g, t = np.asarray(generated, np.float64), np.asarray(ground_truth, np.float64)
  if g.shape != t.shape or g.ndim != 1 or g.size == 0:
    raise ArgumentError(f"vtcs: expected two equal-length, non-empty score lists, got {g.shape} and "
                        f"{t.shape}")
  d = g - t
  if reduction == "paper":
    return float(np.linalg.norm(d) / d.size)
  return float(np.mean(np.abs(d)))


@dataclasses.dataclass(frozen=True)
class VideoTexts:
  """The three transcripts of one video and the scores derived from them."""
  speech: str
  generated: str
  ground_truth: str | None
  generated_scores: TextScores
  ground_truth_scores: TextScores | None


def transcribe(frames_generated: np.ndarray, audio: np.ndarray, sample_rate: int, *,
               speech_to_text: SpeechToText, lip_reader: LipReader,
               frames_reference: np.ndarray | None = None, smoothing: str = "none") -> VideoTexts:
  """Runs the recognisers on one video and scores its lip-read text against the speech's."""
  speech = speech_to_text(np.asarray(audio), int(sample_rate))
  gen = lip_reader(np.asarray(frames_generated))
  gt = lip_reader(np.asarray(frames_reference)) if frames_reference is not None else None
  return VideoTexts(speech=speech, generated=gen, ground_truth=gt,
                    generated_scores=score_text(gen, speech, smoothing),
                    ground_truth_scores=score_text(gt, speech, smoothing) if gt is not None else None)


def summarise(videos: Sequence[VideoTexts], reduction: str = "paper") -> dict[str, float]:
  """Dataset means of BLEU / WER / CER / ROUGE-L of the generated videos, and VTCS-B / VTCS-W."""
  if not videos:
    raise ArgumentError("vtcs: no videos to summarise")
  out = {k: float(np.mean([getattr(v.generated_scores, k) for v in videos]))
         for k in ("bleu", "wer", "cer", "rouge_l")}
  if all(v.ground_truth_scores is not None for v in videos):
    out["vtcs_b"] = vtcs([v.generated_scores.bleu for v in videos],
                         [v.ground_truth_scores.bleu for v in videos], reduction)
    out["vtcs_w"] = vtcs([v.generated_scores.wer for v in videos],
                         [v.ground_truth_scores.wer for v in videos], reduction)
  return out
