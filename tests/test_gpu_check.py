"""The GPU kit (benchmarks/gpu_check.py) in CI: ``--dry-run`` runs every section on the
CPU with tiny sizes, so the code the GPU run needs cannot rot. The CPU stands in for the
device, so the parity values are CPU vs CPU (0 levels) and the fallback must fire."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import gpu_check  # benchmarks/ is on pytest's pythonpath
from attnsr.models import registry

pytestmark = pytest.mark.slow  # one dry run: ~15 s on 2 busy cores (three torch.compile)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    threads = torch.get_num_threads()
    assert gpu_check.main(["--dry-run", "--out", str(out)]) == 0
    assert torch.get_num_threads() == threads  # the dry run gives the threads back
    return json.loads(out.read_text())


def test_every_section_runs_and_passes(report: dict[str, Any]) -> None:
    assert report["schema"] == gpu_check.SCHEMA and report["dry_run"] is True
    assert list(report["sections"]) == list(gpu_check.SECTIONS)
    for name, section in report["sections"].items():
        assert section["status"] == "ok", (name, section.get("traceback"))
        assert section["seconds"] >= 0
    verdicts = {k: v for k, v in report["summary"].items() if v is not None}
    assert set(verdicts) == {"parity", "precision", "compile", "train", "ddp"}
    assert all(verdicts.values()), report["summary"]
    assert report["total_s"] < report["hard_limit_s"]


def test_cpu_parity_of_every_bundled_model(report: dict[str, Any]) -> None:
    parity = report["sections"]["parity"]["result"]
    bundled = [t.name for t in registry.list_pretrained()]
    assert list(parity["models"]) == bundled
    for name, row in parity["models"].items():
        for path in ("runner_whole", "runner_whole_no_tf32", "upscaler_whole",
                     "upscaler_tiled"):
            assert row[path]["max_levels"] == 0.0, (name, path)  # CPU vs CPU: identical
        # The tile plan is a real one (several tiles), not the whole image.
        assert row["tile"] < max(parity["image_hw"])
        assert row["tiled_vs_whole_on_device"]["max_levels"] <= 16, name


def test_low_precision_fallback_fires(report: dict[str, Any]) -> None:
    rows = report["sections"]["precision"]["result"]["models"]
    assert rows
    for row in rows.values():
        for precision in ("bf16", "fp16"):
            r = row[precision]
            for forced in ("forced_nonfinite", "forced_black"):
                assert r[forced]["fallbacks"] == 1 and r[forced]["finite"]
                assert r[forced]["max_levels_vs_fp32"] == 0.0  # recomputed in fp32
            assert r["forced_tiled"] == {"fallbacks": 1, "finite": True, "pass": True}
            assert r["psnr_vs_fp32"] > 40
        assert row["fp16"]["overflow_input"]["fallbacks"] == 1  # x1e5 overflows fp16


def test_throughput_covers_every_mode(report: dict[str, Any]) -> None:
    result = report["sections"]["throughput"]["result"]
    rows = result["rows"]
    assert all("error" not in r and r["fps"] > 0 for r in rows), rows
    assert {r["mode"] for r in rows} == {"eager", "cuda_graph", "compile",
                                         "compile_cuda_graph"}
    assert {r["out_hw"][0] for r in rows} == {gpu_check.DRY_SIZES.frame_out_hw[0]}
    assert result["best"]["fps"] == max(r["fps"] for r in rows)


def test_training_and_ddp(report: dict[str, Any]) -> None:
    train = report["sections"]["train"]["result"]["rows"]
    assert train and all(r["status"] == "done" and r["steps_per_s"] > 0 for r in train)
    ddp = report["sections"]["ddp"]["result"]
    assert ddp["backend"] == "gloo" and ddp["all_reduce_ok"] and ddp["ddp_wrapped_in_ddp"]
    assert ddp["max_loss_diff"] == 0.0 and ddp["max_weight_diff"] == 0.0


def test_markdown_renders_the_report_and_an_empty_one(report: dict[str, Any],
                                                      tmp_path: Path) -> None:
    text = gpu_check.markdown(report)
    for name in report["sections"]["parity"]["result"]["models"]:
        assert f"| {name} |" in text
    assert "| gloo |" in text
    empty = gpu_check.markdown({})  # the empty tables of docs/gpu.md
    assert empty.count("\n### ") == 6 and empty.count("_not run_") == 6
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    assert gpu_check.main(["--markdown", str(path)]) == 0


def test_a_failing_section_is_recorded_and_the_rest_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_ctx: gpu_check.Context) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setitem(gpu_check.SECTION_FNS, "parity", broken)
    out = tmp_path / "r.json"
    gpu_check.main(["--dry-run", "--out", str(out), "--sections", "parity,env"])
    sections = json.loads(out.read_text())["sections"]
    assert sections["parity"]["status"] == "error"
    assert sections["parity"]["error"] == "RuntimeError: boom"
    assert sections["env"]["status"] == "ok"


def test_a_failing_model_is_recorded_and_the_others_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = gpu_check._parity_one

    def flaky(ctx: gpu_check.Context, name: str, *args: Any) -> dict[str, Any]:
        if name == "attnsr-x3":
            raise RuntimeError("CUDA error: out of memory")
        return real(ctx, name, *args)

    monkeypatch.setattr(gpu_check, "_parity_one", flaky)
    out = tmp_path / "r.json"
    gpu_check.main(["--dry-run", "--out", str(out), "--sections", "parity",
                    "--models", "attnsr-x3,attnsr-x2"])
    report = json.loads(out.read_text())
    parity = report["sections"]["parity"]["result"]
    assert parity["models"]["attnsr-x3"]["error"] == "RuntimeError: CUDA error: out of memory"
    assert parity["models"]["attnsr-x2"]["pass"] and parity["pass"] is False
    assert "- attnsr-x3: RuntimeError: CUDA error: out of memory" in gpu_check.markdown(report)


def test_no_budget_skips_everything(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    gpu_check.main(["--dry-run", "--out", str(out), "--budget", "0"])
    sections = json.loads(out.read_text())["sections"]
    assert all(s["status"] == "skipped" for s in sections.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the machine without CUDA")
def test_without_cuda_it_says_so_and_still_records_the_machine(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit, match="no CUDA device here"):
        gpu_check.main(["--out", str(out)])
    report = json.loads(out.read_text())
    assert report["sections"]["env"]["status"] == "ok"
    assert report["sections"]["env"]["result"]["packages"]["numpy"]
