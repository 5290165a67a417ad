"""A pre-training run directory refuses a silent config change.

A run stores its config (`config.yaml`) and the config's hash (`config.sha256`). Re-running
`pretrain` into the same directory:

* same config, run complete   -> nothing to do ("done"), nothing rewritten;
* same config, run interrupted -> resumes from `ckpt/last.pt`;
* another config               -> refused (the message lists what changed), unless `--fresh`
                                  (start the directory over) or another `--run-dir`;
* a longer `train.steps` / `train.epochs` -> refused unless `--extend` (training continues from
  the checkpoint to the new length; the LR schedule is stretched from there on);
* `--resume` on a directory without a checkpoint -> refused (nothing to resume).

Keys that do not change what is trained (progress bars, logging / checkpoint / snapshot
intervals, threads, device, data loader workers, the run name, the test hook, and the `mae` /
`farl` / `mcf` sections of a run of another objective) are ignored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from paco_fr.checkpoint_file import FRESH_HINT, CheckpointUnreadable, checkpoint_problem
from paco_fr.config import ConfigError, dump_config, flat_keys
from paco_fr.models import get_objective, list_objectives

VOLATILE = frozenset({
    "name", "train.progress", "train.threads", "train.interrupt_at_step", "train.device", "train.log_every",
    "train.snapshot_every", "train.ckpt_every", "train.compile", "data.num_workers",
    "data.shuffle_buffer",  # how shards are read (like num_workers), not what is trained
    "diagnostics.grad_norms", "diagnostics.grad_every",  # what is logged, not what is trained
})
LENGTH_KEYS = ("train.steps", "train.epochs")
HASH_FILE = "config.sha256"


class RunDirConflict(ConfigError):
    """The run directory holds a run made with another config (or nothing to resume)."""


def objective_sections() -> dict[str, str]:
    """{config section: objective} of the sections read only by one objective (the registry's
    `section`: mae, farl, mcf): they do not change what another objective trains (so a new FaRL
    caption option or MCF teacher default does not invalidate a finished PaCo-FR run)."""
    return {o.section: o.name for o in map(get_objective, list_objectives()) if o.section}


def _relevant(cfg: dict, drop_length: bool) -> dict:
    flat = flat_keys(cfg)
    obj = cfg.get("objective")
    other = tuple(f"{sec}." for sec, owner in objective_sections().items() if owner != obj)
    return {k: v for k, v in flat.items()
            if k not in VOLATILE and not (drop_length and k in LENGTH_KEYS) and not k.startswith(other)}


def config_hash(cfg: dict) -> str:
    """sha256 of the config entries that change what is trained (the length included)."""
    blob = json.dumps(_relevant(cfg, drop_length=False), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def config_diff(old: dict, new: dict, drop_length: bool = True) -> list[str]:
    """['codebook.num_tokens: 256 -> 512', ...] over the relevant entries."""
    a, b = _relevant(old, drop_length), _relevant(new, drop_length)
    # a key added to the config later with default None (e.g. data.seed) is no change for a run
    # stored before it existed
    return [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def run_state(run_dir: str | Path) -> str:
    """'complete' (summary.json says so and the export exists), 'partial' (a checkpoint), 'empty'."""
    run_dir = Path(run_dir)
    summ = run_dir / "summary.json"
    if summ.is_file() and (run_dir / "encoder.safetensors").is_file():
        try:
            if json.loads(summ.read_text()).get("status") == "complete":
                return "complete"
        except ValueError:
            pass
    if (run_dir / "ckpt" / "last.pt").is_file():
        return "partial"
    return "empty"


def stored_config(run_dir: str | Path) -> dict | None:
    p = Path(run_dir) / "config.yaml"
    if not p.is_file():
        return None
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _length(cfg: dict) -> tuple[str, float | None]:
    t = cfg.get("train", {})
    if t.get("epochs") is not None:
        return "train.epochs", float(t["epochs"])
    return "train.steps", float(t["steps"]) if t.get("steps") is not None else None


def check_run_dir(cfg: dict, run_dir: str | Path, fresh: bool = False, resume_required: bool = False,
                  extend: bool = False) -> str:
    """What to do with `run_dir` for `cfg`: 'fresh' | 'empty' | 'partial' | 'complete' | 'extend'
    (a finished or interrupted run continued to a longer length). Raises RunDirConflict (nothing
    written) when the directory's run was made with another config, CheckpointUnreadable when the
    checkpoint it would resume is empty or truncated."""
    run_dir = Path(run_dir)
    state = run_state(run_dir)
    if fresh:
        return "fresh"
    if state == "empty":
        if resume_required:
            raise RunDirConflict(f"--resume: {run_dir} has no checkpoint (ckpt/last.pt) to resume; "
                                 "drop --resume to start the run")
        return "empty"
    if state == "partial":  # it will be resumed: a damaged checkpoint is refused before anything is built
        problem = checkpoint_problem(run_dir / "ckpt" / "last.pt")
        if problem:
            raise CheckpointUnreadable(f"{problem}; {FRESH_HINT}")
    old = stored_config(run_dir)
    if old is None:
        return state  # a run from before config.yaml existed: nothing to compare
    changed = config_diff(old, cfg)
    if changed:
        raise RunDirConflict(
            f"{run_dir} holds a {'finished' if state == 'complete' else 'started'} run made with another config "
            f"({len(changed)} change(s): {'; '.join(changed[:6])}{'; ...' if len(changed) > 6 else ''}); "
            "its checkpoint is neither resumed nor overwritten. Pass --fresh to start this run directory over, or "
            "--run-dir <another folder> to keep both")
    (k_old, n_old), (k_new, n_new) = _length(old), _length(cfg)
    if (k_old, n_old) != (k_new, n_new):
        longer = k_old == k_new and n_old is not None and n_new is not None and n_new > n_old
        if longer and extend:
            return "extend"
        what = f"{k_old}={n_old:g}" if n_old is not None else k_old
        if longer:
            raise RunDirConflict(
                f"{run_dir}: {k_new} {n_old:g} -> {n_new:g} would extend the run; pass --extend to continue "
                f"training from its checkpoint to {n_new:g} (the learning-rate schedule is stretched from "
                "there on), or --fresh to train the new length from scratch")
        raise RunDirConflict(
            f"{run_dir} was planned with {what}, now {k_new}={n_new}; a run cannot be shortened. "
            "Pass --fresh to start it over, or --run-dir <another folder>")
    return state


def record_config(cfg: dict, run_dir: str | Path) -> str:
    """Write config.yaml and config.sha256; returns the hash."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")
    h = config_hash(cfg)
    (run_dir / HASH_FILE).write_text(h + "\n")
    return h
