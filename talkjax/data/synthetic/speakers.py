"""Speaker identities of the synthetic corpus: how a face looks and how its voice sounds.

A speaker is a frozen set of numbers drawn from a seeded ``numpy.random.Generator``; every clip of
that speaker (and both clips of a pair) reuse it. Geometry is in *face units* (see ``face.py``): the
canonical, frontal face has ``x`` to the image right, ``y`` down, the eye line near ``y = -0.22`` and
the chin near ``y = 0.72``.

Colour choices keep the pixel yardstick (``openness.py``) valid for every speaker: lip luma stays
within [0.64, 0.78] of the skin's, the mouth interior and the (shadowed) teeth below 0.25 of it, so
"dark inside the lips" separates cleanly from "lip" on any skin tone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

RGB = tuple[int, int, int]

HAIR_STYLES = ("short", "long", "bald", "fringe")
BACKGROUND_KINDS = ("gradient", "stripes", "checker", "blobs")

# Fixed colours shared by every speaker (inside of the mouth, white of the eye).
MOUTH_INTERIOR: RGB = (30, 6, 10)
SCLERA: RGB = (238, 236, 230)
# Teeth are drawn in the mouth's shadow: ivory scaled to this fraction of the skin's luma, so they
# stay inside the "dark" class of the pixel yardstick (see ``openness.py``) and the measured dark
# area remains proportional to the lip aperture.
TEETH_HUE: RGB = (236, 230, 214)
TEETH_LUMA = 0.22

_DARK_SKIN = np.array([112.0, 74.0, 54.0])
_LIGHT_SKIN = np.array([242.0, 208.0, 188.0])
_HAIR_COLOURS = np.array([
    [28, 24, 22], [58, 38, 28], [96, 64, 40], [130, 62, 36], [196, 164, 110], [150, 148, 145],
], dtype=np.float64)
_IRIS_COLOURS = np.array([[70, 45, 25], [40, 28, 20], [70, 110, 150], [80, 115, 70], [110, 110, 115]],
                         dtype=np.float64)


def luminance(rgb) -> np.ndarray:
  """Rec. 601 luma of RGB values in any range (last axis = channels)."""
  rgb = np.asarray(rgb, dtype=np.float64)
  return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


@dataclasses.dataclass(frozen=True)
class Appearance:
  """What a speaker's face and scene look like (face units; colours RGB 0..255)."""
  skin: RGB
  hair: RGB
  brow: RGB
  lip: RGB
  iris: RGB
  shirt: RGB
  hair_style: str
  hairline: float  # y of the hairline at the forehead centre
  background_kind: str
  background_colours: tuple[RGB, RGB]
  background_period: float  # pattern period as a fraction of the frame size
  background_angle: float  # radians
  background_seed: int
  face_size: float  # overall scale (1 = the face spans ~60% of the frame height)
  face_width: float  # half-width at the cheekbones
  jaw_width: float  # half-width at the jaw angle, as a fraction of face_width
  chin: float  # y of the chin with the mouth closed
  eye_y: float
  eye_spacing: float  # half the distance between the eye centres
  eye_width: float  # half-width of an eye
  eye_height: float  # height of the open upper lid above the corner line
  eye_tilt: float  # outer corners this much higher than the inner ones
  brow_gap: float  # eye line to brow underside
  brow_thickness: float
  brow_arch: float
  nose_tip: float  # y of the nose tip
  nose_width: float  # half-width at the alae
  mouth_y: float  # y of the line where the lips meet
  mouth_width: float  # half-width of the mouth at rest
  lip_upper: float  # thickness of the upper lip at rest
  lip_lower: float
  blush: float  # 0..1 cheek redness
  articulation: float  # gain on mouth opening (some speakers open wider)
  blink_rate: float  # blinks per second
  motion: float  # head-motion amplitude factor


@dataclasses.dataclass(frozen=True)
class Voice:
  """Source-filter voice parameters."""
  f0: float  # mean fundamental frequency, Hz
  f0_range: float  # pitch-accent excursion, semitones
  formant_scale: float  # vocal-tract length factor: formants = reference formants * this
  jitter: float  # relative std of glottal period, per cycle
  shimmer: float  # relative std of glottal pulse amplitude, per cycle
  breathiness: float  # aspiration noise mixed into voicing (relative amplitude)
  tilt: float  # extra spectral tilt of the source, dB per octave above 500 Hz (<= 0)
  rate: float  # speaking-rate factor (> 1 = faster)


@dataclasses.dataclass(frozen=True)
class Speaker:
  """One synthetic identity: a name, a face, a voice."""
  name: str
  appearance: Appearance
  voice: Voice

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, data: dict[str, Any]) -> Speaker:
    app = dict(data["appearance"])
    for key in ("skin", "hair", "brow", "lip", "iris", "shirt"):
      app[key] = tuple(int(v) for v in app[key])
    app["background_colours"] = tuple(tuple(int(v) for v in c) for c in app["background_colours"])
    return cls(name=str(data["name"]), appearance=Appearance(**app), voice=Voice(**data["voice"]))


