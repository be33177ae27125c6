"""The settings of ``attnsr serve`` (one frozen dataclass; the CLI fills it)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from attnsr.errors import ConfigError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
OUTPUT_FORMATS = ("same", "png", "jpg", "webp", "tiff")


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """Settings of the server.

    Attributes:
        host, port: where uvicorn listens (loopback by default).
        workers: images upscaled at the same time (each one a thread running the model).
        queue_size: jobs that may wait for a worker; beyond that a request gets 429.
        max_upload_bytes: largest accepted upload (413 beyond).
        max_pixels: the decompression-bomb guard, as ``--max-pixels`` of ``attnsr upscale``
            (None: ``$ATTNSR_MAX_PIXELS`` or the default; 0 or less: no limit).
        sync_max_pixels: in ``mode=auto`` an input up to this many pixels is answered
            with the image bytes; a larger one with a job id (202).
        result_ttl_s: seconds a finished job and its result are kept.
        token: if set, every ``/v1`` request needs ``Authorization: Bearer <token>``.
        cors_origins: origins allowed to call the API from other pages (none: CORS off).
        tile: tile side in LR pixels, ``"auto"`` or 0, as ``attnsr upscale --tile``.
        device: ``auto``, ``cpu``, ``cuda``, ``mps``.
        max_models: warm model instances kept (least recently used dropped first).
        work_dir: parent folder of the private folder for uploads and results
            (None: the system's temporary folder).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    queue_size: int = 8
    max_upload_bytes: int = 50 * 2**20
    max_pixels: int | None = None
    sync_max_pixels: int = 1_000_000
    result_ttl_s: float = 600.0
    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    tile: int | str = "auto"
    device: str = "auto"
    max_models: int = 4
    work_dir: Path | None = None

    def __post_init__(self) -> None:
        checks = {
            "workers": self.workers >= 1,
            "queue_size": self.queue_size >= 0,
            "max_upload_bytes": self.max_upload_bytes > 0,
            "sync_max_pixels": self.sync_max_pixels >= 0,
            "result_ttl_s": self.result_ttl_s > 0,
            "max_models": self.max_models >= 1,
            "port": 0 <= self.port <= 65535,
            "tile": self.tile == "auto" or (isinstance(self.tile, int) and self.tile >= 0),
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"serve: {name}={getattr(self, name)!r} is out of range")
        if self.token is not None and len(self.token) < 8:
            raise ConfigError("serve: --token must be at least 8 characters")

    @property
    def local_only(self) -> bool:
        """Whether the server is bound to the loopback interface only."""
        return is_loopback(self.host)
