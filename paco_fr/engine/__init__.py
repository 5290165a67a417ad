"""The pre-training engine: one loop for every registered objective (paco_fr.models.registry).

The engine never branches on the objective: what an objective adds (its data, its start-of-run
log events, its per-step updates, its diagnostics, an upstream encoder whose compute it is charged)
goes through hooks on its model class (paco_fr.models.base). One module per piece:
- `state`:       `Run`, one run's state (nothing in it depends on the objective);
- `build`:       `build_run(cfg, run_dir)` -> Run (data, ObjectiveData, model, optimizer, EMA, resume
                 state), `make_loader`, `run_name`;
- `distributed`: the process group, `wrap_model` (DDP / FSDP / compile / autocast), the loop's
                 collectives;
- `step`:        `train_step(run, batches, step)` -> StepResult (micro-batches, clip, AdamW,
                 model.on_step_end, EMA), the learning-rate schedule;
- `checkpoint`:  `save_checkpoint(run, step, wall)` / `restore_checkpoint(run, ckpt)`, RNG states;
- `snapshots`:   the reconstruction grids drawn during training;
- `loop`:        `train(...)` strings them together with logging, snapshots, signals and
                 summary.json; `pretrain(...)`;
- `inference`:   `load_run_model`, `reconstruct` on a finished run.

Python API (importable from `paco_fr.engine`):
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

from paco_fr.engine.build import build_run, make_loader, param_groups, run_name, seed_everything
from paco_fr.engine.checkpoint import (
    CKPT_NAME,
    atomic_save,
    get_rng_state,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from paco_fr.engine.distributed import wrap_model
from paco_fr.engine.inference import load_run_model, reconstruct
from paco_fr.engine.loop import pretrain, train
from paco_fr.engine.snapshots import save_snapshot
from paco_fr.engine.state import Run
from paco_fr.engine.step import StepResult, lr_at, train_step

__all__ = ["CKPT_NAME", "Run", "StepResult", "atomic_save", "build_run", "get_rng_state", "load_checkpoint",
           "load_run_model", "lr_at", "make_loader", "param_groups", "pretrain", "reconstruct", "restore_checkpoint",
           "run_name", "save_checkpoint", "save_snapshot", "seed_everything", "set_rng_state", "train", "train_step",
           "wrap_model"]
