"""Record what every attention block of a model looks at, with forward pre-hooks.

The hooks never touch the model's own computation: each one re-evaluates the layer's
attention function (``weights`` / ``attention`` / ``attention_for_queries`` / the window
probabilities) on the layer's input, under ``torch.no_grad``, and stores a detached copy.
The model's outputs are therefore bit-identical with and without a recorder (tested).

Capture works by module type (``isinstance``), so any model that uses the layers of
:mod:`attnsr.layers` is covered without changes to its code. Three kinds of map:

- ``"channel"``: channel-attention weights ``(B, C)`` in (0, 1) (RCAN, IMDN, CBAM);
- ``"spatial"``: spatial / pixel attention gates ``(B, 1 | C, H, W)`` in (0, 1)
  (CBAM spatial, PAN pixel attention, ESA, contextual pixel attention; SPAN/DSCF
  parameter-free attention: ``sigmoid(f)``, the map applied being ``sigmoid(f) - 0.5``;
  BSRN's blueprint ESA; SAFMN's modulation map ``gelu(...)``, which is not bounded);
- ``"query"``: the attention distribution of one query pixel over the feature map,
  ``(B, 1, H, W)``, summing to 1 (window attention: the query's window only, mapped back
  to image coordinates with the cyclic shift undone, averaged over heads; non-local and
  non-local sparse attention: the softmax over all positions; HiT-SR's spatial-channel
  correlation: the magnitudes of the query's spatial correlation over its window, normalised).

>>> with AttentionRecorder(model, query=(30, 12)) as rec:
...     sr = model(lr)
>>> rec.maps["body.0.attn"].kind
'spatial'
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import Tensor, nn

from attnsr.layers.blueprint import BlueprintESA
from attnsr.layers.channel import ChannelAttention
from attnsr.layers.contextual import ContextualPixelAttention
from attnsr.layers.esa import ESA
from attnsr.layers.hierarchical import SpatialChannelCorrelation
from attnsr.layers.modulation import SAFM
from attnsr.layers.nonlocal_attention import NonLocalAttention, NonLocalSparseAttention
from attnsr.layers.parameter_free import ParameterFreeAttention
from attnsr.layers.pixel import PAConv, PixelAttention
from attnsr.layers.spatial import SpatialAttention
from attnsr.layers.window import WindowAttention

log = logging.getLogger(__name__)

KINDS = ("channel", "spatial", "query")


@dataclass(frozen=True)
class CapturedMap:
    """One captured attention map.

    Attributes:
        kind: ``"channel"`` ``(B, C)``, ``"spatial"`` ``(B, 1 | C, H, W)`` or ``"query"``
            ``(B, 1, H, W)`` (see the module docstring).
        tensor: the map, detached, float32, on the CPU.
        layer: class name of the attention layer.
        info: extras (``query`` in feature coordinates ``(x, y)``, ``window`` bounds ...).
    """

    kind: str
    tensor: Tensor
    layer: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Context:
    """What hooks share during one forward pass."""

    query: tuple[int, int] | None
    channel_mean: bool
    input_size: tuple[int, int] = (0, 0)
    # facts of the blocks that call window attention: name -> (H, W), name -> shift
    block_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    block_shifts: dict[str, int] = field(default_factory=dict)


# A capture function: (context, module name, module, args, kwargs) -> map or None.
CaptureFn = Callable[[_Context, str, nn.Module, tuple, dict], "CapturedMap | None"]
_CAPTURES: list[tuple[type, str, CaptureFn]] = []


def register_capture(layer_cls: type, kind: str, fn: CaptureFn) -> None:
    """Capture maps of ``kind`` with ``fn`` for modules of ``layer_cls`` (the first
    registered match wins: register subclasses needing their own ``fn`` first)."""
    if kind not in KINDS:
        raise ValueError(f"unknown capture kind {kind!r}; known: {KINDS}")
    _CAPTURES.append((layer_cls, kind, fn))


def capture_for(module: nn.Module) -> tuple[str, CaptureFn] | None:
    """``(kind, capture function)`` for ``module``, or None if it is not attention."""
    for cls, kind, fn in _CAPTURES:
        if isinstance(module, cls):
            return kind, fn
    return None


def _as_cpu(t: Tensor) -> Tensor:
    return t.detach().float().cpu()


# ----------------------------------------------------------------- channel / spatial


def _channel(ctx: _Context, name: str, m: nn.Module, args: tuple, kwargs: dict) -> CapturedMap:
    """Channel weights ``(B, C)`` via the layer's own :meth:`weights`."""
    w = m.weights(args[0])  # B, C, 1, 1
    return CapturedMap("channel", _as_cpu(w.flatten(1)), type(m).__name__)


