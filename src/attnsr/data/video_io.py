"""Video files through PyAV (FFmpeg's libraries, shipped in the ``av`` wheel): probing,
decoding to RGB arrays, choosing and configuring an encoder, encoded segments on disk,
and the final remux that puts the upscaled video next to the source's other streams.

What the output keeps of the input (see ``docs/video.md``): every frame's timestamp
(``pts``, in the input's time base, so variable frame rates stay variable) and
duration, the frame rate, the display matrix (rotation/flip), colour tags (matrix,
range, primaries, transfer), the sample aspect ratio, the bit depth where the codec has
it, audio and subtitle streams packet for packet (no re-encoding), attachments
(Matroska), chapters and metadata. A ``comment`` tag starting with ``attnsr`` marks the
output (:func:`software_tag`).

Encoded video is kept in *segment files*, a plain packet log written by this module
(timestamps, flags, bytes), so an interrupted job keeps what it finished: containers
such as NUT or Matroska do not store decode timestamps, which B-frame codecs need.
Every segment is encoded by a fresh encoder with the same settings, hence the same
codec headers (checked), and starts on a keyframe.

Errors are :class:`~attnsr.errors.ImageReadError` (the input) and
:class:`~attnsr.errors.ImageWriteError` (the output), one line naming the file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import heapq
import io
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

try:
    import av
except ImportError as exc:  # the optional extra
    raise ImportError("video support needs PyAV: pip install 'attnsr[video]'") from exc

from attnsr.data.media import MediaOptions
from attnsr.errors import ConfigError, ImageReadError, ImageWriteError

log = logging.getLogger(__name__)

CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska", ".mov": "mov",
                     ".webm": "webm", ".avi": "avi", ".mpg": "mpeg", ".mpeg": "mpeg",
                     ".ts": "mpegts", ".m2ts": "mpegts", ".mts": "mpegts", ".flv": "flv",
                     ".ogv": "ogg", ".3gp": "3gp", ".nut": "nut"}
# --codec auto: the first one the container holds (and the FFmpeg build has).
DEFAULT_CODECS = ("libx264", "libx265", "libvpx-vp9", "libsvtav1", "libaom-av1", "libvpx",
                  "mpeg4", "ffv1")
# Constant-quality defaults: visually near-transparent on upscaled content.
CRF_DEFAULTS = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libsvtav1": 28,
                "libaom-av1": 24}
_QUIET_OPTIONS = {"libx265": {"x265-params": "log-level=error"},
                  "libsvtav1": {"svtav1-params": "lp=0"}}
# Container tags the muxer writes itself: not copied from the input.
_OWN_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands", "duration",
             "comment", "handler_name", "vendor_id"}
MARKER_TAG = "comment"
_AVFMT_GLOBALHEADER = 0x0040  # the muxer wants codec headers out of band
_NO_TS = -(2**63)  # "no timestamp" in segment files
_SEGMENT_MAGIC = b"ATTNSRV1"
_RECORD = struct.Struct("<qqqBI")  # pts, dts, duration, keyframe, size


# --------------------------------------------------------------------------- probing
@dataclass(frozen=True, kw_only=True)
class VideoInfo:
    """The input's video stream as the output keeps it.

    Attributes:
        width, height: frame size (stored orientation: rotation is metadata).
        pix_fmt: decoded pixel format (``yuv420p``, ``yuv420p10le``, ``rgb24`` ...).
        time_base: of the stream's timestamps; the encoder uses it too.
        rate: average frame rate (None: unknown).
        frames: frames the container announces (0: unknown), for progress.
        end: where the video should end, in seconds (None: unknown): a decode that
            stops well before it is a truncated file.
        colorspace, color_range, color_primaries, color_trc: FFmpeg's enum values.
        sample_aspect_ratio: pixel aspect (None: square/unknown).
        display_matrix: the 9 int32 of FFmpeg's display matrix, or None.
        depth: bits per sample of the RGB arrays handed out (8 or 16).
        alpha: the pixel format has an alpha plane.
    """

    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    rate: Fraction | None
    frames: int
    end: float | None
    colorspace: int = 2
    color_range: int = 0
    color_primaries: int = 2
    color_trc: int = 2
    sample_aspect_ratio: Fraction | None = None
    display_matrix: tuple[int, ...] | None = None
    depth: int = 8
    alpha: bool = False

    @property
    def rgb_format(self) -> str:
        """The packed RGB(A) format frames are converted to (``rgb24`` ... ``rgba64le``)."""
        if self.depth > 8:
            return "rgba64le" if self.alpha else "rgb48le"
        return "rgba" if self.alpha else "rgb24"

    @property
    def dtype(self) -> Any:
        return np.uint16 if self.depth > 8 else np.uint8


def open_input(path: Path) -> av.container.InputContainer:
    """``av.open`` for reading, every failure an :class:`ImageReadError`."""
    if not path.is_file():
        raise ImageReadError(path, "no such file" if not path.exists() else "not a file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        return av.open(str(path), "r")
    except av.FFmpegError as exc:
        raise ImageReadError(path, f"not a video, or broken ({describe(exc)})") from None


def describe(exc: BaseException) -> str:
    """FFmpeg's message without the file name PyAV appends."""
    return (getattr(exc, "strerror", None) or str(exc)).split(": '")[0]


