"""One cell -> one row: `run_cell(cell, ctx, version, profile)` computes a cell under its Profile
and returns its row (a cell that raises becomes a `failed` row with its traceback); it writes
nothing. The one loop over a plan's cells, which writes the rows, is bench_tasks.run.loop.

    ctx = RunContext(results="results/smoke.jsonl", work_dir="work_dirs", device="cpu")
    cell, version = plan.items[0]
    row = run_cell(cell, ctx, version, plan.profile_of(cell))   # the plan's CellVersion and Profile
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench_tasks.backbones.base import BenchBackbone, build_backbone, resolve_device
from bench_tasks.contracts import Cell, CellContext, CellResult, Profile
from bench_tasks.errors import cause_line
from bench_tasks.plan.cell_plan import CellVersion
from bench_tasks.plan.cells import DataRoots
from bench_tasks.plan.floors import compute_floor, is_floor
from bench_tasks.registry import TASKS
from bench_tasks.store.method import identity_for
from bench_tasks.store.provenance import collect, now_iso
from bench_tasks.store.rows import make_row

# ----------------------------------------------------------------------------- one cell


@dataclass(frozen=True)
class RunContext:
    """What every cell of one run shares: the results file (its folder holds the cells' artifacts),
    the work folder (feature caches), where the data lives, the device, whether progress bars show,
    whether done cells are recomputed (`force`) and the backbones' names ({URI: name}, `run --label`:
    the rows' method block, bench_tasks.store.method)."""

    results: Path = Path("results/smoke.jsonl")
    work_dir: Path = Path("work_dirs")
    data_roots: DataRoots | None = None
    device: str | torch.device = "auto"
    progress: bool = True
    force: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "results", Path(self.results))
        object.__setattr__(self, "work_dir", Path(self.work_dir))
        if self.data_roots is None:
            object.__setattr__(self, "data_roots", DataRoots())
        object.__setattr__(self, "labels", dict(self.labels or {}))


def row_line(cell: Cell, row: dict) -> str:
    """The log line of a computed cell: `ok     <cell> | <headline>=<value> (<s>s)`, or
    `FAILED <cell> | <cause>` (bench_tasks.errors.cause_line of its traceback)."""
    if row["status"] != "ok":
        return f"FAILED {cell.label()} | {cause_line(row['error'])}"
    h = row["headline"]
    return (f"ok     {cell.label()} | {h}={row['metrics'].get(h, float('nan')):.2f} "
            f"({row['provenance']['wall_time_s']:.1f}s)")


class BackboneCache:
    """Where the cells of a run get their backbone: built from its URI at the cell's input size,
    the last one kept; every cell gets its own deep copy (fine-tuning and the frozen protocol
    modify the module). A subclass serves other sources (an in-memory model: bench_tasks.session)."""

    def __init__(self):
        self.key = None
        self.value: BenchBackbone | None = None

    def build(self, uri: str, size: int) -> BenchBackbone:
        return build_backbone(uri, size)

    def get(self, uri: str, size: int) -> BenchBackbone:
        if self.key != (uri, size):
            self.value = None
            self.value = self.build(uri, size)
            self.key = (uri, size)
        assert self.value is not None
        return copy.deepcopy(self.value)


def seed_cell(cell: Cell) -> None:
    """Reset every global RNG (python, numpy, torch) from the cell's seed before it runs, so a
    cell's numbers do not depend on which cells ran before it in the same process (a resumed or
    partial plan gives the numbers of an uninterrupted one). Tasks seed their own generators too;
    this also covers plug-in tasks and library code that draws from the global RNGs."""
    random.seed(cell.seed)
    np.random.seed(cell.seed)
    torch.manual_seed(cell.seed)


def run_cell(cell: Cell, ctx: RunContext, version: CellVersion, profile: Profile, *,
             backbones: BackboneCache | None = None) -> dict:
    """The row of one cell (not written: the loop writes it). Exceptions inside the cell become a
    `failed` row with the traceback. `version`, `profile`: the cell's CellVersion and Profile from
    its plan (`Plan.items`, `Plan.profile_of`: nothing is looked up by name here); `backbones`: where
    its backbone comes from (built from its URI by default)."""
    roots = ctx.data_roots
    dev = resolve_device(ctx.device)
    started, t0 = now_iso(), time.perf_counter()
    task = None
    bb_hash = bb_source = None
    result: CellResult | None = None
    error = None
    try:
        task = TASKS.get(cell.task)()
        size = task.cell_image_size(cell, profile)
        floor = is_floor(cell.backbone)  # input-free predictor: no backbone (bench_tasks.plan.floors)
        backbone = None if floor else (backbones or BackboneCache()).get(cell.backbone, size)
        if backbone is not None:
            bb_hash, bb_source = backbone.weights_hash, backbone.source
        cell_ctx = CellContext(cell=cell, backbone=backbone, profile=profile, data_root=roots.get(cell.dataset),
                               device=dev, work_dir=ctx.work_dir, progress=ctx.progress,
                               results_dir=ctx.results.parent, settings_hash=version.settings)
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        seed_cell(cell)  # after the backbone: building one (only for a plan's first cell) draws too
        result = compute_floor(task, cell_ctx) if floor else task.run(cell_ctx)
        if task.headline not in result.metrics:
            raise KeyError(f"task {cell.task} returned no headline metric {task.headline!r} "
                           f"(got {sorted(result.metrics)})")
    except Exception:  # noqa: BLE001 - a failing cell is recorded, the plan goes on
        error = traceback.format_exc()
        result = None
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    wall = time.perf_counter() - t0
    if result is not None:
        result = typed_result(result, task, cell)
    prov = collect(bb_hash, dev, started, wall, backbone_source=bb_source)
    if result is not None and result.timings:
        prov["timings"] = result.timings
    config = {"profile": {k: v for k, v in dataclasses.asdict(profile).items() if k not in ("study", "jobs")}, "task": result.config if result is not None else {},
              "data_root": roots.get(cell.dataset)}

    return make_row(cell, "ok" if error is None else "failed",
                    headline=getattr(task, "headline", ""), higher_is_better=getattr(task, "higher_is_better", True),
                    result=result, config=config, provenance=prov, error=error,
                    method=identity_for(cell.backbone, ctx.labels.get(cell.backbone)),
                    **version.row_fields())


def typed_result(result: CellResult, task, cell: Cell) -> CellResult:
    """`result` with its typed fields filled: from the free-form `extra` of tasks that still return
    them there (`config`, `timings`, `history`, `protocol_used`), the protocol from the task's
    aliases (dense tasks run `linear` as `frozen`) and the head from config["head"]."""
    extra = dict(result.extra or {})
    config = dict(result.config or extra.get("config") or {})
    aliases = task.protocol_aliases
    return dataclasses.replace(
        result, config=config, timings=dict(result.timings or extra.get("timings") or {}),
        history=list(result.history or extra.get("history") or []),
        protocol_used=str(result.protocol_used or extra.get("protocol_used")
                          or aliases.get(cell.protocol, cell.protocol)),
        head=str(result.head or config.get("head") or ""))
