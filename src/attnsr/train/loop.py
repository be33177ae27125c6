"""The training loop: one :class:`Trainer` per process (``torchrun`` starts one per GPU).

Order of work: everything that can be wrong with the config (folders, image sizes, model
name, patch vs. window size) is checked before the run directory is touched; then the run
resumes from ``<run>/checkpoints/last.pt`` when it exists (unless ``resume=False``) and
trains to ``total_iters``, validating, logging and checkpointing on rank 0; at the end the
EMA weights are exported as ``<run>/config.json`` + ``<run>/model.safetensors``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from attnsr import resolver
from attnsr.errors import AttnsrError, CheckpointError, ConfigError, ModelNotFoundError
from attnsr.layers.reparam import attach_reparam, fold_reparam
from attnsr.models.registry import create_model
from attnsr.train import distributed as D
from attnsr.train.checkpointing import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from attnsr.train.config import TrainConfig, save_config, to_dict
from attnsr.train.data import PatchBatches, load_sources, make_loader
from attnsr.train.ema import ModelEMA
from attnsr.train.export import export_weights
from attnsr.train.losses import make_loss
from attnsr.train.schedule import lr_at
from attnsr.train.tracking import Progress, RunLog, truncate_jsonl
from attnsr.train.validation import load_val_sets, run_validation

log = logging.getLogger("attnsr.train")


class NonFiniteLossError(AttnsrError):
    """The training loss became NaN/inf (``runtime.nonfinite: stop``)."""


@dataclass(frozen=True)
class TrainResult:
    """How a run ended: ``status`` is ``done``, ``interrupted`` (signal) or ``paused``
    (``until`` reached); ``iteration`` is the number of finished optimizer steps."""

    status: str
    iteration: int
    run_dir: Path
    best_psnr: float | None = None
    signal: int | None = None


def build_model(config: TrainConfig) -> nn.Module:
    """The model of ``config.model`` at ``config.scale`` (random init seeded, or loaded)."""
    ref = config.model
    torch.manual_seed(config.runtime.seed)
    if ref.checkpoint:
        model = resolver.load_pretrained(ref.checkpoint).model
        if int(model.config.scale) != config.scale:
            raise ConfigError(f"model.checkpoint: {ref.checkpoint} is a x{model.config.scale} "
                              f"model but the run's scale is {config.scale}")
        return model.train().requires_grad_(True)
    if "scale" in ref.overrides:
        raise ConfigError("model.overrides.scale: the scale is set once, by the top-level "
                          "'scale' key")
    try:
        model = create_model(ref.name, scale=config.scale, **ref.overrides)
    except ModelNotFoundError as exc:
        raise ConfigError(f"model.name: {exc}") from exc
    except ConfigError as exc:
        raise ConfigError(f"model.overrides: {exc}") from exc
    if ref.init_from:
        init_matching(model, ref.init_from)
    return model


def init_matching(model: nn.Module, source: str) -> None:
    """Copy the tensors of checkpoint ``source`` whose names and shapes match ``model``'s
    (fine-tuning across scales); log what stays freshly initialised."""
    theirs = resolver.load_pretrained(source).model.state_dict()
    ours = model.state_dict()
    same = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    if not same:
        raise ConfigError(f"model.init_from: {source} shares no tensor with {type(model).__name__}")
    model.load_state_dict(same, strict=False)
    fresh = sorted(set(ours) - set(same))
    log.info("initialised %d/%d tensors from %s; fresh: %s", len(same), len(ours), source,
             ", ".join(fresh) or "none")


def check_model(model: nn.Module, config: TrainConfig, world_size: int) -> None:
    """Problems that would only show up mid-training, reported up front."""
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"model: {config.model.name or config.model.checkpoint} has no "
                          "trainable parameters")
    multiple = model.traits().multiple_of if hasattr(model, "traits") else 1
    if config.data.patch_size % multiple:
        raise ConfigError(f"data.patch_size: {config.data.patch_size} must be a multiple of "
                          f"{multiple} (the model's window size)")
    local = config.batch_size // world_size
    if config.batch_size % world_size or local % config.runtime.grad_accum:
        raise ConfigError(f"batch_size: {config.batch_size} must split evenly over "
                          f"{world_size} process(es) x runtime.grad_accum "
                          f"{config.runtime.grad_accum}")


def _worker_init(_: int) -> None:
    # Ctrl-C is handled by the main process (checkpoint, then exit); workers ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Trainer:
    """Trains one model from a :class:`TrainConfig`; see the module docstring."""

    def __init__(self, config: TrainConfig, *, resume: bool | None = None,
                 progress: bool = True, dist_info: D.DistInfo | None = None,
                 console: Any = None) -> None:
        if not config.run_dir:
            raise ConfigError("run_dir: no run directory given (set run_dir or --run-dir)")
        self.dist = dist_info or D.setup(config.runtime.device)
        if config.runtime.threads > 0:
            torch.set_num_threads(config.runtime.threads)
        self.config = self._effective(config)
        self.run_dir = Path(config.run_dir).expanduser()
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.show_progress = progress
        self.console = console  # where the progress bar draws (the caller's rich Console)
        self.resume = resume
        self.stop_signal: int | None = None
        self.best_psnr: float | None = None
        self.last_val: float | None = None
        self.start_iter = 0
        self._prepare()

    def _effective(self, config: TrainConfig) -> TrainConfig:
        """Precision the device supports: bf16/fp16 autocast only on CUDA (fp32 on CPU)."""
        rt = config.runtime
        if rt.precision != "fp32" and self.dist.device.type != "cuda":
            log.warning("runtime.precision %s needs CUDA: training in fp32 on CPU", rt.precision)
            return replace(config, runtime=replace(rt, precision="fp32"))
        return config

    # ------------------------------------------------------------------ setup

    def _prepare(self) -> None:
        """Load data and build model, optimizer, EMA; all config errors surface here."""
        cfg = self.config
        self.val_sets = load_val_sets(cfg)
        self.model = build_model(cfg).to(self.dist.device, memory_format=self._memory_format)
        check_model(self.model, cfg, self.dist.world_size)
        if cfg.model.reparam:  # after .to(): parametrized modules do not move memory format
            log.info("model.reparam: %d 3x3 convs trained as branch sums",
                     attach_reparam(self.model))
        sources = load_sources(cfg.data, cfg.scale)
        self.dataset = PatchBatches(
            sources, [s.weight for s in cfg.data.sources], scale=cfg.scale,
            patch_size=cfg.data.patch_size, batch_size=cfg.batch_size,
            augment=cfg.data.augment, seed=cfg.runtime.seed, rank=self.dist.rank,
            world_size=self.dist.world_size, degradation=cfg.data.degradation)
        self.ema = (ModelEMA(self.model, cfg.ema.decay, cfg.ema.warmup)
                    if cfg.ema.enabled else None)
        self.optimizer = self._make_optimizer()
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=cfg.runtime.precision == "fp16" and self.dist.device.type == "cuda")
        self.loss_fn = make_loss(cfg.loss)
        self.train_model = self._wrap_model()

    @property
    def _memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.config.runtime.channels_last else torch.contiguous_format

    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.config.optim
        cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        params = [p for p in self.model.parameters() if p.requires_grad]
        return cls(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)

    def _wrap_model(self) -> nn.Module:
        """DDP wrapper on several processes, then ``torch.compile`` when asked."""
        model: nn.Module = self.model
        if self.dist.distributed:
            ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        if self.config.runtime.compile:
            model = torch.compile(model)
        return model

    # ------------------------------------------------------------------ checkpoints

    @property
    def last_path(self) -> Path:
        return self.ckpt_dir / "last.pt"

    def state(self, iteration: int) -> dict[str, Any]:
        """Everything needed to continue exactly (weights_only-loadable)."""
        return {
            "iteration": iteration,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "best_psnr": self.best_psnr,
            "last_val": self.last_val,
            "config": to_dict(self.config),
        }

    def save(self, iteration: int, name: str = "last") -> None:
        """Rank 0 writes ``checkpoints/<name>.pt`` atomically; all ranks wait for it."""
        D.barrier(self.dist)
        if self.dist.is_main:
            save_checkpoint(self.ckpt_dir / f"{name}.pt", self.state(iteration))
        D.barrier(self.dist)

    def load(self, path: Path) -> int:
        """Restore a checkpoint; returns its iteration."""
        state = load_checkpoint(path)
        try:
            self.model.load_state_dict(state["model"])
            if self.ema is not None and state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: does not match this run's model/optimizer "
                                  f"({' '.join(str(exc).split())[:300]})") from exc
        set_rng_state(state["rng"])
        self.best_psnr, self.last_val = state.get("best_psnr"), state.get("last_val")
        _warn_config_changes(state.get("config", {}), to_dict(self.config), path)
        return int(state["iteration"])

    def _start(self) -> int:
        """Resume (explicit or automatic) or start fresh; returns the first iteration."""
        exists = self.last_path.is_file()
        if self.resume is True and not exists:
            raise CheckpointError(f"{self.last_path}: no checkpoint to resume from")
        if exists and self.resume is not False:
            it = self.load(self.last_path)
            log.info("resumed from %s at iteration %d", self.last_path, it)
            return it
        if exists:
            log.warning("%s exists but resume is off: starting a fresh run", self.last_path)
        torch.manual_seed(self.config.runtime.seed + 1 + self.dist.rank)
        return 0

    # ------------------------------------------------------------------ one step

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        p = self.config.runtime.precision
        if p == "fp32" or self.dist.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16 if p == "bf16" else torch.float16)

    def _micro_batches(self, lr: Tensor, hr: Tensor) -> Iterator[tuple[int, Tensor, Tensor]]:
        n = self.config.runtime.grad_accum
        for i, (lr_m, hr_m) in enumerate(zip(lr.chunk(n), hr.chunk(n), strict=True)):
            yield i, lr_m.to(self.dist.device, non_blocking=True,
                             memory_format=self._memory_format), hr_m.to(
                self.dist.device, non_blocking=True)

    def compute_loss(self, lr: Tensor, hr: Tensor) -> Tensor:
        """Loss of one micro-batch: ``lr`` ``(b, C, p, p)``, ``hr`` ``(b, C, ps, ps)``."""
        with self._autocast():
            sr = self.train_model(lr)
        return self.loss_fn(sr.float(), hr)

    def train_step(self, iteration: int, lr: Tensor, hr: Tensor) -> float:
        """One optimizer step on this rank's share ``(lr, hr)``; returns the global mean loss
        (NaN/inf if it is not finite: the step is then not applied)."""
        cfg = self.config
        lr_now = lr_at(iteration, cfg.optim.lr, cfg.total_iters, cfg.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_now
        accum = cfg.runtime.grad_accum
        total = torch.zeros((), device=self.dist.device)
        for i, lr_m, hr_m in self._micro_batches(lr, hr):
            sync = (i == accum - 1 or not isinstance(self.train_model, DistributedDataParallel))
            with contextlib.nullcontext() if sync else self.train_model.no_sync():
                loss = self.compute_loss(lr_m, hr_m) / accum
                self.scaler.scale(loss).backward()
            total += loss.detach()
        loss_value = self._global_mean(total)
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            return loss_value
        self._apply_step()
        return loss_value

    def _global_mean(self, loss: Tensor) -> float:
        """Mean loss over ranks, together with the stop flag (one all-reduce)."""
        flag = 1.0 if self.stop_signal is not None else 0.0
        packed = torch.stack([loss.float(), torch.tensor(flag, device=loss.device)])
        packed = D.all_reduce_sum(packed, self.dist)
        if packed[1].item() > 0 and self.stop_signal is None:
            self.stop_signal = int(signal.SIGTERM)  # another rank was signalled
        return packed[0].item() / self.dist.world_size

    def _apply_step(self) -> None:
        if self.config.runtime.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.runtime.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)

    # ------------------------------------------------------------------ the run

    @property
    def eval_model(self) -> nn.Module:
        """The model validated and exported: the EMA when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def run(self, until: int | None = None) -> TrainResult:
        """Train from the resume point to ``total_iters`` (or to iteration ``until``: the run
        pauses there with a checkpoint, resumable later). The EMA weights are exported
        when the run is done or paused."""
        self.start_iter = self._start()
        if self.dist.is_main:
            save_config(self.config, self.run_dir / "config.yaml")
            truncate_jsonl(self.run_dir / "metrics.jsonl", self.start_iter)
        with _signal_handlers(self._on_signal):
            try:
                result = self._loop(until)
            finally:
                D.barrier(self.dist)
        if result.status in ("done", "paused"):
            self.export()
        return result

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stop_signal is not None:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.stop_signal = signum
        log.warning("signal %d: saving a checkpoint after this step, then stopping", signum)

    def _loop(self, until: int | None) -> TrainResult:
        cfg = self.config
        stop = min(cfg.total_iters, until or cfg.total_iters)
        runlog = (RunLog(self.run_dir, jsonl=cfg.log.jsonl, tensorboard=cfg.log.tensorboard)
                  if self.dist.is_main else None)
        bar = Progress(cfg.total_iters, self.start_iter,
                       enabled=self.show_progress and self.dist.is_main, every=cfg.log.every,
                       console=self.console)
        meter = _Meter()
        try:
            for it, (lr, hr) in enumerate(self._batches(stop), start=self.start_iter):
                loss = self.train_step(it, lr, hr)
                done = it + 1
                self._after_step(done, loss, meter, runlog, bar)
                if self.stop_signal is not None:
                    self.save(done)
                    return TrainResult("interrupted", done, self.run_dir, self.best_psnr,
                                       self.stop_signal)
        finally:
            bar.close()
            if runlog is not None:
                runlog.close()
        status = "done" if stop == cfg.total_iters else "paused"
        if status == "paused" and stop > self.start_iter and stop % cfg.runtime.checkpoint_every:
            self.save(stop)
        return TrainResult(status, max(stop, self.start_iter), self.run_dir, self.best_psnr)

    def _batches(self, stop: int) -> Iterator[tuple[Tensor, Tensor]]:
        n = self.config.data.num_workers
        loader = make_loader(self.dataset, self.start_iter, stop, num_workers=n,
                             pin_memory=self.dist.device.type == "cuda")
        if n > 0:
            loader.worker_init_fn = _worker_init
        yield from loader

    def _after_step(self, done: int, loss: float, meter: _Meter, runlog: RunLog | None,
                    bar: Progress) -> None:
        """Non-finite handling, logging, validation and checkpoints after step ``done``."""
        cfg = self.config
        lr_now = self.optimizer.param_groups[0]["lr"]
        if not math.isfinite(loss):
            self._non_finite(done, loss, runlog)
        else:
            meter.add(loss)
        shown = meter.last
        if done % cfg.log.every == 0 or done == cfg.total_iters:
            shown = meter.mean() if meter.count else math.nan
            if runlog is not None and meter.count:
                runlog.write({"iter": done, "event": "train", "loss": shown, "lr": lr_now,
                              "time": time.time()})
            meter.reset()
        if cfg.val.every and cfg.val.sets and (done % cfg.val.every == 0
                                               or done == cfg.total_iters):
            t0 = time.perf_counter()
            self.validate(done, runlog)
            bar.excluded += time.perf_counter() - t0
        if self.dist.is_main:
            bar.update(done, shown, lr_now, self.last_val)
        if done % cfg.runtime.checkpoint_every == 0 or done == cfg.total_iters:
            self.save(done)

    def _non_finite(self, done: int, loss: float, runlog: RunLog | None) -> None:
        """``nonfinite: stop`` raises (the last good checkpoint is kept); ``skip`` logs."""
        if runlog is not None:
            runlog.write({"iter": done, "event": "nonfinite", "loss": str(loss)})
        if self.config.runtime.nonfinite == "stop":
            raise NonFiniteLossError(
                f"training loss is {loss} at iteration {done}: stopped; the last good "
                f"checkpoint {self.last_path} is kept (lower optim.lr, set "
                "runtime.grad_clip, or runtime.nonfinite: skip)")
        log.warning("loss is %s at iteration %d: step skipped", loss, done)

    # ------------------------------------------------------------------ validation, export

    def validate(self, done: int, runlog: RunLog | None) -> float | None:
        """Rank 0 evaluates the EMA model on ``val.sets``; saves ``best.pt`` on improvement."""
        psnr = None
        if self.dist.is_main:
            results = run_validation(self.eval_model, self.val_sets)
            psnr = results["psnr"] if math.isfinite(results["psnr"]) else None
            self.last_val = psnr
            if runlog is not None:
                runlog.write({"iter": done, "event": "val", **results})
            log.info("iter %d: validation PSNR %s dB", done,
                     f"{psnr:.3f}" if psnr is not None else "nan")
        improved = psnr is not None and (self.best_psnr is None or psnr > self.best_psnr)
        flag = torch.tensor([1.0 if improved else 0.0], device=self.dist.device)  # NCCL: GPU
        if D.all_reduce_sum(flag, self.dist).item() > 0:
            self.best_psnr = psnr if psnr is not None else self.best_psnr
            self.save(done, "best")
        return psnr

    def export(self) -> Path:
        """Write the EMA (or plain) weights as ``<run>/config.json`` + ``model.safetensors``."""
        if self.dist.is_main:
            model = self.eval_model
            if self.config.model.reparam:  # the branch sums folded into plain convs
                model = fold_reparam(copy.deepcopy(model))
            export_weights(model, self.run_dir, preset=self.config.model.name)
            log.info("exported %s/model.safetensors", self.run_dir)
        D.barrier(self.dist)
        return self.run_dir


class _Meter:
    """Running mean of the finite losses since the last log line."""

    def __init__(self) -> None:
        self.total, self.count, self.last = 0.0, 0, math.nan

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1
        self.last = value

    def mean(self) -> float:
        # One step: the loss itself, bit for bit (resume tests compare it exactly).
        return self.last if self.count == 1 else self.total / self.count

    def reset(self) -> None:
        self.total, self.count = 0.0, 0


@contextlib.contextmanager
def _signal_handlers(handler: Any) -> Iterator[None]:
    """Route SIGINT/SIGTERM to ``handler`` while training (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _warn_config_changes(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    changed = [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if changed:
        log.warning("%s: resuming with a changed config (%s)", path, ", ".join(changed))


def train(config: TrainConfig, *, resume: bool | None = None, progress: bool = True,
          until: int | None = None, console: Any = None) -> TrainResult:
    """Set up (``torchrun`` aware), train, tear down. See :class:`Trainer`; ``console``:
    the rich Console the progress bar draws on (the CLI passes its own)."""
    info = D.setup(config.runtime.device)
    try:
        return Trainer(config, resume=resume, progress=progress, dist_info=info,
                       console=console).run(until)
    finally:
        D.cleanup()