def video_stream(container: av.container.InputContainer, path: Path) -> Any:
    """The first video stream that is not a cover picture."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    kinds = sorted({s.type for s in container.streams})
    what = "audio only" if kinds == ["audio"] else f"streams: {', '.join(kinds) or 'none'}"
    raise ImageReadError(path, f"no video stream ({what})")




def _expected_end(container: Any, stream: Any) -> float | None:
    """The video's end in seconds from the headers (stream duration, Matroska's
    ``DURATION`` tag, or the file's when video is its only stream)."""
    tb = stream.time_base
    if stream.duration and tb:
        return float((stream.duration + (stream.start_time or 0)) * tb)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag and ":" in tag:
        h, m, s = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    if container.duration and len(container.streams) == 1:
        return container.duration / 1e6
    return None


def _display_matrix(frame: Any) -> tuple[int, ...] | None:
    try:
        data = bytes(frame.side_data[av.sidedata.sidedata.Type.DISPLAYMATRIX])
    except (KeyError, IndexError, ValueError):
        return None
    return struct.unpack("<9i", data[:36]) if len(data) >= 36 else None


def probe(path: Path, *, max_pixels: int | None = None) -> VideoInfo:
    """Open ``path`` and decode its first frame: the facts the output keeps."""
    with open_input(path) as container:
        stream = video_stream(container, path)
        first = next(_decoded(container, stream, path), None)
        if first is None:
            raise ImageReadError(path, "no decodable video frame (broken or truncated)")
        w, h = first.width, first.height
        if max_pixels is not None and w * h > max_pixels:
            raise ImageReadError(path, f"frames are {w}x{h} = {w * h} pixels, above the limit "
                                    f"of {max_pixels} (set --max-pixels)")
        _, bits, _, alpha, _ = _format_traits(first.format.name)
        rate = stream.average_rate or stream.guessed_rate
        end = _expected_end(container, stream)
        frames = stream.frames or (round(end * rate) if rate and end else 0)
        return VideoInfo(
            width=w, height=h, pix_fmt=first.format.name,
            time_base=stream.time_base or Fraction(1, 1000), rate=rate, frames=frames,
            end=end, colorspace=first.colorspace,
            color_range=first.color_range, color_primaries=first.color_primaries,
            color_trc=first.color_trc,
            sample_aspect_ratio=stream.codec_context.sample_aspect_ratio,
            display_matrix=_display_matrix(first), depth=16 if bits > 8 else 8, alpha=alpha)


# --------------------------------------------------------------------------- decoding
def _decoded(container: Any, stream: Any, path: Path) -> Iterator[Any]:
    """Decoded frames of ``stream``; FFmpeg errors become :class:`ImageReadError`."""
    stream.thread_type = "AUTO"
    try:
        for packet in container.demux(stream):
            yield from packet.decode()
    except av.FFmpegError as exc:
        raise ImageReadError(path, f"broken or truncated video data ({describe(exc)})") from None


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``pixels`` (H, W, 3|4) uint8/uint16 RGB(A), ``pts`` and
    ``duration`` in the stream's time base."""

    pixels: np.ndarray
    pts: int
    duration: int


def _timed(frames: Iterator[Any], info: VideoInfo) -> Iterator[tuple[Any, int, int]]:
    """(frame, pts, duration) with gaps filled: a missing pts follows the previous
    frame, a missing duration is the distance to the next pts (one frame of lookahead),
    the last frame's the previous one's. Timestamps are made strictly increasing."""
    step = max(1, round(1 / (info.rate * info.time_base))) if info.rate else 1
    held: tuple[Any, int, int] | None = None
    for frame in frames:
        pts = frame.pts
        if held is not None:
            prev, prev_pts, prev_dur = held
            pts = prev_pts + (prev_dur or step) if pts is None else max(pts, prev_pts + 1)
            yield prev, prev_pts, prev_dur or pts - prev_pts
            step = prev_dur or pts - prev_pts
        held = (frame, 0 if pts is None else pts, frame.duration or 0)
    if held is not None:
        yield held[0], held[1], held[2] or step


