"""Shared layers of talkjax (Flax Linen, NHWC, float32 by default with a ``dtype`` attribute).

- :mod:`talkjax.nn.dynamic_conv`: per-sample kernels from a hypernetwork (papers 001, 000).
- :mod:`talkjax.nn.norms`: instance norm, AdaIN, SPADE (NVlabs and IP_LAP forms), SPADE ResBlock.
- :mod:`talkjax.nn.blur`: Gaussian blur and paper 000's blurred lower-half mask.
- :mod:`talkjax.nn.warp`: ``grid_sample``-equivalent bilinear sampling, flow warping, grids.
- :mod:`talkjax.nn.adaat`: DINet/G4G per-channel affine deformation.
- :mod:`talkjax.nn.attention`: PyTorch-equivalent post-norm transformer encoder, 1x1 cross-attention.
- :mod:`talkjax.nn.ops`: PixelShuffle and its inverse, PyTorch-exact nearest/bilinear resizing.
- :mod:`talkjax.nn.conv_blocks`: Wav2Lip's conv blocks (conv + BatchNorm (+ residual) + activation,
  transposed conv block, no-norm conv), a PyTorch-exact BatchNorm and ConvTranspose.
"""

from talkjax.nn.adaat import AdaAT, adaat_transform, affine_channel_grids
from talkjax.nn.attention import (SpatialCrossAttention, TorchMultiheadAttention, TransformerEncoder,
                                  TransformerEncoderLayer)
from talkjax.nn.blur import (blurred_lower_half_mask, gaussian_blur, gaussian_kernel1d, lower_half_mask,
                             mask_lower_half)
from talkjax.nn.conv_blocks import BatchNorm, ConvAct, ConvBNAct, ConvTranspose, ConvTransposeBNAct
from talkjax.nn.dynamic_conv import DynamicConv, dynamic_conv
from talkjax.nn.norms import (AdaIN, AdaINBlock, IPLAPSPADE, IPLAPSPADEBlock, SPADE, SPADEResBlock,
                              instance_norm)
from talkjax.nn.ops import (ArgumentError, ShapeError, pixel_shuffle, pixel_unshuffle, resize_bilinear,
                           resize_nearest)
from talkjax.nn.warp import (flow_to_grid, grid_sample, grid_sample_per_channel, identity_grid,
                             sample_at_pixels, warp_by_flow)

__all__ = [
    "AdaAT", "adaat_transform", "affine_channel_grids",
    "SpatialCrossAttention", "TorchMultiheadAttention", "TransformerEncoder", "TransformerEncoderLayer",
    "blurred_lower_half_mask", "gaussian_blur", "gaussian_kernel1d", "lower_half_mask", "mask_lower_half",
    "BatchNorm", "ConvAct", "ConvBNAct", "ConvTranspose", "ConvTransposeBNAct",
    "DynamicConv", "dynamic_conv",
    "AdaIN", "AdaINBlock", "IPLAPSPADE", "IPLAPSPADEBlock", "SPADE", "SPADEResBlock", "instance_norm",
    "ArgumentError", "ShapeError", "pixel_shuffle", "pixel_unshuffle", "resize_bilinear", "resize_nearest",
    "flow_to_grid", "grid_sample", "grid_sample_per_channel", "identity_grid", "sample_at_pixels",
    "warp_by_flow",
]
