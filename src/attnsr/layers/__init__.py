"""Attention building blocks and upsamplers, each usable on its own.

One import line per module (re-exports).
"""

from attnsr.layers.channel import ChannelAttention, ContrastChannelAttention  # noqa: F401
from attnsr.layers.esa import ESA  # noqa: F401
from attnsr.layers.nonlocal_attention import NonLocalAttention, NonLocalSparseAttention  # noqa: F401
from attnsr.layers.pixel import PAConv, PixelAttention  # noqa: F401
from attnsr.layers.spatial import CBAM, SpatialAttention  # noqa: F401
from attnsr.layers.upsample import Upsample, UpsampleOneStep  # noqa: F401
from attnsr.layers.window import SwinTransformerBlock, WindowAttention  # noqa: F401
