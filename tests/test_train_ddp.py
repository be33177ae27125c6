"""Multi-process training: 2 gloo processes under torchrun train the same weights as one
process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from attnsr.train.config import load_config
from attnsr.train.loop import Trainer
from train_fixtures import one_thread, tiny_values  # noqa: F401


def test_two_processes_match_one(tmp_path: Path) -> None:
    # A small lr: the all-reduce sums in another order, and Adam can turn that 1e-9 into
    # up to lr on near-zero gradients.
    values = tiny_values(tmp_path, total_iters=3, optim={"lr": 1e-4},
                         runtime={"threads": 1})
    one = Trainer(load_config(base={**values, "run_dir": str(tmp_path / "one")}),
                  progress=False)
    one.run()
    values["run_dir"] = str(tmp_path / "two")
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(values))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "attnsr", "train", str(tmp_path / "ddp.yaml"), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    two = load_file(tmp_path / "two" / "model.safetensors")
    ema_one = one.ema.module.state_dict()
    assert set(two) == set(ema_one)
    for key, value in ema_one.items():
        assert torch.allclose(two[key], value, rtol=0, atol=1e-5), key
    # The model (not only the EMA) too, from rank 0's checkpoint.
    state = torch.load(tmp_path / "two/checkpoints/last.pt", weights_only=True)
    for key, value in one.model.state_dict().items():
        assert torch.allclose(state["model"][key], value, rtol=0, atol=1e-5), key
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # rank 0 logs alone


@pytest.mark.parametrize("world", [2, 4])
def test_rank_shares_union_is_the_global_batch(tmp_path: Path, world: int) -> None:
    from attnsr.train.data import PatchBatches, load_sources

    cfg = load_config(base=tiny_values(tmp_path))
    sources = load_sources(cfg.data, cfg.scale)
    kw = {"scale": 2, "patch_size": 8, "batch_size": 8, "seed": 3}
    full_lr, full_hr = PatchBatches(sources, [1.0], **kw)[5]
    parts = [PatchBatches(sources, [1.0], rank=r, world_size=world, **kw)[5]
             for r in range(world)]
    assert torch.equal(torch.cat([p[0] for p in parts]), full_lr)
    assert torch.equal(torch.cat([p[1] for p in parts]), full_hr)
