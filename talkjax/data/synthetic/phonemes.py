"""The phone inventory: what each sound is acoustically and what it does to the mouth.

The mapping sound -> mouth shape is fixed for the whole corpus, so a model can learn it from audio:

- a vowel's mouth shape is a smooth function of its (speaker-normalised) formants
  (``vowel_mouth_shape``): F1 opens the jaw, a high F2 spreads the lips, a low F2 with a low F1
  rounds them, as in real articulation;
- bilabials (p, b, m) close the lips completely, labiodentals (f, v) nearly (a closure constraint,
  see ``visemes.py``); w and sh round them; alveolars and velars barely constrain the lips, so they
  take their shape from neighbouring vowels (low dominance);
- silence is a closed, relaxed mouth.

Formants are given for an adult male reference vocal tract (Peterson & Barney averages for the
vowels); a speaker scales them by ``Voice.formant_scale``. Consonant formants are loci that pull the
neighbouring vowel's formants into transitions.
"""

from __future__ import annotations

import dataclasses

import numpy as np

KINDS = ("vowel", "stop", "fricative", "nasal", "approximant", "aspirate", "silence")


@dataclasses.dataclass(frozen=True)
class Phone:
  """One sound of the inventory.

  Attributes:
    name: ARPAbet-like label.
    kind: one of ``KINDS``.
    voiced: whether the glottis vibrates during it.
    place: place of articulation ("" for vowels and silence).
    formants: (F1, F2, F3) in Hz for the reference vocal tract (a locus for consonants).
    formant_dominance: how strongly the phone pulls the formant tracks (vowels 1).
    mouth: (openness, width, roundness) target, each in [0, 1].
    mouth_dominance: per-channel coarticulation resistance (large = the target is reached
      whatever the neighbours; small = the shape comes from the neighbours).
    noise: (centre Hz, bandwidth Hz, gain) of the frication / burst noise; gain 0 if none.
  """
  name: str
  kind: str
  voiced: bool
  place: str
  formants: tuple[float, float, float]
  formant_dominance: float
  mouth: tuple[float, float, float]
  mouth_dominance: tuple[float, float, float]
  noise: tuple[float, float, float] = (0.0, 1.0, 0.0)


def vowel_mouth_shape(f1, f2):
  """(openness, width, roundness) of a vowel from its reference-tract F1 and F2 (Hz).

  Openness rises with F1 (jaw height), width (lip spreading) with F2 (front vowels), roundness
  with a low F2 (back vowels) but less so for open vowels (a low F2 there comes from the tongue,
  not the lips). Works elementwise on arrays.
  """
  f1 = np.asarray(f1, dtype=np.float64)
  f2 = np.asarray(f2, dtype=np.float64)
  openness = 0.12 + 0.88 * np.clip((f1 - 270.0) / 460.0, 0.0, 1.0)
  width = np.clip((f2 - 850.0) / 1450.0, 0.0, 1.0)
  roundness = np.clip((1250.0 - f2) / 400.0, 0.0, 1.0) * (1.0 - 0.6 * np.clip((f1 - 600.0) / 150.0, 0.0, 1.0))
  return openness, width, roundness


# Peterson & Barney (1952) adult male averages.
_VOWEL_FORMANTS = {
    "iy": (270, 2290, 3010), "ih": (390, 1990, 2550), "eh": (530, 1840, 2480), "ae": (660, 1720, 2410),
    "aa": (730, 1090, 2440), "ah": (640, 1190, 2390), "ao": (570, 840, 2410), "uh": (440, 1020, 2240),
    "uw": (300, 870, 2240), "er": (490, 1350, 1690),
}


def _vowel(name: str) -> Phone:
  f = _VOWEL_FORMANTS[name]
  shape = tuple(float(v) for v in vowel_mouth_shape(f[0], f[1]))
  return Phone(name, "vowel", True, "", tuple(float(v) for v in f), 1.0, shape, (1.0, 1.0, 1.0))


