"""LSE-C / LSE-D: the MFCC front end against python_speech_features, and the whole score against
``syncnet_python``'s own ``SyncNetInstance.evaluate`` on the same frames, audio and random weights."""

import os
import types

import cv2
import numpy as np
import pytest
import python_speech_features
import scipy.io.wavfile
import skimage.data
import soundfile as sf
import torch

import media
from talkjax import faces
from talkjax.errors import ArgumentError, NoFaceError
from talkjax.metrics import lse
from talkjax.metrics import mfcc as mfcc_lib
from talkjax.metrics import weights as weights_lib
from syncnet_python.SyncNetInstance import SyncNetInstance, calc_pdist
from syncnet_python.SyncNetModel import S
from third_party import convert

PHOTO = skimage.data.astronaut()  # one frontal face around (225, 125)


# ------------------------------------------------------------------------------------------------
# MFCC front end


@pytest.mark.parametrize("n", [100, 400, 401, 561, 16000, 16123])
def test_mfcc_equals_python_speech_features_on_int16_noise(n):
  x = np.random.default_rng(n).normal(0, 3000, n).astype(np.int16)
  ref = python_speech_features.mfcc(x, 16000)
  got = mfcc_lib.mfcc(x, 16000)
  assert got.shape == ref.shape == (mfcc_lib.num_frames(n), 13)
  np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


def test_mfcc_equals_python_speech_features_on_speech_and_silence():
  speech = mfcc_lib.to_int16_scale(media.espeak_speech("Lip sync error", sr=16000))
  np.testing.assert_allclose(mfcc_lib.mfcc(speech), python_speech_features.mfcc(speech, 16000),
                             rtol=0, atol=1e-9)
  silence = np.zeros(2000, np.int16)   # zero energies take python_speech_features' eps branch
  np.testing.assert_allclose(mfcc_lib.mfcc(silence), python_speech_features.mfcc(silence, 16000),
                             rtol=0, atol=1e-9)
  assert mfcc_lib.mfcc(silence)[0, 0] == pytest.approx(np.log(np.finfo(float).eps))


def test_int16_scaling_round_trips_wav_samples_and_clips():
  x = np.array([-32768, -1, 0, 1, 12345, 32767], np.int16)
  np.testing.assert_array_equal(mfcc_lib.to_int16_scale(x.astype(np.float32) / 32768), x)
  np.testing.assert_array_equal(mfcc_lib.to_int16_scale(np.array([1.5, -1.5, 0.49 / 32768])),
                                [32767, -32768, 0])
  with pytest.raises(ValueError, match=r"\[-1, 1\]"):
    mfcc_lib.to_int16_scale(np.array([0.0, 1000.0]))   # int16 values passed as floats


def test_mfcc_rejects_bad_audio():
  with pytest.raises(ValueError, match="mono"):
    mfcc_lib.mfcc(np.zeros((10, 2)))
  with pytest.raises(ValueError, match="NaN"):
    mfcc_lib.mfcc(np.array([0.0, np.nan]))
  with pytest.raises(ValueError, match="no samples"):
    mfcc_lib.mfcc(np.zeros(0))


# ------------------------------------------------------------------------------------------------
# Distances and the score


def test_distances_and_scores_match_the_reference_formulas():
  rng = np.random.default_rng(0)
  v = rng.normal(size=(9, 16)).astype(np.float32)
  a = (v + rng.normal(scale=0.3, size=v.shape)).astype(np.float32)
  a = np.roll(a, 2, axis=0)            # audio leads the video by two windows
  ref = torch.stack(calc_pdist(torch.from_numpy(v), torch.from_numpy(a), vshift=15), 1).numpy().T
  got = lse.sync_distances(v, a, 15)
  assert got.shape == (9, 31)
  np.testing.assert_allclose(got, ref, rtol=1e-6)
  score = lse.score_from_distances(got)
  mdist = torch.mean(torch.from_numpy(ref.T), 1)
  minval, minidx = torch.min(mdist, 0)
  assert score.lse_d == pytest.approx(float(minval), rel=1e-6)
  assert score.lse_c == pytest.approx(float(torch.median(mdist) - minval), rel=1e-5)
  assert score.offset == 15 - int(minidx) == -2
  # Zero padding: at offset +15 window 0 only sees padding, so its distance is |v_0 + eps|.
  assert got[0, 0] == pytest.approx(np.linalg.norm(v[0].astype(np.float64) + 1e-6))


def test_num_windows_drops_the_last_complete_window_like_the_reference():
  assert lse.num_windows(14, 14 * 640) == 9
  assert lse.num_windows(14, 10 * 640 + 639) == 5
  assert lse.num_windows(5, 10 * 640) == 0


# ------------------------------------------------------------------------------------------------
# Parity with SyncNetInstance.evaluate


