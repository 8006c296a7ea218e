"""Evaluation metrics, computed exactly as the community's reference code computes them.

| module | metric(s) | reference it reproduces |
| --- | --- | --- |
| ``image`` | PSNR, SSIM | scikit-image (Gaussian 11x11, sigma 1.5, data range 255, per channel) |
| ``lmd`` | M-LMD, F-LMD | mean landmark distance, MediaPipe 131-point schema, pixels |
| ``lse`` (+ ``mfcc``) | LSE-D, LSE-C | joonson's ``SyncNetInstance.evaluate`` (+ python_speech_features) |
| ``fid`` | FID | pytorch-fid (FID Inception, bilinear resize to 299, sqrtm) |
| ``lpips`` | LPIPS | ``lpips`` 0.1.4, v0.1 heads, alex/vgg |
| ``vtcs`` | BLEU, WER, CER, ROUGE-L, VTCS-B/W | OpFlowTalker (paper 003), pluggable recognisers |
| ``openness`` | openness r | the synthetic corpus's pixel yardstick vs ground-truth openness |

``registry`` names them for ``python -m experiments.evaluate`` and ``runner`` runs a folder of
videos; ``weights`` says where converted weights live and names the file and command when missing.
"""

from talkjax.metrics import fid
from talkjax.metrics import image
from talkjax.metrics import lmd
from talkjax.metrics import lpips
from talkjax.metrics import lse
from talkjax.metrics import mfcc
from talkjax.metrics import openness
from talkjax.metrics import vtcs
from talkjax.metrics import weights
from talkjax.metrics.image import psnr, ssim
from talkjax.metrics.weights import MissingWeightsError

__all__ = ["MissingWeightsError", "fid", "image", "lmd", "lpips", "lse", "mfcc", "openness", "psnr", "ssim",
           "vtcs", "weights"]
