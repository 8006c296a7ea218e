"""talkjax.video: atomic H.264/AAC writing, streaming decode, frame-rate resampling, errors."""

import os
import time
import weakref

import av
import chex
import numpy as np
import pytest
from PIL import Image

import media
from talkjax import audio, video
from talkjax.errors import MediaError, VideoError


def _gradient_frames(n, height, width):
  yy, xx = np.mgrid[0:height, 0:width]
  for k in range(n):
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = xx * 100 // max(width - 1, 1) + k % 150
    image[..., 1] = yy * 200 // max(height - 1, 1)
    image[..., 2] = 60 + (k * 3) % 150
    yield image


# ------------------------------------------------------------------------------------------------
# Writing


def test_write_read_round_trip(tmp_path):
  path = tmp_path / "clip.mp4"
  source = list(_gradient_frames(12, 48, 64))
  assert video.write_video(path, iter(source), fps=25) == 12
  info = video.probe(path)
  assert (info.width, info.height, info.num_frames, info.codec) == (64, 48, 12, "h264")
  assert info.fps == 25.0 and info.duration == pytest.approx(12 / 25)
  assert not info.has_audio and info.audio_sample_rate is None
  frames = video.read_frames(path)
  chex.assert_shape(frames, (12, 48, 64, 3))
  assert frames.dtype == np.uint8
  err = np.abs(frames.astype(int) - np.stack(source).astype(int))
  assert err.mean() < 2.0, err.mean()  # crf 18 + 4:2:0 chroma on a smooth gradient
  # Streams are H.264 yuv420p tagged BT.601 limited range, the colours readers assume untagged.
  with av.open(str(path)) as container:
    cc = container.streams.video[0].codec_context
    assert (cc.name, cc.pix_fmt, int(cc.colorspace), int(cc.color_range)) == ("h264", "yuv420p", 6, 1)


def test_timestamps_and_indices(tmp_path):
  path = media.write_test_video(tmp_path / "ix.mp4", media.index_frames(9), 30)
  frames = list(video.iter_frames(path))
  assert [f.index for f in frames] == list(range(9))
  np.testing.assert_allclose([f.timestamp for f in frames], np.arange(9) / 30, atol=1e-9)
  assert [media.decode_index(f.image) for f in frames] == list(range(9))


def test_odd_size_is_padded_to_even(tmp_path):
  path = tmp_path / "odd.mp4"
  source = list(_gradient_frames(3, 33, 47))
  video.write_video(path, source, fps=25)
  frames = video.read_frames(path)
  chex.assert_shape(frames, (3, 34, 48, 3))
  # Padding repeats the last row/column.
  src = source[1].astype(int)
  assert np.abs(frames[1, :33, :47].astype(int) - src).mean() < 2.5
  assert np.abs(frames[1, 33, :47].astype(int) - src[32]).mean() < 4
  assert np.abs(frames[1, :33, 47].astype(int) - src[:, 46]).mean() < 4


def test_video_writer_chunked_and_float_frames(tmp_path):
  path = tmp_path / "chunks.mp4"
  with video.VideoWriter(path, fps=30) as writer:
    for chunk_start in range(0, 10, 4):  # a producer emitting batches of frames
      batch = np.stack([media.index_frame(k) for k in range(chunk_start, min(chunk_start + 4, 10))])
      for frame in batch.astype(np.float32) / 255.0:
        writer.write(frame)
    assert writer.frames_written == 10
    assert not path.exists()  # nothing visible before the writer closes
  frames = video.read_frames(path)
  assert [media.decode_index(f) for f in frames] == list(range(10))


def test_fractional_fps(tmp_path):
  path = tmp_path / "ntsc.mp4"
  video.write_video(path, media.index_frames(30), fps=30000 / 1001)
  info = video.probe(path)
  assert info.fps == pytest.approx(30000 / 1001, rel=1e-4)
  frames = list(video.iter_frames(path))
  assert frames[29].timestamp == pytest.approx(29 * 1001 / 30000, abs=1e-6)


