"""Everything before a run's first step: `build_run` (run-dir checks, process group, seeds, data,
the objective's ObjectiveData, model, optimizer, EMA, the checkpoint's state on resume),
`make_loader` (deterministic, resumable, one shard per rank) and `announce_data`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset

from paco_fr.config import check_data_config
from paco_fr.data.pretrain_data import ResumableBatchSampler, build_pretrain_dataset, collate
from paco_fr.defaults import DEFAULTS
from paco_fr.engine.checkpoint import CKPT_NAME, load_checkpoint, restore_checkpoint
from paco_fr.engine.distributed import dist_info, maybe_init_dist, pick_device
from paco_fr.engine.state import Run
from paco_fr.models import build_model, objective_model
from paco_fr.rundir import check_run_dir, record_config


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


def run_name(cfg_arg, cfg: dict) -> str:
    """runs/<name>: the config's `name` (or file stem), suffixed with the objective unless it is the
    default objective (paco) or already in the name (so `--config smoke objective=mae` does not
    reuse runs/smoke)."""
    obj = cfg["objective"]
    if cfg.get("name"):
        base = str(cfg["name"])
    elif isinstance(cfg_arg, (str, Path)):
        base = Path(str(cfg_arg)).stem
    else:
        base = "run"
    return base if obj == DEFAULTS["objective"] or base.endswith(f"_{obj}") else f"{base}_{obj}"


def build_run(cfg: dict, run_dir: Path, resume: bool = True, extend: bool = False) -> Run:
    """Everything before the first step: run-dir checks, process group, seeds, data, the objective's
    data (ObjectiveData), the model, the optimizer and EMA, and the checkpoint's state on resume.
    The order fixes the RNG streams (a resumed run sees the numbers of an uninterrupted one)."""
    run_dir = Path(run_dir)
    check_data_config(cfg)
    state = check_run_dir(cfg, run_dir, fresh=not resume, extend=extend)
    tc = cfg["train"]
    dev_kind = "cuda" if (tc["device"] in ("auto", "cuda") and torch.cuda.is_available()) else "cpu"
    own_pg = maybe_init_dist(dev_kind)
    rank, world, local_rank = dist_info()
    device = pick_device(cfg, local_rank)
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


def announce_data(run: Run) -> None:
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
