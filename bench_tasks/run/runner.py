"""Run a plan's cells, resumably.

Python entry points (the CLI is a thin layer over these):
    cells = plan_cells(backbones, tasks_to_datasets, protocols=None, seeds=None, fractions=None,
                       profile="smoke")                      # -> list[Cell]
    plan = make_plan(cells)                                  # bench_tasks.plan.cell_plan: + floors, versions
    roots = DataRoots.parse(["/data"]) or DataRoots.parse(["celeba=/d/celeba", "/data"])
    summary = run_plan(plan, results="results/smoke.jsonl", work_dir="work_dirs",
                       data_roots=roots, device="auto", force=False, progress=True)
    row = run_cell(cell, results=..., ...)                  # one cell, returns its row

`run_plan` skips a cell whose last row is `ok` and current (unless force), retries `failed` ones,
records a failing cell as a `failed` row with its traceback and goes on, and appends every row
atomically (bench_tasks/store/results.py). Killing it at any moment and starting it again finishes
the plan with exactly one ok row per cell. A row is current when it was computed with the cell's
version (`CellVersion`: task, dataset, settings; the plan computes it once) and from the weights its
backbone file holds now.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench_tasks.backbones.base import BenchBackbone, build_backbone, resolve_device
from bench_tasks.contracts import Cell, CellContext, CellResult, Profile
from bench_tasks.errors import cause_line
from bench_tasks.plan.cell_plan import CellVersion, Plan, cell_version
from bench_tasks.plan.cells import DataRoots
from bench_tasks.plan.floors import compute_floor, is_floor
from bench_tasks.plan.profiles import get_profile
from bench_tasks.registry import TASKS
from bench_tasks.store.method import identity_for
from bench_tasks.store.provenance import collect, now_iso
from bench_tasks.store.readers import superseded_path
from bench_tasks.store.results import ResultsStore, quarantine_and_warn
from bench_tasks.store.rows import make_row

# ----------------------------------------------------------------------------- running


@dataclass
class RunSummary:
    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    wall_s: float = 0.0
    failed_keys: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.total} cells: {self.skipped} already done, {self.ok} ok, {self.failed} failed "
                f"in {self.wall_s:.1f}s")

    def tally(self, row: dict, cell: Cell, log: Callable[[str], None]) -> None:
        """Count a computed cell's row and log its line."""
        if row["status"] == "ok":
            self.ok += 1
        else:
            self.failed += 1
            self.failed_keys.append(row["key"])
        log(row_line(cell, row))


def stale_line(reasons: dict[str, str]) -> str:
    """The log line of the done cells a run recomputes, by what changed (Plan.stale_reasons):
    `3 done cell(s) are recomputed: 2 with other settings than their profile gives now; 1 computed
    by task version 1 (now 2)`."""
    if not reasons:
        return ""
    counts: dict[str, int] = {}
    for why in reasons.values():
        counts[why] = counts.get(why, 0) + 1
    words = {"settings": "with other settings than their profile gives now",
             "weights": "from other weights than their backbone file holds now (re-trained or replaced)"}
    parts = []
    for why, n in counts.items():
        was, arrow, now = why.partition(" -> ")
        parts.append(f"{n} {words[why]}" if why in words
                     else f"{n} computed by {was} (now {now})" if arrow else f"{n} ({why})")
    return f"{len(reasons)} done cell(s) are recomputed: " + "; ".join(parts)


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


