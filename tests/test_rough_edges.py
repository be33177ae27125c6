"""The rough edges a new user hit, each with the behaviour it has now: exit codes,
messages, outputs (not just "it runs")."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

import attnsr
from attnsr.data.io import is_attnsr_output, read_image
from attnsr.inference.upscale import Upscaler

ROOT = Path(__file__).resolve().parents[1]


def _app() -> Any:
    from attnsr.cli import _load_commands
    from attnsr.cli.app import app

    _load_commands()
    return app


def _image(path: Path, h: int = 12, w: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _upscale(*args: str) -> Any:
    return CliRunner().invoke(_app(), ["upscale", *args, "-m", "bicubic", "-s", "2",
                                       "--no-progress"])


def _count_runs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The images the CLI upscales (every still goes through ``Upscaler.write_upscaled``,
    streamed or not)."""
    calls: list[Any] = []
    real = Upscaler.write_upscaled

    def counting(self: Upscaler, img: Any, dst: Any, **kwargs: Any) -> Any:
        calls.append(img.path)
        return real(self, img, dst, **kwargs)

    monkeypatch.setattr(Upscaler, "write_upscaled", counting)
    return calls


# --------------------------------------------------------------------------- inputs
def test_rerun_never_upscales_its_own_outputs(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    scans = tmp_path / "scans"
    (scans / "sub").mkdir(parents=True)
    _image(scans / "a.png")
    _image(scans / "sub" / "b.png", seed=1)
    assert _upscale(str(scans), "-r").exit_code == 0
    outputs = sorted(p.name for p in scans.rglob("*_x2.png"))
    assert outputs == ["a_x2.png", "b_x2.png"]
    assert all(is_attnsr_output(p) for p in scans.rglob("*_x2.png"))  # the marker
    calls = _count_runs(monkeypatch)
    again = _upscale(str(scans), "-r", "--overwrite")
    assert again.exit_code == 0, again.output
    assert sorted(Path(c).name for c in calls) == ["a.png", "b.png"]
    assert "2 attnsr output(s) among the inputs" in " ".join(again.output.split())
    assert not list(scans.rglob("*_x2_x2.png"))


def test_own_outputs_are_recognised_by_marker_even_when_renamed(tmp_path: Path,
                                                                monkeypatch) -> None:
    _image(tmp_path / "a.png")
    assert _upscale(str(tmp_path / "a.png"), "-o", str(tmp_path / "big.png")).exit_code == 0
    calls = _count_runs(monkeypatch)
    result = _upscale(str(tmp_path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert [Path(c).name for c in calls] == ["a.png"]  # big.png carries the marker
    calls.clear()  # named explicitly, an output is upscaled again: the user asked for it
    assert _upscale(str(tmp_path / "big.png"), "-o", str(tmp_path / "o2")).exit_code == 0
    assert [Path(c).name for c in calls] == ["big.png"]


def test_unwritable_output_folder_fails_before_any_image(tmp_path: Path,
                                                         monkeypatch) -> None:
    for i in range(3):
        _image(tmp_path / f"{i}.png", seed=i)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should go")
    calls = _count_runs(monkeypatch)
    result = _upscale(str(tmp_path), "-o", str(blocker / "out"))
    assert result.exit_code == 2
    assert "output folder is not writable" in result.output and calls == []
    assert len(result.output.strip().splitlines()) == 1


def test_output_file_name_with_several_inputs_is_refused(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.png", seed=1)
    result = _upscale(str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o",
                      str(tmp_path / "two.png"))
    assert result.exit_code == 2
    assert "names one file, but 2 images matched" in " ".join(result.output.split())
    assert not (tmp_path / "two.png").exists()


def test_animated_gif_is_upscaled_frame_by_frame(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((8, 10, 3), v, np.uint8)) for v in (10, 200, 90)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:],
                   duration=100, loop=0)
    assert read_image(tmp_path / "anim.gif").n_frames == 3
    result = _upscale(str(tmp_path / "anim.gif"), "-o", str(tmp_path / "o.png"))
    assert result.exit_code == 0
    with Image.open(tmp_path / "o.png") as out:  # an animated PNG (tests/test_video.py)
        assert out.n_frames == 3 and out.size == (20, 16) and out.info.get("loop") == 0


# --------------------------------------------------------------------------- options
def test_bf16_on_cpu_is_warned_about(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["upscale", str(_image(tmp_path / "a.png")),
                                         "-m", "attnsr-x2", "--precision", "bf16",
                                         "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0
    assert "emulated and about 3x slower" in " ".join(result.output.split())


def test_tile_below_the_exact_size_is_raised_with_a_warning(caplog) -> None:
    lr = np.random.default_rng(0).integers(0, 256, (40, 44, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING):
        up = Upscaler("attnsr-x2", tile=16, device="cpu")
    assert up.tile == up.min_exact_tile() > 16
    assert "--tile 16 is smaller than" in caplog.text
    whole = Upscaler("attnsr-x2", tile=0, device="cpu")
    assert np.array_equal(up(lr), whole(lr))  # the guarantee holds


def test_threads_option_sets_torch_threads(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        assert _upscale(str(_image(tmp_path / "a.png")), "--threads", "1").exit_code == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_one_line_per_file_when_not_a_terminal(tmp_path: Path) -> None:
    for i in range(2):
        _image(tmp_path / f"{i}.png", seed=i)
    result = _upscale(str(tmp_path), "-o", str(tmp_path / "out"))
    lines = [ln for ln in result.output.splitlines() if " -> " in ln]
    assert len(lines) == 2 and all("MP in" in ln for ln in lines)


def test_verbose_is_attnsr_debug_only(tmp_path: Path) -> None:
    """``-v`` must not flood the screen with Pillow's DEBUG STREAM lines."""
    img = _image(tmp_path / "a.png")
    proc = subprocess.run([sys.executable, "-m", "attnsr", "upscale", str(img), "-m",
                           "bicubic", "-s", "2", "-v", "--no-progress", "-o",
                           str(tmp_path / "o.png")], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "STREAM" not in proc.stderr and "PIL" not in proc.stderr


def test_help_does_not_import_torch() -> None:
    code = ("import sys\nfrom attnsr.cli import _load_commands, app\n_load_commands()\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"  # `attnsr --help` and usage errors stay fast


# --------------------------------------------------------------------------- API
def test_api_keeps_16_bit_colour(tmp_path: Path) -> None:
    rgb16 = (np.random.default_rng(0).random((8, 10, 3)) * 65535).astype(np.uint16)
    from attnsr.data.io import write_image

    path = write_image(tmp_path / "rgb16.png", rgb16, bit_depth=16)
    out = attnsr.upscale(path, model="bicubic", scale=2)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint16 and out.shape == (16, 20, 3)
    assert len(np.unique(out)) > 256  # the data kept its depth
    gray8 = attnsr.upscale(_image(tmp_path / "a.png"), model="bicubic", scale=2)
    assert isinstance(gray8, Image.Image)  # 8-bit files still come back as PIL


# --------------------------------------------------------------------------- bench
def test_bench_table_never_cuts_numbers() -> None:
    from attnsr.bench import BenchResult
    from attnsr.cli.bench_cmd import results_table

    rows = [BenchResult(model="a_rather_long_model_name_x4", params=12_345_678,
                        macs_720p=987_654_321_000, macs_input=12_345_678_900,
                        latency_ms=123_456.789, latency_min_ms=98_765.4,
                        peak_memory_mib=23_456.7, output_mpix_per_s=0.123)]
    buf = io.StringIO()
    Console(file=buf, width=80, color_system=None).print(results_table(rows, "t"))
    text = buf.getvalue()
    for number in ("12.346M", "987.7", "12.3", "123,456.8", "98,765.4", "23,456.7", "0.123"):
        assert number in text, (number, text)


def test_bench_reports_progress_with_eta(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["bench", "-m", "attnsr-x2", "--in-process",
                                         "--runs", "1", "--warmup", "0", "--size", "8x8",
                                         "-s", "2", "--json", "-"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "benchmarking bicubic (1/2)" in text
    assert "benchmarking attnsr-x2 (2/2, ETA " in text
    data = json.loads(text[text.index("{"):])
    assert [r["model"] for r in data["results"]] == ["bicubic", "attnsr-x2"]


# --------------------------------------------------------------------------- docs, repo
def test_training_folder_keeps_only_what_reproduces_the_weights() -> None:
    big = [p for p in (ROOT / "training").rglob("*") if p.is_file()
           and p.stat().st_size > 2 * 2**20]
    assert big == [], big  # full training states (optimizer included) are not kept
    assert not (ROOT / "training" / "attnsr_plain_x4" / "last.pt").exists()  # ablation


def test_docs_state_what_the_configs_do() -> None:
    training = (ROOT / "docs" / "training.md").read_text()
    assert "configs/attnsr_lite8_x4_scaleaug.yaml" in training
    assert "unused by shipped configs" not in training


def test_slow_marker_is_registered_and_not_deselected_by_default() -> None:
    """Tests over 10 s carry ``@pytest.mark.slow``; the default run (CI) still runs them."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(m.startswith("slow") for m in cfg["markers"])
    assert "not slow" not in cfg.get("addopts", "")
