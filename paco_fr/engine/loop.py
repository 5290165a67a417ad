"""The loop: `train(cfg, run_dir)` strings the pieces of paco_fr.engine together (build, wrap,
load, step, log, snapshot, checkpoint, stop on a signal, summary.json); `pretrain(...)` is its
idempotent Python entry point."""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from paco_fr.atomic import write_text_atomic
from paco_fr.config import check_data_config, load_config
from paco_fr.engine.build import announce_data, build_run, make_loader, run_name
from paco_fr.engine.checkpoint import save_checkpoint
from paco_fr.engine.curves import Progress, open_tensorboard, write_image, write_record
from paco_fr.engine.distributed import any_rank, mean_over_ranks, weight_spread, wrap_model
from paco_fr.engine.snapshots import snapshot, snapshot_images
from paco_fr.engine.state import Run
from paco_fr.engine.step import StepResult, train_step
from paco_fr.export import RECON_NAME, export_checkpoint, export_recon
from paco_fr.flops import compute_block, step_cost
from paco_fr.rundir import check_run_dir


def train(cfg: dict, run_dir: Path, resume: bool = True, extend: bool = False) -> dict:
    """resume=False starts run_dir over; a run_dir holding a run made with another config is refused
    (paco_fr.rundir), a longer train.steps / epochs only with extend=True."""
    run = build_run(cfg, run_dir, resume=resume, extend=extend)
    # model FLOPs of one optimizer step (paco_fr/flops.py): measured on a throw-away copy of the model,
    # before training, so a run that cannot be costed fails before it spends its budget. Every rank
    # runs the probe: its model's codebook synchronises across ranks (a collective on rank 0 alone hangs)
    cost = step_cost(cfg, world=run.world, data=run.data)
    for rec in run.model.start_events():  # warnings, MCF's teacher
        run.log({"event": rec["event"], "step": run.start_step, **rec})
    if run.resumed:
        run.log({"event": "resumed", "step": run.start_step})
    wrap_model(run)
    batches = iter(make_loader(run))
    announce_data(run)
    snap_imgs = snapshot_images(run.dataset)
    run.tb = open_tensorboard(run)
    try:
        with _StopSignals() as stop:
            status, step, window = _run_steps(run, batches, snap_imgs, stop)
    finally:
        if run.tb is not None:
            run.tb.close()
    return _finish(run, status, step, window, cost)


class _StopSignals:
    """SIGTERM / SIGINT set a flag instead of killing the process: the loop checkpoints at the end of
    the step and stops. The previous handlers come back on exit."""

    def __init__(self):
        self.flag, self.sig = False, None
        self._old: dict = {}

    def _handler(self, signum, frame):
        self.flag, self.sig = True, signum

    def __enter__(self) -> _StopSignals:
        for s in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not in the main thread
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(s, h)


@dataclass(frozen=True)
class _Cadence:
    """Which steps log, measure the gradient norm of each loss term (paco_fr.diagnostics: at log
    steps; autograd.grad with the graph kept is not tried under torch.compile or DDP), snapshot,
    checkpoint or simulate an interruption (train.interrupt_at_step)."""

    total: int
    log_every: int
    grad_on: bool
    grad_every: int
    snapshot_every: int
    ckpt_every: int
    interrupt_at: int | None

    @classmethod
    def of(cls, run: Run) -> _Cadence:
        tc, dc = run.cfg["train"], run.cfg.get("diagnostics") or {}
        return cls(total=run.total, log_every=int(tc["log_every"]),
                   grad_on=bool(dc.get("grad_norms", True)) and not tc["compile"] and run.world == 1,
                   grad_every=int(dc.get("grad_every") or 0), snapshot_every=int(tc["snapshot_every"]),
                   ckpt_every=int(tc["ckpt_every"]),
                   interrupt_at=None if tc["interrupt_at_step"] is None else int(tc["interrupt_at_step"]))

    def log(self, n: int) -> bool:
        return n % self.log_every == 0 or n == self.total

    def grads(self, n: int) -> bool:
        return self.grad_on and self.log(n) and (self.grad_every <= 0 or n % self.grad_every == 0
                                                 or n == self.total)

    def snapshot(self, n: int) -> bool:
        return self.snapshot_every > 0 and (n % self.snapshot_every == 0 or n == self.total)

    def checkpoint(self, n: int) -> bool:
        return self.ckpt_every > 0 and n % self.ckpt_every == 0 and n < self.total