def test_audio_is_muxed_with_matching_duration(tmp_path):
  path = tmp_path / "talk.mp4"
  speech = media.espeak_speech("one two three")
  fps = 25
  num_frames = int(len(speech) / 16000 * fps)
  speech = speech[: int(num_frames * 16000 / fps)]  # matching lengths
  video.write_video(path, media.index_frames(num_frames), fps, audio=speech, sr=16000)
  info = video.probe(path)
  assert info.has_audio and info.audio_sample_rate == 16000 and info.num_frames == num_frames
  with av.open(str(path)) as container:
    a, v = container.streams.audio[0], container.streams.video[0]
    assert a.codec_context.name == "aac"
    audio_seconds = float(a.duration * a.time_base)
    video_seconds = float(v.duration * v.time_base)
  assert abs(audio_seconds - video_seconds) <= 1 / fps
  assert video_seconds == pytest.approx(num_frames / fps)
  decoded = audio.load(path)
  assert decoded.shape == speech.shape
  # AAC at 96 kb/s keeps speech close enough for mel-based lip-sync features.
  mel_error = np.abs(audio.melspectrogram(decoded) - audio.melspectrogram(speech))
  assert np.corrcoef(decoded, speech)[0, 1] > 0.98
  assert mel_error.mean() < 0.1, mel_error.mean()
  assert len(video.read_frames(path)) == num_frames


def test_audio_at_other_rates(tmp_path):
  # 44.1 kHz is an AAC rate and is kept; 11 kHz is not one and is resampled to 48 kHz.
  for sr, expected in ((44100, 44100), (11000, 48000)):
    path = tmp_path / f"a{sr}.mp4"
    video.write_video(path, media.index_frames(10), 25, audio=media.sine(440.0, 0.4, sr), sr=sr)
    assert video.probe(path).audio_sample_rate == expected
    wav = audio.load(path)
    assert wav.shape == (6400,)
    assert abs(media.dominant_frequency(wav, 16000) - 440.0) < 3.0


@pytest.mark.parametrize("ext", [".mkv", ".mov"])
def test_write_other_containers(tmp_path, capfd, ext):
  path = tmp_path / f"clip{ext}"
  video.write_video(path, media.index_frames(10), 25, audio=media.sine(440.0, 0.4))
  assert [media.decode_index(f) for f in video.read_frames(path)] == list(range(10))
  assert abs(audio.load(path).shape[0] - 6400) <= 1024  # Matroska keeps AAC's end padding
  assert "not used" not in capfd.readouterr().err  # mp4-only muxer options are not passed


def test_iterator_error_leaves_nothing(tmp_path):
  path = tmp_path / "out" / "broken.mp4"

  def frames():
    for k in range(5):
      yield media.index_frame(k)
    raise RuntimeError("producer crashed")

  with pytest.raises(RuntimeError, match="producer crashed"):
    video.write_video(path, frames(), 25, audio=media.sine(440.0, 1.0))
  assert not path.exists()
  assert os.listdir(path.parent) == []  # no temporary file left behind either


def test_failed_write_keeps_previous_file(tmp_path):
  path = tmp_path / "keep.mp4"
  video.write_video(path, media.index_frames(4), 25)
  before = path.read_bytes()

  def frames():
    yield media.index_frame(0)
    yield np.zeros((10, 10, 3), np.uint8)  # size change: a caller bug

  with pytest.raises(VideoError, match="frame 1 is 10x10 but earlier frames were 48x64"):
    video.write_video(path, frames(), 25)
  assert path.read_bytes() == before
  assert os.listdir(tmp_path) == ["keep.mp4"]


