"""Networks: ports of the reference PyTorch models and the papers' own models (NHWC, Flax Linen).

Each module documents its inputs (layout, channel order, value range) and the PyTorch checkpoint it
loads through ``third_party.convert``.
"""

from talkjax.models import audio_encoder
from talkjax.models import gma
from talkjax.models import inception
from talkjax.models import lpips_nets
from talkjax.models import pix2pixhd
from talkjax.models import syncnet_v2
from talkjax.models import vgg19
from talkjax.models import wav2lip
