"""``create_app(config)``: the FastAPI application of ``attnsr serve``.

Routes: ``/`` (the page, ``static/``), ``/healthz``, ``/v1/models``, ``POST /v1/upscale``,
``/v1/jobs/{id}`` (+ ``/result``, ``DELETE``), and FastAPI's ``/docs`` and
``/openapi.json``. Every error is JSON (:mod:`attnsr.serve.errors`). The work itself is
:class:`~attnsr.serve.service.Service`'s; this module only speaks HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from attnsr import __version__
from attnsr.serve import schemas
from attnsr.serve.catalogue import catalogue
from attnsr.serve.config import LOOPBACK_NAMES, ServeConfig
from attnsr.serve.errors import ApiError
from attnsr.serve.guard import FORM_OVERHEAD, Guard
from attnsr.serve.jobs import CANCELLED, DONE, ERROR, Job
from attnsr.serve.service import Options, Service

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.ErrorResponse, "description": why} for status, why in {
        400: "empty upload, bad Host header", 401: "missing or wrong token",
        404: "unknown or expired job", 413: "upload or pixel count above the limits",
        415: "not an image (content sniffed, not the name)",
        422: "bad option, unknown model, unreadable image", 429: "queue full: retry later",
        503: "shutting down"}.items()}
DESCRIPTION = """Upscale images with attnsr's models. Small images come back in the
response; large ones (or `mode=async`) get a job to poll. Errors are
`{"error": {"status", "code", "message"}}`. See docs/serve.md."""


def create_app(config: ServeConfig | None = None) -> FastAPI:
    """The application for ``config`` (default settings if None); its workers start now
    and stop, deleting every upload and result, when the application shuts down."""
    config = config or ServeConfig()
    service = Service(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(title="attnsr", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.service = service
    _error_handlers(app)
    app.include_router(api)
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    hosts = (*LOOPBACK_NAMES, config.host.strip("[]").lower()) if config.local_only else None
    app.add_middleware(Guard, allowed_hosts=hosts, token=config.token,
                       max_body=config.max_upload_bytes + FORM_OVERHEAD)
    if config.cors_origins:  # outermost: answers preflights before the token check
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"],
                           expose_headers=["Content-Disposition", "Retry-After", "Location"])
    return app


# --------------------------------------------------------------------------- errors
def _problem_response(problem: ApiError) -> JSONResponse:
    return JSONResponse(problem.body(), status_code=problem.status, headers=problem.headers)


def _error_handlers(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return _problem_response(exc)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _problem_response(ApiError(exc.status_code, code, str(exc.detail),
                                          dict(exc.headers or {})))

    async def on_invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = [f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors()]
        return _problem_response(ApiError(422, "invalid_request", "; ".join(parts)))

    async def on_crash(_: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", exc_info=exc)
        return _problem_response(ApiError(500, "server_error", "internal error "
                                          f"({type(exc).__name__}); see the server's log"))

    app.add_exception_handler(ApiError, on_problem)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(Exception, on_crash)


# --------------------------------------------------------------------------- page
pages = APIRouter(include_in_schema=False)


@pages.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


# --------------------------------------------------------------------------- helpers
def _service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def _store(src: BinaryIO, dst: Path, limit: int, filename: str) -> None:
    """Copy an upload into a new private file (0600), refusing more than ``limit`` bytes."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
        size = out.tell()
    if size > limit:
        dst.unlink(missing_ok=True)
        raise ApiError(413, "too_large", f"{filename}: {size} bytes, above the upload "
                       f"limit of {limit} bytes")


def _result(service: Service, job: Job, *, forget: bool) -> Response:
    """The answer for a finished job: its image, or its error; ``forget``: the job is
    deleted once answered (a synchronous request)."""
    if job.status != DONE or job.result_path is None:
        if forget:
            service.queue.discard(job)
        if job.status == ERROR and job.problem is not None:
            return _problem_response(job.problem)
        return _problem_response(ApiError(503, "cancelled", f"{job.filename}: the job was "
                                          "cancelled (server shutting down, or deleted)"))
    task = BackgroundTask(service.queue.discard, job) if forget else None
    return FileResponse(job.result_path, media_type=job.media_type, filename=job.result_name,
                        background=task, headers={"X-Attnsr-Model": job.choice.name,
                                                  "X-Attnsr-Scale": str(job.choice.scale),
                                                  "Cache-Control": "no-store"})