def test_abandoned_writer_cleans_up(tmp_path):
  writer = video.VideoWriter(tmp_path / "abandoned.mp4", fps=25)
  writer.write(media.index_frame(0))
  assert len(os.listdir(tmp_path)) == 1  # the temporary file
  writer.abort()
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("frames, match", [
    ([], "no frames"),
    ([np.zeros((8, 8), np.float64) + np.nan], "NaN"),
    ([np.zeros((8, 8, 4), np.uint8)], r"\(H, W, 3\)"),
    ([np.full((8, 8, 3), 300, np.int32)], r"\[0, 255\]"),
])
def test_write_bad_frames(tmp_path, frames, match):
  path = tmp_path / "bad.mp4"
  with pytest.raises(VideoError, match=match):
    video.write_video(path, frames, 25)
  assert os.listdir(tmp_path) == []


def test_write_bad_arguments(tmp_path):
  with pytest.raises(VideoError, match="fps"):
    video.write_video(tmp_path / "x.mp4", media.index_frames(2), 0)
  with pytest.raises(VideoError, match="mono"):
    video.write_video(tmp_path / "x.mp4", media.index_frames(2), 25, audio=np.zeros((100, 2)))
  with pytest.raises(VideoError, match="NaN"):
    video.write_video(tmp_path / "x.mp4", media.index_frames(2), 25, audio=np.full(100, np.nan))
  with pytest.raises(VideoError, match="audio is empty"):
    video.write_video(tmp_path / "x.mp4", media.index_frames(2), 25, audio=np.zeros(0, np.float32))
  assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# Frame-rate resampling


