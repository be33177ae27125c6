"""Architectures. Importing this package registers all of them (explicitly, below)."""

# Architecture modules: each registers its arch and presets on import.
from attnsr.models import (  # noqa: E402,F401
    attnsr_net,
    bicubic,
    bsrn,
    edsr,
    hitsr,
    imdn,
    nlsn,
    pan,
    rcan,
    rlfn,
    safmn,
    span,
    swinir,
)
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