def decode(path: Path, info: VideoInfo, *, start: int = 0) -> Iterator[Frame]:
    """The frames of ``path`` from index ``start`` on, as RGB(A) arrays of
    ``info.dtype`` (colour converted with the stream's own matrix and range). Raises
    :class:`ImageReadError` at the end when the video stops well before its announced
    end (a truncated file)."""
    end = 0.0
    with open_input(path) as container:
        stream = video_stream(container, path)
        timed = _timed(_decoded(container, stream, path), info)
        for index, (frame, pts, duration) in enumerate(timed):
            end = float((pts + duration) * info.time_base)
            if index >= start:
                pixels = frame.to_ndarray(format=info.rgb_format, channel_last=True)
                yield Frame(pixels, pts, duration)
    if info.end is not None and end < info.end - _truncation_slack(info):
        raise ImageReadError(path, f"truncated: the video stops at {end:.2f} s of "
                                f"{info.end:.2f} s")


def _truncation_slack(info: VideoInfo) -> float:
    """How far before its announced end a complete video may stop: three frames (a
    last frame's duration rounded in the headers) and 50 ms."""
    frame = float(1 / info.rate) if info.rate else 0.1
    return 3 * frame + 0.05


# --------------------------------------------------------------------------- encoding
def container_format(path: Path) -> str:
    """FFmpeg's muxer name for an output path (by extension)."""
    ext = path.suffix.lower()
    if ext not in CONTAINER_FORMATS:
        raise ConfigError(f"{path}: unknown video extension {ext!r} (use "
                          f"{', '.join(sorted(set(CONTAINER_FORMATS)))})")
    return CONTAINER_FORMATS[ext]


def _container_codecs(fmt: str) -> set[str]:
    with av.open(io.BytesIO(), "w", format=fmt) as out:
        return set(out.supported_codecs)


def _encoder(name: str) -> Any | None:
    try:
        codec = av.codec.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        return None
    return codec if codec.type == "video" else None


def choose_codec(fmt: str, requested: str | None) -> str:
    """The encoder for container ``fmt``: ``requested`` (checked) or the first of
    :data:`DEFAULT_CODECS` the container holds."""
    held = _container_codecs(fmt)
    if requested:
        codec = _encoder(requested)
        if codec is None:
            raise ConfigError(f"--codec {requested!r}: not a video encoder of this FFmpeg "
                              f"build (try libx264, libx265, libvpx-vp9, ffv1, png)")
        if codec.name not in held and requested not in held:
            raise ConfigError(f"--codec {requested}: the {fmt} container cannot hold it "
                              "(use --format mkv/mov or -o NAME.mkv)")
        return codec.name
    for name in DEFAULT_CODECS:
        if name in held and _encoder(name) is not None:
            return name
    raise ConfigError(f"no video encoder of this FFmpeg build fits the {fmt} container")


def _format_traits(name: str) -> tuple[bool, int, tuple[int, int], bool, bool]:
    """(rgb, bits, chroma size of a 64x64 frame, alpha, gray) of a pixel format."""
    fmt = av.VideoFormat(name, 64, 64)
    comps = fmt.components
    alpha = any(c.is_alpha for c in comps)
    gray = not fmt.is_rgb and len(comps) - alpha == 1
    return (fmt.is_rgb, max(c.bits for c in comps), (fmt.chroma_width(), fmt.chroma_height()),
            alpha, gray)


def choose_pix_fmt(codec: str, source: str, requested: str | None = None) -> str:
    """``requested`` (checked), else ``source`` if the codec has it, else the codec's
    format closest to it, in this order of importance: colour stays colour (gray stays
    gray), no fewer bits, alpha kept (not added), the nearest bit depth, RGB-ness,
    chroma subsampling."""
    formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    if requested:
        if formats and requested not in formats:
            raise ConfigError(f"--pix-fmt {requested}: {codec} takes {', '.join(formats)}")
        return requested
    if not formats or source in formats:
        return source
    want = _format_traits(source)

    def distance(name: str) -> tuple[int, ...]:
        rgb, bits, chroma, alpha, gray = _format_traits(name)
        return (gray != want[4], bits < want[1], alpha != want[3], abs(bits - want[1]),
                rgb != want[0], chroma != want[2], formats.index(name))

    plain = [f for f in formats if not f.startswith(("yuvj", "nv", "pal"))]  # not legacy
    return min(plain or formats, key=distance)


