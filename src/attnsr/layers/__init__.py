"""Attention building blocks and upsamplers, each usable on its own.

One import line per module (re-exports).
"""

from attnsr.layers.blueprint import BlueprintESA, BSConvU, Linear1x1  # noqa: F401
from attnsr.layers.channel import ChannelAttention, ContrastChannelAttention  # noqa: F401
from attnsr.layers.esa import ESA  # noqa: F401
from attnsr.layers.hierarchical import SpatialChannelCorrelation  # noqa: F401
from attnsr.layers.modulation import GRN, SAFM, LayerNorm2d  # noqa: F401
from attnsr.layers.nonlocal_attention import NonLocalAttention, NonLocalSparseAttention  # noqa: F401
from attnsr.layers.parameter_free import SPAB, ParameterFreeAttention  # noqa: F401
from attnsr.layers.pixel import PAConv, PixelAttention  # noqa: F401
from attnsr.layers.reparam import Conv3XC  # noqa: F401
from attnsr.layers.spatial import CBAM, SpatialAttention  # noqa: F401
from attnsr.layers.upsample import Upsample, UpsampleOneStep  # noqa: F401
from attnsr.layers.window import SwinTransformerBlock, WindowAttention  # noqa: F401
