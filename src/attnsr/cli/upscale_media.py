"""The video and animated-image part of ``attnsr upscale``: encoder checks before any
work, one file run with a progress bar in frames (fps, ETA), and what Ctrl-C says.

Imported by :mod:`attnsr.cli.upscale_cmd` when a run has such files (PyAV, torch and
the engine load here, not at start-up).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.progress import Progress, TaskID

from attnsr.cli.app import err_console, fail
from attnsr.data.media import MediaOptions, is_video_path
from attnsr.errors import ConfigError

if TYPE_CHECKING:
    from attnsr.cli.upscale_cmd import RunOptions
    from attnsr.inference.upscale import Upscaler


def check_media(outputs: Iterable[tuple[Path, Path]], media: MediaOptions) -> None:
    """Usage errors (exit 2) before the first file: ``--codec`` unknown or not held by
    an output container, ``--pix-fmt`` not taken by the codec. ``outputs``: (input,
    output) pairs. Without PyAV nothing is checked: each video then fails alone."""
    containers = {dst.suffix.lower(): dst for src, dst in outputs if is_video_path(src)}
    if not containers:
        return
    try:
        from attnsr.data import video_io
    except ImportError:
        return
    try:
        for dst in containers.values():
            codec = video_io.choose_codec(video_io.container_format(dst), media.codec)
            video_io.choose_pix_fmt(codec, "yuv420p", media.pix_fmt)
    except ConfigError as exc:  # one line that names the output
        fail(str(exc) if str(exc).startswith(str(dst)) else f"{dst}: {exc}")


class _FrameBar:
    """Progress in frames of one file: the shared bar's task, with fps in its label."""

    def __init__(self, bar: Progress, task: TaskID, name: str) -> None:
        self.bar, self.task, self.name = bar, task, name
        self.start: tuple[float, int] | None = None
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.start is None:
            self.start = (now, done - 1)
        self.done = done
        t0, d0 = self.start
        fps = (done - d0) / (now - t0) if now > t0 else 0.0
        self.bar.update(self.task, description=f"  {self.name} {fps:.1f} fps",
                        completed=done, total=total or None)


def run_media(up: Upscaler, src: Path, dst: Path, opts: RunOptions, bar: Progress,
              task: TaskID) -> float:
    """Upscale one video or animated image; returns the megapixels written (all
    frames). Ctrl-C on a video says where its completed segments are kept."""
    from attnsr.inference.upscale import upscale_path

    frames = _FrameBar(bar, task, src.name)
    bar.update(task, description=f"  {src.name}", completed=0, total=None)
    try:
        return upscale_path(up, src, dst, quality=opts.quality, max_pixels=opts.max_pixels,
                            software=opts.software, media=opts.media, progress_cb=frames)
    except KeyboardInterrupt:
        if is_video_path(src):
            _interrupted(src, dst, frames.done)
        raise


def _interrupted(src: Path, dst: Path, done: int) -> None:
    from attnsr.inference.video import work_folder

    folder = work_folder(dst)
    where = (f"its completed segments are kept in {folder}; run the same command with "
             "--resume to continue") if folder.is_dir() else "nothing was kept"
    err_console.print(f"[yellow]interrupted:[/] {escape(str(src))}: {done} frames done, "
                      f"{escape(where)}", highlight=False, soft_wrap=True)
