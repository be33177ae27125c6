"""The JSON bodies of the HTTP API, as pydantic models (they make the OpenAPI docs at
``/docs``; :class:`~attnsr.serve.service.Service` builds the same fields as dicts)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    status: int = Field(examples=[413])
    code: str = Field(examples=["too_many_pixels"])
    message: str = Field(examples=["photo.png: image is 20000x20000 = 400000000 pixels, "
                                   "above the server's limit of 178956970 pixels"])


class ErrorResponse(BaseModel):
    """Every error: a status, a stable code and one line for people."""

    error: ErrorBody


class ModelEntry(BaseModel):
    name: str = Field(description="What to send as `model` (aliases are accepted too).")
    aliases: list[str]
    scales: list[int]
    degradation: str = Field(description="bicubic (clean), real (photos) or none.")
    description: str
    speed_class: str = Field(description="fast, medium or slow on a CPU; unknown.")
    cpu_mp_per_s: float | None = Field(description="Measured output MP/s, 256x256 in, "
                                       "2 CPU threads.")
    params: int | None
    denoise: bool = Field(description="Whether `denoise` (0..1) applies.")
    default_for: list[int] = Field(description="Scales it is the default model for.")


class ModelsResponse(BaseModel):
    models: list[ModelEntry]
    default_scale: int


class Progress(BaseModel):
    tiles_done: int
    tiles_total: int
    fraction: float


class InputInfo(BaseModel):
    format: str
    width: int
    height: int


class OutputInfo(BaseModel):
    width: int
    height: int
    media_type: str


class JobResponse(BaseModel):
    id: str
    status: str = Field(description="queued, running, done, error or cancelled.")
    filename: str
    model: str
    scale: int
    denoise: float | None
    input: InputInfo
    progress: Progress
    queue_position: int = Field(description="1: next to start; 0: not waiting.")
    eta_s: float | None = Field(description="Seconds left (from the time per tile).")
    result_url: str | None
    result_filename: str
    error: ErrorBody | None
    output: OutputInfo | None = None
    expires_in_s: float | None = None


class Health(BaseModel):
    status: str
    version: str
    workers: int
    running: int
    queued: int
    queue_size: int
    jobs: int
    models_loaded: list[str]
