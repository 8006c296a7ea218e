"""Head motion, blinks and gaze: everything that moves in a clip apart from the speech articulators.

A ``HeadTrack`` is independent of the speech, so the two clips of a pair share one track exactly
(same pose, blinks and gaze in every frame) and differ only in the mouth and jaw. Motion is slow:
each pose channel is a sum of a few sinusoids with random frequencies between 0.05 and 0.6 Hz and
random phases (smooth, stationary, and a pure function of the seed). Blinks follow a renewal process
with gamma-distributed intervals (at least 0.8 s apart) and the usual asymmetric profile: the lid
closes in ~80 ms and reopens in ~150 ms.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Standard deviations of the pose channels at motion factor 1.
_STD = {"tx": 0.02, "ty": 0.015, "log_scale": 0.025, "yaw": np.radians(5.0), "pitch": np.radians(3.5),
        "roll": np.radians(3.0)}
_BLINK_CLOSE, _BLINK_HOLD, _BLINK_OPEN = 0.08, 0.03, 0.15  # seconds


@dataclasses.dataclass(frozen=True)
class HeadTrack:
  """Per-frame head pose, eyelid closure and gaze, each a (T,) float64 array (gaze (T, 2)).

  Attributes:
    tx, ty: head offset as a fraction of the frame size.
    scale: head size factor (1 = nominal).
    yaw, pitch, roll: head rotation in radians (yaw > 0 turns the face towards image-right,
      pitch > 0 tips the chin down, roll > 0 rotates clockwise on screen).
    blink: eyelid closure, 0 = open, 1 = shut.
    gaze: iris offset (x, y) as a fraction of the eye's half-width / height.
  """
  tx: np.ndarray
  ty: np.ndarray
  scale: np.ndarray
  yaw: np.ndarray
  pitch: np.ndarray
  roll: np.ndarray
  blink: np.ndarray
  gaze: np.ndarray

  @property
  def num_frames(self) -> int:
    return int(self.tx.shape[0])

  @classmethod
  def still(cls, num_frames: int, **values: float) -> HeadTrack:
    """A motionless track (frontal, nominal size, eyes open) with optional constant overrides."""
    const = {"tx": 0.0, "ty": 0.0, "scale": 1.0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0, "blink": 0.0}
    const.update(values)
    fields = {k: np.full(num_frames, float(v)) for k, v in const.items()}
    return cls(gaze=np.zeros((num_frames, 2)), **fields)

  def to_dict(self) -> dict[str, list]:
    return {f.name: np.asarray(getattr(self, f.name)).round(6).tolist() for f in dataclasses.fields(self)}


def _smooth_process(rng: np.random.Generator, times: np.ndarray, std: float,
                    n_components: int = 4) -> np.ndarray:
  freqs = np.exp(rng.uniform(np.log(0.05), np.log(0.6), n_components))
  amps = freqs ** -0.7 * rng.uniform(0.5, 1.0, n_components)
  phases = rng.uniform(0, 2 * np.pi, n_components)
  x = (amps[None] * np.sin(2 * np.pi * freqs[None] * times[:, None] + phases[None])).sum(axis=1)
  # Normalise by the expected (not the sample) std so short clips still move slowly, not wildly.
  return x * std / np.sqrt(0.5 * np.sum(amps ** 2))


def blink_profile(dt: np.ndarray) -> np.ndarray:
  """Lid closure ``dt`` seconds after a blink starts (0 outside the blink)."""
  dt = np.asarray(dt, dtype=np.float64)
  closing = np.clip(dt / _BLINK_CLOSE, 0, 1)
  opening = np.clip((dt - _BLINK_CLOSE - _BLINK_HOLD) / _BLINK_OPEN, 0, 1)
  smooth = lambda x: x * x * (3 - 2 * x)  # noqa: E731
  return np.where((dt < 0) | (dt > _BLINK_CLOSE + _BLINK_HOLD + _BLINK_OPEN), 0.0,
                  smooth(closing) * (1 - smooth(opening)))


def sample_head_track(rng: np.random.Generator, num_frames: int, fps: float, motion: float = 1.0,
                      blink_rate: float = 0.3) -> HeadTrack:
  """Random slow head motion, blinks and gaze shifts for ``num_frames`` frames.

  Args:
    rng: randomness (the track is a pure function of its state).
    num_frames: clip length in frames.
    fps: frame rate.
    motion: amplitude factor of the pose channels (a speaker trait).
    blink_rate: mean blinks per second (a speaker trait).
  """
  times = np.arange(num_frames) / fps
  ch = {k: _smooth_process(rng, times, s * motion) for k, s in _STD.items()}
  duration = num_frames / fps
  blink = np.zeros(num_frames)
  t = rng.uniform(0.2, 1.5 / blink_rate)
  while t < duration:
    blink = np.maximum(blink, blink_profile(times - t))
    t += 0.8 + rng.gamma(2.0, max(1.0 / blink_rate - 0.8, 0.2) / 2.0)
  gaze = np.zeros((num_frames, 2))
  t, current = 0.0, rng.uniform(-0.3, 0.3, 2) * [1.0, 0.5]
  while t < duration:
    nxt = t + rng.uniform(0.5, 2.5)
    gaze[(times >= t) & (times < nxt)] = current
    current = rng.uniform(-0.3, 0.3, 2) * [1.0, 0.5]
    t = nxt
  return HeadTrack(tx=ch["tx"], ty=ch["ty"], scale=np.exp(ch["log_scale"]), yaw=ch["yaw"], pitch=ch["pitch"],
                   roll=ch["roll"], blink=blink, gaze=gaze)
