"""ckpt/last.pt: what a run saves and restores (model, optimizer, EMA, every rank's RNG states,
counters, the objective's data state), under one process, DDP or FSDP."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullStateDictConfig, StateDictType
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from paco_fr.checkpoint_file import read_checkpoint
from paco_fr.engine.state import Run

CKPT_NAME = "last.pt"


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


def atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """The checkpoint at `path`; CheckpointUnreadable (naming the file, the cause and --fresh) when
    it is truncated, empty or damaged."""
    return read_checkpoint(path)


def save_checkpoint(run: Run, step: int, wall: float) -> None:
    """ckpt/last.pt: model, optimizer, EMA, every rank's RNG states, counters and the objective's
    data state (ObjectiveData.checkpoint_state: FaRL's vocabulary). Collective under DDP."""
    rng = get_rng_state()
    damaged = list(run.damaged_shards)
    if run.world > 1:
        rngs = [None] * run.world
        dist.all_gather_object(rngs, rng)
        per_rank = [None] * run.world  # wds shards each rank found damaged: a resume reads them as they are
        dist.all_gather_object(per_rank, damaged)
        damaged = list(dict.fromkeys(n for names in per_rank for n in names))
    else:
        rngs = [rng]
    model_sd, optim_sd = None, None
    if run.fsdp:  # the full weights gathered on rank 0 (the same "model" as DDP's checkpoint); the
        # optimizer as every rank's shard (resuming needs the same world size, as the shard stream does)
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
                     "skipped_names": sorted(run.skipped_names), "damaged_shards": damaged,
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
    run.skipped_names = set(ckpt.get("skipped_names") or [])
    damaged = list(ckpt.get("damaged_shards") or [])
    run.damaged_shards = damaged
    if damaged and hasattr(run.dataset, "mark_damaged"):  # wds: count their readable records, so resume is exact
        run.dataset.mark_damaged(damaged)
    rank, rng = run.rank, ckpt["rng"]
    set_rng_state(rng[rank] if isinstance(rng, list) and rank < len(rng)
                  else rng[0] if isinstance(rng, list) else rng)
    run.resumed = True
