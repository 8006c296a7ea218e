"""talkjax.audio: loading every format, Wav2Lip mel parity (against the lipsync package), windows."""

import functools
import logging
import math
import os

import chex
import librosa
import lipsync.audio
import numpy as np
import pytest
import soundfile as sf

import media
from talkjax import audio
from talkjax.errors import AudioError


@pytest.fixture(scope="module")
def speech():
  # Real speech: espeak-ng at 22.05 kHz, resampled to 16 kHz as Wav2Lip's load_wav does.
  return media.espeak_speech("Talking faces move their lips in sync with the speech they hear.")


# ------------------------------------------------------------------------------------------------
# Mel spectrogram


def test_constants():
  assert (audio.SAMPLE_RATE, audio.NUM_MELS, audio.MEL_FPS, audio.MEL_WINDOW) == (16000, 80, 80, 16)
  assert audio.SAMPLE_RATE / audio.HOP_LENGTH == audio.MEL_FPS


def test_mel_matches_lipsync_on_real_speech(speech):
  mel = audio.melspectrogram(speech)
  ref = lipsync.audio.melspectrogram(speech)
  chex.assert_shape(mel, (80, 1 + len(speech) // 200))
  assert mel.dtype == np.float32
  err = float(np.max(np.abs(mel - ref)))
  print(f"max |talkjax - lipsync| mel on espeak speech ({len(speech) / 16000:.2f} s): {err:.3g}")
  assert err < 1e-4
  # The speech must exercise the whole range, not just the clipped floor.
  assert mel.min() == -4.0 and mel.max() > 0.0


def test_mel_matches_lipsync_on_noise():
  noise = np.random.default_rng(0).uniform(-1.0, 1.0, 16000 * 2 + 137).astype(np.float32)
  mel = audio.melspectrogram(noise)
  ref = lipsync.audio.melspectrogram(noise)
  err = float(np.max(np.abs(mel - ref)))
  print(f"max |talkjax - lipsync| mel on uniform noise: {err:.3g}")
  assert err < 1e-4


def test_mel_reflect_mode_matches_librosa_reflect_padding(speech, monkeypatch):
  # Wav2Lip's original librosa 0.7 padded the STFT edges by reflection; emulate it in the reference.
  monkeypatch.setattr(librosa, "stft", functools.partial(librosa.stft, pad_mode="reflect"))
  ref = lipsync.audio.melspectrogram(speech)
  mel = audio.melspectrogram(speech, pad_mode="reflect")
  assert float(np.max(np.abs(mel - ref))) < 1e-4
  # Only the first and last two frames touch the padding (noise: the speech starts and ends silent).
  noise = np.random.default_rng(4).normal(0, 0.2, 4321).astype(np.float32)
  reflect = audio.melspectrogram(noise, pad_mode="reflect")
  zero = audio.melspectrogram(noise, pad_mode="constant")
  np.testing.assert_array_equal(reflect[:, 2:-2], zero[:, 2:-2])
  for j in (0, 1, -2, -1):
    assert np.max(np.abs(reflect[:, j] - zero[:, j])) > 1e-3


@pytest.mark.parametrize("n", [1, 199, 200, 201, 799, 800, 3333])
def test_mel_frame_count(n):
  wav = np.random.default_rng(n).normal(0, 0.1, n).astype(np.float32)
  mel = audio.melspectrogram(wav)
  chex.assert_shape(mel, (80, 1 + n // 200))
  assert audio.num_mel_frames(n) == 1 + n // 200
  if n >= 800:
    assert float(np.max(np.abs(mel - lipsync.audio.melspectrogram(wav)))) < 1e-4


def test_mel_of_silence_is_the_floor():
  np.testing.assert_array_equal(audio.melspectrogram(np.zeros(1600, np.float32)), -4.0)


def test_mel_long_input_is_chunked_consistently():
  # More STFT frames than one processing block: blocks must join seamlessly.
  wav = np.random.default_rng(1).normal(0, 0.1, 200 * (audio._MEL_CHUNK + 10)).astype(np.float32)
  mel = audio.melspectrogram(wav)
  np.testing.assert_allclose(mel, lipsync.audio.melspectrogram(wav), atol=1e-4, rtol=0)


def test_mel_basis_is_librosa_slaney():
  basis = audio.mel_basis()
  chex.assert_shape(basis, (80, 401))
  reference = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)  # lipsync's call
  np.testing.assert_array_equal(basis, reference)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 100), np.float32), "1-D"),
    (np.zeros((0,), np.float32), "empty"),
    (np.array([0.0, np.nan, 0.1] * 100, np.float32), "NaN"),
])
def test_mel_bad_input(bad, match):
  with pytest.raises(AudioError, match=match):
    audio.melspectrogram(bad)


