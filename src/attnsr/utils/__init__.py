"""Small utilities: parameter and FLOP counting."""

from attnsr.utils.flops import count_flops, count_params  # noqa: F401
