"""Videos and animated images (``attnsr upscale clip.mp4``, ``attnsr.upscale_video``,
``upscale_frames``): what the output keeps of the input, frames equal to the image
path's, interrupted jobs resumed, bad files reported one line each. Every clip is made
here with PyAV (tiny: 32x24, 12-24 frames, with an audio track)."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

av = pytest.importorskip("av")

from attnsr.data import video_io  # noqa: E402
from attnsr.data.io import is_attnsr_output  # noqa: E402
from attnsr.errors import ConfigError, ImageReadError  # noqa: E402
from attnsr.inference import video  # noqa: E402
from attnsr.inference.upscale import Upscaler  # noqa: E402
from attnsr.inference.video import (  # noqa: E402
    batch_size_for,
    upscale_animated,
    upscale_frames,
    upscale_video,
    work_folder,
)

W, H = 32, 24
BASE = ["--model", "bicubic", "--scale", "2", "--device", "cpu", "--no-progress"]


# --------------------------------------------------------------------------- clips
def _frames(n: int, seed: int = 0, size: tuple[int, int] = (W, H)) -> list[np.ndarray]:
    """Smooth moving content plus noise: (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        base = np.stack([(xx * 7 + i * 9) % 256, (yy * 9 + i * 5) % 256,
                         (xx + yy + i * 13) % 256], axis=-1)
        out.append(np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8))
    return out


def _add_audio(out: Any, codec: str) -> Any:
    stream = out.add_stream(codec, rate=48000)
    stream.layout = "stereo"
    return stream


def _write_audio(out: Any, stream: Any, seconds: float) -> None:
    ctx = stream.codec_context
    fmt = ctx.format.name
    size = ctx.frame_size or 1024
    t = 0
    while t < seconds * 48000:
        wave = 0.3 * np.sin(2 * np.pi * 440 * (t + np.arange(size)) / 48000)
        data = np.stack([wave, wave]).astype(np.float32)
        if fmt in ("s16", "s16p"):
            data = (data * 32767).astype(np.int16)
        if not fmt.endswith("p"):
            data = data.T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
        frame.sample_rate, frame.pts = 48000, t
        out.mux(stream.encode(frame))
        t += size
    out.mux(stream.encode())


def make_clip(path: Path, *, codec: str = "libx264", pix_fmt: str = "yuv420p", n: int = 12,
              rate: int = 25, ticks: list[int] | None = None, audio: str | None = "aac",
              rotation: int | None = None, tags: dict[str, int] | None = None,
              seed: int = 0) -> list[np.ndarray]:
    """Write a clip (video + a 440 Hz audio track); returns its RGB frames as encoded.
    ``ticks``: frame timestamps in 1/rate units (variable frame rate when uneven)."""
    frames = _frames(n, seed)
    ticks = ticks or list(range(n))
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = W, H, pix_fmt
        for key, value in (tags or {}).items():
            setattr(vs.codec_context, key, value)
        if rotation is not None:
            vs.set_display_rotation(rotation)
        astream = _add_audio(out, audio) if audio else None
        for arr, tick in zip(frames, ticks, strict=True):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if tags:
                frame.colorspace = tags.get("colorspace", 2)
                frame.color_range = tags.get("color_range", 0)
            frame = frame.reformat(format=pix_fmt)
            frame.pts = tick
            frame.time_base = Fraction(1, rate)
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
        if astream is not None:
            _write_audio(out, astream, (ticks[-1] + 1) / rate)
    return frames


