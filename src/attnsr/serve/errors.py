"""Errors the server answers with: an HTTP status, a stable code and a one-line message.

Every error response has the body ``{"error": {"status": 413, "code": "too_large",
"message": "..."}}``. Messages name the client's file name, never a server path.
"""

from __future__ import annotations

from attnsr.errors import (
    AttnsrError,
    CheckpointError,
    ConfigError,
    ImageReadError,
    ImageWriteError,
    ModelNotFoundError,
)


class ApiError(Exception):
    """An error with the HTTP status and code it is answered with.

    Attributes:
        status: HTTP status (400..599).
        code: short machine-readable name (``too_large``, ``queue_full`` ...).
        message: one line for people.
        headers: extra response headers (``Retry-After`` ...).
    """

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, object]]:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}


def from_exception(exc: BaseException, filename: str) -> ApiError:
    """The :class:`ApiError` for an exception raised while running a job on ``filename``
    (the client's name for its upload): bad options 422, unreadable image 422, anything
    else 500 (without internals)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ImageReadError):
        return ApiError(422, "unreadable_image", f"{filename}: {exc.problem}")
    if isinstance(exc, (ConfigError, ModelNotFoundError)):
        return ApiError(422, "invalid_option", str(exc))
    if isinstance(exc, MemoryError):
        return ApiError(503, "out_of_memory", f"{filename}: not enough memory on the server; "
                        "try a smaller image or fewer workers")
    if isinstance(exc, (CheckpointError, ImageWriteError, AttnsrError)):
        return ApiError(500, "server_error", f"{filename}: {type(exc).__name__}")
    return ApiError(500, "server_error", f"{filename}: internal error ({type(exc).__name__})")
