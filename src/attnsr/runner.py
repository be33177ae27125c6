"""The runner: a model plus everything inference needs to run it right, one contract for
every backend (torch eager, onnxruntime).

Calling a :class:`Runner` maps ``lr`` ``(B, C, H, W)`` float in [0, 1] (any device, any
memory order) to ``sr`` ``(B, C', sH, sW)`` float32 in [0, 1] on the runner's device:

1. the input is moved to the device, as float32, in the runner's memory order (NHWC on
   CPU where the model's traits allow it: oneDNN's fast path; NCHW otherwise);
2. it is reflect-padded at the bottom/right to the model's size multiple / minimum size;
3. the backend runs (under ``torch.inference_mode``, autocast to bf16/fp16 when the
   precision says so; a low-precision output that is not finite, or black for a
   non-black input, is recomputed in fp32 and counted in :attr:`Runner.fallbacks`);
4. the output is cropped to ``s H x s W`` and clamped to [0, 1].

With ``tta`` (the quality mode, ``--tta``) step 3 is the x8 geometric self-ensemble: the
model runs on the 8 flips/transposes of the input and the outputs, transformed back, are
averaged (EDSR's "+" models). Each run is local, so tiled TTA equals whole-image TTA.

Every engine (``upscale``, tiling, ``eval``, ``explain``, ``bench``) calls the runner, so
they cannot differ in how they run a model. :meth:`Runner.run` is step 2-4 without the
inference policy and without clamping, for training and analysis (gradients flow).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnsr.errors import ConfigError
from attnsr.models.base import ModelTraits

log = logging.getLogger(__name__)

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16,
                                            "fp16": torch.float16}
BACKENDS = ("torch", "onnxruntime")


@dataclass(eq=False)
class Runner:
    """A model and what callers need to know to run it (spandrel's descriptor).

    Attributes:
        model: the backend: an ``nn.Module`` (torch) or an onnxruntime session wrapped as
            a parameter-free module (``backend="onnxruntime"``, CPU only).
        name: what the user called it (``attnsr_lite.x4``, a file path ...).
        arch: the registered architecture.
        scale, in_channels, out_channels: what it maps.
        traits: size multiple, receptive field, precision safety ...
        config: the architecture's config (a frozen dataclass; a dict for foreign ONNX).
        source: where the weights came from ('' for random weights).
        precision: ``fp32``, ``bf16`` or ``fp16`` (see :meth:`set_precision`).
        activation_bytes_per_px: activation memory per LR pixel when known in advance
            (ONNX exports record it), for automatic tile sizes.
    """

    model: nn.Module
    name: str
    arch: str
    scale: int
    in_channels: int
    out_channels: int
    traits: ModelTraits
    config: Any = None
    source: str = ""
    backend: str = "torch"
    precision: str = "fp32"
    activation_bytes_per_px: float | None = None
    fallbacks: int = 0
    placed: torch.device | None = None  # set by to(): parameter-free models have no device
    tta: bool = False

    # ------------------------------------------------------------------ facts
    @property
    def multiple_of(self) -> int:
        return self.traits.multiple_of

    @property
    def has_global_ops(self) -> bool:
        return self.traits.has_global_ops

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def device(self) -> torch.device:
        if self.placed is not None:
            return self.placed
        p = next(self.model.parameters(), None)
        if p is None:
            p = next(self.model.buffers(), None)
        return p.device if p is not None else torch.device("cpu")

    def memory_format(self, device: torch.device | None = None) -> torch.memory_format:
        """The order to run in on ``device`` (default: the runner's): NHWC on CPU where
        the traits ask for it and the backend is torch, NCHW otherwise."""
        device = self.device if device is None else device
        nhwc = (device.type == "cpu" and self.traits.channels_last and self.backend == "torch")
        return torch.channels_last if nhwc else torch.contiguous_format

    def host_threads(self) -> AbstractContextManager[None]:
        """Run the work around this runner's forwards (padding, blending, clamping,
        rounding) on one torch thread when the backend has a thread pool of its own
        (onnxruntime). Both pools on the same cores wait for each other: torch's OpenMP
        workers spin after each op while onnxruntime's run, and onnxruntime's spin after
        a run while torch clamps (``--fast`` on Set5, 2 threads: 10.7 -> 12.9 MP/s with
        onnxruntime's spinning on; ``benchmarks/upscale_speed.py compare``). Torch
        backends keep every thread."""
        if self.backend == "torch":
            return nullcontext()
        return _one_torch_thread()

    def pad_amounts(self, h: int, w: int) -> tuple[int, int]:
        """Bottom/right padding that makes (h, w) valid for the model."""
        m = self.traits.multiple_of
        ph = max((-h) % m, self.traits.min_size - h, 0)
        pw = max((-w) % m, self.traits.min_size - w, 0)
        return ph, pw

    # ------------------------------------------------------------------ placement
    def to(self, device: torch.device | str) -> Runner:
        """Move to ``device`` in its memory order (onnxruntime runners: CPU only)."""
        device = torch.device(device)
        if self.backend != "torch" and device.type != "cpu":
            raise ConfigError(f"{self.name}: the {self.backend} backend runs on the CPU "
                              f"only, not {device}")
        self.model.to(device, memory_format=self.memory_format(device))
        self.placed = device
        return self

    def eval(self) -> Runner:
        self.model.eval()
        return self

    def set_precision(self, precision: str) -> Runner:
        """Run in ``precision`` (``fp32``/``bf16``/``fp16``); refused where the backend or
        the model's traits cannot (use :func:`attnsr.resolver.choose_precision` for the
        ``auto`` rule and the warnings)."""
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r}: use fp32, bf16 or fp16")
        if precision != "fp32" and self.backend != "torch":
            raise ConfigError(f"{self.name}: the {self.backend} backend runs in fp32 only")
        self.precision = precision
        return self

    # ------------------------------------------------------------------ running
    def run(self, lr: Tensor) -> Tensor:
        """Pad -> forward -> crop, not clamped, no inference policy (training, analysis):
        ``(B, C, H, W)`` -> ``(B, C', sH, sW)`` in the model's dtype."""
        h, w = lr.shape[-2:]
        ph, pw = self.pad_amounts(h, w)
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            lr = F.pad(lr, (0, pw, 0, ph), mode=mode)
        sr = self.model(lr)
        s = self.scale
        return sr[..., : h * s, : w * s]

    def _forward(self, lr: Tensor, dtype: torch.dtype | None) -> Tensor:
        if not self.tta:
            return self._forward_once(lr, dtype)
        total = None
        for op in range(8):
            sr = dihedral(self._forward_once(dihedral(lr, op), dtype), op, inverse=True)
            total = sr if total is None else total.add_(sr)
        assert total is not None
        return total.div_(8.0)

    def _forward_once(self, lr: Tensor, dtype: torch.dtype | None) -> Tensor:
        if dtype is None:
            return self.run(lr).float()
        with torch.autocast(lr.device.type, dtype=dtype):
            return self.run(lr).float()

    def __call__(self, lr: Tensor) -> Tensor:
        """The inference contract (module docstring): ``(B, C, H, W)`` in [0, 1] ->
        float32 ``(B, C', sH, sW)`` in [0, 1], contiguous, on the runner's device."""
        device = self.device
        with self.host_threads(), torch.inference_mode():
            x = lr.to(device, torch.float32).contiguous(memory_format=self.memory_format(device))
            sr = self._forward(x, PRECISIONS[self.precision])
            if self.precision != "fp32":
                problem = _bad_output(x, sr)
                if problem:
                    self.fallbacks += 1
                    log.warning("%s: a tile gave %s output in %s; recomputed it in fp32",
                                self.name, problem, self.precision)
                    sr = self._forward(x, None)
            return sr.clamp_(0.0, 1.0).contiguous()


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """torch on one thread in the calling thread until the block ends. torch's count
    is per thread once a thread has used it (OpenMP's per-thread setting; threads that
    have not, start from the last value set anywhere), so each thread restores its own;
    nested blocks leave it alone."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def dihedral(x: Tensor, op: int, inverse: bool = False) -> Tensor:
    """Dihedral transform ``op`` in [0, 8) of ``(..., H, W)``: bit 0 flips W, bit 1 flips
    H, bit 2 transposes H and W (applied in that order; ``inverse`` undoes it)."""
    if not inverse:
        if op & 1:
            x = x.flip(-1)
        if op & 2:
            x = x.flip(-2)
        if op & 4:
            x = x.transpose(-2, -1)
        return x
    if op & 4:
        x = x.transpose(-2, -1)
    if op & 2:
        x = x.flip(-2)
    if op & 1:
        x = x.flip(-1)
    return x


def _bad_output(lr: Tensor, sr: Tensor) -> str:
    """Why a low-precision output is unusable ('' if it is fine)."""
    if not bool(torch.isfinite(sr).all()):
        return "non-finite"
    if float(sr.amax()) <= 0.0 and float(lr.amax()) > 1.0 / 255.0:
        return "all-black"
    return ""


def describe(model: nn.Module, name: str = "", source: str = "") -> Runner:
    """The torch :class:`Runner` of an attnsr model (an :class:`~attnsr.models.SRModel`),
    in eval mode, fp32, on the model's device. The weights are left in their memory order
    (a training model stays as it is); :meth:`Runner.to` puts them in the runner's."""
    config = getattr(model, "config", None)
    traits = model.traits() if hasattr(model, "traits") else ModelTraits()
    in_ch = int(getattr(config, "in_channels", 3))
    out_ch = int(getattr(config, "out_channels", in_ch))
    arch = getattr(model, "arch_name", type(model).__name__.lower())
    return Runner(model=model.eval(), name=name or arch, arch=arch, scale=int(config.scale),
                  in_channels=in_ch, out_channels=out_ch, traits=traits, config=config,
                  source=source)