def test_mel_bad_pad_mode():
  with pytest.raises(AudioError, match="pad_mode"):
    audio.melspectrogram(np.zeros(1000, np.float32), pad_mode="edge")


# ------------------------------------------------------------------------------------------------
# mel_windows


def _ramp_mel(t):
  # mel[:, j] == j, so a window's first value is its start index.
  return np.tile(np.arange(t, dtype=np.float32), (80, 1))


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_mel_windows_index_rule(fps):
  t = 400
  mel = _ramp_mel(t) + np.arange(80, dtype=np.float32)[:, None] * 1000  # rows distinguishable too
  num_frames = int((t - 16) * fps / 80)  # all unclamped
  windows = audio.mel_windows(mel, num_frames, fps=fps)
  chex.assert_shape(windows, (num_frames, 80, 16))
  assert windows.dtype == np.float32
  for f in range(num_frames):
    s = int(80 * f / fps)  # Wav2Lip's rule
    np.testing.assert_array_equal(windows[f], mel[:, s:s + 16])
  if fps == 25.0:
    np.testing.assert_array_equal(windows[:6, 0, 0], [0, 3, 6, 9, 12, 16])
  else:
    np.testing.assert_array_equal(windows[:7, 0, 0], [0, 2, 5, 8, 10, 13, 16])


@pytest.mark.parametrize("fps", [24, 25, 29.97, 30, 50, 60])
def test_mel_start_is_the_literal_formula(fps):
  f = np.arange(2000)
  expected = np.array([int(80 * k / fps) for k in f])
  np.testing.assert_array_equal(audio.mel_start(f, fps), expected)


def test_mel_windows_clamped_at_both_ends():
  t = 50  # 0.625 s of mel: 16-frame windows fit for starts 0..34
  mel = _ramp_mel(t)
  windows = audio.mel_windows(mel, 20, fps=25.0)
  starts = windows[:, 0, 0].astype(int)
  expected = np.minimum([int(80 * f / 25) for f in range(20)], t - 16)
  np.testing.assert_array_equal(starts, expected)
  assert starts[-1] == 34 and starts[10] == 32
  np.testing.assert_array_equal(windows[-1, 0], np.arange(34, 50))
  # A negative offset (the audio window of an earlier frame) clamps at the start.
  shifted = audio.mel_windows(mel, 4, fps=25.0, offset=-2)
  np.testing.assert_array_equal(shifted[:, 0, 0], [0, 0, 0, 3])
  later = audio.mel_windows(mel, 3, fps=25.0, offset=1)
  np.testing.assert_array_equal(later[:, 0, 0], [3, 6, 9])


def test_mel_windows_zero_frames():
  chex.assert_shape(audio.mel_windows(_ramp_mel(20), 0), (0, 80, 16))


def test_mel_windows_errors():
  with pytest.raises(AudioError, match="fewer than one 16-frame window"):
    audio.mel_windows(_ramp_mel(15), 3)
  with pytest.raises(AudioError, match="transposed"):
    audio.mel_windows(_ramp_mel(100).T, 3)
  with pytest.raises(AudioError, match="num_frames"):
    audio.mel_windows(_ramp_mel(100), -1)
  with pytest.raises(AudioError, match="fps"):
    audio.mel_windows(_ramp_mel(100), 3, fps=0.0)


def test_windows_of_real_speech_cover_the_clip(speech):
  mel = audio.melspectrogram(speech)
  num_frames = int(len(speech) / 16000 * 25)
  windows = audio.mel_windows(mel, num_frames)
  chex.assert_shape(windows, (num_frames, 80, 16))
  np.testing.assert_array_equal(windows[7], mel[:, 22:38])  # int(80 * 7 / 25) = 22


