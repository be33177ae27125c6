"""``attnsr serve``: the web page and the HTTP API (FastAPI + uvicorn, the ``serve``
extra). FastAPI, uvicorn and torch are imported when the command runs, not before."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from attnsr.cli.app import app, console, err_console, fail, handle_errors, setup_logging
from attnsr.serve.config import ServeConfig, is_loopback

if TYPE_CHECKING:
    from fastapi import FastAPI

TOKEN_ENV = "ATTNSR_SERVE_TOKEN"


def exposure_warning(host: str, token: str | None) -> str:
    """The warning for a server other machines can reach ('' for a loopback host)."""
    if is_loopback(host):
        return ""
    text = (f"--host {host} makes the server reachable from other machines on the "
            "network (anyone who can connect may upload images and use this CPU/GPU)")
    return text + ("; requests to /v1 need the token." if token else
                   f"; set --token (or ${TOKEN_ENV}) to require one.")


def run_server(application: FastAPI, host: str, port: int) -> None:
    """Serve ``application`` with uvicorn until interrupted (a seam for tests)."""
    import uvicorn

    uvicorn.run(application, host=host, port=port, log_level="info", access_log=False)


def _tile(tile: str) -> int | str:
    if tile == "auto":
        return tile
    if not tile.isdigit():
        fail(f"--tile {tile!r}: use auto, 0 (no tiling) or a size in pixels")
    return int(tile)


@app.command("serve")
@handle_errors
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on; "
                             "0.0.0.0: every interface (other machines can connect)."),
    port: int = typer.Option(8000, "--port", "-p", help="TCP port."),
    workers: int = typer.Option(1, "--workers", min=1, help="Images upscaled at the same "
                                "time (each a thread; with --threads, share the cores)."),
    queue: int = typer.Option(8, "--queue", min=0, help="Jobs that may wait; beyond "
                              "that requests get 429 (retry later)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads "
                                          "for the models (default: one per core)."),
    max_upload_mb: float = typer.Option(50.0, "--max-upload-mb", min=0.001,
                                        help="Largest upload in MiB (413 beyond)."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Refuse larger "
                                             "inputs (default: $ATTNSR_MAX_PIXELS or "
                                             "178,956,970; 0: no limit)."),
    sync_max_pixels: int = typer.Option(1_000_000, "--sync-max-pixels", min=0,
                                        help="Inputs up to this many pixels get the image "
                                        "in the response; larger ones a job id."),
    result_ttl: float = typer.Option(600.0, "--result-ttl", min=1.0, help="Seconds "
                                     "results are kept after they finish."),
    token: Optional[str] = typer.Option(None, "--token", envvar=TOKEN_ENV, help="Require "
                                        "'Authorization: Bearer TOKEN' on /v1 (open the "
                                        "page as http://HOST:PORT/#token=TOKEN)."),
    cors_origin: list[str] = typer.Option([], "--cors-origin", help="Allow pages from "
                                          "this origin to call the API (repeatable; "
                                          "default: CORS off)."),
    tile: str = typer.Option("auto", "--tile", help="Tile side in LR pixels, auto or 0."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Where the private "
                                            "folder for uploads and results is made "
                                            "(default: the system's temporary folder)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging (attnsr's)."),
) -> None:
    """Serve a web page and an HTTP API for upscaling (http://127.0.0.1:8000/)."""
    setup_logging(verbose)
    config = ServeConfig(host=host, port=port, workers=workers, queue_size=queue,
                         max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels,
                         sync_max_pixels=sync_max_pixels, result_ttl_s=result_ttl,
                         token=token or None, cors_origins=tuple(cors_origin),
                         tile=_tile(tile), device=device, work_dir=work_dir)
    warning = exposure_warning(host, config.token)
    if warning:
        err_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False,
                          soft_wrap=True)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from attnsr.serve.app import create_app

    application = create_app(config)
    shown = f"[{host}]" if ":" in host else host
    hint = "#token=..." if config.token else ""
    console.print(f"attnsr serve: http://{shown}:{port}/{hint} (API docs: /docs; "
                  f"{workers} worker(s), queue {queue}; Ctrl+C stops)", highlight=False)
    try:
        run_server(application, host, port)
    finally:  # uvicorn's shutdown already did it, unless it never started
        application.state.service.close()