@dataclass(frozen=True, kw_only=True)
class EncoderSpec:
    """Everything an encoder is opened with: every segment and the final stream get the
    same, so their codec headers agree. ``as_dict`` is part of a job's fingerprint."""

    codec: str
    pix_fmt: str
    width: int
    height: int
    time_base: Fraction
    rate: Fraction | None
    options: dict[str, str] = field(default_factory=dict)
    bit_rate: int | None = None
    colorspace: int = 2
    color_range: int = 0
    color_primaries: int = 2
    color_trc: int = 2
    sample_aspect_ratio: Fraction | None = None
    global_header: bool = True

    def configure(self, ctx: Any) -> None:
        """Set the fields of an unopened encoder context."""
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, self.pix_fmt
        ctx.time_base = self.time_base
        if self.rate:
            ctx.framerate = self.rate
        if self.bit_rate is not None:
            ctx.bit_rate = self.bit_rate
        ctx.colorspace, ctx.color_range = self.colorspace, self.color_range
        ctx.color_primaries, ctx.color_trc = self.color_primaries, self.color_trc
        if self.sample_aspect_ratio:
            ctx.sample_aspect_ratio = self.sample_aspect_ratio
        flags = av.codec.context.Flags
        ctx.flags |= flags.frame_duration  # packets carry their frame's duration
        if self.global_header:
            ctx.flags |= flags.global_header
        ctx.options = dict(self.options)
        ctx.thread_type = "AUTO"

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Fraction) else v
                for k, v in self.__dict__.items()}


def _quality_options(codec: str, crf: int | None) -> tuple[dict[str, str], int | None]:
    """(encoder options, bit rate) for ``--crf``: constant quality where the codec has
    it; MPEG-4 Part 2 gets a high bit rate instead."""
    opts = dict(_QUIET_OPTIONS.get(codec, {}))
    if codec in CRF_DEFAULTS:
        opts["crf"] = str(CRF_DEFAULTS[codec] if crf is None else crf)
        return opts, (0 if codec in ("libvpx-vp9", "libaom-av1") else None)
    if crf is not None:
        log.warning("--crf is ignored by %s", codec)
    return opts, None


_SPC_RGB, _SPC_BT709, _SPC_BT601, _RANGE_LIMITED, _RANGE_FULL = 0, 1, 6, 1, 2


def _colour_tags(info: VideoInfo, pix_fmt: str, height: int) -> tuple[int, int]:
    """(matrix, range) of the output: the input's between YUV formats; RGB output is
    tagged RGB, full range; RGB input encoded as YUV gets BT.709 (HD) or BT.601 (SD),
    limited range, as FFmpeg's tools assume for untagged video."""
    if _format_traits(pix_fmt)[0]:
        return _SPC_RGB, _RANGE_FULL
    if _format_traits(info.pix_fmt)[0] or info.colorspace == _SPC_RGB:
        return (_SPC_BT709 if height >= 720 else _SPC_BT601), _RANGE_LIMITED
    return info.colorspace, info.color_range


def choose_encoder(info: VideoInfo, fmt: str, opts: MediaOptions, scale: int) -> EncoderSpec:
    """The encoder of an upscaled ``info`` stream in container ``fmt``."""
    codec = choose_codec(fmt, opts.codec)
    pix_fmt = choose_pix_fmt(codec, info.pix_fmt, opts.pix_fmt)
    colorspace, color_range = _colour_tags(info, pix_fmt, info.height * scale)
    if info.alpha and not _format_traits(pix_fmt)[3]:
        log.warning("%s (%s) has no alpha plane: the video's transparency is dropped "
                    "(ffv1, png, libvpx-vp9 keep it)", codec, pix_fmt)
    options, bit_rate = _quality_options(codec, opts.crf)
    if codec == "mpeg4":
        bit_rate = int(info.width * info.height * scale * scale * float(info.rate or 25) * 0.5)
    global_header = bool(av.format.ContainerFormat(fmt, "w").flags & _AVFMT_GLOBALHEADER)
    return EncoderSpec(
        codec=codec, pix_fmt=pix_fmt, width=info.width * scale, height=info.height * scale,
        time_base=info.time_base, rate=info.rate, options=options, bit_rate=bit_rate,
        colorspace=colorspace, color_range=color_range,
        color_primaries=info.color_primaries, color_trc=info.color_trc,
        sample_aspect_ratio=info.sample_aspect_ratio, global_header=global_header)


