"""What a 3x3 convolution costs per channel width on this CPU, and what that means for
``attnsr_net``: the measurement behind the 32-channel bundled models.

CPU convolution kernels (oneDNN for torch, MLAS for onnxruntime) work on blocks of as many
floats as a SIMD register holds: 16 with AVX-512, 8 with AVX2. A width that is not a
multiple is computed as the next one, so on AVX-512 40 channels cost what 48 cost, and 32
cost half of that. Prints, for C in/out channels on a 256x256 input, 1 thread, NHWC, best
of 7: ms per conv (torch and onnxruntime) and GMAC/s; then random-weight ``attnsr_lite``
x4 networks of 40 and 32 channels (8 blocks) through ``Upscaler`` (output MP/s, 256x256
LR input, whole image).

    python benchmarks/conv_width.py [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import time
from functools import partial

import numpy as np
import torch


def _best(fn, repeat: int = 7) -> float:
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def conv_ms(c: int, size: int, threads: int) -> tuple[float, float | None]:
    """(torch ms, onnxruntime ms or None) of one ``c -> c`` 3x3 conv on ``size``^2."""
    conv = torch.nn.Conv2d(c, c, 3, padding=1).eval()
    x = torch.randn(1, c, size, size)
    conv_cl = conv.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        t_torch = _best(lambda: conv_cl(x_cl))
    try:
        import onnxruntime as ort
    except ImportError:
        return t_torch * 1e3, None
    buf = io.BytesIO()
    torch.onnx.export(conv, x, buf, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.numpy()}
    t_ort = _best(lambda: sess.run(None, feed))
    return t_torch * 1e3, t_ort * 1e3


def network_mp_s(channels: int, threads: int) -> dict[str, float]:
    """Output MP/s of a random-weight attnsr_lite x4 (8 blocks) per backend, 256x256 in."""
    from attnsr.descriptor import describe
    from attnsr.inference.upscale import Upscaler
    from attnsr.models.registry import create_model

    torch.manual_seed(0)
    desc = describe(create_model("attnsr_lite", scale=4, channels=channels, n_blocks=8),
                    name=f"attnsr_lite c{channels}")
    img = np.random.default_rng(0).random((256, 256, 3), dtype=np.float32)
    out = {}
    for backend in ("torch", "onnxruntime"):
        up = Upscaler(desc, tile=0, device="cpu", backend=backend)
        out[backend] = (1024 * 1024 / 1e6) / _best(partial(up.upscale_hwc, img), 5)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"3x3 conv C -> C on {args.size}x{args.size}, {args.threads} thread(s), NHWC")
    print(f"{'C':>4s} {'torch ms':>9s} {'GMAC/s':>7s} {'ort ms':>8s}")
    for c in (16, 24, 32, 40, 48, 56, 64):
        t, o = conv_ms(c, args.size, args.threads)
        macs = c * c * 9 * args.size**2
        print(f"{c:4d} {t:9.2f} {macs / t / 1e6:7.1f} {o if o is None else f'{o:8.2f}'}")
    print("\nattnsr_lite x4, 8 blocks, random weights, 256x256 -> 1024x1024, output MP/s")
    for c in (40, 32):
        r = network_mp_s(c, args.threads)
        print(f"  {c} channels: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))


if __name__ == "__main__":
    main()
