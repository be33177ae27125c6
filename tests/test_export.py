"""ONNX / TorchScript export: parity with eager PyTorch for every registered model at
several input sizes (one not a multiple of any window), metadata round trips, bicubic
as a convolution, and the ``attnsr export`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from attnsr.data.resize import imresize
from attnsr.descriptor import ModelDescriptor, describe
from attnsr.errors import ConfigError, ExportError
from attnsr.export.onnx import export_onnx, onnx_session, read_metadata
from attnsr.export.runtime import load_onnx
from attnsr.export.torchscript import export_torchscript, load_torchscript
from attnsr.export.wrapper import PaddedModel, pad_index, static_only_reason
from attnsr.inference.tiling import tiled_forward
from attnsr.models.bicubic import BicubicUpsample
from attnsr.models.registry import create_model, get_arch, get_preset, list_models
from attnsr.resolver import resolve

SIZES = [(16, 16), (24, 20), (17, 23)]  # 17x23: not a multiple of any window size
ATOL = 1e-4
SCALE = 3

# Depth counts cut to one on top of any TINY (export cost grows with the graph size).
SHALLOW = {"n_resgroups": 1, "n_resblocks": 1, "n_blocks": 1, "num_modules": 1, "nb": 1}


def tiny_overrides(name: str) -> dict:
    """The registered tiny config of preset ``name`` with depth counts set to one."""
    arch = get_arch(get_preset(name).arch)
    fields = set(arch.config_cls.__dataclass_fields__)
    return {**arch.tiny, **{k: v for k, v in SHALLOW.items() if k in fields}}


def tiny_descriptor(name: str, scale: int = SCALE) -> ModelDescriptor:
    torch.manual_seed(0)
    return describe(create_model(name, scale=scale, **tiny_overrides(name)), name=name)


def eager(desc: ModelDescriptor, lr: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return desc.run(lr).numpy()


@pytest.fixture(params=list_models())
def model_name(request: pytest.FixtureRequest) -> str:
    return request.param


def onnx_runners(desc: ModelDescriptor, tmp_path: Path) -> tuple[int, dict]:
    """(batch, {size: session}): one dynamic graph, or -- for models that can only be
    exported for a fixed size -- one static graph per size (after checking that the
    dynamic export is refused with a clear message)."""
    if static_only_reason(desc.model) is None:
        session = onnx_session(export_onnx(desc, tmp_path / "m.onnx", clamp=False, verify=False,
                                           measure_memory=False))
        return 2, dict.fromkeys(SIZES, session)  # batch 2: the batch axis is dynamic too
    with pytest.raises(ExportError, match="--static"):
        export_onnx(desc, tmp_path / "m.onnx")
    return 1, {hw: onnx_session(export_onnx(desc, tmp_path / f"{hw[0]}x{hw[1]}.onnx",
                                            static_size=hw, clamp=False, verify=False,
                                            measure_memory=False))
               for hw in SIZES}


def test_onnx_matches_eager_at_any_size(model_name: str, tmp_path: Path) -> None:
    desc = tiny_descriptor(model_name)
    batch, sessions = onnx_runners(desc, tmp_path)
    gen = torch.Generator().manual_seed(1)
    for h, w in SIZES:
        lr = torch.rand(batch, 3, h, w, generator=gen)
        got = sessions[(h, w)].run(None, {"lr": lr.numpy()})[0]
        ref = eager(desc, lr)
        assert got.shape == ref.shape == (batch, 3, h * SCALE, w * SCALE)
        assert np.abs(got - ref).max() <= ATOL, (model_name, (h, w))


def torchscript_modules(desc: ModelDescriptor, tmp_path: Path) -> tuple[int, dict]:
    """As :func:`onnx_runners`, for TorchScript."""
    if static_only_reason(desc.model) is None:
        module, meta = load_torchscript(export_torchscript(desc, tmp_path / "m.pt", clamp=False))
        assert meta["name"] == desc.name and meta["scale"] == SCALE
        return 2, dict.fromkeys(SIZES, module)
    with pytest.raises(ExportError, match="--static"):
        export_torchscript(desc, tmp_path / "m.pt")
    return 1, {hw: load_torchscript(export_torchscript(
        desc, tmp_path / f"{hw[0]}x{hw[1]}.pt", clamp=False, static_size=hw))[0] for hw in SIZES}


def test_torchscript_matches_eager_at_any_size(model_name: str, tmp_path: Path) -> None:
    desc = tiny_descriptor(model_name)
    batch, modules = torchscript_modules(desc, tmp_path)
    gen = torch.Generator().manual_seed(2)
    for h, w in SIZES:
        lr = torch.rand(batch, 3, h, w, generator=gen)
        with torch.no_grad():
            got = modules[(h, w)](lr).numpy()
        ref = eager(desc, lr)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= ATOL, (model_name, (h, w))


def test_onnx_clamps_and_stores_metadata(tmp_path: Path) -> None:
    desc = tiny_descriptor("attnsr_lite")
    path = export_onnx(desc, tmp_path / "m.onnx")  # clamp=True, verified
    meta = read_metadata(path)
    assert (meta["name"], meta["arch"], meta["scale"]) == ("attnsr_lite", "attnsr_net", SCALE)
    assert meta["config"]["channels"] == desc.config.channels
    lr = torch.rand(1, 3, 17, 23) * 1.4 - 0.2  # out-of-range input drives the output out too
    got = onnx_session(path).run(None, {"lr": lr.numpy()})[0]
    np.testing.assert_allclose(got, desc(lr).numpy(), atol=ATOL)
    assert got.min() >= 0.0 and got.max() <= 1.0


def test_static_export_fixes_the_input_size(tmp_path: Path) -> None:
    path = export_onnx(tiny_descriptor("attnsr_lite"), tmp_path / "s.onnx", static_size=(12, 20))
    session = onnx_session(path)
    assert [d for d in session.get_inputs()[0].shape] == [1, 3, 12, 20]
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(None, {"lr": np.zeros((1, 3, 16, 16), np.float32)})


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_convolution_equals_matlab_imresize(scale: int) -> None:
    lr = torch.rand(2, 3, 7, 11, dtype=torch.float64)
    got = BicubicUpsample(scale).double()(lr)
    ref = imresize(lr, scale=float(scale))
    assert got.shape == ref.shape
    assert (got - ref).abs().max() < 1e-6  # the weight table is stored in float32


@pytest.mark.parametrize("hw", [(5, 7), (3, 9), (8, 8)])
def test_padded_model_pads_like_the_descriptor(hw: tuple[int, int]) -> None:
    """Reflect when the padding fits, replicate when it does not (tiny images)."""
    desc = describe(create_model("attnsr_lite", scale=2, **tiny_overrides("attnsr_lite")))
    desc.traits = type(desc.traits)(multiple_of=8, min_size=8)
    wrapped = PaddedModel(desc.model, scale=2, multiple_of=8, min_size=8, clamp=False).eval()
    lr = torch.rand(1, 3, *hw)
    with torch.no_grad():
        np.testing.assert_allclose(wrapped(lr).numpy(), desc.run(lr).numpy(), atol=1e-6)


def test_pad_index_reflects_then_replicates() -> None:
    n, yes, no = torch.tensor(4), torch.tensor(True), torch.tensor(False)
    assert pad_index(n, torch.tensor(3), yes).tolist() == [0, 1, 2, 3, 2, 1, 0]
    assert pad_index(n, torch.tensor(3), no).tolist() == [0, 1, 2, 3, 3, 3, 3]


def test_failed_verification_raises_export_error(tmp_path: Path) -> None:
    """A model whose output depends on a Python int read from the shape is baked in by
    the tracer; the verification must catch it instead of writing a wrong file."""

    class Baked(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = int(x.shape[-2])  # becomes a constant in the trace
            return torch.nn.functional.interpolate(x, scale_factor=2.0) * h / 16

    desc = describe(create_model("bicubic", scale=2))
    desc.model, desc.arch = Baked(), "baked"
    with pytest.raises(ExportError, match="differs"):
        export_onnx(desc, tmp_path / "b.onnx")
    with pytest.raises(ExportError, match="differs"):
        export_torchscript(desc, tmp_path / "b.pt")


def test_export_command_writes_a_working_file(tmp_path: Path) -> None:
    from attnsr.cli import _load_commands
    from attnsr.cli.app import app

    _load_commands()
    out = tmp_path / "lite.onnx"
    args = ["export", "--model", "attnsr_lite", "--scale", "2", "--format", "onnx",
            "-o", str(out), "--set", "channels=8", "--set", "n_blocks=1"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "--random-weights" in refused.output
    assert not out.exists()
    result = CliRunner().invoke(app, [*args, "--random-weights"])
    assert result.exit_code == 0, result.output
    assert read_metadata(out)["scale"] == 2
    sr = onnx_session(out).run(None, {"lr": np.random.rand(1, 3, 9, 13).astype(np.float32)})[0]
    assert sr.shape == (1, 3, 18, 26)


def test_export_command_rejects_unknown_model(tmp_path: Path) -> None:
    from attnsr.cli import _load_commands
    from attnsr.cli.app import app

    _load_commands()
    result = CliRunner().invoke(app, ["export", "--model", "no_such_model", "--format", "onnx",
                                      "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2
    assert "no_such_model" in result.output


# --------------------------------------------------------------------------- runtime
def test_onnx_descriptor_round_trips_what_the_tiler_needs(tmp_path: Path) -> None:
    desc = tiny_descriptor("swinir_light")
    od = load_onnx(export_onnx(desc, tmp_path / "m.onnx"))
    assert isinstance(od, ModelDescriptor)  # the tiler and Upscaler take it as it is
    assert (od.name, od.arch, od.scale) == (desc.name, desc.arch, desc.scale)
    assert od.traits == desc.traits and od.multiple_of == desc.multiple_of
    assert od.activation_bytes_per_px and od.activation_bytes_per_px > 0
    lr = torch.rand(1, 3, 13, 22)
    np.testing.assert_allclose(od(lr).numpy(), desc(lr).numpy(), atol=ATOL)
    with pytest.raises(ConfigError, match="CPU"):
        od.to("cuda")


def test_tiled_onnx_equals_tiled_torch(tmp_path: Path) -> None:
    desc = tiny_descriptor("attnsr_lite")
    od = load_onnx(export_onnx(desc, tmp_path / "m.onnx"))
    lr = torch.rand(1, 3, 40, 52)
    ref = tiled_forward(desc, lr, SCALE, tile=24, overlap=8)
    got = tiled_forward(od, lr, SCALE, tile=24, overlap=8)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=ATOL)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_foreign_onnx_file_gets_its_scale_by_probing(tmp_path: Path) -> None:
    path = tmp_path / "plain.onnx"
    torch.onnx.export(BicubicUpsample(2), (torch.rand(1, 3, 8, 8),), str(path), dynamo=False,
                      input_names=["lr"], output_names=["sr"],
                      dynamic_axes={"lr": {2: "h", 3: "w"}, "sr": {2: "H", 3: "W"}})
    od = load_onnx(path)
    assert (od.scale, od.name, od.activation_bytes_per_px) == (2, "plain", None)


def test_file_backed_weights_are_exported_once_and_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attnsr.checkpoint import save_pretrained

    monkeypatch.setenv("ATTNSR_CACHE", str(tmp_path / "cache"))
    ckpt = save_pretrained(tiny_descriptor("attnsr_lite").model, tmp_path / "ckpt")
    first = resolve(str(ckpt), backend="onnxruntime")
    assert first.backend == "onnxruntime" and first.source == str(ckpt)
    cached = sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    assert resolve(str(ckpt), backend="onnxruntime").backend == "onnxruntime"
    assert sorted((tmp_path / "cache" / "onnx").glob("*.onnx")) == cached
    assert cached[0].stat().st_mtime_ns == mtime  # not exported again


def test_upscale_command_with_onnxruntime_backend(tmp_path: Path) -> None:
    from PIL import Image

    from attnsr.cli import _load_commands
    from attnsr.cli.app import app

    _load_commands()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    onnx_path = export_onnx(tiny_descriptor("attnsr_lite", scale=2), tmp_path / "lite.onnx")
    outs = {}
    for backend, model in (("onnxruntime", str(onnx_path)), ("auto", str(onnx_path)),
                           ("torch", None)):
        ckpt = tmp_path / "ckpt"
        if model is None:  # the same weights through PyTorch
            from attnsr.checkpoint import save_pretrained

            model = str(save_pretrained(tiny_descriptor("attnsr_lite", scale=2).model, ckpt))
        out = tmp_path / f"{backend}.png"
        result = CliRunner().invoke(app, ["upscale", str(tmp_path / "a.png"), "-o", str(out),
                                          "--model", model, "--backend", backend,
                                          "--device", "cpu", "--no-progress"])
        assert result.exit_code == 0, result.output
        outs[backend] = np.asarray(Image.open(out)).astype(int)
    assert outs["torch"].shape == (40, 56, 3)
    assert np.abs(outs["torch"] - outs["onnxruntime"]).max() <= 1  # rounding only
    assert np.array_equal(outs["auto"], outs["onnxruntime"])  # .onnx picks onnxruntime


def test_onnx_runner_pads_like_the_torch_runner(tmp_path: Path) -> None:
    """One contract: the onnxruntime runner pads/crops itself (not the graph), so a
    graph exported without padding still runs at sizes off the window multiple."""
    desc = tiny_descriptor("swinir_light")
    od = load_onnx(export_onnx(desc, tmp_path / "m.onnx"))
    assert od.pad_amounts(13, 22) == desc.pad_amounts(13, 22) != (0, 0)
    seen = []
    inner = od.model.forward
    od.model.forward = lambda x: seen.append(tuple(x.shape)) or inner(x)
    out = od(torch.rand(1, 3, 13, 22))
    assert seen == [(1, 3, 13 + desc.pad_amounts(13, 22)[0], 22 + desc.pad_amounts(13, 22)[1])]
    assert out.shape == (1, 3, 13 * SCALE, 22 * SCALE) and out.dtype == torch.float32
