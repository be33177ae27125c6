"""``attnsr upscale --engine ray`` / :func:`attnsr.batch.upscale_dataset` on a local Ray
started once for the module: outputs byte-identical to the local command, a corrupt file
in the manifest, a worker killed mid-job, re-runs that write nothing, fsspec URLs."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from attnsr.cli import _load_commands
from attnsr.cli.app import app

_load_commands()
# the bundled x2 model (real attention layers), small images, tiles of 24 LR pixels with
# an explicit overlap (else the tile grows to the exact minimum, the whole image): several
# tiles per image, so tiling runs inside the actors as on one machine
OPTS = ["--model", "attnsr-x2", "--tile", "24", "--overlap", "8", "--device", "cpu",
        "--no-progress"]
N_IMAGES = 40


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["upscale", *args])
    return result.exit_code, result.output


def make_images(folder: Path, n: int = N_IMAGES, size: tuple[int, int] = (40, 32)) -> Path:
    """``n`` PNGs (RGB, a few RGBA and gray) of textured noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(18)
    for i in range(n):
        mode = ("RGB", "RGBA", "L")[i % 3]
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
        Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(folder / f"im{i:02d}.png")
    return folder


def manifest(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {Path(r["input"]).name: r for r in rows}


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.glob("*.png")}


@pytest.fixture(scope="module")
def ray_local() -> Iterator[object]:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    for sig, handler in handlers.items():  # ray.init installs its own; later tests need ours
        signal.signal(sig, handler)


@pytest.mark.slow
def test_ray_matches_local_reports_corrupt_and_reruns_write_nothing(
    ray_local: object, tmp_path: Path
) -> None:
    src = make_images(tmp_path / "in")
    (src / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    code, out = run(str(src), "-o", str(tmp_path / "local"), *OPTS)
    assert code == 1 and "zz_corrupt.png" in out, out
    code, out = run(str(src), "-o", str(tmp_path / "ray"), *OPTS, "--engine", "ray",
                    "--workers", "2")
    assert code == 1 and "40 images" in out and "1 failed" in out, out
    local, remote = snapshot(tmp_path / "local"), snapshot(tmp_path / "ray")
    assert len(local) == N_IMAGES and local.keys() == remote.keys()
    assert all(local[k][1] == remote[k][1] for k in local)  # byte-identical
    rows = manifest(tmp_path / "ray" / "attnsr-manifest.jsonl")
    assert len(rows) == N_IMAGES + 1
    bad = rows["zz_corrupt.png"]
    assert bad["status"] == "failed" and "zz_corrupt.png" in bad["error"]
    assert bad["input_bytes"] == 48 and bad["output_bytes"] == 0
    assert all(r["status"] == "done" and r["output_bytes"] > 0 for n, r in rows.items()
               if n != "zz_corrupt.png")
    assert len({r["worker"] for r in rows.values()}) == 2  # both actors took work

    code, out = run(str(src), "-o", str(tmp_path / "ray"), *OPTS, "--engine", "ray")
    assert code == 1 and "upscaled 0 images" in out and "40 skipped" in out, out
    assert snapshot(tmp_path / "ray") == remote  # nothing rewritten
    again = manifest(tmp_path / "ray" / "attnsr-manifest.jsonl")
    assert sum(r["status"] == "skipped" for r in again.values()) == N_IMAGES


def _map_workers() -> list[int]:
    """Process ids of Ray Data's actors (their title names the map operator)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"MapWorker" in cmd and b"UpscaleWorker" in cmd:
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds workers in /proc")
def test_worker_killed_mid_job_every_output_written(ray_local: object, tmp_path: Path) -> None:
    from attnsr.batch import upscale_dataset

    src = make_images(tmp_path / "in", size=(64, 48))
    dst = tmp_path / "out"
    killed: list[int] = []

    def kill_one() -> None:  # once a few outputs exist: SIGKILL one actor
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = _map_workers()
            if pids and len(list(dst.glob("*.png"))) >= 3:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    report = upscale_dataset([str(src)], dst, model="attnsr-x2", tile=24, overlap=8,
                             device="cpu", workers=2)
    killer.join(timeout=1)
    assert killed, "no worker was killed (the job ended first?)"
    assert len(list(dst.glob("*.png"))) == N_IMAGES
    assert report.count("done") == N_IMAGES and not report.failed
    assert not list(dst.glob(".*.tmp"))  # no temporary file left behind
    assert killed[0] not in _map_workers()


@pytest.mark.slow
def test_fsspec_urls_in_and_out(ray_local: object, tmp_path: Path) -> None:
    from attnsr.batch import upscale_dataset

    src = make_images(tmp_path / "in", n=3)
    report = upscale_dataset([f"file://{src}/"], f"file://{tmp_path}/out", model="attnsr-x2",
                             tile=24, overlap=8, device="cpu", workers=1,
                             manifest=tmp_path / "m.jsonl")
    assert report.count("done") == 3, report.results
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["im00_x2.png", "im01_x2.png", "im02_x2.png"]  # no temporary left
    code, out = run(str(src / "im00.png"), "-o", str(tmp_path / "local.png"), *OPTS)
    assert code == 0, out
    assert (tmp_path / "local.png").read_bytes() == (tmp_path / "out" / "im00_x2.png").read_bytes()
    rows = manifest(tmp_path / "m.jsonl")
    assert rows["im00.png"]["input"].startswith("file://")


def test_engine_ray_without_ray_says_how_to_install(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    make_images(tmp_path, n=1)
    code, out = run(str(tmp_path / "im00.png"), *OPTS, "--engine", "ray")
    assert code == 2
    assert out.strip() == "error: --engine ray needs Ray Data: pip install 'attnsr[ray]'"


def test_plan_names_and_skips_like_the_local_command(tmp_path: Path) -> None:
    from attnsr.batch import plan
    from attnsr.errors import ConfigError

    src = make_images(tmp_path / "in", n=2)
    make_images(src / "sub", n=1)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "im00_x2.png").write_bytes(b"done before")
    tasks, settled = plan([str(src)], out, recursive=True, suffix="_x2")
    assert sorted(Path(t.dst).relative_to(out).as_posix() for t in tasks) == [
        "im00_x2.png", "im01_x2.png"]
    assert [(r.status, Path(r.output).relative_to(out).as_posix()) for r in settled] == [
        ("skipped", "sub/im00_x2.png")]
    urls, _ = plan([f"file://{src}"], f"file://{out}", recursive=True, suffix="_x2")
    assert sorted(t.dst for t in urls) == [f"file://{out}/im00_x2.png",
                                           f"file://{out}/im01_x2.png"]
    with pytest.raises(ConfigError, match="no input images matched"):
        plan([str(tmp_path / "nothing*.png")], out)


def test_a_retry_removes_the_temporaries_of_a_killed_writer(tmp_path: Path) -> None:
    from attnsr.batch import drop_stale_parts
    from attnsr.fs import atomic_write

    with atomic_write(tmp_path / "b.png") as part:  # a writer that completes
        part.write_bytes(b"kept")
    (tmp_path / ".a.png.k1l2x3y4.tmp").write_bytes(b"half")  # SIGKILLed mid-write
    (tmp_path / ".a.png.other").write_bytes(b"not ours")
    assert drop_stale_parts(str(tmp_path / "a.png")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.png.other", "b.png"]