def _calibrated_syncnet(video_windows, audio_windows):
  """joonson's S with random weights whose BatchNorm statistics are set from this clip's windows
  (so activations are normalised and the embeddings of both towers have comparable scales)."""
  torch.manual_seed(0)
  net = S()
  for m in net.modules():
    if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
      m.momentum = None  # cumulative average: one pass sets the statistics of that pass
      torch.nn.init.uniform_(m.weight, 0.5, 1.5)
      torch.nn.init.uniform_(m.bias, -0.2, 0.2)
  net.train()
  with torch.no_grad():
    net.forward_lip(video_windows)
    net.forward_aud(audio_windows)
  return net.eval()


def _clip(num_frames, rng):
  """224x224 face crops of the astronaut with a moving mouth region and jitter."""
  face = cv2.resize(PHOTO[60:230, 140:310], (224, 224))
  frames = []
  for t in range(num_frames):
    f = face.astype(np.int16) + rng.integers(-12, 13, face.shape)
    f[140:190, 70:150] -= int(60 * abs(np.sin(t / 2.0)))      # "mouth" opening and closing
    frames.append(np.clip(f, 0, 255).astype(np.uint8))
  return frames


def test_score_equals_syncnet_python_evaluate(tmp_path):
  rng = np.random.default_rng(3)
  frames_rgb = _clip(14, rng)
  speech = media.espeak_speech("Say the words in sync", sr=16000)[:14 * 640 + 500]
  audio = mfcc_lib.to_int16_scale(speech).astype(np.int16)
  # What the reference reads from its tmp_dir: JPEG frames (cv2) and a 16-bit wav.
  for t, f in enumerate(frames_rgb):
    cv2.imwrite(str(tmp_path / f"{t + 1:06d}.jpg"), f[..., ::-1])
  scipy.io.wavfile.write(str(tmp_path / "audio.wav"), 16000, audio)
  decoded_bgr = [cv2.imread(str(tmp_path / f"{t + 1:06d}.jpg")) for t in range(14)]

  windows = torch.from_numpy(np.stack([np.stack(decoded_bgr[v:v + 5]) for v in range(9)])
                             .transpose(0, 4, 1, 2, 3).astype(np.float32))
  cc = python_speech_features.mfcc(audio, 16000).T
  aud = torch.from_numpy(np.stack([cc[:, 4 * v:4 * v + 20] for v in range(9)])[:, None].astype(np.float32))
  net = _calibrated_syncnet(windows, aud)

  opt = types.SimpleNamespace(tmp_dir=str(tmp_path), batch_size=4, vshift=15)
  ref_offset, ref_conf, ref_dist = SyncNetInstance(net, device="cpu").evaluate(opt)

  variables = convert.convert_state_dict("syncnet_v2", {k: v.numpy() for k, v in net.state_dict().items()})
  scorer = lse.SyncNetScorer(variables, batch_size=4)
  wav, sr = sf.read(str(tmp_path / "audio.wav"), dtype="float32")   # as talkjax.audio.load gives it
  assert sr == 16000
  frames_from_jpeg = [f[..., ::-1] for f in decoded_bgr]           # RGB, as talkjax decodes
  got = lse.score_clip(scorer, frames_from_jpeg, wav, crop="frame")
  print(f"LSE parity: talkjax D={got.lse_d:.6f} C={got.lse_c:.6f} offset={got.offset:+.0f}; "
        f"syncnet_python D={ref_dist:.6f} C={ref_conf:.6f} offset={ref_offset:+d}")
  assert got.track_scores[0].num_windows == 9
  assert abs(got.lse_d - ref_dist) < 1e-3
  assert abs(got.lse_c - ref_conf) < 1e-3
  assert got.offset == ref_offset
  assert 1.0 < ref_dist and ref_conf > 1e-3   # a non-degenerate score: offsets are distinguishable


# ------------------------------------------------------------------------------------------------
# Crop protocols


def test_face_crop_geometry_is_joonsons():
  # A box (100, 80)-(180, 180): s = 50, centre (140, 130); with crop_scale 0.4 the crop spans rows
  # 130-50 .. 130+90 = 80..220 and columns 140-70 .. 140+70 = 70..210 of the original frame.
  yy, xx = np.mgrid[0:300, 0:320]
  frame = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
  s, cx, cy = lse.smooth_track_boxes(np.tile([[100.0, 80.0, 180.0, 180.0]], (13, 1)))[6]
  assert (s, cx, cy) == (50.0, 140.0, 130.0)
  got = lse.face_crop(frame, s, cx, cy)
  want = cv2.resize(np.ascontiguousarray(frame[80:220, 70:210, ::-1]), (224, 224))
  np.testing.assert_array_equal(got, want)
  # Near the border the frame is padded with grey 110: box centred at (10, 10), s = 20.
  got = lse.face_crop(frame, 20.0, 10.0, 10.0)
  region = np.full((56, 56, 3), 110, np.uint8)            # rows -10..46, columns -18..38
  region[10:, 18:] = frame[0:46, 0:38, ::-1]
  np.testing.assert_array_equal(got, cv2.resize(region, (224, 224)))


