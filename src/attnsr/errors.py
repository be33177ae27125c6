"""Error types. Every user-facing failure is an :class:`AttnsrError` whose message
is one line that names the file (or setting) and the problem; the CLI prints it
and exits with code 2."""

from __future__ import annotations


class AttnsrError(Exception):
    """Base class of all errors attnsr reports to users."""


class ImageReadError(AttnsrError):
    """An image file cannot be read: missing, empty, truncated, not an image,
    unsupported, or too large."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ImageWriteError(AttnsrError):
    """An image cannot be written."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(AttnsrError):
    """A configuration (file, override or model config) is invalid."""


class CheckpointError(AttnsrError):
    """A checkpoint cannot be loaded: unknown format, architecture or keys."""


class ModelNotFoundError(AttnsrError):
    """A model name is neither a registered model nor an existing file."""


class ExportError(AttnsrError):
    """A model cannot be exported (ONNX / TorchScript / int8) or the export disagrees with
    the eager model."""
