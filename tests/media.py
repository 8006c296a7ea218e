"""Test helpers that make small media files with known content (reused by other test modules).

Import as ``import media`` from any test module (pytest puts ``tests/`` on ``sys.path``).

Everything here writes with PyAV or soundfile directly, never through ``talkjax.video``, so tests of
the talkjax readers do not depend on the talkjax writer.

- ``espeak_wav(path, text)``: real synthetic speech (espeak-ng, 22.05 kHz mono int16 wav).
- ``espeak_speech(text, sr=16000)``: the same as a float32 array at ``sr``.
- ``sine(freq, seconds, sr)``, ``dominant_frequency(wav, sr)``.
- ``write_audio(path, wav, sr)``: wav/flac (soundfile), mp3/m4a/ogg/opus/aac (PyAV), any channel count.
- ``index_frame(k, h, w)`` / ``decode_index(image)``: frames whose index is drawn as binary stripes
  (robust to H.264 compression), for checking frame order and frame-rate resampling.
- ``write_test_video(path, frames, fps, ...)``: plain PyAV H.264 mp4 (optionally with audio,
  rotation metadata, or the ``moov`` atom at the end like most encoders write it).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from fractions import Fraction

import av
import numpy as np
import soundfile as sf

ESPEAK_SAMPLE_RATE = 22050
INDEX_BITS = 8


# ------------------------------------------------------------------------------------------------
# Audio


def espeak_wav(path: str | os.PathLike[str], text: str = "The quick brown fox jumps over the lazy dog.",
               *, voice: str = "en", words_per_minute: int = 160, pitch: int = 50) -> str:
  """Synthesises ``text`` with espeak-ng into a 22.05 kHz mono 16-bit wav at ``path``; returns it."""
  path = os.fspath(path)
  subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-p", str(pitch), "-w", path, text],
                 check=True, capture_output=True, timeout=60)
  return path


def espeak_speech(text: str = "The quick brown fox jumps over the lazy dog.", sr: int = 16000,
                  **kwargs) -> np.ndarray:
  """Real speech as float32 at ``sr``, resampled from espeak's 22.05 kHz as ``librosa.load`` does it
  (soxr "HQ", output length ``ceil(n * sr / 22050)``) without importing librosa (slow to import)."""
  import soxr

  with tempfile.TemporaryDirectory() as tmp:
    path = espeak_wav(os.path.join(tmp, "speech.wav"), text, **kwargs)
    wav, native = sf.read(path, dtype="float32", always_2d=True)
  wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
  if native == sr:
    return wav
  n_out = int(np.ceil(len(wav) * sr / native))
  out = soxr.resample(wav, native, sr, quality="soxr_hq")[:n_out]
  return np.pad(out, (0, n_out - len(out))).astype(np.float32)


def sine(freq: float, seconds: float, sr: int = 16000, amplitude: float = 0.5) -> np.ndarray:
  """A float32 sine wave."""
  t = np.arange(int(round(seconds * sr))) / sr
  return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(wav: np.ndarray, sr: int) -> float:
  """Frequency (Hz) of the largest FFT bin of a Hann-windowed signal."""
  wav = np.asarray(wav, np.float64)
  spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
  return float(np.argmax(spectrum) * sr / len(wav))


_AV_AUDIO = {  # extension -> (container format, codec, sample format)
    ".mp3": ("mp3", "libmp3lame", "fltp"),
    ".m4a": ("ipod", "aac", "fltp"),
    ".aac": ("adts", "aac", "fltp"),
    ".ogg": ("ogg", "libopus", "flt"),
    ".opus": ("ogg", "libopus", "flt"),
}


def write_audio(path: str | os.PathLike[str], wav: np.ndarray, sr: int) -> str:
  """Writes ``(n,)`` mono or ``(n, channels)`` float audio; the extension picks the format."""
  path = os.fspath(path)
  wav = np.asarray(wav, np.float32)
  ext = os.path.splitext(path)[1].lower()
  if ext in (".wav", ".flac"):
    sf.write(path, wav, sr, subtype="PCM_16")
    return path
  fmt, codec, sample_fmt = _AV_AUDIO[ext]
  channels = 1 if wav.ndim == 1 else wav.shape[1]
  planar = wav.reshape(len(wav), channels).T  # (C, n)
  layout = {1: "mono", 2: "stereo"}[channels]
  with av.open(path, "w", format=fmt) as container:
    stream = container.add_stream(codec, rate=sr, layout=layout)
    frame_size = 960 if codec == "libopus" else 1152 if codec == "libmp3lame" else 1024
    for start in range(0, planar.shape[1], frame_size):
      chunk = np.ascontiguousarray(planar[:, start:start + frame_size])
      if sample_fmt == "flt":  # packed: one interleaved row
        chunk = np.ascontiguousarray(chunk.T.reshape(1, -1))
      frame = av.AudioFrame.from_ndarray(chunk, format=sample_fmt, layout=layout)
      frame.sample_rate = sr
      frame.pts = start
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode(None):
      container.mux(packet)
  return path


# ------------------------------------------------------------------------------------------------
# Video


def index_frame(k: int, height: int = 48, width: int = 64, bits: int = INDEX_BITS) -> np.ndarray:
  """An RGB frame showing ``k`` in binary: ``bits`` vertical stripes, most significant first.

  A set bit is a white stripe, a clear bit a dark blue one; a red bar along the top makes the
  frame's colour vary with ``k`` too. Stripes are at least 8 px wide so H.264 at crf 18-23 keeps
  every bit readable.
  """
  if not 0 <= k < 2 ** bits:
    raise ValueError(f"index {k} does not fit in {bits} bits")
  if width < 8 * bits:
    raise ValueError(f"width {width} too small for {bits} stripes of 8 px")
  image = np.zeros((height, width, 3), np.uint8)
  image[..., 2] = 60
  edges = np.linspace(0, width, bits + 1).astype(int)
  for b in range(bits):
    if (k >> (bits - 1 - b)) & 1:
      image[:, edges[b]:edges[b + 1]] = 255
  image[: max(2, height // 8), :, 0] = (k * 37) % 256
  return image


def decode_index(image: np.ndarray, bits: int = INDEX_BITS) -> int:
  """Reads back the index drawn by ``index_frame`` (from the stripes' centres, below the bar)."""
  image = np.asarray(image)
  height, width = image.shape[:2]
  edges = np.linspace(0, width, bits + 1).astype(int)
  rows = slice(height // 4, height)
  k = 0
  for b in range(bits):
    lo, hi = edges[b], edges[b + 1]
    centre = image[rows, lo + (hi - lo) // 4: hi - (hi - lo) // 4, 1]  # green: 255 set, 0 clear
    k = (k << 1) | int(centre.mean() > 128)
  return k


def index_frames(n: int, height: int = 48, width: int = 64) -> Iterable[np.ndarray]:
  for k in range(n):
    yield index_frame(k, height, width)


def write_test_video(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float | Fraction,
                     *, audio: np.ndarray | None = None, sr: int = 16000, faststart: bool = False,
                     rotation: int = 0, codec: str = "libx264", crf: int = 18) -> str:
  """Encodes RGB frames with plain PyAV (independent of talkjax.video) and returns ``path``.

  ``faststart=False`` leaves the ``moov`` index at the end of the file, as most encoders do, so a
  truncated copy has no index at all. ``rotation`` stores a display matrix (degrees
  counter-clockwise) like a phone camera does.
  """
  path = os.fspath(path)
  options = {"movflags": "+faststart"} if faststart else {}
  rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
  with av.open(path, "w", options=options) as container:
    stream = None
    astream = None
    if audio is not None:
      astream = container.add_stream("aac", rate=sr, layout="mono")
    for k, image in enumerate(frames):
      image = np.ascontiguousarray(image, np.uint8)
      if stream is None:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = image.shape[:2]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
          stream.options = {"crf": str(crf), "preset": "ultrafast"}
        if rotation:
          stream.set_display_rotation(rotation)
      frame = av.VideoFrame.from_ndarray(image, format="rgb24")
      frame.pts = k
      for packet in stream.encode(frame):
        container.mux(packet)
    if stream is None:
      raise ValueError("no frames")
    for packet in stream.encode(None):
      container.mux(packet)
    if astream is not None:
      wav = np.asarray(audio, np.float32)
      for start in range(0, len(wav), 1024):
        frame = av.AudioFrame.from_ndarray(wav[None, start:start + 1024].copy(), format="fltp", layout="mono")
        frame.sample_rate = sr
        frame.pts = start
        for packet in astream.encode(frame):
          container.mux(packet)
      for packet in astream.encode(None):
        container.mux(packet)
  return path
