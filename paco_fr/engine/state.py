"""The state of one pre-training run (`Run`), made by paco_fr.engine.build and advanced by
paco_fr.engine.step; nothing in it depends on the objective."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from paco_fr.models import ObjectiveData, PretrainModel


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
    skipped_total: int = 0  # distinct unreadable images (a name counts once however often it is read)
    skipped_names: set = field(default_factory=set)
    damaged_shards: list = field(default_factory=list)  # wds shards that lost samples, in order seen
    resumed: bool = False
    fwd_model: torch.nn.Module | None = None
    autocast: object = contextlib.nullcontext
    fsdp: bool = False  # train.fsdp under several processes: parameters sharded (paco_fr.engine.distributed)
    pending_optim: dict | None = None  # FSDP: the checkpoint's full optimizer state, loaded once wrapped
    tb: object = None  # the TensorBoard SummaryWriter of the main process (paco_fr.engine.curves), or None

    def full_params(self):
        """A context in which run.model holds every parameter in full (FSDP: gathered on every rank,
        a collective; otherwise nothing to do)."""
        if not self.fsdp:
            return contextlib.nullcontext()
        return FSDP.summon_full_params(self.fwd_model, writeback=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def log(self, rec: dict) -> None:
        if self.is_main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