@dataclass
class _LogWindow:
    """What the log records report: the loss and images since the last log step (img/s), the last
    gradient diagnostics; and what summary.json keeps (the last record, the last five, throughputs)."""

    t_start: float
    t_last: float
    images: int = 0
    loss_sum: float = 0.0
    steps: int = 0
    grad_diag: dict = field(default_factory=dict)
    last: dict = field(default_factory=dict)
    recent: collections.deque = field(default_factory=lambda: collections.deque(maxlen=5))
    throughputs: list = field(default_factory=list)

    def add(self, res: StepResult, images: int) -> None:
        if res.grad_diag:
            self.grad_diag = res.grad_diag
        self.images += images
        self.loss_sum += res.loss
        self.steps += 1

    def record(self, run: Run, step: int, res: StepResult, step_loss: float) -> dict:
        now = time.time()
        ips = self.images / max(now - self.t_last, 1e-9)
        self.throughputs.append(ips)
        rec = {"step": step, "epoch": step / run.steps_per_epoch, "loss": step_loss,
               "loss_avg": self.loss_sum / self.steps, "lr": res.lr, "img_per_s": ips,
               **res.terms, **run.model.extra_stats(), **self.grad_diag}
        self.grad_diag = {}
        if run.skipped_total:
            rec["skipped_images"] = run.skipped_total
        self.last = rec
        self.recent.append(rec)
        self.t_last, self.images, self.loss_sum, self.steps = time.time(), 0, 0.0, 0
        return rec

    def wall(self, run: Run) -> float:
        return run.wall_before + time.time() - self.t_start


def _run_steps(run: Run, batches, snap_imgs: torch.Tensor, stop: _StopSignals) -> tuple[str, int, _LogWindow]:
    """Steps from run.start_step to run.total (or to a stop signal, checkpointed): the status
    ("complete" / "interrupted"), the last step and the log window."""
    tc, device, world = run.cfg["train"], run.device, run.world
    every = _Cadence.of(run)
    images_per_step = int(tc["batch_size"]) * int(tc["grad_accum"]) * world
    run.model.train()
    t_start = time.time()
    window = _LogWindow(t_start=t_start, t_last=time.time())
    pbar = Progress(run.is_main and bool(tc["progress"]), run.total, run.start_step,
                    f"pretrain {run.cfg['objective']}", every.log_every)
    step = run.start_step
    try:
        while step < run.total:
            res = train_step(run, batches, step, measure_grads=every.grads(step + 1))
            step += 1
            window.add(res, images_per_step)
            if not math.isfinite(res.loss):
                raise FloatingPointError(f"non-finite loss {res.loss} at step {step}")
            pbar.update(step, res.loss, res.lr)
            if every.log(step):
                # the logged loss is the global batch's (the mean over ranks), as in one process
                step_loss = mean_over_ranks(res.loss, device) if world > 1 else res.loss
                rec = window.record(run, step, res, step_loss)
                run.log(rec)
                write_record(run.tb, rec, set(res.terms))
            if every.snapshot(step):
                grid = snapshot(run, snap_imgs, step)
                if grid is not None:
                    write_image(run.tb, "reconstructions", grid, step)
            if every.checkpoint(step):
                save_checkpoint(run, step, window.wall(run))
            if every.interrupt_at is not None and step == every.interrupt_at:
                os.kill(os.getpid(), signal.SIGTERM)
            # every rank must stop at the same step (the checkpoint gathers RNG states)
            if world > 1 and any_rank(stop.flag, device) and not stop.flag:
                stop.flag, stop.sig = True, signal.SIGTERM
            if stop.flag:
                save_checkpoint(run, step, window.wall(run))
                run.log({"event": "interrupted", "step": step, "signal": int(stop.sig)})
                return "interrupted", step, window
    finally:
        pbar.close()
    return "complete", step, window


