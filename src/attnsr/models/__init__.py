"""Architectures. Importing this package registers all of them (explicitly, below)."""

from attnsr.models.base import ModelTraits, SRModel
from attnsr.models.registry import (
    build_model,
    create_model,
    get_arch,
    get_preset,
    list_archs,
    list_models,
    register_arch,
    register_preset,
)

# Architecture modules: each registers its arch and presets on import.
from attnsr.models import bicubic  # noqa: E402,F401,I001
from attnsr.models import edsr  # noqa: E402,F401,I001
from attnsr.models import rcan  # noqa: E402,F401,I001
from attnsr.models import pan  # noqa: E402,F401,I001
from attnsr.models import imdn  # noqa: E402,F401,I001
from attnsr.models import rlfn  # noqa: E402,F401,I001
from attnsr.models import attnsr_net  # noqa: E402,F401,I001
from attnsr.models import swinir  # noqa: E402,F401,I001
from attnsr.models import nlsn  # noqa: E402,F401,I001

__all__ = [
    "ModelTraits",
    "SRModel",
    "build_model",
    "create_model",
    "get_arch",
    "get_preset",
    "list_archs",
    "list_models",
    "register_arch",
    "register_preset",
]
