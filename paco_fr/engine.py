"""The pre-training engine: one loop for every registered objective (paco_fr.models.registry).

The engine never branches on the objective: what an objective adds (its data, its start-of-run
log events, its per-step updates, its diagnostics, an upstream encoder whose compute it is charged)
goes through hooks on its model class (paco_fr.models.base). Pieces:
- build:      `build_run(cfg, run_dir)` -> Run (data, ObjectiveData, model, optimizer, EMA, resume
              state), `wrap_model` (DDP / FSDP / compile / autocast), `make_loader`;
- step:       `train_step(run, batches, step)` -> StepResult (micro-batches, clip, AdamW,
              model.on_step_end, EMA);
- checkpoint: `save_checkpoint(run, step, wall)` / `restore_checkpoint(run, ckpt)`;
- `train(...)` strings them together with logging, snapshots, signals and summary.json.

Python API:
- `pretrain(cfg, overrides=None, run_dir=None) -> Path` of `run_dir/encoder.safetensors`.
  Idempotent: a complete run (summary.json + export present) returns its export at once; a run
  with a checkpoint resumes from it.
- `train(cfg, run_dir, resume=True) -> dict` the loop itself; returns the summary (status
  "complete" or "interrupted").
- `reconstruct(run_dir_or_model, images, seed=0) -> dict(original, corrupted, reconstructed, mask)`
  for fixed faces (e.g. the codebook-size figure).

Run directory: config.yaml, log.jsonl (one JSON object per log step / event), ckpt/last.pt,
snapshots/step_XXXXXX.png (rows: original / corrupted / reconstructed), encoder.safetensors,
summary.json. Works under `torchrun` (DDP, gloo on CPU / nccl on GPU); each rank reads its own
deterministic shard of every epoch's permutation.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import random
import signal
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset

from paco_fr.config import load_config
from paco_fr.data.pretrain_data import ResumableBatchSampler, build_pretrain_dataset, collate
from paco_fr.flops import compute_block, step_cost
from paco_fr.models import ObjectiveData, PretrainModel, build_model, objective_model
from paco_fr.region_maps import hflip_landmarks

CKPT_NAME = "last.pt"


# ---------------------------------------------------------------------------- helpers
def _dist_info() -> tuple[int, int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def _maybe_init_dist(device_kind: str) -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
        return True
    return False


def _pick_device(cfg: dict, local_rank: int) -> torch.device:
    d = cfg["train"]["device"]
    if d == "auto":
        d = "cuda" if torch.cuda.is_available() else "cpu"
    if d == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(d)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict:
    """RNG states as tensors / plain types (loadable with torch.load(weights_only=True))."""
    np_state = np.random.get_state()
    py = random.getstate()
    st = {
        "torch": torch.get_rng_state(),
        "numpy_key": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_cached": float(np_state[4]),
        "python_version": int(py[0]),
        "python_state": torch.tensor(py[1], dtype=torch.int64),
        "python_gauss": py[2],
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(("MT19937", st["numpy_key"].numpy().astype(np.uint32), st["numpy_pos"],
                         st["numpy_has_gauss"], st["numpy_cached"]))
    random.setstate((st["python_version"], tuple(int(v) for v in st["python_state"].tolist()), st["python_gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def lr_at(step: int, total: int, tc: dict) -> float:
    base, lo, warm = float(tc["lr"]), float(tc["min_lr"]), int(tc["warmup_steps"])
    if step < warm:
        return base * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return lo + (base - lo) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or any(k in n for k in ("pos_embed", "cls_token", "mask_token", "logit_scale", ".pos")):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _to_float(v) -> float:
    return float(v.detach().float().item()) if torch.is_tensor(v) else float(v)


def save_snapshot(rec: dict, path: Path) -> None:
    """PNG grid: rows original / corrupted / reconstructed, one column per face."""
    from PIL import Image

    rows = [rec["original"], rec["corrupted"], rec["reconstructed"]]
    grid = torch.cat([torch.cat(list(r.float().cpu().clamp(0, 1)), dim=2) for r in rows], dim=1)
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _run_name(cfg_arg, cfg: dict) -> str:
    """runs/<name>: the config's `name` (or file stem), suffixed with the objective unless it is the
    default objective (paco) or already in the name (so `--config smoke objective=mae` does not
    reuse runs/smoke)."""
    from paco_fr.config import DEFAULTS

    obj = cfg["objective"]
    if cfg.get("name"):
        base = str(cfg["name"])
    elif isinstance(cfg_arg, (str, Path)):
        base = Path(str(cfg_arg)).stem
    else:
        base = "run"
    return base if obj == DEFAULTS["objective"] or base.endswith(f"_{obj}") else f"{base}_{obj}"


# ---------------------------------------------------------------------------- build
@dataclass
class Run:
    """One run's state, made by `build_run` and advanced by `train_step`. Nothing here depends on
    the objective: what an objective adds lives on its model (paco_fr.models.base) and its
    ObjectiveData (`data`)."""

    cfg: dict
    run_dir: Path
    device: torch.device
    rank: int
    world: int
    local_rank: int
    own_pg: bool
    seed: int
    dataset: object
    data: ObjectiveData
    steps_per_epoch: int
    total: int
    model: PretrainModel
    opt: torch.optim.Optimizer
    ema: dict | None
    ema_decay: float
    ckpt_path: Path
    log_path: Path
    start_step: int = 0
    wall_before: float = 0.0
    skipped_total: int = 0
    resumed: bool = False
    fwd_model: torch.nn.Module | None = None
    autocast: object = contextlib.nullcontext
    fsdp: bool = False  # train.fsdp under several processes: parameters sharded (paco_fr/engine.py wrap_model)
    pending_optim: dict | None = None  # FSDP: the checkpoint's full optimizer state, loaded once wrapped

    def full_params(self):
        """A context in which run.model holds every parameter in full (FSDP: gathered on every rank,
        a collective; otherwise nothing to do)."""
        if not self.fsdp:
            return contextlib.nullcontext()
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        return FSDP.summon_full_params(self.fwd_model, writeback=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def log(self, rec: dict) -> None:
        if self.is_main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")


def build_run(cfg: dict, run_dir: Path, resume: bool = True, extend: bool = False) -> Run:
    """Everything before the first step: run-dir checks, process group, seeds, data, the objective's
    data (ObjectiveData), the model, the optimizer and EMA, and the checkpoint's state on resume.
    The order fixes the RNG streams (a resumed run sees the numbers of an uninterrupted one)."""
    from paco_fr.config import check_data_config
    from paco_fr.rundir import check_run_dir, record_config

    run_dir = Path(run_dir)
    check_data_config(cfg)
    state = check_run_dir(cfg, run_dir, fresh=not resume, extend=extend)
    tc = cfg["train"]
    dev_kind = "cuda" if (tc["device"] in ("auto", "cuda") and torch.cuda.is_available()) else "cpu"
    own_pg = _maybe_init_dist(dev_kind)
    rank, world, local_rank = _dist_info()
    device = _pick_device(cfg, local_rank)
    if tc["threads"]:
        torch.set_num_threads(int(tc["threads"]))
    if tc["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed = int(cfg["seed"])
    seed_everything(seed + rank)
    if rank == 0:
        if state == "fresh":  # the old run's "complete" marker must not outlive it
            (run_dir / "summary.json").unlink(missing_ok=True)
        record_config(cfg, run_dir)

    objective = objective_model(cfg)
    data_seed = seed if cfg["data"].get("seed") is None else int(cfg["data"]["seed"])  # the same images across seeds
    ds = build_pretrain_dataset(cfg["data"], int(cfg["model"]["img_size"]), seed=data_seed,
                                **objective.dataset_options(cfg))
    bs, accum = int(tc["batch_size"]), int(tc["grad_accum"])
    per_epoch_micro = max(1, (len(ds) // world) // bs)
    steps_per_epoch = max(1, per_epoch_micro // accum)
    total = int(tc["steps"]) if tc["epochs"] is None else int(round(float(tc["epochs"]) * steps_per_epoch))
    seed_everything(seed + rank)  # data generation may have consumed the global RNGs (cache miss vs hit)

    ckpt_path = run_dir / "ckpt" / CKPT_NAME
    ckpt = load_checkpoint(ckpt_path) if (resume and ckpt_path.exists()) else None
    if ckpt is not None and ckpt.get("objective", cfg["objective"]) != cfg["objective"]:
        raise ValueError(f"{ckpt_path} is a {ckpt['objective']!r} checkpoint but the config's objective is "
                         f"{cfg['objective']!r}; use another run directory (or --fresh)")
    data = objective.prepare_data(cfg, ds, ckpt)

    model = build_model(cfg, steps_per_epoch=steps_per_epoch, data=data).to(device)
    opt = torch.optim.AdamW(param_groups(model, float(tc["weight_decay"])), lr=float(tc["lr"]),
                            betas=tuple(tc["betas"]))
    ema_decay = float(tc["ema"] or 0.0)
    ema = {k: v.detach().clone().float() for k, v in model.encoder.state_dict().items()} if ema_decay > 0 else None
    run = Run(cfg=cfg, run_dir=run_dir, device=device, rank=rank, world=world, local_rank=local_rank,
              own_pg=own_pg, seed=seed, dataset=ds, data=data, steps_per_epoch=steps_per_epoch, total=total,
              model=model, opt=opt, ema=ema, ema_decay=ema_decay, ckpt_path=ckpt_path,
              log_path=run_dir / "log.jsonl")
    if ckpt is not None:
        restore_checkpoint(run, ckpt)
    if run.is_main:
        if ckpt is not None and run.log_path.exists():  # drop records written after the checkpoint
            keep = [ln for ln in run.log_path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= run.start_step]
            run.log_path.write_text("".join(k + "\n" for k in keep))
        elif ckpt is None and run.log_path.exists():
            run.log_path.unlink()
    return run


def wrap_model(run: Run) -> None:
    """DDP / FSDP across processes, torch.compile, bf16 autocast: `run.fwd_model`, `run.autocast`."""
    tc = run.cfg["train"]
    fwd_model = run.model
    if run.world > 1:
        if tc["fsdp"]:
            # run.model's parameters become views of this rank's shard: checkpoint, EMA, clipping and
            # snapshots go through FSDP's full state dicts / summon_full_params (run.full_params)
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            if run.cfg["objective"] == "paco" and run.cfg["codebook"]["update"] == "grad":
                raise ValueError("train.fsdp=true with codebook.update=grad is not supported: the codebook is then a "
                                 "parameter that PaCo-FR writes in place (initialisation, dead-code restarts), "
                                 "which FSDP's shards would not keep; use codebook.update=ema or DDP")
            with torch.no_grad():  # rank 0's initial weights everywhere, as DDP does (sync_module_states
                for t in [*run.model.parameters(), *run.model.buffers()]:  # is GPU-only)
                    dist.broadcast(t.data, 0)
            fwd_model = FSDP(run.model, use_orig_params=True, device_id=run.device)
            run.fsdp = True
            if run.pending_optim is not None:
                run.opt.load_state_dict(run.pending_optim)
                run.pending_optim = None
        else:
            fwd_model = torch.nn.parallel.DistributedDataParallel(
                run.model, device_ids=[run.local_rank] if run.device.type == "cuda" else None,
                find_unused_parameters=True)
    if tc["compile"]:
        fwd_model = torch.compile(fwd_model)
    run.fwd_model = fwd_model
    amp = tc["amp"]
    use_amp = (amp == "auto" and run.device.type == "cuda") or amp == "bf16"
    device_type = run.device.type
    run.autocast = (lambda: torch.autocast(device_type, dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext


def make_loader(run: Run) -> DataLoader:
    """The deterministic, resumable loader (each rank its own shard of every epoch's permutation)."""
    tc = run.cfg["train"]
    bs, accum = int(tc["batch_size"]), int(tc["grad_accum"])
    workers = int(run.cfg["data"]["num_workers"])
    if isinstance(run.dataset, IterableDataset):  # data.source=wds: the stream batches, splits and resumes itself
        run.dataset.configure(run.rank, run.world, bs, run.start_step * accum, workers)
        return DataLoader(run.dataset, batch_size=None, num_workers=workers, pin_memory=run.device.type == "cuda",
                          generator=torch.Generator().manual_seed(run.seed + run.start_step))
    sampler = ResumableBatchSampler(len(run.dataset), bs, run.seed, run.start_step * accum, run.total * accum,
                                    run.rank, run.world)
    return DataLoader(run.dataset, batch_sampler=sampler, num_workers=workers,
                      collate_fn=collate, pin_memory=run.device.type == "cuda",
                      # own generator: creating the iterator must not consume the global RNG stream
                      generator=torch.Generator().manual_seed(run.seed + run.start_step))


# ---------------------------------------------------------------------------- checkpoint
def save_checkpoint(run: Run, step: int, wall: float) -> None:
    """ckpt/last.pt: model, optimizer, EMA, every rank's RNG states, counters and the objective's
    data state (ObjectiveData.checkpoint_state: FaRL's vocabulary). Collective under DDP."""
    rng = get_rng_state()
    if run.world > 1:
        rngs = [None] * run.world
        dist.all_gather_object(rngs, rng)
    else:
        rngs = [rng]
    model_sd, optim_sd = None, None
    if run.fsdp:  # the full weights gathered on rank 0 (the same "model" as DDP's checkpoint); the
        # optimizer as every rank's shard (resuming needs the same world size, as the shard stream does)
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.state_dict_type(run.fwd_model, StateDictType.FULL_STATE_DICT,
                                  FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
            model_sd = run.fwd_model.state_dict()
        shards = [None] * run.world if run.is_main else None
        dist.gather_object(run.opt.state_dict(), shards, dst=0)
        optim_sd = {"fsdp_rank_shards": shards}
    if run.is_main:
        atomic_save({"model": model_sd if run.fsdp else run.model.state_dict(),
                     "optimizer": optim_sd if run.fsdp else run.opt.state_dict(), "step": step,
                     "ema": run.ema, "rng": rngs, "wall_time": wall, "skipped_total": run.skipped_total,
                     **run.data.checkpoint_state(), "objective": run.cfg["objective"]}, run.ckpt_path)


def restore_checkpoint(run: Run, ckpt: dict) -> None:
    """The inverse of save_checkpoint on a freshly built run (RNG states of this rank included)."""
    run.model.load_state_dict(ckpt["model"])
    if run.world > 1 and run.cfg["train"]["fsdp"]:
        shards = ckpt["optimizer"].get("fsdp_rank_shards")
        if not shards or len(shards) != run.world:
            raise ValueError(f"{run.ckpt_path}: train.fsdp resumes a checkpoint of an FSDP run with the same number "
                             f"of processes (this one: {len(shards) if shards else 'not FSDP'}, now "
                             f"{run.world})")
        run.pending_optim = shards[run.rank]  # this rank's shard: loaded by wrap_model, once sharded
    else:
        run.opt.load_state_dict(ckpt["optimizer"])
    if run.ema is not None and ckpt.get("ema") is not None:
        run.ema = {k: v.to(run.device) for k, v in ckpt["ema"].items()}
    run.start_step = int(ckpt["step"])
    run.wall_before = float(ckpt.get("wall_time", 0.0))
    run.skipped_total = int(ckpt.get("skipped_total", 0))
    rank, rng = run.rank, ckpt["rng"]
    set_rng_state(rng[rank] if isinstance(rng, list) and rank < len(rng)
                  else rng[0] if isinstance(rng, list) else rng)
    run.resumed = True


# ---------------------------------------------------------------------------- step
@dataclass
class StepResult:
    loss: float
    terms: dict[str, float]
    lr: float
    grad_diag: dict[str, float]


def _prepare_batch(run: Run, batch: dict, step: int) -> dict:
    """Collated loader batch -> the model's input: images in [0, 1] (random horizontal flip, the
    landmarks flipped with them) plus the objective's fields (ObjectiveData.batch_fields)."""
    device = run.device
    run.skipped_total += len(batch["skipped"])
    if batch["skipped"]:
        run.log({"event": "skipped_images", "step": step, "files": batch["skipped"][:20],
                 "count_total": run.skipped_total})
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


# ---------------------------------------------------------------------------- the loop
def train(cfg: dict, run_dir: Path, resume: bool = True, extend: bool = False) -> dict:
    """resume=False starts run_dir over; a run_dir holding a run made with another config is refused
    (paco_fr.rundir), a longer train.steps / epochs only with extend=True."""
    run = build_run(cfg, run_dir, resume=resume, extend=extend)
    run_dir, tc, model, device, total = run.run_dir, cfg["train"], run.model, run.device, run.total
    is_main, world, start_step = run.is_main, run.world, run.start_step
    log = run.log
    # model FLOPs of one optimizer step (paco_fr/flops.py): measured on a throw-away copy of the model,
    # before training, so a run that cannot be costed fails before it spends its budget. Every rank
    # runs the probe: its model's codebook synchronises across ranks (a collective on rank 0 alone hangs)
    cost = step_cost(cfg, world=world, data=run.data)
    for rec in model.start_events():  # warnings, MCF's teacher
        log({"event": rec["event"], "step": start_step, **rec})
    if run.resumed:
        log({"event": "resumed", "step": start_step})
    wrap_model(run)
    it = iter(make_loader(run))
    ds = run.dataset
    _announce_data(run)
    # fixed faces for the snapshots
    snap_imgs = (ds.fixed_images(min(8, len(ds))) if hasattr(ds, "fixed_images")
                 else torch.stack([ds[i]["image"] for i in range(min(8, len(ds)))])).float() / 255

    stop = {"flag": False, "sig": None}
    old_handlers = {}

    def _handler(signum, frame):
        stop["flag"], stop["sig"] = True, signum

    for s in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not in the main thread
            old_handlers[s] = signal.signal(s, _handler)

    def snapshot(step: int) -> None:
        if not is_main and not run.fsdp:
            return
        with run.full_params():  # FSDP: every rank gathers, rank 0 reconstructs
            if not is_main:
                return
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(1234)
                model.eval()
                with run.autocast():
                    rec = model.reconstruct(snap_imgs.to(device))
                model.train()
        save_snapshot(rec, run_dir / "snapshots" / f"step_{step:06d}.png")

    log_every = int(tc["log_every"])

    def _is_log_step(n: int) -> bool:
        return n % log_every == 0 or n == total

    # gradient norms of each loss term at log steps (paco_fr.diagnostics); autograd.grad with the
    # graph kept is not tried under torch.compile or DDP
    dc = cfg.get("diagnostics") or {}
    grad_diag_on = bool(dc.get("grad_norms", True)) and not tc["compile"] and world == 1
    grad_every = int(dc.get("grad_every") or 0)

    def _is_grad_step(n: int) -> bool:
        return _is_log_step(n) and (grad_every <= 0 or n % grad_every == 0 or n == total)

    grad_diag: dict[str, float] = {}
    model.train()
    t_start = time.time()
    t_last, imgs_since, loss_since, n_since = time.time(), 0, 0.0, 0
    last_terms: dict = {}
    recent_records: collections.deque = collections.deque(maxlen=5)  # for summary.json's diagnostics
    throughputs: list[float] = []
    bs, accum = int(tc["batch_size"]), int(tc["grad_accum"])
    pbar = None
    if is_main and tc["progress"]:
        from tqdm import tqdm

        pbar = tqdm(total=total, initial=start_step, desc=f"pretrain {cfg['objective']}", dynamic_ncols=True)
    status = "complete"
    step = start_step
    try:
        while step < total:
            res = train_step(run, it, step, measure_grads=grad_diag_on and _is_grad_step(step + 1))
            if res.grad_diag:
                grad_diag = res.grad_diag
            step_loss, lr = res.loss, res.lr
            step += 1
            imgs_since += bs * accum * world
            loss_since += step_loss
            n_since += 1
            if not math.isfinite(step_loss):
                raise FloatingPointError(f"non-finite loss {step_loss} at step {step}")
            if pbar is not None:
                pbar.update(1)
                pbar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")
            if _is_log_step(step):
                if world > 1:  # the logged loss is the global batch's (the mean over ranks), as in one process
                    step_loss = _mean_over_ranks(step_loss, device)
                now = time.time()
                ips = imgs_since / max(now - t_last, 1e-9)
                throughputs.append(ips)
                rec = {"step": step, "epoch": step / run.steps_per_epoch, "loss": step_loss,
                       "loss_avg": loss_since / n_since, "lr": lr, "img_per_s": ips,
                       **res.terms, **model.extra_stats(), **grad_diag}
                grad_diag = {}
                if run.skipped_total:
                    rec["skipped_images"] = run.skipped_total
                log(rec)
                last_terms = rec
                recent_records.append(rec)
                t_last, imgs_since, loss_since, n_since = time.time(), 0, 0.0, 0
            if int(tc["snapshot_every"]) > 0 and (step % int(tc["snapshot_every"]) == 0 or step == total):
                snapshot(step)
            if int(tc["ckpt_every"]) > 0 and step % int(tc["ckpt_every"]) == 0 and step < total:
                save_checkpoint(run, step, run.wall_before + time.time() - t_start)
            if tc["interrupt_at_step"] is not None and step == int(tc["interrupt_at_step"]):
                os.kill(os.getpid(), signal.SIGTERM)
            if world > 1:  # every rank must stop at the same step (the checkpoint gathers RNG states)
                f = torch.tensor([1.0 if stop["flag"] else 0.0], device=device)
                dist.all_reduce(f, op=dist.ReduceOp.MAX)
                if f.item() > 0 and not stop["flag"]:
                    stop["flag"], stop["sig"] = True, signal.SIGTERM
            if stop["flag"]:
                save_checkpoint(run, step, run.wall_before + time.time() - t_start)
                log({"event": "interrupted", "step": step, "signal": int(stop["sig"])})
                status = "interrupted"
                break
    finally:
        if pbar is not None:
            pbar.close()
        for s, h in old_handlers.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(s, h)
    wall = run.wall_before + time.time() - t_start
    summary = {"status": status, "step": step, "total_steps": total, "objective": cfg["objective"]}
    if is_main:
        print(f"pretrain data: {run.skipped_total} unreadable image(s) skipped"
              f"{' (names: log.jsonl, event skipped_images)' if run.skipped_total else ''}", flush=True)
    if status == "complete":
        spread = _weight_spread(run) if world > 1 and not tc["fsdp"] else None
        save_checkpoint(run, step, wall)
        if is_main:
            if spread is not None:
                summary["rank_weight_spread"] = spread
            summary.update(_complete_summary(run, step, wall, cost, last_terms, throughputs,
                                             list(recent_records)))
            (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if world > 1:
        dist.barrier()
    if run.own_pg:
        dist.destroy_process_group()
    return summary


def _mean_over_ranks(value: float, device) -> float:
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def _weight_spread(run: Run) -> float:
    """Largest difference between ranks of any parameter's sum (0 when DDP kept them in sync)."""
    sums = torch.stack([p.detach().double().sum().cpu() for p in run.model.parameters()])
    got = [None] * run.world
    dist.all_gather_object(got, sums)
    return float(max((g - got[0]).abs().max().item() for g in got))


def _announce_data(run: Run) -> None:
    """Print (main process) how many images the data source found; log each rank's shards of the
    first epoch for a sharded source (disjoint across ranks, their union every shard)."""
    ds, src = run.dataset, run.cfg["data"]["source"]
    shards = None
    if hasattr(ds, "shards_of"):
        workers = max(1, int(run.cfg["data"]["num_workers"]))
        mine = sorted(p.name for w in range(workers) for p in ds.shards_of(0, worker=w))
        shards = [mine]
        if run.world > 1:
            shards = [None] * run.world
            dist.all_gather_object(shards, mine)
    if run.is_main:
        n_sh = f" in {len(ds.shards)} shards" if hasattr(ds, "shards") else ""
        print(f"pretrain data: {len(ds)} images found{n_sh} (data.source={src}); "
              f"unreadable ones are skipped and counted", flush=True)
        no_lm = (src == "tar" or (src == "folder" and not run.cfg["data"].get("landmarks_file"))
                 or (src == "wds" and not getattr(ds, "has_landmarks", True)))
        if no_lm and run.cfg["objective"] == "paco":
            print(f"pretrain data: data.source={src} carries no landmarks here: PaCo-FR's regions use the "
                  "canonical face layout for every image (per-face regions: `python -m paco_fr prepare` with "
                  "--landmarks, then data.source=wds)", flush=True)
        rec = {"event": "data", "step": run.start_step, "source": src, "images": len(ds), "landmarks": not no_lm}
        if shards is not None:
            rec["epoch0_shards_by_rank"] = shards
        run.log(rec)


def _complete_summary(run: Run, step: int, wall: float, cost: dict, last_terms: dict, throughputs: list[float],
                      recent_records: list[dict]) -> dict:
    """Export the encoder and return summary.json's entries of a finished run (main process)."""
    from paco_fr.export import RECON_NAME, export_checkpoint, export_recon

    cfg, device, model = run.cfg, run.device, run.model
    device_name = str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    export_checkpoint(run.ckpt_path, run.run_dir / "encoder.safetensors", use_ema=bool(cfg["export"]["use_ema"]))
    export_recon(run.ckpt_path, run.run_dir / RECON_NAME)  # what reconstructions need besides the encoder
    out = {
        "final": {k: v for k, v in last_terms.items() if k not in ("step",)},
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
    diagnostics = model.diagnostics_summary(recent_records)
    if diagnostics:
        out["diagnostics"] = diagnostics
    return out


def pretrain(cfg, overrides: list[str] | dict | None = None, run_dir=None, extend: bool = False) -> Path:
    """Pre-train (or resume, or return the finished export of) a run; returns encoder.safetensors.
    A run_dir holding a run made with another config raises paco_fr.rundir.RunDirConflict."""
    from paco_fr.config import check_data_config
    from paco_fr.rundir import check_run_dir

    full = load_config(cfg, overrides)
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / _run_name(cfg, full)
    enc = run_dir / "encoder.safetensors"
    if check_run_dir(full, run_dir, extend=extend) == "complete":
        return enc
    check_data_config(full)
    summary = train(full, run_dir, resume=True, extend=extend)
    if summary["status"] != "complete":
        raise InterruptedError(f"pre-training of {run_dir} was interrupted at step {summary['step']}; "
                               "call pretrain() again to resume")
    return enc


def load_run_model(run_dir, device="cpu"):
    """Rebuild a run's model from config.yaml and its last checkpoint (eval mode)."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    ckpt = load_checkpoint(run_dir / "ckpt" / CKPT_NAME)
    data = objective_model(cfg).prepare_data(cfg, None, ckpt)  # FaRL: the saved vocabulary
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, data=data)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


@torch.no_grad()
def reconstruct(run_or_model, images: torch.Tensor, seed: int = 0, mask: torch.Tensor | None = None) -> dict:
    """Original / corrupted / reconstructed images (B, 3, H, W) in [0, 1] for fixed faces.

    images: uint8 (B, H, W, 3) / (B, 3, H, W) or float in [0, 1]. The masks and (Gumbel) choices
    come from `seed` (or `mask` (B, N) given), without touching the global RNG stream."""
    model = load_run_model(run_or_model) if isinstance(run_or_model, (str, Path)) else run_or_model
    x = torch.as_tensor(images)
    if x.ndim == 4 and x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kw = {"mask": mask.to(dev)} if mask is not None else {}
        out = model.reconstruct(x.to(dev), **kw)
    model.train(was_training)
    return {k: v.cpu() for k, v in out.items()}
