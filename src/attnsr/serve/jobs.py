"""A bounded job queue: ``workers`` threads run jobs, at most ``queue_size`` wait, and a
job that would exceed that is refused (429) instead of piling up in memory. Finished
jobs and their result files are deleted ``ttl_s`` seconds after they finish.

Memory: a waiting job holds only its upload, on disk; the decoded image and the output
exist for running jobs only, so the server holds at most ``workers`` images at a time
whatever the number of requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnsr.serve.catalogue import Choice
from attnsr.serve.errors import ApiError, from_exception
from attnsr.serve.sniff import ImageInfo

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, ERROR, CANCELLED = "queued", "running", "done", "error", "cancelled"


class JobCancelledError(Exception):
    """Raised from the progress callback of a job that was cancelled while running."""


@dataclass(eq=False, kw_only=True)
class Job:
    """One upscale request.

    Attributes:
        id: unguessable id (the job's capability: who knows it may read the result).
        filename: the client's file name (shown, and used for the result's name only).
        info: what the upload is (format, size), from its content.
        choice: the validated model, scale and denoise strength.
        out_ext, quality: output format (by extension) and JPEG/WebP quality.
        input_path: the private copy of the upload (deleted when the job ends).
        tiles_done, tiles_total: progress, in tiles of the tiled forward pass.
        result_path, result_name, media_type: the result file, its download name, type.
        problem: why it failed (status ``error``).
        future: resolved with the job when it ends (done, error or cancelled).
    """

    id: str
    filename: str
    info: ImageInfo
    choice: Choice
    out_ext: str
    quality: int
    input_path: Path
    created: float
    status: str = QUEUED
    tiles_done: int = 0
    tiles_total: int = 0
    started: float | None = None
    finished: float | None = None
    result_path: Path | None = None
    result_name: str = ""
    media_type: str = ""
    output_size: tuple[int, int] | None = None
    problem: ApiError | None = None
    cancel: bool = False
    future: Future[Job] = field(default_factory=Future)

    def progress(self, done: int, total: int) -> None:
        """The tiling progress callback; stops a cancelled job at the next tile."""
        if self.cancel:
            raise JobCancelledError(self.id)
        self.tiles_done, self.tiles_total = done, total

    def eta_s(self, now: float) -> float | None:
        """Seconds left, from the time per tile so far (None before the first tile)."""
        if self.status != RUNNING or self.started is None or self.tiles_done <= 0:
            return None
        per_tile = (now - self.started) / self.tiles_done
        return round(per_tile * max(self.tiles_total - self.tiles_done, 0), 2)

    def files(self) -> list[Path]:
        return [p for p in (self.input_path, self.result_path) if p is not None]


class JobQueue:
    """Runs ``process(job)`` on ``workers`` threads; at most ``workers + queue_size``
    jobs are queued or running at once.

    ``process`` fills in the job's result (``result_path`` ...); an exception marks the
    job failed with :func:`~attnsr.serve.errors.from_exception`'s status.
    """

    def __init__(self, process: Callable[[Job], None], *, workers: int, queue_size: int,
                 ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.workers, self.queue_size, self.ttl_s = workers, queue_size, ttl_s
        self._process, self._clock = process, clock
        self._cond = threading.Condition()
        self._pending: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._running = 0
        self._closed = False
        self._mean_s = 1.0  # running mean of job durations, for Retry-After
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, name=f"attnsr-worker-{i}",
                                          daemon=True) for i in range(workers)]
        self._threads.append(threading.Thread(target=self._janitor, name="attnsr-janitor",
                                              daemon=True))
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ clients
    def submit(self, job: Job) -> None:
        """Queue ``job``, or raise :class:`ApiError` 429 (full) / 503 (shutting down)."""
        with self._cond:
            if self._closed:
                raise ApiError(503, "shutting_down", "the server is shutting down")
            if len(self._pending) + self._running >= self.workers + self.queue_size:
                wait = max(1, round(self._mean_s * (len(self._pending) + 1) / self.workers))
                raise ApiError(429, "queue_full", f"the server is busy ({self._running} "
                               f"running, {len(self._pending)} waiting); retry in {wait} s",
                               headers={"Retry-After": str(wait)})
            self._pending.append(job)
            self._jobs[job.id] = job
            self._cond.notify()

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """1 for the next job to start, 0 when not waiting."""
        with self._cond:
            try:
                return self._pending.index(job) + 1
            except ValueError:
                return 0

    def discard(self, job: Job) -> None:
        """Forget ``job`` now: a waiting job is cancelled, a running one stops at its next
        tile, and its files are deleted."""
        with self._cond:
            self._jobs.pop(job.id, None)
            waiting = job in self._pending
            if waiting:
                self._pending.remove(job)
            job.cancel = True
        if waiting:
            self._end(job, CANCELLED)
        elif job.status != RUNNING:
            _delete(job.files())

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {"workers": self.workers, "running": self._running,
                    "queued": len(self._pending), "queue_size": self.queue_size,
                    "jobs": len(self._jobs)}

    # ------------------------------------------------------------------ expiry
    def sweep(self, now: float | None = None) -> int:
        """Delete jobs that finished more than ``ttl_s`` ago, with their files."""
        now = self._clock() if now is None else now
        with self._cond:
            old = [j for j in self._jobs.values()
                   if j.finished is not None and now - j.finished >= self.ttl_s]
            for job in old:
                del self._jobs[job.id]
        for job in old:
            _delete(job.files())
        return len(old)

    def _janitor(self) -> None:
        interval = min(max(self.ttl_s / 4, 0.5), 30.0)
        while not self._stop.wait(interval):
            try:
                self.sweep()
            except Exception:  # keep sweeping; a failure here must not stop the server
                log.exception("result expiry failed")

    # ------------------------------------------------------------------ workers
    def _next(self) -> Job | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            job = self._pending.popleft()
            self._running += 1
            job.status, job.started = RUNNING, self._clock()
            return job

    def _work(self) -> None:
        while (job := self._next()) is not None:
            status = DONE
            try:
                self._process(job)
            except JobCancelledError:
                status = CANCELLED
            except BaseException as exc:  # noqa: BLE001 (a job's failure is its answer)
                job.problem = from_exception(exc, job.filename)
                status = ERROR
                if job.problem.status >= 500:
                    log.error("job %s (%s) failed", job.id, job.filename, exc_info=exc)
            with self._cond:
                self._running -= 1
                elapsed = self._clock() - (job.started or 0.0)
                self._mean_s = 0.8 * self._mean_s + 0.2 * elapsed
            self._end(job, status)

    def _end(self, job: Job, status: str) -> None:
        job.status, job.finished = status, self._clock()
        _delete([job.input_path])
        if job.cancel:  # discarded while running: nobody will ask for the result
            _delete(job.files())
        if not job.future.done():
            job.future.set_result(job)

    def close(self, timeout: float = 10.0) -> None:
        """Stop: waiting jobs are cancelled, running ones stop at their next tile."""
        with self._cond:
            self._closed = True
            waiting = list(self._pending)
            self._pending.clear()
            for job in self._jobs.values():
                job.cancel = True
            self._cond.notify_all()
        self._stop.set()
        for job in waiting:
            self._end(job, CANCELLED)
        for t in self._threads:
            t.join(timeout)


def _delete(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
