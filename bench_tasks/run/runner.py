"""Plan and run cells, resumably.

Python entry points (the CLI is a thin layer over these):
    cells = plan_cells(backbones, tasks_to_datasets, protocols=None, seeds=None, fractions=None,
                       profile="smoke")                      # -> list[Cell]
    roots = DataRoots.parse(["/data"]) or DataRoots.parse(["celeba=/d/celeba", "/data"])
    summary = run_plan(cells, results="results/smoke.jsonl", work_dir="work_dirs",
                       data_roots=roots, device="auto", force=False, progress=True)
    row = run_cell(cell, results=..., ...)                  # one cell, returns its row

`run_plan` skips a cell whose last row is `ok` (unless force), retries `failed` ones, records a
failing cell as a `failed` row with its traceback and goes on, and appends every row atomically
(bench_tasks/store/results.py). Killing it at any moment and starting it again finishes the plan with
exactly one ok row per cell. A pre-training stage (another engineer's `run --all`) can produce
encoders first and then call `run_plan` with their `paco_fr:<file>` URIs.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench_tasks.backbones.base import (
    BenchBackbone,
    build_backbone,
    resolve_device,
    weights_file,
    weights_sha256,
)
from bench_tasks.contracts import Cell, CellContext, CellResult, uri_scheme
from bench_tasks.errors import cause_line
from bench_tasks.plan.cells import DataRoots
from bench_tasks.plan.floors import compute_floor, is_floor
from bench_tasks.plan.profiles import get_profile, settings_hash
from bench_tasks.plan.references import with_references
from bench_tasks.registry import TASKS
from bench_tasks.store.method import identity_for
from bench_tasks.store.provenance import collect, now_iso
from bench_tasks.store.readers import superseded_path
from bench_tasks.store.results import ResultsStore, quarantine_and_warn
from bench_tasks.store.rows import dataset_version, make_row, row_data_version, row_task_version

# ----------------------------------------------------------------------------- data roots


# ----------------------------------------------------------------------------- planning


def task_version(task_name: str) -> int:
    """`Task.version` of a registered task (1 for a task that is not registered)."""
    try:
        return int(getattr(TASKS.get(task_name), "version", 1))
    except KeyError:
        return 1


def version_stale(cell: Cell, row: dict | None) -> bool:
    """True when `row` was computed by another version of the cell's task or dataset than the
    registered one (rows without `task_version` / `data_version` count as version 1; SynthFace's
    version is its generator's, so rows of SynthFace 1.x are recomputed on 2.1)."""
    if row is None:
        return False
    if row_task_version(row) != task_version(cell.task) or row_data_version(row) != dataset_version(cell.dataset):
        return True
    # a row computed with other effective settings (a profile file or --set changed); rows written
    # before rows recorded it (no `settings_hash`) cannot be checked and count as current
    was = row.get("settings_hash")
    return bool(was) and was != current_settings_hash(cell)


_SETTINGS_HASHES: dict[tuple, tuple] = {}  # memo -> (the profile object, its hash): ids are reused


def current_settings_hash(cell: Cell) -> str | None:
    """`profiles.settings_hash` of the cell under its registered profile (None: unknown profile);
    memoised per profile object and what the settings depend on (not backbone file or seed)."""
    try:
        prof = get_profile(cell.profile)
    except KeyError:
        return None
    memo = (id(prof), cell.task, cell.dataset, cell.protocol, uri_scheme(cell.backbone) == "supervised")
    hit = _SETTINGS_HASHES.get(memo)
    if hit is None or hit[0] is not prof:
        hit = _SETTINGS_HASHES[memo] = (prof, settings_hash(cell, prof))
    return hit[1]


def stale_keys(cells: Sequence[Cell], store: ResultsStore, done: set[str]) -> set[str]:
    """Keys of done cells whose row must be recomputed: computed by another version of the task
    (`Task.version`), or from weights other than the backbone file holds now (a cell is keyed by
    the backbone URI, a path, so re-training into the same path must not reuse old rows; each
    file is hashed once)."""
    latest = store.latest()
    hashes: dict[str, str | None] = {}
    out = set()
    for c in cells:
        k = c.key()
        if k not in done:
            continue
        if version_stale(c, latest.get(k)):
            out.add(k)
            continue
        if c.backbone not in hashes:
            f = weights_file(c.backbone)
            hashes[c.backbone] = weights_sha256(f) if f is not None and f.is_file() else None
        now = hashes[c.backbone]
        was = (latest.get(k) or {}).get("provenance", {}).get("backbone_hash")
        if now is not None and was is not None and now != was:
            out.add(k)
    return out


def cell_status(cells: Sequence[Cell], results: str | Path) -> dict[str, str]:
    """{key: "done" | "failed" | "todo"} for a plan against a results file (a row of another
    task version is "todo")."""
    latest = ResultsStore(results).latest()
    out = {}
    for c in cells:
        r = latest.get(c.key())
        if r is None or version_stale(c, r):
            out[c.key()] = "todo"
        else:
            out[c.key()] = "done" if r["status"] == "ok" else "failed"
    return out


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


class _BackboneCache:
    """Keeps the last built backbone; every cell gets its own deep copy (fine-tuning and the
    frozen protocol modify the module)."""

    def __init__(self):
        self.key = None
        self.value: BenchBackbone | None = None

    def get(self, uri: str, size: int) -> BenchBackbone:
        if self.key != (uri, size):
            self.value = None
            self.value = build_backbone(uri, size)
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
             _cache: _BackboneCache | None = None, labels: dict[str, str] | None = None) -> dict:
    """Run one cell and (when write) append its row. Exceptions inside the cell become a
    `failed` row with the traceback; the row is returned. `labels` ({backbone URI: name},
    `run --label`) names backbones in the row's method block (bench_tasks.store.method)."""
    store = ResultsStore(results)
    roots = data_roots or DataRoots()
    dev = resolve_device(device)
    profile = get_profile(cell.profile)
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
            backbone = (_cache or _BackboneCache()).get(cell.backbone, size)
        if backbone is not None:
            bb_hash, bb_source = backbone.weights_hash, backbone.source
        ctx = CellContext(cell=cell, backbone=backbone, profile=profile, data_root=roots.get(cell.dataset),
                          device=dev, work_dir=Path(work_dir), progress=progress, results_dir=store.root,
                          settings_hash=current_settings_hash(cell))
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
    config = {"profile": dataclasses.asdict(profile), "task": result.config if result is not None else {},
              "data_root": roots.get(cell.dataset)}

    row = make_row(cell, "ok" if error is None else "failed",
                   headline=getattr(task, "headline", ""), higher_is_better=getattr(task, "higher_is_better", True),
                   result=result, config=config, provenance=prov, error=error,
                   method=identity_for(cell.backbone, (labels or {}).get(cell.backbone)),
                   task_version=task_version(cell.task), data_version=dataset_version(cell.dataset),
                   settings_hash=current_settings_hash(cell))
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


