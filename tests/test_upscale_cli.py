"""``attnsr upscale``: inputs (files, folders, globs, recursive), output naming, skip and
overwrite rules, bad files reported and skipped, exit codes, summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from attnsr.cli import _load_commands
from attnsr.cli.app import app

_load_commands()
BASE = ["--model", "bicubic", "--scale", "2", "--tile", "0", "--device", "cpu",
        "--no-progress"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["upscale", *args])
    return result.exit_code, result.output


def make_png(path: Path, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    arr = (np.random.default_rng(0).random((size[1], size[0], channels)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    make_png(tmp_path / "a.png")
    make_png(tmp_path / "b.png", mode="RGBA")
    make_png(tmp_path / "sub" / "c.png")
    (tmp_path / "notes.txt").write_text("not an image, not listed")
    return tmp_path


def test_single_file_default_output_next_to_input(folder: Path) -> None:
    code, out = run(str(folder / "a.png"), *BASE)
    assert code == 0, out
    with Image.open(folder / "a_x2.png") as im:
        assert im.size == (24, 20)
    assert "upscaled 1 image x2" in out and "0 failed" in out


def test_output_file_and_folder(folder: Path) -> None:
    code, _ = run(str(folder / "a.png"), "-o", str(folder / "out" / "big.png"), *BASE)
    assert code == 0 and (folder / "out" / "big.png").is_file()
    for _ in range(2):  # the second run finds res/ inside the input folder: not an input
        code, out = run(str(folder), "-o", str(folder / "res"), "--recursive", *BASE)
    # out/big.png is an attnsr output (its metadata says so): never taken as an input
    assert code == 0 and "3 skipped" in out and "1 attnsr output(s)" in out
    names = sorted(p.relative_to(folder / "res").as_posix() for p in (folder / "res").rglob("*"))
    assert names == ["a_x2.png", "b_x2.png", "sub", "sub/c_x2.png"]


def test_folder_without_recursive_skips_subfolders(folder: Path) -> None:
    code, _ = run(str(folder), "-o", str(folder / "flat"), *BASE)
    assert code == 0
    assert sorted(p.name for p in (folder / "flat").iterdir()) == ["a_x2.png", "b_x2.png"]


def test_glob_and_format_and_suffix(folder: Path) -> None:
    code, _ = run(str(folder / "*.png"), "-o", str(folder / "g"), "--format", "jpg",
                  "--suffix", "_big", "--quality", "80", *BASE)
    assert code == 0
    assert sorted(p.name for p in (folder / "g").iterdir()) == ["a_big.jpg", "b_big.jpg"]


def test_existing_output_skipped_unless_overwrite(folder: Path) -> None:
    dst = folder / "a_x2.png"
    dst.write_bytes(b"old")
    code, out = run(str(folder / "a.png"), *BASE)
    assert code == 0 and dst.read_bytes() == b"old"
    assert "skipped" in out and "exists" in out and "1 skipped" in out
    code, _ = run(str(folder / "a.png"), "--overwrite", *BASE)
    assert code == 0 and dst.read_bytes() != b"old"


def test_input_never_overwritten_without_flag(folder: Path) -> None:
    before = (folder / "a.png").read_bytes()
    code, out = run(str(folder / "a.png"), "--suffix", "", *BASE)
    assert code == 0 and "would overwrite an input" in out
    assert (folder / "a.png").read_bytes() == before


def test_bad_files_reported_and_others_continue(folder: Path) -> None:
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("hello")
    good = (folder / "a.png").read_bytes()
    (folder / "trunc.png").write_bytes(good[: len(good) // 2])
    code, out = run(str(folder), "-o", str(folder / "o"), *BASE)
    assert code == 1
    for name in ("empty.png", "text.png", "trunc.png"):
        lines = [ln for ln in out.splitlines() if name in ln]
        assert len(lines) == 1 and lines[0].startswith("failed:"), out
    assert (folder / "o" / "a_x2.png").is_file() and (folder / "o" / "b_x2.png").is_file()
    assert "upscaled 2 images" in out and "3 failed" in out


def test_too_large_image_is_a_failure(folder: Path) -> None:
    code, out = run(str(folder / "a.png"), "--max-pixels", "50", *BASE)
    assert code == 1 and "above the limit" in out


def test_usage_errors_exit_2(folder: Path) -> None:
    assert run(str(folder / "nothing*.png"), *BASE)[0] == 2
    assert run(str(folder / "a.png"), "--model", "no_such_model", "--scale", "2")[0] == 2
    assert run(str(folder / "a.png"), *BASE, "--tile", "big")[0] == 2
    assert run(str(folder / "a.png"), *BASE, "--format", "gif")[0] == 2


def test_missing_input_among_good_ones_fails_with_1(folder: Path) -> None:
    code, out = run(str(folder / "a.png"), str(folder / "missing.png"), *BASE)
    assert code == 1 and "missing.png" in out
    assert (folder / "a_x2.png").is_file()