def _gate(fn_name: str) -> CaptureFn:
    """Spatial/pixel gate ``(B, 1 | C, H, W)`` via the layer method ``fn_name``."""

    def capture(ctx: _Context, name: str, m: nn.Module, args: tuple, kwargs: dict) -> CapturedMap:
        g = getattr(m, fn_name)(args[0])  # B, 1|C, H, W
        if ctx.channel_mean:
            g = g.mean(dim=1, keepdim=True)  # B, 1, H, W (memory: C times smaller)
        return CapturedMap("spatial", _as_cpu(g), type(m).__name__)

    return capture


# ------------------------------------------------------------------------ queries


def feature_query(ctx: _Context, height: int, width: int) -> tuple[int, int]:
    """The query ``(x, y)`` (input pixels) in the coordinates of a feature map of
    ``height x width``.

    Maps a little larger than the input (padded to a window multiple) share its
    coordinates; integer multiples / fractions of it are scaled. Default: the centre.
    """
    H, W = height, width
    h_in, w_in = ctx.input_size
    if ctx.query is None or not h_in:
        return W // 2, H // 2
    qx, qy = ctx.query
    ry, rx = H / h_in, W / w_in
    ry, rx = (1.0 if 1.0 <= r < 2.0 else r for r in (ry, rx))
    return min(int(qx * rx), W - 1), min(int(qy * ry), H - 1)


def _nonlocal(ctx: _Context, name: str, m: nn.Module, args: tuple, kwargs: dict) -> CapturedMap:
    """Softmax of the query pixel over all ``H*W`` positions: ``(B, 1, H, W)``."""
    x = args[0]  # B, C, H, W
    B, _, H, W = x.shape
    qx, qy = feature_query(ctx, H, W)
    idx = torch.tensor([qy * W + qx], device=x.device)
    rows = m.attention_for_queries(x, idx)  # B, 1, H*W
    info = {"query": (qx, qy), "feature_size": (H, W)}
    return CapturedMap("query", _as_cpu(rows.view(B, 1, H, W)), type(m).__name__, info)


