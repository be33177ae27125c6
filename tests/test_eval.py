"""attnsr.data.benchmark, attnsr.evaluate and ``attnsr eval``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from attnsr.cli import _load_commands
from attnsr.cli.app import app
from attnsr.data.benchmark import BenchmarkSet, modcrop
from attnsr.data.resize import imresize
from attnsr.descriptor import describe
from attnsr.errors import ConfigError, ImageReadError
from attnsr.evaluate import EvalReport, evaluate, super_resolve
from attnsr.metrics import evaluate_pair
from attnsr.models.registry import create_model
from image_fixtures import huge_png_bytes

RNG = np.random.default_rng(0)
# published bicubic numbers (Y channel, shave = scale), as the papers' tables give them
PUBLISHED_BICUBIC = {
    ("Set5", 2): (33.673, 0.9303), ("Set5", 3): (30.403, 0.8689), ("Set5", 4): (28.429, 0.8111),
    ("Set14", 2): (30.230, 0.8691), ("Set14", 3): (27.537, 0.7745),
    ("Set14", 4): (25.994, 0.7029),
}


def _smooth_image(h: int, w: int, channels: int = 3) -> np.ndarray:
    """A smooth uint8 test image (bicubic scores are meaningful on it)."""
    y, x = np.mgrid[0:h, 0:w] / 7.0
    base = 127 + 60 * np.sin(x) * np.cos(y * 0.7)
    img = np.stack([base + 20 * c for c in range(channels)], axis=2)
    return np.clip(img + RNG.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def make_set(root: Path, sizes: dict[str, tuple[int, int, int]]) -> Path:
    """``root/HR/<name>.png`` for each name -> (h, w, channels)."""
    (root / "HR").mkdir(parents=True)
    for name, (h, w, c) in sizes.items():
        img = _smooth_image(h, w, c)
        Image.fromarray(img[..., 0] if c == 1 else img).save(root / "HR" / f"{name}.png")
    return root


def run_cli(*args: str) -> object:
    _load_commands()
    return CliRunner().invoke(app, ["eval", "--no-progress", *args])


# ----------------------------------------------------------------------------- shared data


@pytest.mark.shared_data
def test_cli_reproduces_published_bicubic(shared_data: Path, tmp_path: Path) -> None:
    bench = shared_data / "benchmark"
    result = run_cli("--model", "bicubic", "--data", str(bench / "Set5"), "--data",
                     str(bench / "Set14"), "-s", "2", "-s", "3", "-s", "4", "-o",
                     str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    got = {(s["set"], s["scale"]): (s["psnr"], s["ssim"]) for s in summary}
    assert set(got) == set(PUBLISHED_BICUBIC)
    for key, (psnr, ssim) in PUBLISHED_BICUBIC.items():
        assert got[key][0] == pytest.approx(psnr, abs=0.01), key
        assert got[key][1] == pytest.approx(ssim, abs=0.0005), key
    assert "33.673" in result.output and "0.7029" in result.output


@pytest.mark.shared_data
def test_benchmark_set_reads_stored_lr_and_gray(shared_data: Path) -> None:
    bset = BenchmarkSet.from_folder(shared_data / "benchmark" / "Set14", 3)
    assert bset.name == "Set14" and len(bset) == 14 and bset.lr_dir is not None
    bridge = bset.load([p.stem for p in bset.hr_paths].index("bridge"))
    assert bridge.is_grayscale and bridge.lr.shape == (170, 170, 1)
    assert bridge.hr.shape == (510, 510, 1) and bridge.lr_path is not None
    np.testing.assert_array_equal(bridge.lr, imresize(bridge.hr, 1 / 3))


# ----------------------------------------------------------------------------- benchmark sets


def test_benchmark_set_generates_lr_and_pairs_files(tmp_path: Path) -> None:
    root = make_set(tmp_path / "Tiny", {"a": (35, 34, 3), "b": (40, 41, 1)})
    bset = BenchmarkSet.from_folder(root, 3)
    assert bset.name == "Tiny" and bset.lr_dir is None
    a, b = list(bset)
    assert a.hr.shape == (33, 33, 3) and a.lr.shape == (11, 11, 3) and a.lr_path is None
    np.testing.assert_array_equal(a.lr, imresize(a.hr, 1 / 3))
    assert b.is_grayscale and b.lr.shape == (13, 13, 1)
    lr_dir = root / "LR_bicubic" / "X3"
    lr_dir.mkdir(parents=True)
    stored = np.full((11, 11, 3), 7, np.uint8)
    Image.fromarray(stored).save(lr_dir / "ax3.png")  # DIV2K-style name
    a2 = BenchmarkSet.from_folder(root, 3).load(0)
    assert a2.lr_path == lr_dir / "ax3.png"
    np.testing.assert_array_equal(a2.lr, stored)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(lr_dir / "b.png")
    with pytest.raises(ImageReadError, match=r"LR is 5x5x3, expected 13x13x1"):
        BenchmarkSet.from_folder(root, 3).load(1)


def test_benchmark_set_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such data folder"):
        BenchmarkSet.from_folder(tmp_path / "missing", 2)
    (tmp_path / "empty" / "HR").mkdir(parents=True)
    with pytest.raises(ImageReadError, match="no images found"):
        BenchmarkSet.from_folder(tmp_path / "empty", 2)
    assert modcrop(np.zeros((7, 9)), 4).shape == (4, 8)


# ----------------------------------------------------------------------------- engine


def test_evaluate_callable_matches_direct_metrics(tmp_path: Path) -> None:
    root = make_set(tmp_path / "S", {"a": (34, 30, 3), "g": (32, 32, 1)})
    calls: list[tuple[int, int]] = []
    report = evaluate(lambda lr: imresize(lr, 2.0), [root], [2],
                      progress=lambda done, total, _: calls.append((done, total)))
    assert calls == [(0, 2), (1, 2), (2, 2)] and report.errors == []
    for item, res in zip(BenchmarkSet.from_folder(root, 2), report.results, strict=True):
        lr = torch.from_numpy(np.repeat(item.lr, 3, 2) if item.is_grayscale else item.lr)
        sr = imresize(lr.permute(2, 0, 1)[None].float() / 255, 2.0).clamp(0, 1)[0]
        sr = sr.permute(1, 2, 0).double().numpy()
        sr = sr @ [0.299, 0.587, 0.114] if item.is_grayscale else sr  # gray: luma
        assert (res.psnr, res.ssim) == evaluate_pair(sr, item.hr, 2), item.name
    summary = report.summary("S", 2)
    assert summary is not None and summary.images == 2
    assert summary.psnr == pytest.approx(np.mean([r.psnr for r in report.results]))


def test_bicubic_runs_the_uint8_path() -> None:
    lr = _smooth_image(10, 12)
    desc = describe(create_model("bicubic", scale=4))
    np.testing.assert_array_equal(super_resolve(desc, lr, 3), imresize(lr, 3.0))
    gray = lr[..., :1]
    np.testing.assert_array_equal(super_resolve(desc, gray, 2), imresize(gray, 2.0))


def test_scale_mismatch_and_mapping(tmp_path: Path) -> None:
    root = make_set(tmp_path / "S", {"a": (32, 32, 3)})

    class X2:
        scale, name = 2, "x2model"

        def __call__(self, lr: torch.Tensor) -> torch.Tensor:
            return imresize(lr, 2.0)

    with pytest.raises(ConfigError, match="is x2, cannot evaluate at x4"):
        evaluate(X2(), [root], [4])
    report = evaluate({2: X2(), 4: lambda lr: imresize(lr, 4.0)}, [root], [2, 4])
    assert [(r.scale, r.image) for r in report.results] == [(2, "a"), (4, "a")]


def test_bad_file_collected_others_evaluated(tmp_path: Path) -> None:
    root = make_set(tmp_path / "S", {"a": (32, 32, 3)})
    (root / "HR" / "broken.png").write_bytes(b"not a png")
    report = evaluate(lambda lr: imresize(lr, 2.0), [root], [2])
    assert [r.image for r in report.results] == ["a"]
    assert len(report.errors) == 1 and report.errors[0].path.endswith("broken.png")
    assert "not an image" in report.errors[0].message


def test_report_writers(tmp_path: Path) -> None:
    root = make_set(tmp_path / "S", {"a": (32, 32, 3), "b": (30, 36, 3)})
    report = evaluate(lambda lr: imresize(lr, 2.0), [root], [2], name="bic")
    data = json.loads(report.write(tmp_path / "r.json").read_text())
    assert data["model"] == "bic" and len(data["images"]) == 2
    assert data["summary"][0]["psnr"] == pytest.approx(report.summaries()[0].psnr)
    rows = list(csv.DictReader(io.StringIO(report.write(tmp_path / "r.csv").read_text())))
    assert [r["kind"] for r in rows] == ["image", "image", "mean"]
    assert float(rows[2]["psnr"]) == pytest.approx(report.summaries()[0].psnr, abs=1e-6)
    md = report.write(tmp_path / "r.md").read_text()
    assert f"| S | x2 | {report.summaries()[0].psnr:.3f} |" in md
    with pytest.raises(ConfigError, match="unknown report format"):
        report.write(tmp_path / "r.txt")
    inf = EvalReport(results=[])
    assert json.loads(inf.to_json())["summary"] == []


# ----------------------------------------------------------------------------- CLI


def test_cli_table_per_image_and_outputs(tmp_path: Path) -> None:
    root = make_set(tmp_path / "Tiny", {"a": (32, 32, 3), "b": (34, 30, 3)})
    result = run_cli("--model", "bicubic", "--data", str(root), "-s", "2", "--per-image",
                     "-o", str(tmp_path / "r.csv"))
    assert result.exit_code == 0, result.output
    report = evaluate(describe(create_model("bicubic", scale=2)), [root], [2])
    assert f"{report.summaries()[0].psnr:.3f}" in result.output
    assert "Per image" in result.output and f"{report.results[1].psnr:.3f}" in result.output
    assert (tmp_path / "r.csv").read_text().count("\n") == 4


def _only_file(tmp_path: Path, name: str, content: bytes | np.ndarray) -> Path:
    (tmp_path / "S" / "HR").mkdir(parents=True)
    path = tmp_path / "S" / "HR" / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        Image.fromarray(content).save(path)
    return tmp_path / "S"


def _truncated_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_smooth_image(64, 64)).save(buf, format="PNG")
    return buf.getvalue()[:300]


@pytest.mark.parametrize(
    "name,content,message",
    [("text.png", b"hello, this is text", "not an image or unsupported format"),
     ("trunc.png", _truncated_png(), "truncated or corrupt image data"),
     ("zero.png", b"", "empty file (0 bytes)"),
     ("one.png", np.zeros((1, 1, 3), np.uint8), "image is 1x1, smaller than the scale 4"),
     ("small.png", np.zeros((3, 5, 3), np.uint8), "image is 5x3, smaller than the scale 4"),
     ("tiny.png", np.zeros((12, 12, 3), np.uint8), "too small to score at scale 4"),
     ("bomb.png", huge_png_bytes(), "image is 100000x100000 = 10000000000 pixels, above the "
                                    "limit of 178956970 (set --max-pixels / ATTNSR_MAX_PIXELS)")],
)
def test_cli_single_bad_input(tmp_path: Path, name: str, content: bytes | np.ndarray,
                              message: str) -> None:
    folder = _only_file(tmp_path, name, content)
    out = tmp_path / "r.json"
    result = run_cli("--model", "bicubic", "--data", str(folder), "-s", "4", "-o", str(out))
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and name in lines[0], result.output
    assert not out.exists()


def test_cli_one_bad_file_among_good(tmp_path: Path) -> None:
    root = make_set(tmp_path / "S", {"a": (32, 32, 3)})
    (root / "HR" / "zero.png").write_bytes(b"")
    out = tmp_path / "r.json"
    result = run_cli("--model", "bicubic", "--data", str(root), "-s", "2", "-o", str(out))
    assert result.exit_code == 1, result.output
    assert "zero.png: empty file (0 bytes)" in result.output
    assert len(json.loads(out.read_text())["images"]) == 1


@pytest.mark.parametrize(
    "args,message",
    [(["--model", "bicubic", "--data", "MISSING", "-s", "2"], "no such data folder"),
     (["--model", "no_such_model", "--data", "DATA", "-s", "2"], "unknown model"),
     (["--model", "bicubic", "--data", "DATA", "-s", "2", "-o", "r.txt"],
      "unknown report format")],
)
def test_cli_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    root = make_set(tmp_path / "S", {"a": (32, 32, 3)})
    args = [str(tmp_path / "missing") if a == "MISSING" else str(root) if a == "DATA"
            else str(tmp_path / a) if a == "r.txt" else a for a in args]
    result = run_cli(*args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1


def _textured_set(root: Path) -> Path:
    (root / "HR").mkdir(parents=True)
    yy, xx = np.mgrid[0:64, 0:72]
    img = np.stack([128 + 80 * np.sin(xx / 7.0), 128 + 80 * np.cos(yy / 9.0),
                    128 + 60 * np.sin((xx + yy) / 11.0)], axis=2)
    img += np.random.default_rng(0).uniform(-40, 40, img.shape)  # texture: detail to lose
    Image.fromarray(img.clip(0, 255).round().astype(np.uint8)).save(root / "HR" / "wave.png")
    return root


@pytest.mark.parametrize("preset", ["jpeg", "noise", "blur", "mixed"])
def test_eval_degradation_preset_is_seeded_and_harder(tmp_path: Path, preset: str) -> None:
    """``attnsr eval --degradation PRESET``: LR made from the HR with a fixed per-image
    seed (two runs agree exactly), and bicubic scores lower than on the clean LR."""
    _load_commands()
    data = _textured_set(tmp_path / "Wave")
    scores = []
    for extra, out in (([], "clean.json"), (["--degradation", preset], "a.json"),
                       (["--degradation", preset], "b.json")):
        result = CliRunner().invoke(app, ["eval", "-m", "bicubic", "-d", str(data), "-s", "2",
                                          "--no-progress", "-o", str(tmp_path / out), *extra])
        assert result.exit_code == 0, result.output
        scores.append(json.loads((tmp_path / out).read_text())["summary"][0]["psnr"])
    clean, first, second = scores
    assert first == second and first < clean - 0.1


def test_eval_unknown_degradation_is_a_usage_error(tmp_path: Path) -> None:
    _load_commands()
    result = CliRunner().invoke(app, ["eval", "-m", "bicubic", "-d",
                                      str(_textured_set(tmp_path / "W")), "-s", "2",
                                      "--degradation", "fog"])
    assert result.exit_code == 2 and "--degradation 'fog'" in result.output


def test_gray_as_rgb_scores_a_gray_hr_through_rgb2ycbcr(tmp_path: Path) -> None:
    """A gray HR scored as three equal channels: Y = 16 + 219/255 v scales every error by
    219/255, so PSNR rises by 20 log10(255/219) = 1.3228 dB; colour images do not change."""
    root = make_set(tmp_path / "Mixed", {"g": (48, 48, 1), "c": (48, 48, 3)})

    def nearest(x: torch.Tensor) -> torch.Tensor:  # keeps a replicated gray exactly gray
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    gray = evaluate(nearest, [root], [2])
    rgb = evaluate(nearest, [root], [2], gray_as_rgb=True)
    by = {(r.image, g): r for g, rep in (("gray", gray), ("rgb", rgb)) for r in rep.results}
    assert by[("g", "rgb")].psnr - by[("g", "gray")].psnr == pytest.approx(
        20 * np.log10(255 / 219), abs=0.01)
    assert by[("c", "rgb")].psnr == by[("c", "gray")].psnr
    assert by[("c", "rgb")].ssim == by[("c", "gray")].ssim