# ------------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize("ext, rate, exact_length", [
    (".wav", 16000, True), (".flac", 44100, True), (".mp3", 44100, True), (".m4a", 22050, True),
    (".ogg", 48000, False),
])
def test_load_audio_formats(tmp_path, ext, rate, exact_length):
  source = media.sine(440.0, 1.0, rate)
  path = media.write_audio(tmp_path / f"tone{ext}", source, rate)
  wav = audio.load(path)
  assert wav.dtype == np.float32 and wav.ndim == 1
  if exact_length:
    assert wav.shape == (16000,)
  else:
    assert abs(wav.shape[0] - 16000) <= 320  # Opus pre-skip/padding granularity (20 ms)
  assert abs(media.dominant_frequency(wav, 16000) - 440.0) < 2.0
  expected = media.sine(440.0, wav.shape[0] / 16000, 16000)
  middle = slice(1000, 15000)
  corr = np.corrcoef(wav[middle], expected[middle])[0, 1]
  assert corr > 0.99, corr
  assert abs(np.sqrt(np.mean(wav[middle] ** 2)) - 0.5 / np.sqrt(2)) < 0.03


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov"])
def test_load_audio_track_of_video(tmp_path, ext):
  tone = media.sine(440.0, 0.8, 16000)
  path = media.write_test_video(tmp_path / f"clip{ext}", media.index_frames(20), 25, audio=tone)
  wav = audio.load(path)
  if ext == ".mkv":
    # Matroska does not record AAC's end padding, so up to one AAC frame (1024) of silence remains.
    assert 12800 <= wav.shape[0] <= 12800 + 1024
  else:
    assert wav.shape == (12800,)
  assert np.corrcoef(wav[1000:12000], tone[1000:12000])[0, 1] > 0.99


def test_load_wav_equals_wav2lip_load_wav(tmp_path):
  # 44.1 kHz stereo int16: channel mean + soxr resampling, exactly what librosa.load does.
  rng = np.random.default_rng(2)
  stereo = np.stack([media.sine(523.0, 1.3, 44100), rng.uniform(-0.3, 0.3, 57330).astype(np.float32)], 1)
  path = media.write_audio(tmp_path / "stereo.wav", stereo, 44100)
  np.testing.assert_array_equal(audio.load(path), lipsync.audio.load_wav(str(path), 16000))


@pytest.mark.parametrize("channels", [2, 6])
def test_stereo_and_multichannel_mixdown(tmp_path, channels):
  rng = np.random.default_rng(channels)
  data = rng.uniform(-0.5, 0.5, (8000, channels)).astype(np.float32)
  path = tmp_path / "multi.wav"
  sf.write(path, data, 16000, subtype="FLOAT")
  np.testing.assert_allclose(audio.load(path), data.mean(axis=1), atol=1e-7)


def test_stereo_mixdown_lossy(tmp_path):
  tone = media.sine(440.0, 1.0, 44100)
  path = media.write_audio(tmp_path / "st.m4a", np.stack([tone, -0.5 * tone], 1), 44100)
  wav = audio.load(path)
  # (L + R) / 2 = 0.25 * tone: amplitude 0.125.
  assert abs(np.sqrt(np.mean(wav[2000:14000] ** 2)) - 0.125 / np.sqrt(2)) < 0.005


def test_load_keeps_frequency_when_resampling(tmp_path):
  tone = media.sine(1000.0, 3.0, 44100)
  path = media.write_audio(tmp_path / "tone44k.wav", tone, 44100)
  wav = audio.load(path)
  assert wav.shape == (math.ceil(len(tone) * 16000 / 44100),)
  assert abs(media.dominant_frequency(wav, 16000) - 1000.0) < 0.5
  native = audio.load(path, sr=None)
  assert native.shape == (len(tone),)
  wav8k = audio.load(path, sr=8000)
  assert wav8k.shape == (math.ceil(len(tone) * 8000 / 44100),)
  assert abs(media.dominant_frequency(wav8k, 8000) - 1000.0) < 0.5


