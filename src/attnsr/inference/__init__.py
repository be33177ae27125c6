"""Inference: tiled forward passes (:mod:`~attnsr.inference.tiling`) and the
``upscale`` API (:mod:`~attnsr.inference.upscale`)."""

from attnsr.inference.tiling import TilePlan, plan_tiles, tiled_forward
from attnsr.inference.upscale import Upscaler, upscale

__all__ = ["TilePlan", "Upscaler", "plan_tiles", "tiled_forward", "upscale"]
