"""The embedded synthetic talking-face corpus: speech-driven cartoon faces with exact ground truth.

Real corpora (LRS2, HDTF) cannot be downloaded here, so talkjax makes its own default training and
test data: speakers that differ in face, scene and voice say random syllable sequences produced by a
source-filter synthesiser, and their mouths follow the speech through a coarticulated viseme track
(openness, width, roundness), with independent head motion and blinks. Every frame comes with the
131 IP_LAP landmarks, placed on the drawn face, and ``measure_mouth_openness`` measures how far the
mouth is open from pixels alone, the lip-sync yardstick for generated frames.

Modules: ``speakers`` (identities), ``phonemes`` (inventory, sound -> mouth mapping), ``script``
(random timed utterances), ``visemes`` (coarticulation), ``voice`` (synthesiser), ``motion`` (head
pose, blinks, gaze), ``face`` (landmarks and shapes), ``render`` (projection, rasterisation),
``openness`` (the pixel yardstick), ``corpus`` (clips, pairs, the on-disk tree).

Typical use::

  from talkjax.data import synthetic
  frames, audio, landmarks, visemes = synthetic.generate_clip(seed=0, size=128, duration=2.0)
  synthetic.make_corpus("/tmp/synthetic", speakers=3, clips=2, pairs=True)
  openness = synthetic.measure_mouth_openness(frames, landmarks)
"""

from talkjax.data.synthetic.corpus import (
    DEFAULT_DURATION,
    DEFAULT_SIZE,
    FPS,
    SAMPLE_RATE,
    Clip,
    ClipPlan,
    clip_audio,
    clip_files,
    clip_landmarks,
    clip_name,
    clip_visemes,
    find_clips,
    find_pairs,
    generate_clip,
    generate_pair,
    iter_clip_frames,
    make_corpus,
    plan_clip,
    plan_pair,
    render_clip,
    speaker_for,
)
from talkjax.data.synthetic.motion import HeadTrack, sample_head_track
from talkjax.data.synthetic.openness import face_scale, measure_mouth_openness
from talkjax.data.synthetic.phonemes import PHONES, vowel_mouth_shape
from talkjax.data.synthetic.script import Segment, random_utterance
from talkjax.data.synthetic.speakers import Appearance, Speaker, Voice, sample_speaker
from talkjax.data.synthetic.visemes import CHANNELS, viseme_track

__all__ = [
    "CHANNELS", "DEFAULT_DURATION", "DEFAULT_SIZE", "FPS", "PHONES", "SAMPLE_RATE", "Appearance", "Clip",
    "ClipPlan", "HeadTrack", "Segment", "Speaker", "Voice", "clip_audio", "clip_files", "clip_landmarks",
    "clip_name", "clip_visemes", "face_scale", "find_clips", "find_pairs", "generate_clip", "generate_pair",
    "iter_clip_frames",
    "make_corpus", "measure_mouth_openness", "plan_clip", "plan_pair", "random_utterance", "render_clip",
    "sample_head_track", "sample_speaker", "speaker_for", "viseme_track", "vowel_mouth_shape",
]