def to_video_frame(pixels: np.ndarray, spec: EncoderSpec, pts: int, duration: int) -> Any:
    """An upscaled RGB(A) array as a frame in the encoder's pixel format, converted with
    the output's colour matrix and range (the source's, for YUV video)."""
    fmt = {(8, 3): "rgb24", (8, 4): "rgba", (16, 3): "rgb48le", (16, 4): "rgba64le"}[
        (16 if pixels.dtype == np.uint16 else 8, pixels.shape[2])]
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format=fmt)
    frame.colorspace, frame.color_range = spec.colorspace, spec.color_range
    frame = frame.reformat(format=spec.pix_fmt)
    frame.pts, frame.duration, frame.time_base = pts, duration, spec.time_base
    return frame


# --------------------------------------------------------------------------- segments
@dataclass(frozen=True)
class Packet:
    """An encoded packet as kept in a segment file (timestamps in the spec's base)."""

    pts: int | None
    dts: int | None
    duration: int
    keyframe: bool
    data: bytes


class SegmentWriter:
    """Encode frames into ``path`` (a packet log), through ``path.part`` until
    :meth:`finish`; :meth:`abort` removes the partial file."""

    def __init__(self, path: Path, spec: EncoderSpec) -> None:
        self.path, self.part = path, path.with_name(path.name + ".part")
        self.ctx = av.CodecContext.create(spec.codec, "w")
        spec.configure(self.ctx)
        self.fh: BinaryIO = open(self.part, "wb")  # noqa: SIM115 (closed in finish/abort)
        self.fh.write(_SEGMENT_MAGIC)
        self.durations: dict[int, int] = {}
        self.frames = 0

    def add(self, frame: Any) -> None:
        self.durations[frame.pts] = frame.duration
        self._write(self.ctx.encode(frame))
        self.frames += 1

    def _write(self, packets: list[Any]) -> None:
        for p in packets:
            duration = p.duration or self.durations.pop(p.pts, 0)
            self.fh.write(_RECORD.pack(_NO_TS if p.pts is None else p.pts,
                                       _NO_TS if p.dts is None else p.dts, duration,
                                       int(p.is_keyframe), p.size))
            self.fh.write(bytes(p))

    def finish(self) -> bytes:
        """Flush the encoder, close and rename; returns the codec headers."""
        self._write(self.ctx.encode(None))
        self.fh.close()
        self.part.replace(self.path)
        extradata = bytes(self.ctx.extradata or b"")
        del self.ctx  # the encoder's buffers and threads go now
        trim_heap()
        return extradata

    def abort(self) -> None:
        self.fh.close()
        self.part.unlink(missing_ok=True)


def trim_heap() -> None:
    """Hand freed heap memory back to the OS (glibc's ``malloc_trim``; elsewhere a
    no-op). Called between segments: each one's encoder and its threads free buffers
    that would otherwise stay resident as fragments, and peak memory would creep up
    with the number of segments."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None


def read_segment(path: Path) -> Iterator[Packet]:
    with open(path, "rb") as fh:
        if fh.read(len(_SEGMENT_MAGIC)) != _SEGMENT_MAGIC:
            raise ImageWriteError(path, "not an attnsr segment file")
        while head := fh.read(_RECORD.size):
            pts, dts, duration, key, size = _RECORD.unpack(head)
            yield Packet(None if pts == _NO_TS else pts, None if dts == _NO_TS else dts,
                         duration, bool(key), fh.read(size))


# --------------------------------------------------------------------------- muxing
@dataclass(frozen=True, kw_only=True)
class MuxPlan:
    """The final remux: the upscaled video (segments) and the source's other streams."""

    source: Path
    segments: list[Path]
    spec: EncoderSpec
    info: VideoInfo
    extradata: bytes
    marker: str | None = None


def _copy_metadata(src: dict[str, str], skip: set[str]) -> dict[str, str]:
    return {k: v for k, v in src.items() if k.lower() not in skip}


def _marked(metadata: dict[str, str], marker: str | None) -> dict[str, str]:
    """The container tags with attnsr's marker first in ``comment`` (the source's own
    comment kept after it)."""
    out = _copy_metadata(metadata, _OWN_TAGS)
    own = next((v for k, v in metadata.items() if k.lower() == "comment"), "")
    if marker:
        out[MARKER_TAG] = f"{marker}; {own}" if own else marker
    elif own:
        out[MARKER_TAG] = own
    return out