def run_cell(cell: Cell, results: str | Path = "results/smoke.jsonl", work_dir: str | Path = "work_dirs",
             data_roots: DataRoots | None = None, device: str | torch.device = "auto",
             progress: bool = True, backbone: BenchBackbone | None = None, write: bool = True,
             backbones: BackboneCache | None = None, labels: dict[str, str] | None = None,
             version: CellVersion | None = None, profile: Profile | None = None) -> dict:
    """Run one cell and (when write) append its row. Exceptions inside the cell become a
    `failed` row with the traceback; the row is returned. `labels` ({backbone URI: name},
    `run --label`) names backbones in the row's method block (bench_tasks.store.method).
    `version`, `profile`: the cell's CellVersion and Profile from its plan (`Plan.profile_of`;
    looked up by the cell's profile name when not given); `backbones`: where its backbone comes
    from when `backbone` is not given (a BackboneCache)."""
    profile = profile if profile is not None else get_profile(cell.profile)
    version = version or cell_version(cell, profile)
    store = ResultsStore(results)
    roots = data_roots or DataRoots()
    dev = resolve_device(device)
    started, t0 = now_iso(), time.perf_counter()
    task = None
    bb_hash = bb_source = None
    result: CellResult | None = None
    error = None
    try:
        task = TASKS.get(cell.task)()
        size = task.cell_image_size(cell, profile)
        floor = is_floor(cell.backbone)  # input-free predictor: no backbone (bench_tasks.plan.floors)
        if backbone is None and not floor:
            backbone = (backbones or BackboneCache()).get(cell.backbone, size)
        if backbone is not None:
            bb_hash, bb_source = backbone.weights_hash, backbone.source
        ctx = CellContext(cell=cell, backbone=backbone, profile=profile, data_root=roots.get(cell.dataset),
                          device=dev, work_dir=Path(work_dir), progress=progress, results_dir=store.root,
                          settings_hash=version.settings)
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        seed_cell(cell)  # after the backbone: building one (only for a plan's first cell) draws too
        result = compute_floor(task, ctx) if floor else task.run(ctx)
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

    row = make_row(cell, "ok" if error is None else "failed",
                   headline=getattr(task, "headline", ""), higher_is_better=getattr(task, "higher_is_better", True),
                   result=result, config=config, provenance=prov, error=error,
                   method=identity_for(cell.backbone, (labels or {}).get(cell.backbone)),
                   **version.row_fields())
    if write:
        store.append(row)
    return row


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


def run_plan(plan: Plan, results: str | Path = "results/smoke.jsonl",
             work_dir: str | Path = "work_dirs", data_roots: DataRoots | None = None,
             device: str | torch.device = "auto", force: bool = False, progress: bool = True,
             on_row: Callable[[dict], None] | None = None, log: Callable[[str], None] | None = None,
             should_start: Callable[[Cell], bool] | None = None,
             labels: dict[str, str] | None = None, backbones: BackboneCache | None = None) -> RunSummary:
    """Run every cell of `plan` (a bench_tasks.plan.cell_plan.Plan) that has no current ok row
    (all of them with force), each under its Profile from the plan, its backbone from `backbones`
    (built from the URI by default)."""
    if not isinstance(plan, Plan):
        raise TypeError(f"run_plan takes a Plan, got {type(plan).__name__}: build it with "
                        "bench_tasks.plan.cell_plan.make_plan(cells) (it adds the floors and computes "
                        "the version each row records)")
    log = log or (lambda msg: tqdm.write(msg))
    store = ResultsStore(results)
    quarantine_and_warn(store, log)
    dropped = store.compact()
    if dropped:
        log(f"compacted {store.path}: {dropped} superseded row(s) moved to {superseded_path(store.path)}")
    latest = store.latest()
    todo, skipped, _ = plan.todo(latest, force)
    line = stale_line(plan.stale_reasons(latest, (k for k, r in latest.items() if r.get("status") == "ok")))
    if line:
        log(line)
    summary = RunSummary(total=skipped + len(todo), skipped=skipped)
    t0 = time.perf_counter()
    cache = backbones or BackboneCache()
    bar = tqdm(todo, desc="plan", disable=not progress, dynamic_ncols=True, position=0)
    for cell, version in bar:
        if should_start is not None and not should_start(cell):  # e.g. a deadline (device_study)
            continue
        bar.set_postfix_str(f"{cell.task}/{cell.dataset}/{cell.protocol}")
        row = run_cell(cell, results=results, work_dir=work_dir, data_roots=data_roots, device=device,
                       progress=progress, backbones=cache, labels=labels, version=version,
                       profile=plan.profile_of(cell))
        summary.tally(row, cell, log)
        if on_row is not None:
            on_row(row)
    bar.close()
    summary.wall_s = time.perf_counter() - t0
    return summary
