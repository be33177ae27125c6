"""Load test of ``attnsr serve``: N concurrent clients each upload one image and wait for
the result; the server (a real ``attnsr serve`` process) has a bounded queue, so some
clients are told 429 + Retry-After and come back later. Checks that every request ends
with the right image (no error, none lost) and reports latency and the server's peak
memory next to its memory after warm-up.

    python benchmarks/serve_load.py                      # 50 clients, 256x256, attnsr-x2
    python benchmarks/serve_load.py --requests 50 --queue 8 --workers 1 --threads 2

Latency is from a client's first attempt to its image (retries included). Peak memory is
the server process's VmHWM (reset after warm-up) and, as a cross-check, the highest
VmRSS sampled every 20 ms.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from attnsr.cli.demo_cmd import sample_image


@dataclass
class Outcome:
    ok: bool
    seconds: float
    retries: int
    problem: str = ""


def photo_png(size: int) -> bytes:
    """A ``size`` x ``size`` crop of a real photo, as PNG bytes."""
    with Image.open(sample_image()) as img:
        crop = img.convert("RGB").resize((size, size), Image.BICUBIC)
    buf = io.BytesIO()
    crop.save(buf, "PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kib(pid: int, key: str) -> int:
    """A ``VmRSS``/``VmHWM`` line of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def start_server(args: argparse.Namespace, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "attnsr", "serve", "--port", str(port), "--workers",
           str(args.workers), "--queue", str(args.queue), "--threads", str(args.threads),
           "--work-dir", str(work)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 120
    while time.monotonic() < end:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def one_client(url: str, data: bytes, args: argparse.Namespace, expect: int) -> Outcome:
    """Upload, wait, retry on 429/503 after Retry-After; check the image that comes back."""
    start, retries = time.monotonic(), 0
    with httpx.Client(timeout=600) as client:
        while True:
            res = client.post(f"{url}/v1/upscale", files={"image": ("photo.png", data)},
                              data={"model": args.model, "format": "png", "mode": "sync"})
            if res.status_code not in (429, 503):
                break
            retries += 1
            time.sleep(float(res.headers.get("retry-after", "1")))
    seconds = time.monotonic() - start
    if res.status_code != 200:
        return Outcome(False, seconds, retries, f"{res.status_code} {res.text[:120]}")
    with Image.open(io.BytesIO(res.content)) as img:
        if img.size != (expect, expect):
            return Outcome(False, seconds, retries, f"size {img.size}")
    return Outcome(True, seconds, retries)


def sample_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.wait(0.02):
        try:
            peak[0] = max(peak[0], status_kib(pid, "VmRSS"))
        except (OSError, KeyError):
            return


def run(args: argparse.Namespace, url: str, pid: int) -> tuple[list[Outcome], dict[str, float]]:
    data = photo_png(args.size)
    scale = int(httpx.post(f"{url}/v1/upscale", files={"image": ("w.png", data)},
                           data={"model": args.model, "mode": "sync"},
                           timeout=600).headers["x-attnsr-scale"])  # warm-up: loads it
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    mem = {"baseline_mib": status_kib(pid, "VmRSS") / 1024}
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=sample_rss, args=(pid, stop, peak), daemon=True)
    sampler.start()
    start = time.monotonic()
    with ThreadPoolExecutor(args.requests) as pool:
        outcomes = list(pool.map(lambda _: one_client(url, data, args, args.size * scale),
                                 range(args.requests)))
    mem["wall_s"] = time.monotonic() - start
    stop.set()
    sampler.join()
    mem["peak_hwm_mib"] = status_kib(pid, "VmHWM") / 1024
    mem["peak_sampled_mib"] = peak[0] / 1024
    return outcomes, mem


def report(args: argparse.Namespace, outcomes: list[Outcome], mem: dict[str, float],
           health: dict[str, int], leftovers: int) -> bool:
    ok = [o for o in outcomes if o.ok]
    lat = np.array([o.seconds for o in ok]) if ok else np.zeros(1)
    print(f"attnsr serve load: {args.requests} concurrent clients, {args.size}x{args.size} "
          f"PNG, {args.model}, workers {args.workers}, queue {args.queue}, threads "
          f"{args.threads}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f})")
    print("| ok | errors | lost | 429 retries | p50 s | p95 s | max s | images/s | "
          "RSS after warm-up MiB | peak RSS MiB (VmHWM / sampled) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    lost = args.requests - len(outcomes)
    print(f"| {len(ok)} | {len(outcomes) - len(ok)} | {lost} | "
          f"{sum(o.retries for o in outcomes)} | {np.percentile(lat, 50):.2f} | "
          f"{np.percentile(lat, 95):.2f} | {lat.max():.2f} | "
          f"{len(ok) / mem['wall_s']:.2f} | {mem['baseline_mib']:.0f} | "
          f"{mem['peak_hwm_mib']:.0f} / {mem['peak_sampled_mib']:.0f} |")
    for o in outcomes:
        if not o.ok:
            print(f"error: {o.problem}")
    print(f"after the run: {health['jobs']} jobs held, {leftovers} files left in the "
          "server's work folder")
    return len(ok) == args.requests and health["jobs"] == 0 and leftovers == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--model", default="attnsr-x2")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--queue", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(args, Path(tmp))
        try:
            outcomes, mem = run(args, url, proc.pid)
            health = httpx.get(f"{url}/healthz").json()
            leftovers = sum(len(list(d.iterdir())) for d in Path(tmp).iterdir())
        finally:
            proc.terminate()
            proc.wait(30)
    sys.exit(0 if report(args, outcomes, mem, health, leftovers) else 1)


if __name__ == "__main__":
    main()