def _add_video(out: Any, plan: MuxPlan, template: Any) -> Any:
    stream = out.add_stream(plan.spec.codec, rate=plan.spec.rate)
    plan.spec.configure(stream.codec_context)
    stream.time_base = plan.spec.time_base
    if plan.info.display_matrix is not None:
        stream.set_display_matrix(plan.info.display_matrix)
    stream.metadata.update(_copy_metadata(template.metadata, _OWN_TAGS | {"encoder"}))
    stream.disposition = template.disposition
    return stream


def _add_copies(out: Any, inp: Any, video: Any, path: Path) -> dict[int, Any]:
    """Output streams for the source's audio, subtitle and attachment streams (input
    index -> output stream); what the container cannot hold is left out, with a
    warning."""
    copies: dict[int, Any] = {}
    for s in inp.streams:
        if s.index == video.index:
            continue
        if s.type not in ("audio", "subtitle", "attachment"):
            log.warning("%s: %s stream %d (%s) is not copied", path, s.type, s.index,
                        s.codec_context.name if s.codec_context else "no codec")
            continue
        try:
            o = out.add_stream_from_template(s)
        except (ValueError, av.FFmpegError) as exc:
            log.warning("%s: %s stream %d not copied: %s", path, s.type, s.index, exc)
            continue
        o.metadata.update(_copy_metadata(s.metadata, {"duration", "encoder"}))
        o.disposition = s.disposition
        copies[s.index] = o
    return copies


def _video_packets(plan: MuxPlan, stream: Any) -> Iterator[tuple[float, int, Any]]:
    """The segments' packets in order, for the muxer; a decode timestamp that would not
    increase across a segment boundary is nudged one tick up (never past its pts)."""
    tb, last = plan.spec.time_base, None
    for seg in plan.segments:
        for rec in read_segment(seg):
            dts = rec.dts
            if dts is not None and last is not None and dts <= last:
                dts = min(last + 1, rec.pts) if rec.pts is not None else last + 1
            last = dts if dts is not None else last
            p = av.Packet(rec.data)
            p.pts, p.dts, p.duration, p.is_keyframe = rec.pts, dts, rec.duration, rec.keyframe
            p.time_base, p.stream = tb, stream
            key = dts if dts is not None else rec.pts
            yield (float(key * tb) if key is not None else 0.0), 0, p


def _copied_packets(inp: Any, copies: dict[int, Any]) -> Iterator[tuple[float, int, Any]]:
    streams = [inp.streams[i] for i in copies if inp.streams[i].type != "attachment"]
    if not streams:
        return
    last = 0.0
    for p in inp.demux(*streams):
        if p.size == 0 or p.stream.index not in copies:
            continue
        ts = p.dts if p.dts is not None else p.pts
        last = float(ts * p.time_base) if ts is not None else last
        p.stream = copies[p.stream.index]
        yield last, 1, p


def mux(plan: MuxPlan, dst: Path, tmp: Path) -> None:
    """Write the output container to ``tmp`` (renamed to ``dst`` by the caller):
    the segments' video and the source's other streams, interleaved by time (memory: a
    few packets)."""
    fmt = container_format(dst)
    options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
    with open_input(plan.source) as inp, av.open(str(tmp), "w", format=fmt,
                                                  options=options) as out:
        template = video_stream(inp, plan.source)
        stream = _add_video(out, plan, template)
        copies = _add_copies(out, inp, template, plan.source)
        out.metadata.update(_marked(dict(inp.metadata), plan.marker))
        if inp.chapters():
            out.set_chapters(inp.chapters())
        out.start_encoding()
        if bytes(stream.codec_context.extradata or b"") != plan.extradata:
            raise ImageWriteError(dst, f"{plan.spec.codec} wrote different codec headers "
                                       "for the same settings; cannot join its segments")
        merged = heapq.merge(_video_packets(plan, stream), _copied_packets(inp, copies),
                             key=lambda item: (item[0], item[1]))
        for _, _, packet in merged:
            out.mux(packet)


def software_tag(path: str | Path) -> str:
    """The ``comment`` tag of a video file ('' if none or unreadable): attnsr outputs
    start with ``attnsr``."""
    try:
        with av.open(str(path), "r") as container:
            return next((v for k, v in container.metadata.items()
                         if k.lower() == MARKER_TAG), "")
    except (av.FFmpegError, OSError, ValueError):
        return ""
