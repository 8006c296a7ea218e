"""Random utterances: phrases of words of syllables, timed phone by phone.

An utterance is a tuple of contiguous ``Segment`` s covering ``[0, duration]``: leading silence,
phrases separated by pauses, trailing silence. Stops are split into a closure, a release burst and
(voiceless ones before a vowel) aspiration, because the lips and the sound do different things in
each part (a /p/ is silent with closed lips, then a burst as they part).

Durations follow textbook values for read English (vowels 70-190 ms, stop closures 50-80 ms,
fricatives 70-120 ms, phrase pauses 250-600 ms), scaled by the speaker's rate, with lengthening of
stressed and phrase-final syllables.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from talkjax.data.synthetic import phonemes

_MIN_TRAILING = 0.15  # seconds of silence always left at the end of a clip


class Segment(NamedTuple):
  """One timed piece of an utterance.

  Attributes:
    phone: key of ``phonemes.PHONES``.
    part: "" or, for stops, "closure" / "release" / "aspiration".
    start, end: seconds.
    stress: 1 for a stressed syllable, ~0.6-0.8 unstressed, up to 1.15 for the phrase accent;
      scales loudness, pitch accent and mouth opening of the syllable. 0 for silence.
    word: index of the word (-1 for silence).
  """
  phone: str
  part: str
  start: float
  end: float
  stress: float
  word: int


def _syllable(rng: np.random.Generator) -> list[str]:
  r = rng.random()
  if r < 0.15:
    onset: list[str] = []
  elif r < 0.85:
    onset = [str(rng.choice(phonemes.ONSETS))]
  else:
    onset = [str(rng.choice(phonemes.CLUSTER_FIRST)), str(rng.choice(phonemes.CLUSTER_SECOND))]
  coda = [str(rng.choice(phonemes.CODAS))] if rng.random() < 0.4 else []
  return onset + [str(rng.choice(phonemes.VOWELS))] + coda


def _phone_pieces(rng: np.random.Generator, name: str, before_vowel: bool, stress: float,
                  lengthen: float, rate: float) -> list[tuple[str, str, float]]:
  """(phone, part, duration) pieces of one phone occurrence."""
  p = phonemes.PHONES[name]
  u = rng.uniform
  if p.kind == "vowel":
    base = u(0.12, 0.19) if stress >= 1.0 else u(0.07, 0.11)
    return [(name, "", base * lengthen / rate)]
  if p.kind == "stop":
    pieces = [(name, "closure", u(0.05, 0.08) / rate), (name, "release", u(0.012, 0.02))]
    if not p.voiced and before_vowel:
      pieces.append((name, "aspiration", u(0.03, 0.05) / rate))
    return pieces
  if p.kind == "fricative":
    return [(name, "", (u(0.07, 0.12) if not p.voiced else u(0.05, 0.09)) / rate)]
  return [(name, "", u(0.05, 0.08) / rate)]


def random_utterance(rng: np.random.Generator, duration: float, rate: float = 1.0) -> tuple[Segment, ...]:
  """A random utterance filling ``duration`` seconds.

  Args:
    rng: source of randomness (the utterance is a pure function of its state).
    duration: clip length in seconds.
    rate: speaking-rate factor (> 1 = faster).

  Returns:
    Contiguous segments from 0 to ``duration``; silence at both ends and between phrases.
  """
  segments: list[Segment] = []
  lead = float(rng.uniform(0.15, 0.45))
  speech_end = duration - _MIN_TRAILING
  t = lead
  word_index = 0
  phrase_words = 0
  phrase_target = int(rng.integers(2, 6))
  accent_placed = False
  spoken_any = False
  attempts = 0
  while True:
    n_syl = int(rng.choice([1, 1, 2, 2, 3]))
    stressed = int(rng.integers(n_syl))
    final_word = phrase_words + 1 >= phrase_target
    word: list[tuple[str, str, float, float]] = []
    for s in range(n_syl):
      stress = 1.0 if s == stressed else float(rng.uniform(0.6, 0.8))
      if s == stressed and not accent_placed and (final_word or rng.random() < 0.5):
        stress, accent_placed = 1.15, True
      lengthen = 1.3 if (final_word and s == n_syl - 1) else 1.0
      syl = _syllable(rng)
      for i, name in enumerate(syl):
        before_vowel = i + 1 < len(syl) and phonemes.PHONES[syl[i + 1]].kind == "vowel"
        for phone, part, dur in _phone_pieces(rng, name, before_vowel, stress, lengthen, rate):
          word.append((phone, part, dur, stress))
    word_len = sum(w[2] for w in word)
    if t + word_len > speech_end:
      attempts += 1
      if spoken_any or attempts >= 20:
        break
      continue  # a clip shorter than its first word: try shorter words
    if segments and segments[-1].end < t:
      segments.append(Segment("sil", "", segments[-1].end, t, 0.0, -1))
    elif not segments and t > 0:
      segments.append(Segment("sil", "", 0.0, t, 0.0, -1))
    for phone, part, dur, stress in word:
      segments.append(Segment(phone, part, t, t + dur, stress, word_index))
      t += dur
    spoken_any = True
    word_index += 1
    phrase_words += 1
    if final_word:
      t += float(rng.uniform(0.25, 0.6))  # phrase pause
      phrase_words, accent_placed = 0, False
      phrase_target = int(rng.integers(2, 6))
    elif rng.random() < 0.15:
      t += float(rng.uniform(0.04, 0.1))  # short hesitation between words
  if not spoken_any:
    return (Segment("sil", "", 0.0, duration, 0.0, -1),)
  segments.append(Segment("sil", "", segments[-1].end, duration, 0.0, -1))
  return tuple(segments)


def silent_intervals(segments: tuple[Segment, ...]) -> list[tuple[float, float]]:
  """(start, end) of every silence segment."""
  return [(s.start, s.end) for s in segments if s.phone == "sil"]


def excerpt(segments: tuple[Segment, ...], start: float, duration: float) -> tuple[Segment, ...]:
  """The part of an utterance between ``start`` and ``start + duration``, re-timed to begin at 0.

  Segments that straddle a cut are shortened (a clip may start mid-word or mid-phrase, as an excerpt
  of longer speech does); the result covers ``[0, duration]`` contiguously.
  """
  end = start + duration
  if start < 0 or duration <= 0 or end > segments[-1].end + 1e-9:
    raise ValueError(f"excerpt [{start}, {end}] s is outside the utterance [0, {segments[-1].end}] s")
  out = [s._replace(start=max(s.start, start) - start, end=min(s.end, end) - start)
         for s in segments if s.end > start and s.start < end]
  out[-1] = out[-1]._replace(end=duration)
  return tuple(out)