def run_plan(cells: Sequence[Cell], results: str | Path = "results/smoke.jsonl",
             work_dir: str | Path = "work_dirs", data_roots: DataRoots | None = None,
             device: str | torch.device = "auto", force: bool = False, progress: bool = True,
             on_row: Callable[[dict], None] | None = None, log: Callable[[str], None] | None = None,
             should_start: Callable[[Cell], bool] | None = None,
             labels: dict[str, str] | None = None) -> RunSummary:
    """Run every cell of the plan that is not done yet (all of them with force). The floor of
    every (task, dataset) of the plan is added to it (bench_tasks.plan.references; seconds each)."""
    cells = with_references(cells, ceilings=None, probes=False)
    log = log or (lambda msg: tqdm.write(msg))
    store = ResultsStore(results)

    quarantine_and_warn(store, log)
    dropped = store.compact()
    if dropped:
        log(f"compacted {store.path}: {dropped} superseded row(s) moved to {superseded_path(store.path)}")
    done = store.done_keys()
    stale = stale_keys(cells, store, done)
    if stale:
        log(f"{len(stale)} done cell(s) were computed by another task version or with other weights than "
            "their backbone file holds now (the file was re-trained or replaced): recomputing them")
        done -= stale
    summary = RunSummary(total=len(cells))
    t0 = time.perf_counter()
    todo = []
    seen = set()
    for c in cells:
        k = c.key()
        if k in seen:
            continue
        seen.add(k)
        if k in done and not force:
            summary.skipped += 1
        else:
            todo.append(c)
    summary.total = len(seen)
    cache = _BackboneCache()
    bar = tqdm(todo, desc="plan", disable=not progress, dynamic_ncols=True, position=0)
    for cell in bar:
        if should_start is not None and not should_start(cell):  # e.g. a deadline (device_study)
            continue
        bar.set_postfix_str(f"{cell.task}/{cell.dataset}/{cell.protocol}")
        row = run_cell(cell, results=results, work_dir=work_dir, data_roots=data_roots, device=device,
                       progress=progress, _cache=cache, labels=labels)
        if row["status"] == "ok":
            summary.ok += 1
            h = row["headline"]
            log(f"ok     {cell.label()} | {h}={row['metrics'].get(h, float('nan')):.2f} "
                f"({row['provenance']['wall_time_s']:.1f}s)")
        else:
            summary.failed += 1
            summary.failed_keys.append(row["key"])
            log(f"FAILED {cell.label()} | {cause_line(row['error'])}")
        if on_row is not None:
            on_row(row)
    bar.close()
    summary.wall_s = time.perf_counter() - t0
    return summary
