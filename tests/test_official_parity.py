"""benchmarks/official_parity.py: an "authors'" file that imports a missing package and
registers its class through it loads with --stub, and the same network on both sides
gives a zero difference (the script measures, it does not assume)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import official_parity

AUTHORS_FILE = '''
from basicsr.utils.registry import ARCH_REGISTRY
from attnsr.models.rlfn import RLFN, RLFNConfig


@ARCH_REGISTRY.register()
class AuthorsRLFN(RLFN):
    def __init__(self, upscale=2, feature_channels=16):
        super().__init__(RLFNConfig(scale=upscale, feature_channels=feature_channels,
                                    n_blocks=2, esa_channels=8))
'''


@pytest.fixture()
def authors(tmp_path: Path) -> tuple[Path, Path, Path]:
    code = tmp_path / "rlfn_arch.py"
    code.write_text(AUTHORS_FILE)
    official_parity.stub_modules(["basicsr.utils.registry"])
    net = official_parity.load_class(code, "AuthorsRLFN", None)(upscale=2)
    torch.manual_seed(0)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    weights = tmp_path / "rlfn_x2.pth"
    torch.save({"params": net.state_dict()}, weights)
    image = tmp_path / "lr.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(image)
    return code, weights, image


def test_same_network_gives_zero_difference(authors, tmp_path: Path) -> None:
    code, weights, image = authors
    out = tmp_path / "parity.json"
    assert official_parity.main([
        "--file", str(code), "--cls", "AuthorsRLFN", "--kwargs", '{"upscale": 2}',
        "--stub", "basicsr.utils.registry", "--weights", str(weights), "--scale", "2",
        "--image", str(image), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["arch"] == "rlfn"
    assert result["params_attnsr"] == result["params_authors"]
    assert result["max_abs_diff"] < 1e-6


def test_a_different_network_is_measured_as_different(authors, tmp_path: Path) -> None:
    code, weights, image = authors
    out = tmp_path / "parity.json"
    official_parity.main([
        "--file", str(code), "--cls", "AuthorsRLFN", "--kwargs", '{"upscale": 2}',
        "--stub", "basicsr.utils.registry", "--weights", str(weights), "--scale", "2",
        "--range", "255", "--image", str(image), "--json", str(out)])
    # Feeding [0, 255] to a network that expects [0, 1]: a real difference is reported.
    assert json.loads(out.read_text())["max_abs_diff"] > 1e-3


def test_stub_is_a_decorator_and_accepts_anything() -> None:
    official_parity.stub_modules(["some_missing.pkg.mod"])
    from some_missing.pkg.mod import REGISTRY  # type: ignore[import-not-found]

    @REGISTRY.register()
    class Thing:
        pass

    assert Thing.__name__ == "Thing"
    assert REGISTRY.anything.else_(1, x=2) is not None


def test_cuda_is_cpu_inside_and_restored_after() -> None:
    net, t = torch.nn.Linear(2, 2), torch.zeros(2)
    before = torch.nn.Module.cuda
    with official_parity.cuda_is_cpu():
        assert net.cuda() is net and t.cuda() is t  # no GPU needed
    assert torch.nn.Module.cuda is before
