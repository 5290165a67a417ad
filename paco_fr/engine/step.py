"""One optimizer step of any objective: the learning-rate schedule, a loader batch made the
model's input, `train_step` (micro-batches, clipping, AdamW, the model's on_step_end, the EMA)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from paco_fr.engine.state import Run
from paco_fr.region_maps import hflip_landmarks


@dataclass
class StepResult:
    loss: float
    terms: dict[str, float]
    lr: float
    grad_diag: dict[str, float]


def lr_at(step: int, total: int, tc: dict) -> float:
    base, lo, warm = float(tc["lr"]), float(tc["min_lr"]), int(tc["warmup_steps"])
    if step < warm:
        return base * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return lo + (base - lo) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _to_float(v) -> float:
    return float(v.detach().float().item()) if torch.is_tensor(v) else float(v)


def _prepare_batch(run: Run, batch: dict, step: int) -> dict:
    """Collated loader batch -> the model's input: images in [0, 1] (random horizontal flip, the
    landmarks flipped with them) plus the objective's fields (ObjectiveData.batch_fields)."""
    device = run.device
    new = [n for n in dict.fromkeys(batch["skipped"]) if n not in run.skipped_names]  # images, not occurrences
    run.skipped_names.update(new)
    run.skipped_total += len(new)
    if new:
        run.log({"event": "skipped_images", "step": step, "files": new[:20], "count_total": run.skipped_total})
    for name in batch.get("damaged_shards") or []:
        if name not in run.damaged_shards:
            run.damaged_shards.append(name)
            run.log({"event": "damaged_shard", "step": step, "shard": name})
    x = batch["image"].to(device, non_blocking=True).float() / 255
    flip = bool(run.cfg["data"]["hflip"])
    if flip:
        f = torch.rand(x.shape[0], device="cpu") < 0.5
        x = torch.where(f.to(device)[:, None, None, None], x.flip(-1), x)
    b = {"image": x}
    if "landmarks" in batch:  # per-face region maps (paco_fr.region_maps), flipped with the image
        lm = batch["landmarks"].to(device).float()
        b["landmarks"] = torch.where(f.to(device)[:, None, None], hflip_landmarks(lm), lm) if flip else lm
    b.update(run.data.batch_fields(batch["index"], device))
    return b


def train_step(run: Run, batches, step: int, measure_grads: bool = False) -> StepResult:
    """One optimizer step at `step` (0-based): `train.grad_accum` micro-batches from `batches`,
    gradient clipping, AdamW, the model's on_step_end, the encoder EMA. `measure_grads`: the
    gradient norm of each loss term (model.gradient_diagnostics) on the last micro-batch."""
    tc = run.cfg["train"]
    accum = int(tc["grad_accum"])
    lr = lr_at(step, run.total, tc)
    for g in run.opt.param_groups:
        g["lr"] = lr
    step_loss = 0.0
    terms_acc: dict[str, float] = {}
    grad_diag: dict[str, float] = {}
    fwd_model = run.fwd_model if run.fwd_model is not None else run.model
    for micro in range(accum):
        b = _prepare_batch(run, next(batches), step)
        sync = contextlib.nullcontext()
        if run.world > 1 and micro < accum - 1 and hasattr(fwd_model, "no_sync"):
            sync = fwd_model.no_sync()
        with sync:
            with run.autocast():
                out = fwd_model(b, step=step)
            if measure_grads and micro == accum - 1:
                grad_diag = run.model.gradient_diagnostics(out)  # one extra backward per loss term
            (out["loss"] / accum).backward()
        step_loss += _to_float(out["loss"]) / accum
        for k, v in out["terms"].items():
            terms_acc[k] = terms_acc.get(k, 0.0) + _to_float(v) / accum
    if tc["clip_grad"]:
        if run.fsdp:  # the norm over every rank's shard
            fwd_model.clip_grad_norm_(float(tc["clip_grad"]))
        else:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), float(tc["clip_grad"]))
    run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    run.model.on_step_end(step)
    if run.ema is not None:
        with torch.no_grad(), run.full_params():
            for k, v in run.model.encoder.state_dict().items():
                run.ema[k].mul_(run.ema_decay).add_(v.float(), alpha=1 - run.ema_decay)
    return StepResult(step_loss, terms_acc, lr, grad_diag)