def _finish(run: Run, status: str, step: int, window: _LogWindow, cost: dict) -> dict:
    """The last checkpoint, the export and summary.json of a complete run; the process group down."""
    wall = window.wall(run)
    summary = {"status": status, "step": step, "total_steps": run.total, "objective": run.cfg["objective"]}
    if run.is_main:
        print(f"pretrain data: {run.skipped_total} unreadable image(s) skipped"
              f"{' (names: log.jsonl, event skipped_images)' if run.skipped_total else ''}"
              + (f"; {len(run.damaged_shards)} damaged shard(s): {', '.join(run.damaged_shards[:5])}"
                 f"{' ...' if len(run.damaged_shards) > 5 else ''} (rewrite them with `python -m paco_fr prepare`)"
                 if run.damaged_shards else ""), flush=True)
    if status == "complete":
        spread = weight_spread(run) if run.world > 1 and not run.cfg["train"]["fsdp"] else None
        save_checkpoint(run, step, wall)
        if run.is_main:
            if spread is not None:
                summary["rank_weight_spread"] = spread
            summary.update(_complete_summary(run, step, wall, cost, window))
            write_text_atomic(run.run_dir / "summary.json", json.dumps(summary, indent=2))  # read by other processes
    if run.world > 1:
        dist.barrier()
    if run.own_pg:
        dist.destroy_process_group()
    return summary


def _complete_summary(run: Run, step: int, wall: float, cost: dict, window: _LogWindow) -> dict:
    """Export the encoder and return summary.json's entries of a finished run (main process)."""
    cfg, device, model = run.cfg, run.device, run.model
    throughputs = window.throughputs
    device_name = str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    export_checkpoint(run.ckpt_path, run.run_dir / "encoder.safetensors", use_ema=bool(cfg["export"]["use_ema"]))
    export_recon(run.ckpt_path, run.run_dir / RECON_NAME)  # what reconstructions need besides the encoder
    out = {
        "final": {k: v for k, v in window.last.items() if k not in ("step",)},
        "steps": step,
        "steps_per_epoch": run.steps_per_epoch,
        "wall_time_s": wall,
        "throughput_img_per_s": float(np.mean(throughputs[1:] or throughputs)) if throughputs else None,
        "device": device_name,
        "world_size": run.world,
        "hostname": socket.gethostname(),
        "skipped_images": run.skipped_total,
        "warnings": model.warnings,
        "encoder": "encoder.safetensors",
        "compute": compute_block(cost, step, wall, device_name, teacher_path=model.upstream_encoder()),
        "config": cfg,
    }
    if cfg["data"]["source"] == "wds":  # shards that lost samples (paco_fr.data.shards)
        out["damaged_shards"] = list(run.damaged_shards)
    diagnostics = model.diagnostics_summary(list(window.recent))
    if diagnostics:
        out["diagnostics"] = diagnostics
    return out


def pretrain(cfg, overrides: list[str] | dict | None = None, run_dir=None, extend: bool = False) -> Path:
    """Pre-train (or resume, or return the finished export of) a run; returns encoder.safetensors.
    A run_dir holding a run made with another config raises paco_fr.rundir.RunDirConflict."""
    full = load_config(cfg, overrides)
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / run_name(cfg, full)
    enc = run_dir / "encoder.safetensors"
    if check_run_dir(full, run_dir, extend=extend) == "complete":
        return enc
    check_data_config(full)
    summary = train(full, run_dir, resume=True, extend=extend)
    if summary["status"] != "complete":
        raise InterruptedError(f"pre-training of {run_dir} was interrupted at step {summary['step']}; "
                               "call pretrain() again to resume")
    return enc