def teeth_colour(skin) -> RGB:
  """Colour of the (shadowed) upper teeth for a skin colour."""
  hue = np.asarray(TEETH_HUE, dtype=np.float64)
  return _rgb(hue * TEETH_LUMA * luminance(skin) / luminance(hue))


def _rgb(values) -> RGB:
  v = np.clip(np.round(np.asarray(values, dtype=np.float64)), 0, 255).astype(int)
  return (int(v[0]), int(v[1]), int(v[2]))


def _lip_colour(rng: np.random.Generator, skin: np.ndarray) -> np.ndarray:
  """A red, darker-than-skin lip colour whose luma is 0.62..0.80 of the skin's."""
  lip = skin * np.array([0.92, 0.60, 0.62]) + np.array([14.0, 0.0, 4.0])
  lip = lip * rng.uniform(0.92, 1.04)
  ratio = luminance(lip) / luminance(skin)
  target = np.clip(ratio, 0.64, 0.78)
  return np.clip(lip * target / ratio, 0, 255)


def _background(rng: np.random.Generator, skin: np.ndarray) -> tuple[RGB, RGB]:
  """Two background colours that stay distinguishable from the skin."""
  for _ in range(100):
    hue = rng.uniform(0, 1)
    sat = rng.uniform(0.1, 0.6)
    val = rng.uniform(0.25, 0.95)
    base = _hsv_to_rgb(hue, sat, val) * 255.0
    second = np.clip(base * rng.uniform(0.6, 1.4) + rng.normal(0, 25, 3), 0, 255)
    if min(np.linalg.norm(base - skin), np.linalg.norm(second - skin)) > 70:
      return _rgb(base), _rgb(second)
  return _rgb([60, 90, 120]), _rgb([90, 120, 150])


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
  i = int(h * 6) % 6
  f = h * 6 - int(h * 6)
  p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
  return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def sample_speaker(rng: np.random.Generator, name: str = "speaker") -> Speaker:
  """Draws a random speaker; the same generator state always gives the same speaker."""
  u = rng.uniform
  tone = u(0, 1) ** 0.8
  skin = _DARK_SKIN + (_LIGHT_SKIN - _DARK_SKIN) * tone + rng.normal(0, 5, 3)
  skin = np.clip(skin, 0, 255)
  hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * u(0.85, 1.15) + rng.normal(0, 6, 3)
  hair = np.clip(hair, 0, 255)
  brow = np.minimum(hair * 0.8, skin * 0.45)
  lip = _lip_colour(rng, skin)
  iris = np.clip(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] + rng.normal(0, 8, 3), 0, 255)
  shirt = _hsv_to_rgb(u(0, 1), u(0.2, 0.8), u(0.2, 0.9)) * 255
  bg = _background(rng, skin)

  face_width = u(0.52, 0.62)
  appearance = Appearance(
      skin=_rgb(skin), hair=_rgb(hair), brow=_rgb(brow), lip=_rgb(lip), iris=_rgb(iris), shirt=_rgb(shirt),
      hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
      hairline=u(-0.68, -0.55),
      background_kind=BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))],
      background_colours=bg,
      background_period=u(0.06, 0.3),
      background_angle=u(0, np.pi),
      background_seed=int(rng.integers(2**31)),
      face_size=u(0.93, 1.05),
      face_width=face_width,
      jaw_width=u(0.62, 0.8),
      chin=u(0.68, 0.77),
      eye_y=u(-0.25, -0.19),
      eye_spacing=u(0.2, 0.25),
      eye_width=u(0.09, 0.115),
      eye_height=u(0.04, 0.058),
      eye_tilt=u(-0.01, 0.02),
      brow_gap=u(0.085, 0.12),
      brow_thickness=u(0.022, 0.042),
      brow_arch=u(0.01, 0.035),
      nose_tip=u(0.08, 0.14),
      nose_width=u(0.075, 0.1),
      mouth_y=u(0.32, 0.38),
      mouth_width=u(0.17, 0.21),
      lip_upper=u(0.03, 0.045),
      lip_lower=u(0.038, 0.058),
      blush=u(0, 1),
      articulation=u(0.85, 1.0),
      blink_rate=u(0.2, 0.45),
      motion=u(0.6, 1.3),
  )
  low = u(0, 1) < 0.5
  voice = Voice(
      f0=u(90, 140) if low else u(170, 240),
      f0_range=u(1.5, 4.0),
      formant_scale=u(0.93, 1.03) if low else u(1.06, 1.18),
      jitter=u(0.004, 0.014),
      shimmer=u(0.02, 0.07),
      breathiness=u(0.02, 0.1),
      tilt=u(-3.0, -0.5),
      rate=u(0.85, 1.2),
  )
  return Speaker(name=name, appearance=appearance, voice=voice)