def _job_or_404(service: Service, job_id: str) -> Job:
    job = service.queue.get(job_id)
    if job is None:
        raise ApiError(404, "no_such_job", f"no job {job_id[:40]!r}: unknown, deleted, or "
                       f"its result expired ({service.config.result_ttl_s:g} s after it "
                       "finished)")
    return job


# --------------------------------------------------------------------------- API
api = APIRouter()
IMAGE_TYPES = {"image/png": {}, "image/jpeg": {}, "image/webp": {}, "image/tiff": {}}


@api.get("/healthz", response_model=schemas.Health, tags=["server"])
async def healthz(service: Service = Depends(_service)) -> dict[str, Any]:
    """Liveness and load: workers, running and queued jobs, warm models."""
    return {"status": "ok", "version": __version__, **service.queue.stats(),
            "models_loaded": service.pool.loaded()}


@api.get("/v1/models", response_model=schemas.ModelsResponse, tags=["models"],
         responses={401: ERRORS[401]})
async def models() -> dict[str, Any]:
    """Models that have weights here (plus the bicubic baseline): scales, the inputs
    they suit, speed class, whether `denoise` applies, defaults."""
    entries = await run_in_threadpool(catalogue)
    return {"models": [m.to_json() for m in entries], "default_scale": 4}


@api.post("/v1/upscale", tags=["upscale"], status_code=200, responses={
    200: {"content": IMAGE_TYPES, "description": "the upscaled image"},
    202: {"model": schemas.JobResponse, "description": "a job to poll (large image, or "
          "mode=async)"}, **ERRORS})
async def upscale(
    image: UploadFile = File(..., description="PNG, JPEG, WebP, TIFF or BMP (the content "
                             "decides, not the name)."),
    model: str | None = Form(None, description="A name from /v1/models; default: the "
                             "bundled model for the scale."),
    scale: int | None = Form(None, ge=2, le=4, description="2, 3 or 4; default: the "
                             "model's (4 without a model)."),
    denoise: float | None = Form(None, ge=0, le=1, description="0 keeps grain, 1 removes "
                                 "noise/JPEG (models with denoise: true)."),
    fmt: str = Form("same", alias="format", description="same, png, jpg, webp, tiff."),
    quality: int = Form(95, ge=1, le=100, description="JPEG/WebP quality."),
    mode: str = Form("auto", description="auto (bytes for small images, a job for large "
                     "ones), sync (always bytes), async (always a job)."),
    service: Service = Depends(_service),
) -> Response:
    """Upscale one image: the image bytes, or 202 with a job to poll."""
    filename = (image.filename or "image")[:200]
    job_id, path = service.upload_path()
    await run_in_threadpool(_store, image.file, path, service.config.max_upload_bytes,
                            filename)
    opts = Options(model=model, scale=scale, denoise=denoise, format=fmt, quality=quality,
                   mode=mode)
    job = await run_in_threadpool(service.accept, job_id, path, filename, opts)
    if not service.is_sync(job, mode):
        return JSONResponse(service.describe(job), status_code=202,
                            headers={"Location": f"/v1/jobs/{job.id}"})
    await asyncio.wrap_future(job.future)
    return _result(service, job, forget=True)


@api.get("/v1/jobs/{job_id}", response_model=schemas.JobResponse, tags=["jobs"],
         responses={404: ERRORS[404], 401: ERRORS[401]})
async def job_status(job_id: str, service: Service = Depends(_service)) -> dict[str, Any]:
    """Status, tile progress, ETA and (when done) where the result is."""
    return service.describe(_job_or_404(service, job_id))


@api.get("/v1/jobs/{job_id}/result", tags=["jobs"], responses={
    200: {"content": IMAGE_TYPES, "description": "the upscaled image"},
    409: {"model": schemas.ErrorResponse, "description": "not finished yet"}, **ERRORS})
async def job_result(job_id: str, service: Service = Depends(_service)) -> Response:
    """The result of a finished job (kept until it expires or is deleted)."""
    job = _job_or_404(service, job_id)
    if job.status not in (DONE, ERROR, CANCELLED):
        raise ApiError(409, "not_ready", f"{job.filename}: the job is {job.status}; poll "
                       f"/v1/jobs/{job.id}", headers={"Retry-After": "1"})
    return _result(service, job, forget=False)


@api.delete("/v1/jobs/{job_id}", status_code=204, tags=["jobs"],
            responses={404: ERRORS[404]})
async def job_delete(job_id: str, service: Service = Depends(_service)) -> Response:
    """Cancel a job (a running one stops at its next tile) and delete its files."""
    service.queue.discard(_job_or_404(service, job_id))
    return Response(status_code=204)