def decode(path: Path, fmt: str = "rgb24") -> tuple[list[np.ndarray], list[Fraction], Any]:
    """(frames, timestamps in seconds, a summary dict) of a file's video stream."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        decoded = list(c.decode(vs))
        info = {"rotation": decoded[0].rotation, "pix_fmt": decoded[0].format.name,
                "colorspace": decoded[0].colorspace, "color_range": decoded[0].color_range,
                "duration": c.duration, "rate": vs.average_rate,
                "codec": vs.codec_context.name, "comment": video_io.software_tag(path)}
    return ([f.to_ndarray(format=fmt) for f in decoded],
            [f.pts * f.time_base for f in decoded], info)


def audio_packets(path: Path) -> list[tuple[Any, ...]]:
    with av.open(str(path)) as c:
        return [(p.pts, p.dts, p.duration, bytes(p)) for p in c.demux(c.streams.audio[0])
                if p.size]


def run_cli(*args: str) -> tuple[int, str]:
    from attnsr.cli import _load_commands
    from attnsr.cli.app import app

    _load_commands()
    result = CliRunner().invoke(app, ["upscale", *args])
    return result.exit_code, " ".join(result.output.split())


# --------------------------------------------------------------------------- fidelity
def test_timestamps_duration_rotation_colour_and_audio_are_kept(tmp_path: Path) -> None:
    # variable frame rate (uneven ticks), a 90-degree display matrix, BT.709 tags
    src = tmp_path / "vfr.mp4"
    ticks = [0, 1, 3, 4, 5, 8, 9, 10, 12, 13, 15, 16]
    tags = {"colorspace": 1, "color_range": 1, "color_primaries": 1, "color_trc": 1}
    make_clip(src, ticks=ticks, rotation=90, tags=tags)
    dst = tmp_path / "vfr_x2.mp4"
    result = upscale_video(src, dst, model="bicubic", scale=2, software="attnsr test",
                           segment_seconds=0.2)  # several segments joined
    assert result.frames == len(ticks)
    frames_in, ts_in, info_in = decode(src)
    frames_out, ts_out, info_out = decode(dst)
    assert len(frames_out) == len(frames_in) and frames_out[0].shape == (2 * H, 2 * W, 3)
    assert ts_out == ts_in  # every timestamp, in seconds
    for key in ("rotation", "pix_fmt", "colorspace", "color_range", "duration"):
        assert info_out[key] == info_in[key], key
    assert info_in["rotation"] == 90 and info_in["colorspace"] == 1
    assert audio_packets(dst) == audio_packets(src)  # copied, not re-encoded
    assert info_out["codec"] == "h264" and info_out["comment"] == "attnsr test"
    assert is_attnsr_output(dst)  # the comment tag is the marker
    assert not work_folder(dst).exists()


@pytest.mark.parametrize(("model", "ext", "codec", "pix_fmt"), [
    ("bicubic", ".mkv", "ffv1", "bgr0"),
    ("bicubic", ".mov", "png", "rgb24"),
    ("attnsr-x2", ".mkv", "ffv1", "bgr0"),  # a real network, frames batched
])
def test_each_frame_equals_the_image_path(tmp_path: Path, model: str, ext: str, codec: str,
                                          pix_fmt: str) -> None:
    src = tmp_path / f"in{ext}"
    frames = make_clip(src, codec=codec, pix_fmt=pix_fmt, n=10,
                       audio="pcm_s16le" if ext == ".mov" else "flac")
    dst = tmp_path / f"out{ext}"
    up = Upscaler(model, scale=2)
    upscale_video(src, dst, upscaler=up, codec=codec, batch_size=4)
    out, _, info = decode(dst)
    assert info["codec"] == codec and len(out) == len(frames)
    for lr, sr in zip(frames, out, strict=True):
        expected = up.upscale_hwc(lr.astype(np.float32) / np.float32(255))
        assert np.abs(sr.astype(int) - expected.astype(int)).max() <= 1


def test_rgb_source_encoded_as_yuv_keeps_its_colours(tmp_path: Path) -> None:
    # PNG-in-MOV (RGB) into H.264: converted and tagged BT.601 limited range, not
    # tagged "RGB" (which players would show as green)
    src = tmp_path / "rgb.mov"
    frames = make_clip(src, codec="png", pix_fmt="rgb24", n=4, audio=None)
    dst = tmp_path / "rgb_x2.mp4"
    upscale_video(src, dst, model="bicubic", scale=2, crf=0)
    out, _, info = decode(dst)
    assert (info["pix_fmt"], info["colorspace"], info["color_range"]) == ("yuv444p", 6, 1)
    up = Upscaler("bicubic", scale=2)
    for lr, sr in zip(frames, out, strict=True):
        diff = np.abs(sr.astype(int) - up.upscale_hwc(lr / np.float32(255)).astype(int))
        assert diff.mean() < 1.0 and diff.max() <= 4  # YUV rounding only


def test_ten_bit_input_stays_ten_bit(tmp_path: Path) -> None:
    src = tmp_path / "deep.mkv"
    make_clip(src, codec="ffv1", pix_fmt="yuv420p10le", n=6, audio=None)
    dst = tmp_path / "deep_x2.mkv"
    upscale_video(src, dst, model="bicubic", scale=2)  # default codec: H.264, 10-bit
    _, _, info = decode(dst, fmt="rgb48le")
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p10le"


# --------------------------------------------------------------------------- resume
def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    src = tmp_path / "in.mkv"
    make_clip(src, codec="ffv1", pix_fmt="bgr0", n=24, audio="flac")
    opts: dict[str, Any] = {"model": "bicubic", "scale": 2, "codec": "ffv1",
                            "segment_seconds": 0.2}  # 5 frames a segment
    whole = tmp_path / "whole.mkv"
    upscale_video(src, whole, **opts)

    def stop_at_12(done: int, total: int) -> None:
        if done == 12:
            raise KeyboardInterrupt

    dst = tmp_path / "out.mkv"
    with pytest.raises(KeyboardInterrupt):
        upscale_video(src, dst, progress_cb=stop_at_12, **opts)
    assert not dst.exists() and not list(tmp_path.glob(".out.mkv*.tmp"))
    manifest = json.loads((work_folder(dst) / "job.json").read_text())
    assert [s["frames"] for s in manifest["segments"]] == [5, 5]
    seen: list[int] = []
    upscale_video(src, dst, resume=True, progress_cb=lambda d, n: seen.append(d), **opts)
    assert seen[0] == 11  # continued after the two completed segments
    a, ts_a, _ = decode(whole)
    b, ts_b, _ = decode(dst)
    assert ts_a == ts_b and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert audio_packets(dst) == audio_packets(src)
    assert not work_folder(dst).exists()


def test_resume_with_other_settings_starts_over(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    make_clip(src, n=12)
    dst = tmp_path / "out.mp4"

    def stop(done: int, total: int) -> None:
        if done == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upscale_video(src, dst, model="bicubic", scale=2, crf=30, segment_seconds=0.2,
                      progress_cb=stop)
    seen: list[int] = []
    upscale_video(src, dst, model="bicubic", scale=2, crf=20, segment_seconds=0.2,
                  resume=True, progress_cb=lambda d, n: seen.append(d))
    assert seen[0] == 1 and len(decode(dst)[0]) == 12


# --------------------------------------------------------------------------- bad files
def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as out:
        _write_audio(out, _add_audio(out, "aac"), 0.3)


def test_bad_videos_fail_in_one_line_and_the_others_run(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    make_clip(inp / "good.mkv", codec="ffv1", pix_fmt="bgr0", n=8, audio="flac")
    make_clip(tmp_path / "whole.mkv", codec="ffv1", pix_fmt="bgr0", n=24, audio="flac")
    data = (tmp_path / "whole.mkv").read_bytes()
    (inp / "truncated.mkv").write_bytes(data[: len(data) // 2])
    (inp / "broken.mp4").write_bytes(os.urandom(4000))
    _audio_only(inp / "audio.mp4")
    Image.fromarray(_frames(1)[0]).save(inp / "still.png")
    code, out = run_cli(str(inp), "-o", str(tmp_path / "out"), *BASE)
    assert code == 1, out
    assert "broken.mp4: not a video, or broken" in out
    assert "truncated.mkv: truncated: the video stops at" in out
    assert "audio.mp4: no video stream (audio only)" in out
    assert "upscaled 2 images" in out and "3 failed" in out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["good_x2.mkv", "still_x2.png"]  # nothing else, no parts, no temp files
    assert is_attnsr_output(tmp_path / "out" / "good_x2.mkv")
    code, out = run_cli(str(inp), "-o", str(tmp_path / "out"), *BASE)
    assert "skipped" in out  # a re-run finds the outputs


def test_cli_ctrl_c_then_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "clip.mkv"
    make_clip(src, codec="ffv1", pix_fmt="bgr0", n=16, audio="flac")
    monkeypatch.setattr(video, "SEGMENT_SECONDS", 0.2)
    calls = {"n": 0}
    encode = video_io.to_video_frame

    def interrupt_at_9(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt
        return encode(*args, **kwargs)

    monkeypatch.setattr(video_io, "to_video_frame", interrupt_at_9)
    code, out = run_cli(str(src), "--codec", "ffv1", *BASE)
    dst = tmp_path / "clip_x2.mkv"
    assert code != 0 and not dst.exists()
    assert "interrupted:" in out and "--resume to continue" in out
    monkeypatch.setattr(video_io, "to_video_frame", encode)
    code, out = run_cli(str(src), "--codec", "ffv1", "--resume", *BASE)
    assert code == 0, out
    assert len(decode(dst)[0]) == 16 and not work_folder(dst).exists()


def test_cli_encoder_options_are_checked_first(tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    make_clip(src, n=4)
    code, out = run_cli(str(src), "--codec", "nosuchcodec", *BASE)
    assert code == 2 and "not a video encoder" in out
    code, out = run_cli(str(src), "--codec", "libx264", "--pix-fmt", "rgb48le", *BASE)
    assert code == 2 and "--pix-fmt rgb48le: libx264 takes" in out
    code, out = run_cli(str(src), "--codec", "libvpx-vp9", "--format", "webm", "--crf", "40",
                        *BASE)
    assert code == 0, out
    assert decode(tmp_path / "clip_x2.webm")[2]["codec"] == "vp9"
    code, out = run_cli(str(src), "-o", str(tmp_path / "lossless.mkv"), "--codec", "ffv1",
                        *BASE)
    assert code == 0 and decode(tmp_path / "lossless.mkv")[2]["codec"] == "ffv1"
    assert not list(tmp_path.glob("clip_x2.mp4"))
    with pytest.raises(ConfigError, match="cannot hold"):
        video_io.choose_codec("webm", "libx264")


# --------------------------------------------------------------------------- frames API
def test_upscale_frames_batches_and_matches_single_frames() -> None:
    up = Upscaler("attnsr-x2", scale=2)
    assert batch_size_for(up, H, W) == 1  # on the CPU batching is no faster
    assert batch_size_for(up, H, W, 8) == 8  # when asked: as many as fit
    tiled = Upscaler("attnsr-x2", scale=2, tile=600)
    assert batch_size_for(tiled, 200, 300, 8) == 6 and batch_size_for(tiled, 500, 700, 8) == 1
    rgb = _frames(5)
    rng = np.random.default_rng(1)
    mixed = [*rgb, rng.integers(0, 256, (20, 16, 4), dtype=np.uint8),
             (rgb[0].astype(np.uint16) * 257), rgb[1].astype(np.float32) / 255]
    out = list(upscale_frames(iter(mixed), upscaler=up, batch_size=4))
    assert len(out) == len(mixed)
    for lr, sr in zip(mixed, out, strict=True):
        assert sr.dtype == (lr.dtype if lr.dtype != np.float32 else np.float32)
        maxval = 1.0 if lr.dtype == np.float32 else float(np.iinfo(lr.dtype).max)
        x = lr.astype(np.float32) / np.float32(maxval)
        color, alpha = (x[..., :3], x[..., 3]) if x.shape[2] == 4 else (x, None)
        ref = up.upscale_hwc(color, alpha, dtype=sr.dtype)
        tol = 1e-4 if lr.dtype == np.float32 else 1
        assert sr.shape == ref.shape and np.abs(sr.astype(float) - ref).max() <= tol


# --------------------------------------------------------------------------- animations
def _animation(path: Path, fmt: str) -> list[np.ndarray]:
    frames = []
    for i in range(3):
        arr = np.zeros((H, W, 4), np.uint8)
        arr[..., :3] = _frames(1, seed=i)[0]
        arr[..., 3] = 255
        arr[: 8, : 8, 3] = 0  # a transparent corner
        frames.append(arr)
    pil = [Image.fromarray(a) for a in frames]
    kwargs: dict[str, Any] = {"save_all": True, "append_images": pil[1:]}
    if fmt != "TIFF":
        kwargs.update(duration=[100, 50, 70], loop=3)
    if fmt == "WEBP":
        kwargs["lossless"] = True
    pil[0].save(path, format=fmt, **kwargs)
    return frames


def _read_all(path: Path) -> tuple[list[np.ndarray], list[Any], dict[str, Any]]:
    with Image.open(path) as im:
        frames, durations = [], []
        for i in range(im.n_frames):
            im.seek(i)
            im.load()
            frames.append(np.asarray(im.convert("RGBA")))
            durations.append(im.info.get("duration"))
        return frames, durations, dict(im.info)


@pytest.mark.parametrize(("name", "fmt", "exact"), [
    ("anim.gif", "GIF", False), ("anim.png", "PNG", True), ("anim.webp", "WEBP", False),
    ("pages.tif", "TIFF", True)])
def test_animated_images_stay_animated(tmp_path: Path, name: str, fmt: str,
                                       exact: bool) -> None:
    src = tmp_path / name
    _animation(src, fmt)
    code, out = run_cli(str(src), *BASE)
    assert code == 0, out
    dst = tmp_path / name.replace(".", "_x2.")
    lr, durations_in, info_in = _read_all(src)
    sr, durations, info = _read_all(dst)
    assert len(sr) == 3 and sr[0].shape == (2 * H, 2 * W, 4)
    assert durations == durations_in and info.get("loop") == info_in.get("loop")
    assert is_attnsr_output(dst)
    up = Upscaler("bicubic", scale=2)
    for a, b in zip(lr, sr, strict=True):
        x = a.astype(np.float32) / np.float32(255)
        ref = up.upscale_hwc(x[..., :3], x[..., 3]).astype(int)
        diff = np.abs(b.astype(int) - ref)
        assert (b[:8, :8, 3] == 0).all()  # transparency kept
        if exact:
            assert diff.max() <= 1
        else:  # GIF palette / lossy WebP: close, on the opaque part
            opaque = ref[..., 3] == 255
            assert diff[..., :3][opaque].mean() < 12


def test_upscale_animated_api_and_bad_input(tmp_path: Path) -> None:
    src = tmp_path / "a.gif"
    _animation(src, "GIF")
    result = upscale_animated(src, tmp_path / "b.webp", model="bicubic", scale=2)
    assert result.frames == 3 and Image.open(result.path).n_frames == 3
    (tmp_path / "bad.gif").write_bytes(b"GIF89a" + os.urandom(40))
    with pytest.raises(ImageReadError):
        upscale_animated(tmp_path / "bad.gif", tmp_path / "c.gif", model="bicubic", scale=2)
    assert not (tmp_path / "c.gif").exists()
