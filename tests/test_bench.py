"""``attnsr.bench`` and ``attnsr bench``: what is measured, and how it is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attnsr.bench import (
    BenchConfig,
    _bench_subprocess,
    bench,
    bench_one,
    default_models,
    preset_params,
)
from attnsr.cli.bench_cmd import parse_size
from attnsr.errors import ConfigError
from attnsr.models.registry import create_model

FAST = {"size": (24, 32), "runs": 2, "warmup": 1, "threads": 1, "isolate": False, "scale": 2}


def test_parse_size() -> None:
    assert parse_size("256x192") == (256, 192)
    assert parse_size("64") == (64, 64)
    with pytest.raises(ConfigError, match="HxW"):
        parse_size("wide")


def test_config_rejects_impossible_combinations() -> None:
    with pytest.raises(ConfigError, match="onnxruntime"):
        BenchConfig(backend="onnxruntime", precision="fp16")
    with pytest.raises(ConfigError, match="backend"):
        BenchConfig(backend="tensorrt")


def test_default_models_are_the_light_presets_and_bicubic() -> None:
    names = default_models()
    assert "bicubic" in names and "attnsr_lite" in names
    assert "rcan" not in names  # 15.6M parameters: only on request
    assert all(preset_params(n) < 2_000_000 for n in names)


def test_bench_measures_params_macs_and_throughput() -> None:
    cfg = BenchConfig(**FAST)
    bicubic, lite = bench(["attnsr_lite"], cfg)
    assert bicubic.model == "bicubic" and bicubic.params == 0  # the floor comes first
    assert not lite.error
    assert lite.params == sum(p.numel() for p in create_model("attnsr_lite", scale=2)
                              .parameters())
    # a fully convolutional model: MACs grow with the pixel count (1280x720 out = 360x640 in)
    assert lite.macs_720p / lite.macs_input == pytest.approx(360 * 640 / (24 * 32), rel=0.01)
    assert 0 < lite.latency_min_ms <= lite.latency_ms
    out_mpix = 24 * 32 * 4 / 1e6
    assert lite.output_mpix_per_s == pytest.approx(out_mpix / (lite.latency_ms / 1e3))
    assert lite.peak_memory_mib >= 0


def test_onnxruntime_backend_reports_the_same_model() -> None:
    torch_res = bench_one("attnsr_lite", BenchConfig(**FAST))
    ort_res = bench_one("attnsr_lite", BenchConfig(**FAST, backend="onnxruntime"))
    assert not ort_res.error, ort_res.error
    assert (ort_res.params, ort_res.macs_input) == (torch_res.params, torch_res.macs_input)
    assert ort_res.latency_ms > 0


def test_bf16_on_cpu_runs_the_same_model_cast() -> None:
    bf16 = bench_one("attnsr_lite", BenchConfig(**FAST, precision="bf16"))
    assert not bf16.error and bf16.latency_ms > 0
    fp32 = bench_one("attnsr_lite", BenchConfig(**FAST))
    assert bf16.params == fp32.params  # the same model, cast


def test_subprocess_isolation_gives_the_same_counts() -> None:
    lite = _bench_subprocess("attnsr_lite", BenchConfig(**{**FAST, "isolate": True}))
    assert not lite.error, lite.error
    assert lite.params == bench_one("attnsr_lite", BenchConfig(**FAST)).params


def test_a_failing_model_becomes_an_error_row() -> None:
    results = bench(["no_such_model"], BenchConfig(**FAST))
    assert [r.model for r in results] == ["bicubic", "no_such_model"]
    assert "no_such_model" in results[1].error and results[1].latency_ms == 0


def test_bench_command_writes_json(tmp_path: Path) -> None:
    from attnsr.cli import _load_commands
    from attnsr.cli.app import app

    _load_commands()
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, [
        "bench", "--model", "attnsr_lite", "--size", "16x24", "--scale", "2", "--runs", "1",
        "--warmup", "0", "--threads", "1", "--in-process", "--json", str(out),
        "--markdown", str(tmp_path / "bench.md")])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [r["model"] for r in data["results"]] == ["bicubic", "attnsr_lite"]
    assert data["config"]["size"] == [16, 24] and data["environment"]["torch"]
    assert "attnsr_lite" in result.output
    rows = (tmp_path / "bench.md").read_text().splitlines()
    lite = next(r for r in rows if r.startswith("| attnsr_lite |"))
    assert f"{data['results'][1]['params'] / 1e6:.3f}M" in lite
