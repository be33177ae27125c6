"""Which files an upscale run reads and writes: inputs (files, folders, globs) as jobs,
attnsr's own earlier outputs among them, output names, and why an output is skipped.

Shared by ``attnsr upscale`` on one machine and the batch engine
(:mod:`attnsr.batch`), so both name and skip files the same way.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from attnsr.data.io import IMAGE_EXTENSIONS, is_attnsr_output
from attnsr.data.media import MEDIA_EXTENSIONS, VIDEO_FORMATS, media_extension
from attnsr.errors import ConfigError

FORMATS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tif",
           "tif": ".tif"}
_GLOB_CHARS = set("*?[")
INPUT_EXTENSIONS = IMAGE_EXTENSIONS + MEDIA_EXTENSIONS  # images, animations, videos


@dataclass(frozen=True)
class Job:
    """One image: ``src`` and, when it came from a folder or glob, the ``base`` folder
    its relative path is kept under (in ``-o``)."""

    src: Path
    base: Path | None = None


# --------------------------------------------------------------------------- inputs
def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in INPUT_EXTENSIONS


def glob_base(pattern: str) -> Path:
    """The folder part of ``pattern`` before the first glob character."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if _GLOB_CHARS & set(p))]]
    return Path(*fixed) if fixed else Path(".")


def expand_inputs(
    inputs: list[str], recursive: bool, exclude: Path | None = None
) -> tuple[list[Job], list[str]]:
    """Jobs for files, folders (image files in them; all levels with ``recursive``) and
    globs (``**`` with ``recursive``), de-duplicated in order; plus the inputs that
    matched nothing. Folder and glob matches inside ``exclude`` (the output folder) are
    left out, so re-runs do not upscale earlier results."""
    jobs: list[Job] = []
    missing: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = path.rglob("*") if recursive else path.iterdir()
            found = [Job(f, path) for f in sorted(files) if _is_image(f)]
        elif path.exists():
            found = [Job(path)]
        elif _GLOB_CHARS & set(item):
            base = glob_base(item)
            found = [Job(Path(f), base) for f in sorted(glob.glob(item, recursive=recursive))
                     if _is_image(Path(f))]
        else:
            found = []
        if not found:
            missing.append(item)
        jobs.extend(found)
    seen: set[Path] = set()
    if exclude is not None:
        seen.update(j.src.resolve() for j in jobs
                    if j.base is not None and j.src.resolve().is_relative_to(exclude.resolve()))
    unique = [j for j in jobs if not (j.src.resolve() in seen or seen.add(j.src.resolve()))]
    return unique, missing


def _sibling_source(path: Path, suffix: str) -> bool:
    """``a_x4.png`` next to an ``a.*`` image: named like this tool's output of it."""
    stem = path.stem
    if not suffix or not stem.endswith(suffix) or stem == suffix:
        return False
    base = stem[: -len(suffix)]
    return any(p.is_file() for p in path.parent.glob(f"{glob.escape(base)}.*")
               if p.suffix.lower() in INPUT_EXTENSIONS and p != path)


def drop_own_outputs(jobs: list[Job], suffix: str) -> tuple[list[Job], list[Job]]:
    """Split folder/glob matches into (inputs, attnsr outputs): a file is an output of
    this tool when its metadata carries attnsr's marker, or when it is named like one
    (``<stem><suffix>``) next to its source. Files named on the command line are kept."""
    keep, own = [], []
    for job in jobs:
        mine = job.base is not None and (is_attnsr_output(job.src)
                                         or _sibling_source(job.src, suffix))
        (own if mine else keep).append(job)
    return keep, own


# --------------------------------------------------------------------------- outputs
def _extension(src: Path, fmt: str) -> str:
    media = media_extension(src, fmt)  # videos and GIF/APNG
    if media is not None:
        return media
    if fmt == "same" or fmt in VIDEO_FORMATS:  # a container format applies to videos only
        ext = src.suffix.lower()
        return ext if ext in IMAGE_EXTENSIONS else ".png"
    return FORMATS[fmt]


def output_path(job: Job, out: Path | None, *, single: bool, suffix: str, fmt: str) -> Path:
    """Where ``job``'s result goes: ``out`` itself when it names a file for a single
    input, else ``<out or the input's folder>/[relative folder/]<stem><suffix><ext>``."""
    if out is not None and single and not out.is_dir() and out.suffix.lower() in INPUT_EXTENSIONS:
        return out
    name = f"{job.src.stem}{suffix}{_extension(job.src, fmt)}"
    if out is None:
        return job.src.parent / name
    rel = job.src.parent.relative_to(job.base) if job.base is not None else Path()
    return out / rel / name


def single_output(jobs: list[Job], out: Path | None) -> bool:
    """Whether ``jobs`` are one named file (then ``out`` may name the output file).
    Raises :class:`ConfigError` when ``out`` names one file but several images matched."""
    single = len(jobs) == 1 and jobs[0].base is None
    if (out is not None and not single and not out.is_dir()
            and out.suffix.lower() in INPUT_EXTENSIONS):
        raise ConfigError(f"-o {out}: names one file, but {len(jobs)} images matched; "
                          "give a folder")
    return single


def why_skip(dst: Path, inputs: set[Path], overwrite: bool) -> str:
    """Why ``dst`` is not written ('' when it is): it would replace an input, or it
    exists (complete: every output is written atomically), unless ``overwrite``."""
    if overwrite:
        return ""
    if dst.resolve() in inputs:
        return f"{dst}: would overwrite an input image (use --overwrite)"
    if dst.exists():
        return f"{dst}: exists (use --overwrite)"
    return ""