def test_track_smoothing_is_a_zero_padded_13_frame_median():
  boxes = np.tile([[0.0, 0.0, 100.0, 60.0]], (20, 1))
  boxes[10] = [0.0, 0.0, 300.0, 60.0]                     # one outlier frame
  sm = lse.smooth_track_boxes(boxes)
  assert sm[10, 0] == 50.0 and sm[10, 1] == 50.0          # the outlier is filtered out
  # At the ends the reference's medfilt sees zeros: 6 zeros + 7 values -> the smallest value.
  assert sm[0, 0] == 50.0 and sm[19, 2] == 30.0


def test_face_tracks_apply_min_track_and_min_face_size():
  t = 40
  boxes = np.tile([[10.0, 10.0, 130.0, 150.0]], (t, 1)).astype(np.float32)
  boxes[25:] = [10.0, 10.0, 60.0, 60.0]                     # a small face in the second segment
  track = types.SimpleNamespace(segments=((0, 20), (20, 40)), boxes=boxes)
  assert lse.face_tracks(track, min_track=10, min_face_size=100) == [(0, 20)]
  assert lse.face_tracks(track, min_track=19, min_face_size=100) == [(0, 20)]
  assert lse.face_tracks(track, min_track=20, min_face_size=100) == []   # len > min_track, strictly
  assert lse.face_tracks(track, min_track=10, min_face_size=40) == [(0, 20), (20, 40)]


def test_face_mode_tracks_a_real_face_and_scores_each_track(tmp_path):
  rng = np.random.default_rng(0)
  frames = []
  for t in range(12):   # the astronaut drifting right by 2 px a frame
    frames.append(np.roll(PHOTO, 2 * t, axis=1)[:, :, :].copy())
  frames = [np.asarray(f) for f in frames]
  track = faces.track_faces(frames, max_gap=lse.NUM_FAILED_DET, smooth_window=1, keep_mesh=False)
  assert track.num_detected == 12
  crops = lse.clip_crops(frames, crop="face", track=track, segments=[(0, 12)])
  assert len(crops) == 1 and crops[0].shape == (12, 224, 224, 3)
  sm = lse.smooth_track_boxes(track.boxes)
  np.testing.assert_array_equal(crops[0][6], lse.face_crop(frames[6], *sm[6]))
  # The crop is centred on the (median-filtered) mesh box of the face: about x 225 + 2t, y 125.
  assert abs(sm[6, 1] - (225 + 2 * 6)) < 15 and abs(sm[6, 2] - 125) < 20

  torch.manual_seed(1)
  variables = convert.convert_state_dict("syncnet_v2", {k: v.numpy() for k, v in S().state_dict().items()})
  scorer = lse.SyncNetScorer(variables, batch_size=4)
  audio = rng.normal(0, 0.05, 12 * 640).astype(np.float32)
  got = lse.score_clip(scorer, frames, audio, crop="face", track=track, min_track=10, min_face_size=50)
  assert got.tracks == ((0, 12),) and got.track_scores[0].num_windows == 7
  direct = lse.score_crops(scorer, crops[0], audio)
  assert got.lse_d == pytest.approx(direct.lse_d) and got.lse_c == pytest.approx(direct.lse_c)
  # With the reference's defaults a 12-frame clip has no usable track: a clear error, not a number.
  with pytest.raises(NoFaceError, match="min_track"):
    lse.score_clip(scorer, frames, audio, crop="face", track=track)


def test_errors_name_the_problem():
  with pytest.raises(ArgumentError, match="at least 6 frames"):
    lse.score_crops(None, np.zeros((5, 224, 224, 3), np.uint8), np.zeros(5 * 640))
  with pytest.raises(ValueError, match=r"\(T, 224, 224, 3\)"):
    lse.score_crops(None, np.zeros((8, 96, 96, 3), np.uint8), np.zeros(8 * 640))
  with pytest.raises(ArgumentError, match="crop"):
    lse.clip_crops([], crop="mouth")
  with pytest.raises(weights_lib.MissingWeightsError) as e:
    lse.SyncNetScorer.from_weights_dir("/nonexistent/weights")
  msg = str(e.value)
  assert "syncnet_v2.model" in msg and "python -m third_party.convert --kind=syncnet_v2" in msg
  assert os.path.join("/nonexistent/weights", "syncnet_v2") in msg
