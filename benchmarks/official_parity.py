"""Official-weight parity: the authors' own network class and committed checkpoint against
attnsr's implementation loaded from the same file.

The authors' code is never vendored: point ``--file`` at the architecture's source file in
a local checkout of their repository (``fetch``/``git clone``). Imports their code needs
but that are not installed (``basicsr``'s registry, ``timm`` helpers, ...) can be stubbed
with ``--stub MODULE``: the stub accepts any attribute, call or decorator, so a file that
only *registers* its class with ``@ARCH_REGISTRY.register()`` imports unchanged.

It reports, on one test image (float32, CPU, inputs in [0, 1]):

- ``max_abs_diff``: the largest absolute difference of the two raw outputs (target
  <= 1e-4 in the [0, 1] range);
- with ``--benchmark DIR --sets Set5 Set14``: Y-PSNR/SSIM (shave = scale, the papers'
  protocol, :func:`attnsr.evaluate.evaluate`) of attnsr's model *and* of the authors' model
  on the same MATLAB-bicubic LR images, so a gap to the published figure can be told
  apart from an implementation difference.

    python benchmarks/official_parity.py --file /tmp/SPAN/basicsr/archs/span_arch.py \\
        --cls SPAN --kwargs '{"num_in_ch": 3, "num_out_ch": 3, "upscale": 4}' \\
        --weights /tmp/SPAN/.../spanx4_ch48.pth --scale 4 --stub basicsr.utils.registry \\
        --image ../shared/data/benchmark/Set5/LR_bicubic/X4/baby.png \\
        --benchmark ../shared/data/benchmark --sets Set5 Set14 --json parity_span.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

import attnsr
from attnsr.checkpoint import read_torch_checkpoint, unwrap_state_dict
from attnsr.evaluate import evaluate


class _Anything:
    """Stands for any attribute of a stubbed module: calls return a new stub, except that
    calling it with one class or function returns that object (a decorator)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and (isinstance(args[0], type) or callable(args[0])):
            return args[0]
        return _Anything()

    def __getattr__(self, name: str) -> Any:
        return _Anything()


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()


def stub_modules(names: list[str]) -> None:
    """Put permissive stand-ins for ``names`` (and their parent packages) in sys.modules."""
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            full = ".".join(parts[:i])
            if full not in sys.modules:
                mod = _StubModule(full)
                mod.__path__ = []  # a package, so children import
                sys.modules[full] = mod


@contextlib.contextmanager
def cuda_is_cpu() -> Iterator[None]:
    """Inside, ``Module.cuda()`` and ``Tensor.cuda()`` return their object unchanged, so
    authors' code whose constructor moves itself to the GPU (the NTIRE challenge files)
    builds on a CPU-only machine; restored on exit."""
    saved = nn.Module.cuda, torch.Tensor.cuda
    nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.cuda, torch.Tensor.cuda = saved  # type: ignore[method-assign]


def load_class(file: Path, cls: str, root: Path | None) -> type[nn.Module]:
    """The class ``cls`` of the authors' source ``file`` (``root`` goes on sys.path first,
    for the file's own absolute imports)."""
    root = root or file.parent
    sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location(f"_authors_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{file}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, cls)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat state dict in an official ``.pth/.pt`` (``params_ema`` first, as attnsr
    reads it) or ``.safetensors`` file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return unwrap_state_dict(load_file(str(path)), path)
    return unwrap_state_dict(read_torch_checkpoint(path), path)


def authors_model(args: argparse.Namespace) -> nn.Module:
    """The authors' network with their checkpoint loaded strictly, in eval mode."""
    klass = load_class(Path(args.file), args.cls, Path(args.root) if args.root else None)
    model = klass(**json.loads(args.kwargs))
    state = read_state_dict(args.weights)
    model.load_state_dict(state, strict=True)
    return model.eval()


def read_image(path: Path) -> torch.Tensor:
    """RGB image -> ``(1, 3, H, W)`` float32 in [0, 1]."""
    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()


class InRange(nn.Module):
    """The authors' network seen in [0, 1]: for code whose test script feeds pixel values
    in [0, ``value_range``] (``--range 255``)."""

    def __init__(self, net: nn.Module, value_range: float) -> None:
        super().__init__()
        self.net, self.value_range = net, float(value_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, h, w)`` in [0, 1] -> ``(N, C, s h, s w)`` in about [0, 1]."""
        if self.value_range == 1.0:
            return self.net(x)
        return self.net(x * self.value_range) / self.value_range


def compare(theirs: nn.Module, ours: Any, image: torch.Tensor) -> dict[str, float]:
    """Raw outputs of both on ``image`` (in [0, 1]): max and mean absolute difference."""
    with torch.inference_mode():
        a = theirs(image).float()
        b = ours.run(image).float()
    if a.shape != b.shape:
        raise SystemExit(f"output shapes differ: authors {tuple(a.shape)}, attnsr "
                         f"{tuple(b.shape)}")
    diff = (a - b).abs()
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}


def scores(model: Any, name: str, benchmark: Path, sets: list[str], scale: int
           ) -> dict[str, list[float]]:
    """{set: [Y-PSNR, SSIM]} with the papers' protocol."""
    report = evaluate(model, [benchmark / s for s in sets], [scale], name=name)
    if report.errors:
        raise SystemExit("; ".join(e.message for e in report.errors))
    return {s.set: [round(s.psnr, 4), round(s.ssim, 4)] for s in report.summaries()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--file", required=True, help="the authors' architecture source file")
    p.add_argument("--cls", required=True, help="class name in that file")
    p.add_argument("--kwargs", default="{}", help="JSON keyword arguments for the class")
    p.add_argument("--root", help="directory put on sys.path (default: the file's folder)")
    p.add_argument("--stub", nargs="*", default=[], help="modules to stub out")
    p.add_argument("--weights", required=True, help="the committed official checkpoint")
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--image", required=True, help="test image (an LR image)")
    p.add_argument("--benchmark", help="benchmark root with <Set>/HR and LR_bicubic/")
    p.add_argument("--sets", nargs="*", default=["Set5", "Set14"])
    p.add_argument("--range", type=float, default=1.0,
                   help="pixel range the authors' test script feeds (1 or 255)")
    p.add_argument("--no-cuda", action="store_true",
                   help="make .cuda() a no-op (code whose __init__ moves itself to the GPU)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the results here as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    stub_modules(args.stub)
    with cuda_is_cpu() if args.no_cuda else contextlib.nullcontext():
        theirs = InRange(authors_model(args), args.range).eval()
    ours = attnsr.resolve(args.weights, scale=args.scale, device="cpu", precision="fp32",
                          backend="torch")
    result: dict[str, Any] = {
        "weights": str(args.weights), "arch": ours.arch, "config": str(ours.config),
        "params_attnsr": ours.num_params,
        "params_authors": sum(t.numel() for t in theirs.net.state_dict().values()
                              if t.is_floating_point()),
        "image": str(args.image), **compare(theirs, ours, read_image(Path(args.image))),
    }
    if args.benchmark:
        bench = Path(args.benchmark)
        result["attnsr"] = scores(ours, ours.name, bench, args.sets, args.scale)
        result["authors"] = scores(lambda x: theirs(x), "authors", bench, args.sets,
                                   args.scale)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
