"""The one loop over a plan's cells: `run_plan(plan, ctx, writer)`. Every way of running cells goes
through it: a run in this process, each `--num-shards` process, each cluster job.

    summary = run_plan(plan, RunContext(results="results/smoke.jsonl", device="cpu"))   # SoleWriter
    summary = run_plan(plan, ctx, SharedWriter(Claims(rows_to="worker", since=t0)))  # bench_tasks.run.worker

For each cell, in the plan's order: the plan's SkipRule says whether its latest row answers for it
(ok and of the cell's current version, from the weights its file holds now; `Plan.skip_rule`);
otherwise the writer gives the cell a turn, `run_cell` computes its row under the plan's Profile,
and the writer keeps the row. `SoleWriter` (this process alone writes the results file: no claims)
repairs and compacts the file, then appends each row. `SharedWriter` (several workers on one file)
claims each cell in the claim ledger first and hands cells that other live workers hold back to
the loop, which asks again once the pass is over. A failing cell is a `failed` row and the loop
goes on; killing it at any moment and starting it again finishes the plan with exactly one ok row
per cell.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from bench_tasks.contracts import Cell
from bench_tasks.plan.cell_plan import CellVersion, Plan, SkipRule
from bench_tasks.run.runner import BackboneCache, RunContext, row_line, run_cell
from bench_tasks.store.readers import superseded_path
from bench_tasks.store.results import ResultsStore, quarantine_and_warn

Log = Callable[[str], None]


@dataclass
class RunSummary:
    """What one loop did: `skipped` (done before, or by another worker), computed `ok` / `failed`;
    with a SharedWriter also what the other workers did."""

    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    wall_s: float = 0.0
    failed_keys: list[str] = field(default_factory=list)
    worker: str = ""
    failed_elsewhere: int = 0  # failed in another worker of this launch (not retried twice)
    busy: int = 0  # still claimed by a live worker at the end
    taken_over: int = 0
    dropped: int = 0  # computed, but our claim was taken over meanwhile: row not written
    busy_keys: list[str] = field(default_factory=list)

    def line(self) -> str:
        s = (f"{self.total} cells: {self.skipped} already done, {self.ok} ok, {self.failed} failed "
             f"in {self.wall_s:.1f}s")
        if self.failed_elsewhere:
            s += f", {self.failed_elsewhere} failed in other workers"
        if self.taken_over:
            s += f"; {self.taken_over} taken over from stale claims"
        if self.busy:
            s += f"; {self.busy} still running in other workers (see `python -m bench_tasks status`)"
        if self.dropped:
            s += f"; {self.dropped} dropped (claim taken over while this worker stalled)"
        return s

    def count(self, outcome: str, key: str) -> None:
        """Count one cell's outcome: done | failed (another worker's, this launch) | ok | failed_now |
        dropped."""
        name = {"done": "skipped", "failed": "failed_elsewhere", "ok": "ok", "failed_now": "failed",
                "dropped": "dropped"}[outcome]
        setattr(self, name, getattr(self, name) + 1)
        if outcome == "failed_now":
            self.failed_keys.append(key)


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


def repaired(store: ResultsStore, log: Log) -> ResultsStore:
    """`store` with its unreadable lines moved to <file>.rejected (never deleted) and its superseded
    rows to <file>.superseded, each said in the log."""
    quarantine_and_warn(store, log)
    dropped = store.compact()
    if dropped:
        log(f"compacted {store.path}: {dropped} superseded row(s) moved to {superseded_path(store.path)}")
    return store


class RowWriter:
    """How the loop's cells and rows reach the results file: `open` it (the latest row per key),
    `take` a cell before computing it, `keep` its row, `give_back` a cell whose computation was
    interrupted, and say whether to ask `again` for the cells other workers held. `since`: the
    launch time shared with other workers (None: no other worker)."""

    name = ""  # the worker's name in the summary ("" for this process alone)
    desc = "plan"  # the progress bar's
    since: float | None = None
    taken_over = 0  # cells taken over from a dead worker's claim

    def open(self, ctx: RunContext, log: Log) -> dict[str, dict]:
        raise NotImplementedError

    def take(self, cell: Cell, rule: SkipRule, log: Log) -> str | None:
        """None: the cell is ours to compute; else done | failed (answered by a row) | busy."""
        return None

    def keep(self, cell: Cell, row: dict, log: Log) -> str:
        """Write the cell's row: ok | failed_now (| dropped)."""
        raise NotImplementedError

    def give_back(self, cell: Cell) -> None:
        """The loop stopped while the cell ran."""

    def again(self, busy: list, log: Log) -> bool:
        """After a pass that left `busy` cells (held by other workers): whether to ask them again."""
        return False


