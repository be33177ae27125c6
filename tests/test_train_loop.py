"""The training loop: it learns, resumes bit-exactly, stops cleanly on signals and on
non-finite losses, validates, keeps best/last checkpoints and exports loadable weights."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from attnsr.train.checkpointing import load_checkpoint
from attnsr.train.loop import NonFiniteLossError, Trainer
from train_fixtures import make_images, one_thread, tiny_config  # noqa: F401


def _records(run: Path, event: str = "train") -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


def _losses(run: Path) -> dict[int, float]:
    return {r["iter"]: r["loss"] for r in _records(run)}


def test_a_few_steps_lower_the_loss(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, total_iters=20, optim={"lr": 5e-3},
                      schedule={"name": "constant", "warmup_iters": 0})
    result = Trainer(cfg, progress=False).run()
    assert result.status == "done" and result.iteration == 20
    losses = list(_losses(tmp_path / "run").values())
    assert len(losses) == 20
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)


def test_resume_is_bit_exact(tmp_path: Path) -> None:
    full = tiny_config(tmp_path, run_dir=str(tmp_path / "full"))
    Trainer(full, progress=False).run()
    parts = tiny_config(tmp_path, run_dir=str(tmp_path / "parts"))
    paused = Trainer(parts, progress=False).run(until=3)
    assert paused.status == "paused" and paused.iteration == 3
    assert load_checkpoint(tmp_path / "parts/checkpoints/last.pt")["iteration"] == 3
    # A new process would build everything again: do the same, resume automatically.
    resumed = Trainer(parts, progress=False)
    assert resumed.run().status == "done" and resumed.start_iter == 3
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "parts")
    assert list(a) == list(range(1, 7)) and a == b  # every step, exactly
    wa = load_file(tmp_path / "full/model.safetensors")
    wb = load_file(tmp_path / "parts/model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ca = load_checkpoint(tmp_path / "full/checkpoints/last.pt")
    cb = load_checkpoint(tmp_path / "parts/checkpoints/last.pt")
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])


def test_redone_steps_are_not_logged_twice(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, runtime={"checkpoint_every": 2})
    Trainer(cfg, progress=False).run(until=3)  # paused: checkpoint at 3
    ck = tmp_path / "run/checkpoints/last.pt"
    # Pretend the process died after logging step 3 but before its checkpoint.
    state = torch.load(ck, weights_only=True)
    Trainer(cfg, progress=False).load(ck)
    assert state["iteration"] == 3
    Trainer(cfg, progress=False).run()
    iters = [r["iter"] for r in _records(tmp_path / "run")]
    assert iters == sorted(set(iters)) == list(range(1, 7))


def test_explicit_resume_needs_a_checkpoint(tmp_path: Path) -> None:
    from attnsr.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        Trainer(tiny_config(tmp_path), resume=True, progress=False).run()


def test_no_resume_starts_over(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    Trainer(cfg, progress=False).run(until=2)
    fresh = Trainer(cfg, resume=False, progress=False)
    fresh.run(until=1)
    assert fresh.start_iter == 0
    assert [r["iter"] for r in _records(tmp_path / "run")] == [1]


def test_checkpoint_contents_are_weights_only(tmp_path: Path) -> None:
    Trainer(tiny_config(tmp_path), progress=False).run()
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert state["iteration"] == 6
    assert {"model", "ema", "optimizer", "scaler", "rng", "config"} <= set(state)
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert not list((tmp_path / "run/checkpoints").glob("*.tmp"))  # atomic writes


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(tmp_path), progress=False)
    trainer._on_signal(signal.SIGTERM, None)  # as if the signal arrived during step 1
    result = trainer.run()
    assert result.status == "interrupted" and result.signal == signal.SIGTERM
    assert result.iteration == 1
    assert load_checkpoint(tmp_path / "run/checkpoints/last.pt")["iteration"] == 1
    assert not (tmp_path / "run/model.safetensors").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    resumed = Trainer(tiny_config(tmp_path), progress=False)
    assert resumed.run().status == "done" and resumed.start_iter == 1


def _nan_at(step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the loss NaN at optimizer step ``step`` (1-based)."""
    original = Trainer.train_step

    def step_fn(self: Trainer, iteration: int, lr: torch.Tensor, hr: torch.Tensor) -> float:
        if iteration + 1 == step:
            lr = lr * math.nan
        return original(self, iteration, lr, hr)

    monkeypatch.setattr(Trainer, "train_step", step_fn)


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _nan_at(4, monkeypatch)
    cfg = tiny_config(tmp_path, runtime={"checkpoint_every": 2})
    with pytest.raises(NonFiniteLossError, match="loss is nan at iteration 4"):
        Trainer(cfg, progress=False).run()
    state = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_nonfinite_loss_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _nan_at(4, monkeypatch)
    cfg = tiny_config(tmp_path, runtime={"nonfinite": "skip"})
    trainer = Trainer(cfg, progress=False)
    assert trainer.run().status == "done"
    assert [r["iter"] for r in _records(tmp_path / "run", "nonfinite")] == [4]
    assert 4 not in _losses(tmp_path / "run")
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert trainer.ema is not None and trainer.ema.updates == 5  # the NaN step is not applied


