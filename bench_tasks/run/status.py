"""`python -m bench_tasks status` (and `run ... --status`): where a plan stands.

For every (backbone, task): cells done / running (claimed by a live worker) / stale (claimed by
a worker that stopped heart-beating: the next worker takes it over) / failed / to do; the
workers in flight (from the claim ledger: host, pid, job id, the cell, for how long); SLURM jobs
of the launches still pending or running (when `sacct` is there); and the estimated time left,
from the measured wall time of the done cells (mean per task and protocol, else per task, else
overall), divided among the workers in flight.

The plan is the one given (`run ... --status`) or, for `status`, the union of the plans that
launches recorded in results/<profile>.d/launches/ plus every cell that has a row or a claim.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from tabulate import tabulate

from bench_tasks.contracts import Cell
from bench_tasks.plan.durations import fmt_seconds as _fmt_s
from bench_tasks.run.claims import CLAIM_TIMEOUT_S, ClaimBook
from bench_tasks.store.rowfiles import launch_dir, union_latest

COLUMNS = ("done", "running", "stale", "failed", "todo")


def has_plan(results: Path) -> bool:
    """Whether `status` has anything to show for `results`: a row, a claim or a recorded launch."""
    if union_latest(results) or recorded_plan(results)[0]:
        return True
    book = ClaimBook.for_results(results, timeout_s=CLAIM_TIMEOUT_S, heartbeat_s=CLAIM_TIMEOUT_S / 2)
    return bool(book.all_heads())


def recorded_plan(results: Path) -> tuple[list[dict], list[dict]]:
    """(cells, launch records) from results/<profile>.d/launches/*.json."""
    cells, records = {}, []
    d = launch_dir(results)
    for f in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        records.append(rec)
        for c in rec.get("cells", []):
            cells[Cell(**c).key()] = c
    return list(cells.values()), records


def _status_plan(results: Path, latest: dict, heads: dict, cells) -> tuple[dict[str, dict], list[dict]]:
    """({key: cell dict} of the plan, the recorded launch records): the given cells, else the
    recorded plan, the rows and the claimed cells (backbone and task read from the claim's label)."""
    if cells is not None:
        return {c.key(): asdict(c) for c in cells}, []
    recorded, records = recorded_plan(results)
    plan = {}
    for c in recorded:
        plan[Cell(**c).key()] = c
    for k, r in latest.items():
        plan.setdefault(k, r.get("cell") or {})
    for k, (_, info) in heads.items():  # claimed, no row yet: backbone and task from the label
        parts = str(info.get("cell") or "").split(" | ")
        plan.setdefault(k, {"backbone": parts[0] or "?",
                            "task": parts[1].split("/")[0] if len(parts) > 1 else "?",
                            "protocol": parts[2] if len(parts) > 2 else None})
    return plan, records


def _cell_times(latest: dict) -> dict[tuple, list[float]]:
    """Measured cell times of the ok rows: per (task, protocol), per (task,), overall ()."""
    times: dict[tuple, list[float]] = defaultdict(list)
    for r in latest.values():
        if r.get("status") != "ok":
            continue
        w = (r.get("provenance") or {}).get("wall_time_s")
        c = r.get("cell") or {}
        if w is not None:
            times[(c.get("task"), c.get("protocol"))].append(float(w))
            times[(c.get("task"),)].append(float(w))
            times[()].append(float(w))
    return times


def _cell_state(row: dict | None, verdict: str | None) -> str:
    """done / running / stale / failed / todo from a cell's latest row and its claim's verdict."""
    if row is not None and row.get("status") == "ok" and verdict != "running":
        return "done"
    if verdict in ("running", "stale"):
        return verdict
    if row is not None and row.get("status") == "failed":
        return "failed"
    return "todo"


def collect_status(results: Path, cells=None, claim_timeout_s: float | None = None, redo=()) -> dict:
    """The numbers `print_status` prints: {"table": {(backbone, task): {column: n}}, "cells":
    {key: state}, "workers": [...], "remaining_s", "eta_s", "per_cell_s", "records"}. `redo`: keys
    whose ok row the plan recomputes (another version: Plan.status), counted as to do."""
    redo = set(redo)
    latest = union_latest(results)
    timeout = claim_timeout_s or CLAIM_TIMEOUT_S
    book = ClaimBook.for_results(results, timeout_s=timeout, heartbeat_s=timeout / 2)
    heads = book.all_heads()
    plan, records = _status_plan(results, latest, heads, cells)
    times = _cell_times(latest)

    def estimate(c: dict) -> float | None:
        for k in ((c.get("task"), c.get("protocol")), (c.get("task"),), ()):
            if times.get(k):
                return sum(times[k]) / len(times[k])
        return None

    now = time.time()
    table: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
    states: dict[str, str] = {}
    workers: dict[str, dict] = {}
    remaining, unknown = 0.0, 0
    for k, c in plan.items():
        head = heads.get(k)
        st = _cell_state(None if k in redo else latest.get(k), book.verdict(k, head[0], head[1], now) if head else None)
        states[k] = st
        table[(c.get("backbone", "?"), c.get("task", "?"))][st] += 1
        if st == "done":
            continue
        est = estimate(c)
        if st == "running":
            info = head[1]
            w = workers.setdefault(info.get("worker") or "?", {
                "worker": info.get("worker"), "host": info.get("host"), "pid": info.get("pid"),
                "job_id": info.get("job_id"), "cells": []})
            started = float(info.get("claimed_at") or now)
            w["cells"].append({"cell": info.get("cell"), "for_s": now - started,
                               "heartbeat_age_s": now - float(info.get("heartbeat") or now)})
            if est is not None:
                remaining += max(0.0, est - (now - started))
        elif est is None:
            unknown += 1
        else:
            remaining += est
    n_workers = max(1, len(workers))
    return {"table": dict(table), "cells": states, "workers": list(workers.values()), "remaining_s": remaining,
            "eta_s": remaining / n_workers, "unknown": unknown, "records": records,
            "per_cell_s": {"/".join(map(str, k)) or "all": sum(v) / len(v) for k, v in times.items()}}


def slurm_job_states(records: list[dict]) -> dict[str, str]:
    """{job id: state} of the recorded SLURM jobs (needs `sacct`; {} elsewhere)."""
    if shutil.which("sacct") is None:
        return {}
    # lazy: submitit only when a status asks SLURM about its jobs
    import submitit

    out = {}
    for rec in records:
        if rec.get("launcher") != "slurm":
            continue
        for j in rec.get("jobs", []) + rec.get("pretrain_jobs", []):
            try:
                out[j["job_id"]] = submitit.SlurmJob(folder=rec["jobs_dir"], job_id=j["job_id"]).state
            except Exception as err:  # noqa: BLE001 - a status display must not fail on sacct
                out[j["job_id"]] = f"unknown ({type(err).__name__})"
    return out


def print_status(results: Path, cells=None, claim_timeout_s: float | None = None, redo=(),
                 time_left: bool = True) -> int:
    """Print where the plan stands. `time_left` False: the caller prints the plan's estimate
    instead of the time left from the measured cell times (one estimate per plan)."""
    s = collect_status(Path(results), cells, claim_timeout_s, redo)
    rows = []
    tot = dict.fromkeys(COLUMNS, 0)
    for (bb, task), n in sorted(s["table"].items()):
        rows.append([bb, task, *(n[c] for c in COLUMNS)])
        for c in COLUMNS:
            tot[c] += n[c]
    rows.append(["all", "", *(tot[c] for c in COLUMNS)])
    print(f"results: {results} (+ {Path(results).stem}.d/)")
    print(tabulate(rows, headers=["backbone", "task", *COLUMNS]))
    if s["workers"]:
        print("\nworkers in flight")
        print(tabulate([[w["worker"], w["host"], w["pid"], w["job_id"] or "", c["cell"], _fmt_s(c["for_s"]),
                         _fmt_s(c["heartbeat_age_s"])] for w in s["workers"] for c in w["cells"]],
                       headers=["worker", "host", "pid", "job", "cell", "running for", "last heartbeat"]))
    else:
        print("\nno worker in flight")
    jobs = slurm_job_states(s["records"])
    active = {j: st for j, st in jobs.items() if st in ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING")}
    if jobs:
        print(f"\nSLURM jobs of the recorded launches: {len(active)} pending or running of {len(jobs)}")
    left = tot["todo"] + tot["failed"] + tot["stale"] + tot["running"]
    if left == 0:
        print("\nevery cell of the plan is done")
    elif not time_left:
        print(f"\n{left} cell(s) left" + (f", {len(set(redo))} of them done before with another version or other "
                                          "weights" if redo else ""))
    elif s["per_cell_s"]:
        eta = f"~{_fmt_s(s['eta_s'])} with {max(1, len(s['workers']))} worker(s)"
        note = f" ({s['unknown']} cell(s) of tasks with no measured time not counted)" if s["unknown"] else ""
        print(f"\n{left} cell(s) left: ~{_fmt_s(s['remaining_s'])} of compute from the measured cell times, "
              f"{eta}{note}")
    else:
        print(f"\n{left} cell(s) left; no cell measured yet, no time estimate")
    return 0
