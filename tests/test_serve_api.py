"""``attnsr serve``'s HTTP API through FastAPI's TestClient: every endpoint, the error
statuses (always JSON), the queue's back-pressure, result expiry, token, CORS, the Host
guard, and the server serving on after every error."""

from __future__ import annotations

import io
import re
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e .[serve])")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

with warnings.catch_warnings():  # newer Starlette prefers httpx2; httpx works with all
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import attnsr  # noqa: E402
from attnsr.cli import _load_commands, serve_cmd  # noqa: E402
from attnsr.cli.app import app as cli_app  # noqa: E402
from attnsr.models.registry import list_pretrained  # noqa: E402
from attnsr.serve.app import STATIC_DIR, create_app  # noqa: E402
from attnsr.serve.config import ServeConfig  # noqa: E402
from attnsr.serve.service import Service  # noqa: E402

BASE = "http://127.0.0.1"  # the Host guard accepts loopback names only
BICUBIC = {"model": "bicubic", "scale": "2"}


# --------------------------------------------------------------------------- helpers
def png(width: int = 16, height: int = 12, mode: str = "RGB", seed: int = 0) -> bytes:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = (np.random.default_rng(seed).random((height, width, channels)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(buf, "PNG")
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def post(client: TestClient, data: bytes, name: str = "photo.png", **fields: str) -> Any:
    return client.post("/v1/upscale", files={"image": (name, data, "image/png")},
                       data=fields or BICUBIC)


def error_of(res: Any, status: int, code: str) -> str:
    """Check ``res`` is the JSON error ``status``/``code``; returns its message."""
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith("application/json")
    err = res.json()["error"]
    assert err["status"] == status and err["code"] == code, err
    return err["message"]


def download_name(res: Any) -> str:
    """The file name a ``Content-Disposition`` header gives (plain or RFC 5987)."""
    disposition = res.headers["content-disposition"]
    match = re.search(r"filename\*=utf-8''([^;]+)", disposition, re.IGNORECASE)
    if match:
        return unquote(match.group(1))
    return re.search(r'filename="([^"]+)"', disposition).group(1)  # type: ignore[union-attr]


def wait_done(client: TestClient, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def assert_serving(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    res = post(client, png(8, 6))
    assert res.status_code == 200 and Image.open(io.BytesIO(res.content)).size == (16, 12)


@pytest.fixture()
def serve(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """``serve(**config)``: a TestClient of an app (closed, workers stopped, at the end)."""
    with ExitStack() as stack:
        def make(**config: Any) -> TestClient:
            config.setdefault("work_dir", tmp_path)
            client = TestClient(create_app(ServeConfig(**config)), base_url=BASE)
            return stack.enter_context(client)
        yield make


def service_of(client: TestClient) -> Service:
    return client.app.state.service  # type: ignore[attr-defined,no-any-return]


# --------------------------------------------------------------------------- endpoints
def test_healthz_and_models_list_weights_scales_speed(serve: Callable[..., TestClient]) -> None:
    client = serve()
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["workers"] == 1 and health["queued"] == 0
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    for tag in list_pretrained():
        entry = models[tag.name]
        assert entry["scales"] == [tag.scale] and entry["aliases"] == list(tag.aliases)
        assert entry["speed_class"] in ("fast", "medium", "slow", "unknown")
        assert entry["degradation"] == tag.degradation
    assert models["bicubic"]["scales"] == [2, 3, 4] and models["bicubic"]["params"] == 0
    defaults = [s for m in models.values() for s in m["default_for"]]
    assert sorted(defaults) == sorted({t.scale for t in list_pretrained()})  # one per scale


def test_sync_upscale_returns_the_library_result(serve: Callable[..., TestClient],
                                                 tmp_path: Path) -> None:
    client = serve()
    data = png(16, 12, "RGBA")
    res = post(client, data, name="holiday photo.png")
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    assert download_name(res) == "holiday photo_x2.png"
    assert res.headers["x-attnsr-model"] == "bicubic" and res.headers["x-attnsr-scale"] == "2"
    src = tmp_path / "in.png"
    src.write_bytes(data)
    got = np.asarray(Image.open(io.BytesIO(res.content)))
    assert np.array_equal(got, np.asarray(attnsr.upscale(src, scale=2, model="bicubic")))
    assert got.shape == (24, 32, 4)  # alpha kept
    assert service_of(client).queue.stats()["jobs"] == 0  # sync results are not kept


def test_async_job_progress_result_and_delete(serve: Callable[..., TestClient],
                                              tmp_path: Path) -> None:
    client = serve()
    data = png(24, 20, seed=3)
    res = post(client, data, model="attnsr-x2", mode="async", format="png")
    assert res.status_code == 202 and res.headers["location"] == f"/v1/jobs/{res.json()['id']}"
    job = wait_done(client, res.json()["id"])
    assert job["status"] == "done" and job["model"] == "attnsr_lite.x2" and job["scale"] == 2
    assert job["progress"]["tiles_total"] >= 1 and job["progress"]["fraction"] == 1.0
    assert job["output"] == {"width": 48, "height": 40, "media_type": "image/png"}
    assert job["input"] == {"format": "PNG", "width": 24, "height": 20}
    for _ in range(2):  # the result stays until it expires or is deleted
        out = client.get(job["result_url"])
        assert out.status_code == 200
    src = tmp_path / "in.png"
    src.write_bytes(data)
    want = np.asarray(attnsr.upscale(src, model="attnsr-x2")).astype(int)
    assert np.abs(np.asarray(Image.open(io.BytesIO(out.content))).astype(int) - want).max() <= 1
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    error_of(client.get(f"/v1/jobs/{job['id']}"), 404, "no_such_job")
    error_of(client.get(job["result_url"]), 404, "no_such_job")
    assert not list(service_of(client).work_dir.iterdir())  # upload and result deleted


def test_auto_mode_gives_large_images_a_job(serve: Callable[..., TestClient]) -> None:
    client = serve(sync_max_pixels=100)
    res = post(client, png(16, 12))  # 192 pixels > 100: a job
    assert res.status_code == 202 and res.json()["status"] in ("queued", "running", "done")
    assert wait_done(client, res.json()["id"])["status"] == "done"
    assert post(client, png(8, 6), mode="sync", **BICUBIC).status_code == 200


def test_content_is_sniffed_and_names_are_only_labels(serve: Callable[..., TestClient]) -> None:
    client = serve()
    res = client.post("/v1/upscale", data={**BICUBIC, "format": "same"},
                      files={"image": ("../../etc/passwd.jpg", png(), "image/jpeg")})
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    assert download_name(res) == "passwd_x2.png"


# --------------------------------------------------------------------------- errors
def test_errors_are_json_with_the_right_status_and_serving_goes_on(
        serve: Callable[..., TestClient]) -> None:
    client = serve(max_upload_bytes=4000)
    error_of(post(client, b"just some text, not an image"), 415, "not_an_image")
    error_of(post(client, b""), 400, "empty_file")
    error_of(post(client, png(48, 48)), 413, "too_large")  # ~7 kB of noise
    msg = error_of(post(client, png_header(50_000, 50_000), name="bomb.png"), 413,
                   "too_many_pixels")
    assert msg.startswith("bomb.png:")
    error_of(post(client, png(), model="no-such-model"), 422, "unknown_model")
    for path in ("../../etc/passwd", "/tmp/model.safetensors", "weights/x.pth"):
        error_of(post(client, png(), model=path), 422, "unknown_model")  # never a file
    error_of(post(client, png(), model="attnsr-x2", scale="4"), 422, "invalid_option")
    error_of(post(client, png(), model="bicubic", scale="2", denoise="0.5"), 422,
             "invalid_option")
    error_of(post(client, png(), model="bicubic", scale="2", format="gif"), 422,
             "invalid_option")
    error_of(post(client, png(), model="bicubic", scale="9"), 422, "invalid_request")
    error_of(client.post("/v1/upscale", data=BICUBIC), 422, "invalid_request")  # no image
    broken = png(40, 30)[:-60]  # header fine, data cut: found by the worker
    msg = error_of(post(client, broken, name="broken.png"), 422, "unreadable_image")
    assert msg.startswith("broken.png:") and "attnsr-serve-" not in msg  # no server path
    error_of(client.get("/v1/jobs/nope"), 404, "no_such_job")
    error_of(client.get("/v1/jobs/nope/result"), 404, "no_such_job")
    error_of(client.put("/v1/upscale"), 405, "method_not_allowed")
    assert_serving(client)
    assert not list(service_of(client).work_dir.iterdir())  # nothing left behind
    assert service_of(client).queue.stats()["jobs"] == 0  # nor kept in memory


def test_pixel_limit_is_the_cli_guard(serve: Callable[..., TestClient],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    client = serve(max_pixels=1_000_000)
    msg = error_of(post(client, png_header(5000, 5000)), 413, "too_many_pixels")
    assert "5000x5000" in msg and "1000000" in msg
    monkeypatch.setenv("ATTNSR_MAX_PIXELS", "100")  # as `attnsr upscale`: the env default
    error_of(post(serve(), png(16, 12)), 413, "too_many_pixels")


def test_streamed_upload_over_the_limit_is_cut_off(serve: Callable[..., TestClient]) -> None:
    client = serve(max_upload_bytes=1000)
    boundary = "attnsrboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n").encode()

    def body() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield head
        for _ in range(200):
            yield b"\0" * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    res = client.post("/v1/upscale", content=body(),
                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    error_of(res, 413, "too_large")
    assert_serving(serve())


def test_full_queue_answers_429_then_recovers(serve: Callable[..., TestClient],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    client = serve(workers=1, queue_size=1)
    service = service_of(client)
    gate = threading.Event()
    real = service.process
    monkeypatch.setattr(service, "process", lambda job: (gate.wait(10), real(job)))
    first = post(client, png(), mode="async", **BICUBIC).json()
    second = post(client, png(), mode="async", **BICUBIC).json()
    assert client.get(f"/v1/jobs/{second['id']}").json()["queue_position"] == 1
    res = post(client, png(), mode="async", **BICUBIC)
    error_of(res, 429, "queue_full")
    assert int(res.headers["retry-after"]) >= 1
    assert not [p for p in service.work_dir.iterdir() if p.name.endswith(".upload")
                and first["id"] not in p.name and second["id"] not in p.name]
    gate.set()
    assert wait_done(client, first["id"])["status"] == "done"
    assert wait_done(client, second["id"])["status"] == "done"
    assert_serving(client)


def test_shutting_down_answers_503(serve: Callable[..., TestClient]) -> None:
    client = serve()
    service_of(client).queue.close()
    error_of(post(client, png()), 503, "shutting_down")
    assert client.get("/healthz").status_code == 200


def test_results_expire(serve: Callable[..., TestClient]) -> None:
    client = serve(result_ttl_s=0.3)  # the janitor sweeps every 0.5 s
    job = wait_done(client, post(client, png(), mode="async", **BICUBIC).json()["id"])
    assert job["status"] == "done" and 0 <= job["expires_in_s"] <= 0.3
    end = time.monotonic() + 5
    while client.get(f"/v1/jobs/{job['id']}").status_code == 200 and time.monotonic() < end:
        time.sleep(0.1)
    error_of(client.get(job["result_url"]), 404, "no_such_job")
    assert not list(service_of(client).work_dir.iterdir())


# --------------------------------------------------------------------------- safety
def test_token_guards_the_api_only(serve: Callable[..., TestClient]) -> None:
    client = serve(token="correct-horse")
    res = client.get("/v1/models")
    error_of(res, 401, "unauthorized")
    assert res.headers["www-authenticate"] == "Bearer"
    error_of(client.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401,
             "unauthorized")
    error_of(post(client, png()), 401, "unauthorized")
    good = {"Authorization": "Bearer correct-horse"}
    assert client.get("/v1/models", headers=good).status_code == 200
    assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200


def test_cors_is_off_unless_asked(serve: Callable[..., TestClient]) -> None:
    origin = {"Origin": "http://example.org"}
    res = serve().get("/v1/models", headers=origin)
    assert res.status_code == 200 and "access-control-allow-origin" not in res.headers
    res = serve(cors_origins=("http://example.org",)).get("/v1/models", headers=origin)
    assert res.headers["access-control-allow-origin"] == "http://example.org"


def test_loopback_server_refuses_foreign_host_names(serve: Callable[..., TestClient]) -> None:
    res = serve().get("/healthz", headers={"Host": "attacker.example:8000"})
    error_of(res, 400, "bad_host")  # DNS rebinding: a page elsewhere cannot reach us
    assert serve(host="0.0.0.0").get("/healthz", headers={"Host": "box.lan"}).status_code == 200


def test_page_is_offline_and_docs_exist(serve: Callable[..., TestClient]) -> None:
    client = serve()
    page = client.get("/")
    assert page.status_code == 200 and "<h1>attnsr</h1>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for path in sorted(STATIC_DIR.iterdir()):  # no CDN: nothing fetched from elsewhere
        assert not re.search(r"https?://|//cdn", path.read_text()), path.name
        assert client.get(f"/static/{path.name}").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/v1/models", "/v1/upscale", "/v1/jobs/{job_id}",
            "/v1/jobs/{job_id}/result"} <= set(paths)


def test_cli_serve_warns_when_reachable_from_the_network(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _load_commands()
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(serve_cmd, "run_server", lambda _app, host, port: calls.append(
        (host, port)))
    common = ["--port", "8123", "--work-dir", str(tmp_path)]
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", *common])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "--token" in result.output
    result = CliRunner().invoke(cli_app, ["serve", *common])
    assert result.exit_code == 0 and "warning" not in result.output
    assert "http://127.0.0.1:8123/" in result.output
    assert calls == [("0.0.0.0", 8123), ("127.0.0.1", 8123)]
    assert not list(tmp_path.iterdir())  # the work folder went with the server
    result = CliRunner().invoke(cli_app, ["serve", "--token", "short", *common])
    assert result.exit_code == 2 and "at least 8 characters" in result.output