def test_validation_best_and_export(tmp_path: Path) -> None:
    from attnsr.resolver import load_pretrained

    make_images(tmp_path / "Set1" / "HR", n=2, size=(24, 20), seed=7)
    cfg = tiny_config(tmp_path, val={"every": 3, "sets": [str(tmp_path / "Set1")]})
    trainer = Trainer(cfg, progress=False)
    result = trainer.run()
    vals = _records(tmp_path / "run", "val")
    assert [v["iter"] for v in vals] == [3, 6]
    assert all(math.isfinite(v["psnr"]) and 0 < v["ssim"] <= 1 for v in vals)
    assert result.best_psnr == max(v["psnr"] for v in vals)
    best = load_checkpoint(tmp_path / "run/checkpoints/best.pt")
    assert best["best_psnr"] == result.best_psnr
    desc = load_pretrained(str(tmp_path / "run"))
    assert desc.scale == 2
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        # the EMA weights were exported (loaded in NHWC order: float rounding only)
        assert torch.allclose(desc.model(x), trainer.ema.module(x), rtol=0, atol=1e-6)


def test_grad_accumulation_matches_one_big_batch(tmp_path: Path) -> None:
    # Summation order differs, and Adam turns a 1e-9 change of a near-zero gradient into
    # up to lr: a small lr keeps that below the tolerance.
    one = Trainer(tiny_config(tmp_path, run_dir=str(tmp_path / "a"), optim={"lr": 1e-4}),
                  progress=False)
    one.run(until=3)
    acc = Trainer(tiny_config(tmp_path, run_dir=str(tmp_path / "b"), optim={"lr": 1e-4},
                              runtime={"grad_accum": 2}), progress=False)
    acc.run(until=3)
    for p, q in zip(one.model.parameters(), acc.model.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-5)