_CLOSED = (0.0, 0.45, 0.15)  # relaxed closed lips
_PHONES = [
    *(_vowel(v) for v in _VOWEL_FORMANTS),
    # Stops: the entry describes the closure; the release burst uses ``noise``.
    Phone("p", "stop", False, "bilabial", (250, 900, 2200), 0.35, _CLOSED, (0.3, 0.5, 0.3),
          (700, 1400, 0.55)),
    Phone("b", "stop", True, "bilabial", (250, 900, 2200), 0.35, _CLOSED, (0.3, 0.5, 0.3), (700, 1400, 0.4)),
    Phone("t", "stop", False, "alveolar", (300, 1800, 2700), 0.3, (0.3, 0.55, 0.1), (0.35, 0.25, 0.2),
          (4200, 2600, 0.8)),
    Phone("d", "stop", True, "alveolar", (300, 1800, 2700), 0.3, (0.3, 0.55, 0.1), (0.35, 0.25, 0.2),
          (4000, 2600, 0.6)),
    Phone("k", "stop", False, "velar", (300, 1900, 2300), 0.25, (0.35, 0.5, 0.15), (0.3, 0.2, 0.2),
          (1900, 1200, 0.75)),
    Phone("g", "stop", True, "velar", (300, 1900, 2300), 0.25, (0.35, 0.5, 0.15), (0.3, 0.2, 0.2),
          (1800, 1200, 0.55)),
    Phone("m", "nasal", True, "bilabial", (260, 1000, 2200), 0.4, _CLOSED, (0.3, 0.5, 0.3)),
    Phone("n", "nasal", True, "alveolar", (260, 1500, 2500), 0.4, (0.25, 0.55, 0.1), (0.4, 0.25, 0.2)),
    Phone("f", "fricative", False, "labiodental", (300, 1100, 2300), 0.3, (0.07, 0.5, 0.05), (0.5, 1.0, 0.6),
          (4500, 5000, 0.07)),
    Phone("v", "fricative", True, "labiodental", (300, 1100, 2300), 0.3, (0.07, 0.5, 0.05), (0.5, 1.0, 0.6),
          (4500, 5000, 0.05)),
    Phone("s", "fricative", False, "alveolar", (300, 1700, 2700), 0.3, (0.16, 0.7, 0.0), (1.5, 1.0, 0.6),
          (5600, 2200, 0.6)),
    Phone("z", "fricative", True, "alveolar", (300, 1700, 2700), 0.3, (0.16, 0.7, 0.0), (1.5, 1.0, 0.6),
          (5400, 2200, 0.35)),
    Phone("sh", "fricative", False, "postalveolar", (300, 1800, 2400), 0.3, (0.2, 0.25, 0.75),
          (1.2, 1.5, 2.5),
          (3000, 1800, 0.6)),
    Phone("l", "approximant", True, "alveolar", (360, 1200, 2700), 0.5, (0.35, 0.55, 0.1), (0.5, 0.3, 0.2)),
    Phone("r", "approximant", True, "postalveolar", (420, 1250, 1600), 0.6, (0.3, 0.3, 0.55),
          (0.8, 0.8, 1.2)),
    Phone("w", "approximant", True, "labiovelar", (300, 700, 2200), 0.6, (0.12, 0.05, 1.0), (3.0, 3.0, 3.0)),
    Phone("y", "approximant", True, "palatal", (280, 2200, 3000), 0.6, (0.15, 0.9, 0.0), (1.0, 1.0, 1.0)),
    Phone("hh", "aspirate", False, "glottal", (500, 1500, 2500), 0.05, (0.4, 0.5, 0.1), (0.08, 0.08, 0.08)),
    Phone("sil", "silence", False, "", (500, 1500, 2500), 0.02, _CLOSED, (1.0, 2.0, 2.0)),
]

PHONES: dict[str, Phone] = {p.name: p for p in _PHONES}
VOWELS: tuple[str, ...] = tuple(_VOWEL_FORMANTS)
CONSONANTS: tuple[str, ...] = tuple(p.name for p in _PHONES if p.kind not in ("vowel", "silence"))
# Consonants allowed before / after a vowel in a syllable, and as the first of a two-consonant onset.
ONSETS: tuple[str, ...] = ("p", "b", "t", "d", "k", "g", "m", "n", "f", "v", "s", "z", "sh", "l", "r", "w",
                           "y", "hh")
CODAS: tuple[str, ...] = ("p", "b", "t", "d", "k", "g", "m", "n", "f", "v", "s", "z", "sh", "l", "r")
CLUSTER_FIRST: tuple[str, ...] = ("p", "b", "t", "d", "k", "g", "f", "s")
CLUSTER_SECOND: tuple[str, ...] = ("l", "r", "w")