@pytest.mark.parametrize("orig, target", [(48000, 16000), (8000, 16000), (22050, 16000)])
def test_resample_array(orig, target):
  tone = media.sine(700.0, 2.0, orig)
  out = audio.resample(tone, orig, target)
  assert out.dtype == np.float32
  assert out.shape == (math.ceil(len(tone) * target / orig),)
  assert abs(media.dominant_frequency(out, target) - 700.0) < 0.6
  expected = media.sine(700.0, len(out) / target, target)
  assert np.max(np.abs(out[200:-200] - expected[200:-200])) < 2e-3
  np.testing.assert_array_equal(out, librosa.resample(tone, orig_sr=orig, target_sr=target))


def test_resample_identity_and_errors():
  tone = media.sine(700.0, 0.1)
  assert audio.resample(tone, 16000, 16000) is tone
  with pytest.raises(AudioError, match="1-D"):
    audio.resample(np.zeros((2, 10), np.float32), 16000, 8000)
  with pytest.raises(AudioError, match="positive"):
    audio.resample(tone, 0, 16000)


def test_load_missing_file(tmp_path):
  path = tmp_path / "nope.wav"
  with pytest.raises(AudioError, match="not found") as info:
    audio.load(path)
  assert info.value.path == str(path) and str(path) in str(info.value)
  assert isinstance(info.value, ValueError)


def test_load_file_without_audio_stream(tmp_path):
  path = media.write_test_video(tmp_path / "silent_film.mp4", media.index_frames(5), 25)
  with pytest.raises(AudioError, match="no audio stream"):
    audio.load(path)


@pytest.mark.parametrize("ext", [".wav", ".mp3", ".m4a", ".mp4"])
def test_load_corrupt_file(tmp_path, ext):
  path = tmp_path / f"garbage{ext}"
  path.write_bytes(np.random.default_rng(3).bytes(20000))
  with pytest.raises(AudioError, match="cannot open"):
    audio.load(path)


def test_load_zero_byte_file(tmp_path):
  path = tmp_path / "zero.wav"
  path.write_bytes(b"")
  with pytest.raises(AudioError, match="empty"):
    audio.load(path)


def test_load_truncated_m4a(tmp_path):
  # moov index at the front, sample data cut in half: the header promises 2 s.
  path = media.write_test_video(tmp_path / "full.mp4", media.index_frames(50), 25,
                                audio=media.sine(440.0, 2.0), faststart=True)
  with open(path, "rb") as f:
    data = f.read()
  cut = tmp_path / "cut.mp4"
  cut.write_bytes(data[: len(data) // 2])
  with pytest.raises(AudioError, match="truncated|corrupt"):
    audio.load(cut)


def test_load_empty_audio(tmp_path):
  path = tmp_path / "empty.wav"
  sf.write(path, np.zeros((0,), np.float32), 16000)
  with pytest.raises(AudioError, match="no samples"):
    audio.load(path)


def test_load_nan_audio(tmp_path):
  path = tmp_path / "nan.wav"
  sf.write(path, np.full(4000, np.nan, np.float32), 16000, subtype="FLOAT")
  with pytest.raises(AudioError, match="all samples are NaN"):
    audio.load(path)
  partial = media.sine(440.0, 0.25)
  partial[100] = np.inf
  sf.write(tmp_path / "inf.wav", partial, 16000, subtype="FLOAT")
  with pytest.raises(AudioError, match="1 of 4000 samples"):
    audio.load(tmp_path / "inf.wav")


def test_silent_audio_loads_with_warning(tmp_path, caplog):
  path = tmp_path / "quiet.wav"
  sf.write(path, np.zeros(8000, np.float32), 16000)
  with caplog.at_level(logging.WARNING, logger="talkjax.audio"):
    wav = audio.load(path)
  np.testing.assert_array_equal(wav, np.zeros(8000, np.float32))
  assert any("silent" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
  # And its mel is the floor: a closed mouth.
  np.testing.assert_array_equal(audio.melspectrogram(wav), -4.0)


def test_load_real_speech_file(tmp_path):
  path = media.espeak_wav(tmp_path / "speech.wav", "Hello there.")
  wav = audio.load(path)
  assert sf.info(path).samplerate == 22050
  assert wav.shape == (math.ceil(sf.info(path).frames * 16000 / 22050),)
  assert 0.1 < float(np.max(np.abs(wav))) <= 1.0
  assert os.path.getsize(path) > 1000
