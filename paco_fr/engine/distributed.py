"""What the loop needs across processes and around the model: the process group and device of a
rank, `wrap_model` (DDP / FSDP, torch.compile, bf16 autocast), and the collectives the loop and
its summary call (`mean_over_ranks`, `weight_spread`)."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from paco_fr.engine.state import Run


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process; (0, 1, 0) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def maybe_init_dist(device_kind: str) -> bool:
    """Start the process group under torchrun (WORLD_SIZE > 1); True when this call started it."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
        return True
    return False


def pick_device(cfg: dict, local_rank: int) -> torch.device:
    d = cfg["train"]["device"]
    if d == "auto":
        d = "cuda" if torch.cuda.is_available() else "cpu"
    if d == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(d)


def wrap_model(run: Run) -> None:
    """DDP / FSDP across processes, torch.compile, bf16 autocast: `run.fwd_model`, `run.autocast`."""
    tc = run.cfg["train"]
    fwd_model = run.model
    if run.world > 1:
        fwd_model = _shard_fsdp(run) if tc["fsdp"] else torch.nn.parallel.DistributedDataParallel(
            run.model, device_ids=[run.local_rank] if run.device.type == "cuda" else None,
            find_unused_parameters=True)
    if tc["compile"]:
        fwd_model = torch.compile(fwd_model)
    run.fwd_model = fwd_model
    amp = tc["amp"]
    use_amp = (amp == "auto" and run.device.type == "cuda") or amp == "bf16"
    device_type = run.device.type
    run.autocast = (lambda: torch.autocast(device_type, dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext


def _shard_fsdp(run: Run) -> torch.nn.Module:
    """train.fsdp: run.model's parameters become views of this rank's shard: checkpoint, EMA,
    clipping and snapshots go through FSDP's full state dicts / summon_full_params
    (Run.full_params). The checkpoint's optimizer shard (restore_checkpoint) is loaded here."""
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
    return fwd_model


def mean_over_ranks(value: float, device) -> float:
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def any_rank(flag: bool, device) -> bool:
    """True on every rank when `flag` is true on any (a collective)."""
    f = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(f, op=dist.ReduceOp.MAX)
    return f.item() > 0


def weight_spread(run: Run) -> float:
    """Largest difference between ranks of any parameter's sum (0 when DDP kept them in sync)."""
    sums = torch.stack([p.detach().double().sum().cpu() for p in run.model.parameters()])
    got = [None] * run.world
    dist.all_gather_object(got, sums)
    return float(max((g - got[0]).abs().max().item() for g in got))