def test_channels_last_trains_like_nchw(tmp_path: Path) -> None:
    # NHWC only changes the memory order: the same steps give the same weights (to rounding)
    # and the exported weights are ordinary contiguous tensors.
    nchw = Trainer(tiny_config(tmp_path, run_dir=str(tmp_path / "a"), optim={"lr": 1e-4}),
                   progress=False)
    nchw.run()
    nhwc = Trainer(tiny_config(tmp_path, run_dir=str(tmp_path / "b"), optim={"lr": 1e-4},
                               runtime={"channels_last": True}), progress=False)
    conv = next(p for p in nhwc.model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    nhwc.run()
    for p, q in zip(nchw.model.parameters(), nhwc.model.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-5)
    exported = load_file(tmp_path / "b/model.safetensors")
    assert all(t.is_contiguous() for t in exported.values())


def test_cli_trains_and_exports(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from attnsr.cli import _load_commands
    from attnsr.cli.app import app
    from train_fixtures import tiny_values

    _load_commands()
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_values(tmp_path)))
    run_dir = tmp_path / "cli_run"
    result = CliRunner().invoke(app, ["train", str(tmp_path / "tiny.yaml"), "--run-dir",
                                      str(run_dir), "--set", "total_iters=2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "done: 2 iterations" in result.output
    assert (run_dir / "model.safetensors").is_file() and (run_dir / "config.json").is_file()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["total_iters"] == 2 and saved["run_dir"] == str(run_dir)


def test_sigterm_to_the_cli_process(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    import yaml

    from train_fixtures import tiny_values

    values = tiny_values(tmp_path, total_iters=100_000, runtime={"threads": 1})
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(values))
    proc = subprocess.Popen([sys.executable, "-m", "attnsr", "train", str(tmp_path / "t.yaml"),
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "checkpoint saved" in out
    state = load_checkpoint(tmp_path / "run/checkpoints/last.pt")
    assert 1 <= state["iteration"] < 100_000
    assert state["iteration"] == max(r["iter"] for r in _records(tmp_path / "run"))


def test_init_from_a_checkpoint(tmp_path: Path) -> None:
    from safetensors.torch import load_file as load_weights

    Trainer(tiny_config(tmp_path, run_dir=str(tmp_path / "first")), progress=False).run()
    cfg = tiny_config(tmp_path, run_dir=str(tmp_path / "second"),
                      model={"name": "", "overrides": {},
                             "checkpoint": str(tmp_path / "first")})
    second = Trainer(cfg, progress=False)
    exported = load_weights(tmp_path / "first" / "model.safetensors")
    assert all(torch.equal(second.model.state_dict()[k], v) for k, v in exported.items())
    wrong_scale = tiny_config(tmp_path, scale=3, run_dir=str(tmp_path / "third"),
                              model={"name": "", "checkpoint": str(tmp_path / "first")})
    from attnsr.errors import ConfigError

    with pytest.raises(ConfigError, match="x2 model but the run's scale is 3"):
        Trainer(wrong_scale, progress=False)


def test_init_from_copies_matching_tensors_across_scales(tmp_path: Path) -> None:
    """An x2 model initialised from an x4 checkpoint gets the x4 body; the tail (whose
    shape depends on the scale) stays freshly initialised."""
    from attnsr.checkpoint import save_pretrained
    from attnsr.models.registry import create_model
    from attnsr.train.loop import build_model

    tiny = {"channels": 8, "n_blocks": 1}
    x4 = create_model("attnsr_lite", scale=4, **tiny)
    save_pretrained(x4, tmp_path / "x4")
    cfg = tiny_config(tmp_path, scale=2, model={"name": "attnsr_lite", "overrides": tiny,
                                                "init_from": str(tmp_path / "x4")})
    ours, theirs = build_model(cfg).state_dict(), x4.state_dict()
    assert torch.equal(ours["head.weight"], theirs["head.weight"])
    assert torch.equal(ours["body.0.conv1.weight"], theirs["body.0.conv1.weight"])
    assert ours["tail.weight"].shape != theirs["tail.weight"].shape


def test_until_pauses_with_checkpoint_and_exported_weights(tmp_path: Path) -> None:
    """``until`` stops at that iteration, leaves a resumable checkpoint and the EMA weights
    (loadable for eval/upscale); resuming finishes the schedule."""
    from attnsr.resolver import load_pretrained

    cfg = tiny_config(tmp_path)
    paused = Trainer(cfg, progress=False).run(until=3)
    assert (paused.status, paused.iteration) == ("paused", 3)
    assert load_checkpoint(cfg_path := Path(cfg.run_dir) / "checkpoints" / "last.pt")[
        "iteration"] == 3
    assert load_pretrained(cfg.run_dir).scale == cfg.scale
    assert cfg_path.is_file()
    done = Trainer(cfg, progress=False).run()
    assert (done.status, done.iteration) == ("done", cfg.total_iters)


def test_reparam_trains_branches_and_exports_the_plain_network(tmp_path: Path) -> None:
    """``model.reparam``: the branches train (the checkpoint holds them, resume works) and
    the export is the plain architecture, computing what the EMA's branch sums compute."""
    from attnsr.resolver import load_pretrained

    cfg = tiny_config(tmp_path, model={"reparam": True})
    trainer = Trainer(cfg, progress=False)
    trainer.run(until=3)
    state = load_checkpoint(tmp_path / "run/checkpoints/last.pt")["model"]
    assert any(k.endswith("weight.0.project") for k in state)
    resumed = Trainer(cfg, progress=False)
    assert resumed.run().status == "done" and resumed.start_iter == 3
    project = [p for k, p in resumed.model.named_parameters() if k.endswith(".project")]
    assert project and all(bool(p.abs().sum() > 0) for p in project)  # moved from zero
    exported = load_file(tmp_path / "run/model.safetensors")
    assert not any("parametrizations" in k for k in exported)
    desc = load_pretrained(str(tmp_path / "run"))
    assert set(exported) == set(desc.model.state_dict())
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(desc.model(x), resumed.ema.module(x), rtol=0, atol=1e-5)