def test_resample_30_to_25(tmp_path):
  path = media.write_test_video(tmp_path / "src30.mp4", media.index_frames(60), 30)
  frames = list(video.iter_frames(path, fps=25))
  assert len(frames) == 50  # 2 s at 25 fps
  # Output frame k shows the source frame on screen at k/25 s: floor(k * 30 / 25).
  assert [media.decode_index(f.image) for f in frames] == [k * 30 // 25 for k in range(50)]
  assert [f.index for f in frames] == list(range(50))
  np.testing.assert_allclose([f.timestamp for f in frames], np.arange(50) / 25, atol=1e-9)


def test_resample_25_to_30(tmp_path):
  path = media.write_test_video(tmp_path / "src25.mp4", media.index_frames(25), 25)
  frames = video.read_frames(path, fps=30)
  assert len(frames) == 30
  assert [media.decode_index(f) for f in frames] == [k * 25 // 30 for k in range(30)]
  # Repeated source frames are separate arrays: pasting into one does not change the other.
  frames_iter = video.iter_frames(path, fps=50)
  a, b = next(frames_iter), next(frames_iter)
  frames_iter.close()
  np.testing.assert_array_equal(a.image, b.image)
  assert not np.shares_memory(a.image, b.image)


def test_resample_same_rate_is_identity(tmp_path):
  path = media.write_test_video(tmp_path / "same.mp4", media.index_frames(20), 25)
  frames = video.read_frames(path, fps=25)
  assert [media.decode_index(f) for f in frames] == list(range(20))


def test_read_frames_max_frames(tmp_path):
  path = media.write_test_video(tmp_path / "long.mp4", media.index_frames(40), 25)
  frames = video.read_frames(path, max_frames=3)
  chex.assert_shape(frames, (3, 48, 64, 3))
  assert [media.decode_index(f) for f in frames] == [0, 1, 2]
  chex.assert_shape(video.read_frames(path, max_frames=0), (0, 48, 64, 3))


# ------------------------------------------------------------------------------------------------
# Streaming


def _rss_bytes():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_decoding_streams_without_holding_frames(tmp_path):
  height = width = 320
  num_frames = 200
  clip_bytes = num_frames * height * width * 3  # 61 MB of RGB if it were all held
  path = media.write_test_video(tmp_path / "long.mp4", _gradient_frames(num_frames, height, width), 25)
  base = peak = None
  alive = []
  count = 0
  for frame in video.iter_frames(path, fps=30):
    count += 1
    rss = _rss_bytes()
    base = rss if base is None else base
    peak = max(peak or rss, rss)
    alive.append(weakref.ref(frame.image))
    del frame
  assert count == 240
  # Resident memory stays flat while decoding (a few MB of decoder state, not the clip)...
  assert peak - base < clip_bytes / 4, (peak - base) / 1e6
  # ...and no yielded image is kept alive by the reader once the caller drops it.
  assert sum(ref() is not None for ref in alive) <= 1


def test_stopping_early_decodes_only_what_was_asked(tmp_path, monkeypatch):
  path = media.write_test_video(tmp_path / "long.mp4", media.index_frames(120), 25)
  converted = []
  original = video._to_rgb
  monkeypatch.setattr(video, "_to_rgb", lambda frame: converted.append(1) or original(frame))
  frames = video.iter_frames(path)
  first = [next(frames) for _ in range(3)]
  frames.close()
  assert [media.decode_index(f.image) for f in first] == [0, 1, 2]
  assert len(converted) == 3
  converted.clear()
  chex.assert_shape(video.read_frames(path, fps=50, max_frames=5), (5, 48, 64, 3))
  assert len(converted) == 3  # 5 frames at 50 fps show source frames 0, 0, 1, 1, 2
  converted.clear()
  frames = video.read_frames(path, fps=12.5)  # every other source frame
  assert [media.decode_index(f) for f in frames] == list(range(0, 120, 2))
  assert len(converted) == 60  # the dropped frames were decoded but never converted to RGB


# ------------------------------------------------------------------------------------------------
# Metadata and orientation


def test_probe_rotation_is_applied(tmp_path):
  source = np.zeros((32, 64, 3), np.uint8)
  source[:, :16] = 255  # white band on the left
  path = media.write_test_video(tmp_path / "phone.mp4", [source] * 3, 25, rotation=90)
  info = video.probe(path)
  assert (info.width, info.height, info.rotation) == (32, 64, 90)
  frames = video.read_frames(path)
  chex.assert_shape(frames, (3, 64, 32, 3))
  # 90 degrees counter-clockwise (as FFmpeg displays it): the left band ends up at the bottom.
  assert frames[0, -8:].mean() > 200 and frames[0, :40].mean() < 30


def test_probe_with_audio(tmp_path):
  path = media.write_test_video(tmp_path / "av.mkv", media.index_frames(10), 25, audio=media.sine(440.0, 0.4))
  info = video.probe(path)
  assert info.has_audio and info.audio_sample_rate == 16000
  assert (info.width, info.height, info.fps) == (64, 48, 25.0)
  assert abs(info.num_frames - 10) <= 2  # Matroska has no frame index: an estimate


# ------------------------------------------------------------------------------------------------
# Errors


def test_missing_video(tmp_path):
  for fn in (video.probe, video.read_frames, lambda p: list(video.iter_frames(p))):
    with pytest.raises(VideoError, match="not found"):
      fn(tmp_path / "missing.mp4")


def test_random_bytes_video(tmp_path):
  path = tmp_path / "noise.mp4"
  path.write_bytes(np.random.default_rng(0).bytes(50000))
  start = time.perf_counter()
  with pytest.raises(VideoError, match="noise.mp4: cannot open"):
    video.read_frames(path)
  with pytest.raises(VideoError):
    video.probe(path)
  assert time.perf_counter() - start < 5.0


def test_truncated_video_without_index(tmp_path):
  # Most encoders write the moov index last: a cut-off download has none.
  path = media.write_test_video(tmp_path / "full.mp4", media.index_frames(50), 25, faststart=False)
  with open(path, "rb") as f:
    data = f.read()
  cut = tmp_path / "cut.mp4"
  cut.write_bytes(data[: len(data) * 2 // 3])
  start = time.perf_counter()
  with pytest.raises(VideoError, match="cut.mp4"):
    list(video.iter_frames(cut))
  assert time.perf_counter() - start < 5.0


def test_truncated_video_with_index(tmp_path):
  path = media.write_test_video(tmp_path / "full.mp4", media.index_frames(50), 25, faststart=True)
  with open(path, "rb") as f:
    data = f.read()
  cut = tmp_path / "cut.mp4"
  cut.write_bytes(data[: len(data) // 2])
  start = time.perf_counter()
  with pytest.raises(VideoError, match="truncated|decode error"):
    list(video.iter_frames(cut))
  assert time.perf_counter() - start < 5.0


def test_audio_only_file_is_not_a_video(tmp_path):
  path = media.write_audio(tmp_path / "voice.m4a", media.sine(440.0, 0.5), 16000)
  with pytest.raises(VideoError, match="no video stream"):
    video.probe(path)


def test_empty_file(tmp_path):
  path = tmp_path / "empty.mp4"
  path.write_bytes(b"")
  with pytest.raises(VideoError, match="empty"):
    video.read_frames(path)


# ------------------------------------------------------------------------------------------------
# Images


def test_is_image_file():
  assert video.is_image_file("face.JPG") and video.is_image_file("a/b.png") and video.is_image_file("x.webp")
  assert not video.is_image_file("clip.mp4") and not video.is_image_file("anim.gif")
  assert not video.is_image_file("noext")


def test_load_image_formats(tmp_path):
  source = next(_gradient_frames(1, 30, 40))
  Image.fromarray(source).save(tmp_path / "face.png")
  png = video.load_image(tmp_path / "face.png")
  assert png.dtype == np.uint8
  np.testing.assert_array_equal(png, source)
  Image.fromarray(source).save(tmp_path / "face.jpg", quality=95)
  jpg = video.load_image(tmp_path / "face.jpg")
  chex.assert_shape(jpg, (30, 40, 3))
  assert np.abs(jpg.astype(int) - source.astype(int)).mean() < 3
  Image.fromarray(source[..., 0]).save(tmp_path / "grey.png")
  grey = video.load_image(tmp_path / "grey.png")
  np.testing.assert_array_equal(grey, np.repeat(source[..., :1], 3, axis=2))
  rgba = np.dstack([source, np.full((30, 40), 255, np.uint8)])
  rgba[0, 0, 3] = 0  # transparent pixel shows as white
  Image.fromarray(rgba).save(tmp_path / "alpha.png")
  loaded = video.load_image(tmp_path / "alpha.png")
  np.testing.assert_array_equal(loaded[0, 0], [255, 255, 255])
  np.testing.assert_array_equal(loaded[1:], source[1:])


def test_load_image_applies_exif_orientation(tmp_path):
  source = np.zeros((20, 40, 3), np.uint8)
  source[:, :10] = 255  # white band on the left
  img = Image.fromarray(source)
  exif = img.getexif()
  exif[0x0112] = 6  # "rotate 90 CW to display"
  img.save(tmp_path / "phone.jpg", exif=exif, quality=95)
  loaded = video.load_image(tmp_path / "phone.jpg")
  chex.assert_shape(loaded, (40, 20, 3))
  assert loaded[:8].mean() > 200 and loaded[-20:].mean() < 30  # left band is now on top


def test_load_image_errors(tmp_path):
  with pytest.raises(MediaError, match="not found"):
    video.load_image(tmp_path / "none.png")
  (tmp_path / "bad.jpg").write_bytes(b"not a jpeg at all")
  with pytest.raises(MediaError, match="bad.jpg: cannot read image"):
    video.load_image(tmp_path / "bad.jpg")
  Image.fromarray(media.index_frame(3)).save(tmp_path / "ok.png")
  png = (tmp_path / "ok.png").read_bytes()
  (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
  with pytest.raises(MediaError, match="cut.png"):
    video.load_image(tmp_path / "cut.png")