def _window_geometry(ctx: _Context, name: str, m: WindowAttention, n_windows_total: int,
                     masked: bool) -> tuple[int, int, int, int]:
    """``(B, H, W, shift)`` of the map a window-attention call runs on.

    H, W come from the parent block's ``x_size`` argument when it has one, else from the
    input size rounded up to the window (what SwinIR's padding does); the shift from the
    parent's ``shift_size``, else ``ws // 2`` when a mask is given (Swin's convention).
    """
    ws = m.window_size
    parent = name.rpartition(".")[0]
    H, W = ctx.block_sizes.get(parent, (0, 0))
    if not H:
        h_in, w_in = ctx.input_size
        H, W = -(-h_in // ws) * ws, -(-w_in // ws) * ws
    nW = (H // ws) * (W // ws)
    if nW == 0 or n_windows_total % nW:
        raise RuntimeError(f"{name}: cannot infer the feature size of window attention")
    shift = ctx.block_shifts.get(parent, ws // 2 if masked else 0)
    return n_windows_total // nW, H, W, int(shift)


def _window(ctx: _Context, name: str, m: nn.Module, args: tuple, kwargs: dict) -> CapturedMap:
    """The query's window row, averaged over heads, scattered back on the ``H x W`` map
    with the cyclic shift undone: ``(B, 1, H, W)``."""
    x = args[0]  # nW*B, N, C
    mask = args[1] if len(args) > 1 else kwargs.get("mask")
    ws = m.window_size
    B, H, W, s = _window_geometry(ctx, name, m, x.shape[0], mask is not None)
    qx, qy = feature_query(ctx, H, W)
    # position in the shifted map: shifted[i, j] = original[(i + s) % H, (j + s) % W]
    sy, sx = (qy - s) % H, (qx - s) % W
    win = (sy // ws) * (W // ws) + sx // ws
    tok = (sy % ws) * ws + sx % ws
    rows = torch.arange(B, device=x.device) * (H // ws) * (W // ws) + win
    _, attn = m.forward(x[rows], None if mask is None else mask[win : win + 1],
                        return_attn=True)  # B, heads, N, N
    probs = attn[:, :, tok].mean(dim=1)  # B, N (keys of the query's window)
    ky = (sy // ws) * ws + torch.arange(ws, device=x.device).repeat_interleave(ws)
    kx = (sx // ws) * ws + torch.arange(ws, device=x.device).repeat(ws)
    ky, kx = (ky + s) % H, (kx + s) % W  # back to image coordinates
    out = torch.zeros(B, H * W, dtype=probs.dtype, device=probs.device)
    out[:, ky * W + kx] = probs
    info = {"query": (qx, qy), "feature_size": (H, W), "shift": s, "window_size": ws}
    return CapturedMap("query", _as_cpu(out.view(B, 1, H, W)), type(m).__name__, info)


def _hierarchical(ctx: _Context, name: str, m: nn.Module, args: tuple,
                  kwargs: dict) -> CapturedMap:
    """HiT-SR's spatial correlation of the query pixel over its window (magnitudes,
    normalised; padding folded back): ``(B, 1, H, W)``."""
    x = args[0]  # B, H, W, C
    H, W = int(x.shape[1]), int(x.shape[2])
    qx, qy = feature_query(ctx, H, W)
    info = {"query": (qx, qy), "feature_size": (H, W), "window_size": m.window_size}
    return CapturedMap("query", _as_cpu(m.query_map(x, qy, qx)), type(m).__name__, info)


register_capture(ChannelAttention, "channel", _channel)  # and ContrastChannelAttention
register_capture(SpatialAttention, "spatial", _gate("weights"))
register_capture(PixelAttention, "spatial", _gate("weights"))
register_capture(PAConv, "spatial", _gate("weights"))
register_capture(ESA, "spatial", _gate("weights"))
register_capture(BlueprintESA, "spatial", _gate("weights"))  # BSRN
register_capture(SAFM, "spatial", _gate("weights"))  # modulation map, unbounded
register_capture(ContextualPixelAttention, "spatial", _gate("attention"))
register_capture(ParameterFreeAttention, "spatial", _gate("gate"))  # sigmoid(f)
register_capture(NonLocalAttention, "query", _nonlocal)
register_capture(NonLocalSparseAttention, "query", _nonlocal)
register_capture(WindowAttention, "query", _window)
register_capture(SpatialChannelCorrelation, "query", _hierarchical)




# ----------------------------------------------------------------------- recorder


def _size_arg(args: tuple, kwargs: dict) -> tuple[int, int] | None:
    """The ``x_size`` ``(H, W)`` a Swin block is called with, if any."""
    for a in (*args[1:], kwargs.get("x_size")):
        if isinstance(a, (tuple, list)) and len(a) == 2 and all(isinstance(v, int) for v in a):
            return int(a[0]), int(a[1])
    return None


class AttentionRecorder:
    """Context manager that records the attention maps of ``model`` while it runs.

    Args:
        model: an ``nn.Module`` or a :class:`~attnsr.runner.Runner`.
        query: ``(x, y)`` in input pixels for the query maps (default: the centre).
        include: fnmatch patterns of module names to record (default: all).
        kinds: the kinds to record (default: all of :data:`KINDS`).
        channel_mean: store spatial gates averaged over channels ``(B, 1, H, W)``.

    After a forward pass, ``maps`` is an ordered dict ``name -> CapturedMap`` in call
    order; a module called twice in one pass appears as ``name`` and ``name#2``. Each
    new pass of the whole model starts a fresh ``maps``.
    """

    def __init__(
        self, model: nn.Module, *, query: tuple[int, int] | None = None,
        include: Iterable[str] | None = None, kinds: Iterable[str] = KINDS,
        channel_mean: bool = False,
    ) -> None:
        self.model: nn.Module = getattr(model, "model", model)
        self.include = tuple(include) if include is not None else None
        self.kinds = frozenset(kinds)
        self._ctx = _Context(query=query, channel_mean=channel_mean)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.maps: OrderedDict[str, CapturedMap] = OrderedDict()

    def targets(self) -> list[tuple[str, nn.Module, CaptureFn]]:
        """The modules that will be recorded: ``(name, module, capture function)``."""
        found = []
        for name, m in self.model.named_modules():
            cap = capture_for(m)
            if cap is None or cap[0] not in self.kinds:
                continue
            if self.include is None or any(fnmatchcase(name, p) for p in self.include):
                found.append((name, m, cap[1]))
        return found

    def __enter__(self) -> AttentionRecorder:
        self._handles.append(self.model.register_forward_pre_hook(self._on_model))
        for name, m, fn in self.targets():
            self._handles.append(
                m.register_forward_pre_hook(self._make_hook(name, fn), with_kwargs=True)
            )
            if isinstance(m, WindowAttention):
                self._hook_parent(name)
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _on_model(self, module: nn.Module, args: tuple) -> None:
        x = args[0]
        self._ctx.input_size = (int(x.shape[-2]), int(x.shape[-1]))
        self.maps = OrderedDict()

    def _hook_parent(self, name: str) -> None:
        """Record the feature size / shift of the block that calls window attention."""
        parent_name = name.rpartition(".")[0]
        parent = self.model.get_submodule(parent_name) if parent_name else self.model

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            size = _size_arg(args, kwargs)
            if size is not None:
                self._ctx.block_sizes[parent_name] = size
            if hasattr(module, "shift_size"):
                self._ctx.block_shifts[parent_name] = int(module.shift_size)

        self._handles.append(parent.register_forward_pre_hook(hook, with_kwargs=True))

    def _make_hook(self, name: str, fn: CaptureFn) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            with torch.no_grad():
                cap = fn(self._ctx, name, module, args, kwargs)
            if cap is None:
                return
            key, n = name, 1
            while key in self.maps:
                n += 1
                key = f"{name}#{n}"
            self.maps[key] = cap

        return hook

    def of_kind(self, kind: str) -> OrderedDict[str, CapturedMap]:
        """The recorded maps of one kind, in call order."""
        return OrderedDict((k, v) for k, v in self.maps.items() if v.kind == kind)