class SoleWriter(RowWriter):
    """This process alone writes the results file: no claims; each row is appended to the file
    (atomically, bench_tasks.store.results)."""

    def open(self, ctx: RunContext, log: Log) -> dict[str, dict]:
        """Repair and compact the results file; its latest row per key."""
        self.store = repaired(ResultsStore(ctx.results), log)
        return self.store.latest()

    def keep(self, cell: Cell, row: dict, log: Log) -> str:
        self.store.append(row)
        return "ok" if row["status"] == "ok" else "failed_now"


def run_plan(plan: Plan, ctx: RunContext, writer: RowWriter | None = None, *, backbones: BackboneCache | None = None,
             log: Log | None = None, on_row: Callable[[dict], None] | None = None,
             should_start: Callable[[Cell], bool] | None = None) -> RunSummary:
    """Run every cell of `plan` that its SkipRule does not skip, each under its Profile from the plan
    and its backbone from `backbones` (built from the URI by default), its row kept by `writer`
    (SoleWriter by default). `should_start(cell)` False leaves a cell out (a deadline); `on_row` sees
    each row computed. Returns the RunSummary."""
    if not isinstance(plan, Plan):
        raise TypeError(f"run_plan takes a Plan, got {type(plan).__name__}: build it with "
                        "bench_tasks.plan.cell_plan.make_plan(cells) (it adds the floors and computes "
                        "the version each row records)")
    writer = writer if writer is not None else SoleWriter()
    log = log or (lambda msg: tqdm.write(msg))
    latest = writer.open(ctx, log)
    rule = plan.skip_rule(latest, ctx.force, since=writer.since)
    if rule.redo:
        log(stale_line(dict(rule.redo)))
    summary = RunSummary(total=len(plan), worker=writer.name)
    cache = backbones or BackboneCache()
    t0 = time.perf_counter()
    pending: list[tuple[Cell, CellVersion]] = []
    for cell, version in plan.items:
        state = rule.state(cell.key(), latest.get(cell.key()))
        if state:
            summary.count(state, cell.key())
        else:
            pending.append((cell, version))
    first = True
    while pending:
        bar = tqdm(pending, desc=writer.desc, disable=not ctx.progress or not first, dynamic_ncols=True, position=0)
        busy = []
        for cell, version in bar:
            if should_start is not None and not should_start(cell):  # e.g. a deadline (device_study)
                continue
            bar.set_postfix_str(f"{cell.task}/{cell.dataset}/{cell.protocol}")
            outcome = writer.take(cell, rule, log)
            if outcome is None:
                try:
                    row = run_cell(cell, ctx, version, plan.profile_of(cell), backbones=cache)
                except BaseException:
                    writer.give_back(cell)
                    raise
                outcome = writer.keep(cell, row, log)
                if outcome != "dropped":
                    if on_row is not None:
                        on_row(row)
                    log(row_line(cell, row))
            if outcome == "busy":
                busy.append((cell, version))
            else:
                summary.count(outcome, cell.key())
        bar.close()
        pending, first = busy, False
        if pending and not writer.again(pending, log):
            break
    summary.taken_over = writer.taken_over
    summary.busy = len(pending)
    summary.busy_keys = [c.key() for c, _ in pending]
    summary.wall_s = time.perf_counter() - t0
    return summary
