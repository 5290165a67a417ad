"""One worker of a plan: claims each cell before computing it, so any number of workers (local
processes, `--num-shards` processes, SLURM / submitit jobs) can run the same plan at once
without computing a cell twice.

    summary = run_worker(cells, results="results/smoke.jsonl", claims=Claims(rows_to="worker", since=t0), ...)

rows_to="main": rows go to the results file itself (one machine: `--launcher local`, today's
behaviour, appends serialised by the store's lock); rows_to="worker": rows go to this worker's
own file `results/<profile>.d/<worker>.jsonl` (no shared appends across nodes). Either way the
done / todo decisions read the union (bench_tasks.store.rowfiles) and every computed cell goes
through the claim ledger (bench_tasks.run.claims):
  1. a cell whose latest row is ok is skipped (unless --force and it is older than this launch);
     one that failed during this launch (another worker's row) is not retried twice;
  2. otherwise the worker claims it; busy cells (a live worker has them) are skipped and
     re-checked once at the end of the pass (and polled for `wait_s` seconds), so a claim whose
     owner died meanwhile is taken over;
  3. after claiming, the union is re-read: the previous owner may have written the row just
     before it died;
  4. the row is written, then the claim marked done / failed. A worker whose claim was taken
     over while it stalled drops its row instead of writing a duplicate.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tqdm.auto import tqdm

from bench_tasks.contracts import Cell
from bench_tasks.plan.cell_plan import CellVersion, Plan, make_plan
from bench_tasks.run.claims import CLAIM_TIMEOUT_S, HEARTBEAT_S, ClaimBook, Identity, identity
from bench_tasks.run.runner import BackboneCache, RunSummary, row_line, run_cell, stale_line
from bench_tasks.store.readers import superseded_path
from bench_tasks.store.results import ResultsStore, quarantine_and_warn
from bench_tasks.store.rowfiles import UnionReader, row_time, worker_file


class OwnRowFile(ResultsStore):
    """A worker's own row file: it has one writer, so appends take no lock (`flock` fails or is
    a no-op on some NFS mounts); each row is still one os.write of a whole line, then fsync."""

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        yield


@dataclass
class WorkerSummary(RunSummary):
    """A RunSummary (`skipped`: done before, or by another worker) and what the other workers did."""

    worker: str = ""
    failed_elsewhere: int = 0  # failed in another worker of this launch
    busy: int = 0  # still claimed by a live worker at the end
    taken_over: int = 0
    dropped: int = 0  # computed, but our claim was taken over meanwhile: row not written
    busy_keys: list[str] = field(default_factory=list)

    def line(self) -> str:
        s = super().line()
        if self.failed_elsewhere:
            s += f", {self.failed_elsewhere} failed in other workers"
        if self.taken_over:
            s += f"; {self.taken_over} taken over from stale claims"
        if self.busy:
            s += f"; {self.busy} still running in other workers (see `python -m bench_tasks status`)"
        if self.dropped:
            s += f"; {self.dropped} dropped (claim taken over while this worker stalled)"
        return s


def shard(cells: Sequence[Cell], num_shards: int, index: int) -> list[Cell]:
    """Shard `index` of `num_shards`: a contiguous block of the (de-duplicated, backbone-major)
    plan, so a shard builds few backbones. Deterministic: every process computes the same split."""
    if num_shards < 1 or not 0 <= index < num_shards:
        raise ValueError(f"--shard-index must be in [0, {num_shards}), got {index}")
    uniq = list({c.key(): c for c in cells}.values())
    n = len(uniq)
    return uniq[index * n // num_shards:(index + 1) * n // num_shards]


@dataclass(frozen=True)
class Claims:
    """How a worker shares its results file with the others: where its rows go (`rows_to`: "main",
    the results file; "worker", its own file), its name, the launch time the workers share
    (`since`; None: now), a claim's time-out and heartbeat, and how long to wait at the end for
    cells other workers hold (`wait_s`)."""

    rows_to: str = "main"
    worker: str | None = None
    since: float | None = None
    timeout_s: float = CLAIM_TIMEOUT_S
    heartbeat_s: float = HEARTBEAT_S
    wait_s: float = 0.0


def run_worker(cells: Sequence[Cell] | Plan, results: str | Path = "results/smoke.jsonl", *,
               work_dir: str | Path = "work_dirs", data_roots=None, device="auto", force: bool = False,
               progress: bool = True, claims: Claims = Claims(), on_row: Callable[[dict], None] | None = None,
               log: Callable[[str], None] | None = None,
               labels: dict[str, str] | None = None, backbones: BackboneCache | None = None) -> WorkerSummary:
    """Run the cells of `cells` (a Plan, or cells taken as they are: no reference cells added) that
    need computing and that no other worker has; see the module docstring. Returns a WorkerSummary."""
    rows_to, worker, since, wait_s = claims.rows_to, claims.worker, claims.since, claims.wait_s
    claim_timeout_s, heartbeat_s = claims.timeout_s, claims.heartbeat_s
    plan = cells if isinstance(cells, Plan) else make_plan(cells, references=False)
    log = log or (lambda msg: tqdm.write(msg))
    me: Identity = identity(worker)
    main = ResultsStore(results)
    own = _own_rows(rows_to, main, results, me, log)
    reader = UnionReader(results)
    latest = reader.refresh()
    done = {k for k, r in latest.items() if r.get("status") == "ok"}
    reasons = plan.stale_reasons(latest, done)  # other versions, or weight files changed since: recompute like --force
    redo = set(reasons)
    if reasons:
        log(stale_line(reasons))
    summary = WorkerSummary(worker=me.worker)
    uniq = plan.cells
    summary.total = len(uniq)
    run = _Attempts(book=ClaimBook.for_results(results, timeout_s=claim_timeout_s, heartbeat_s=heartbeat_s, me=me),
                    reader=reader, latest=latest, own=own, me=me, summary=summary, log=log, on_row=on_row,
                    since=time.time() if since is None else float(since), force=force, redo=redo,
                    plan=plan, versions=plan.versions(),
                    run_kw={"results": results, "work_dir": work_dir, "data_roots": data_roots, "device": device,
                            "progress": progress, "labels": labels, "backbones": backbones or BackboneCache()})
    t0 = time.perf_counter()
    pending: list[Cell] = []
    bar = tqdm(uniq, desc=f"worker {me.worker}", disable=not progress, dynamic_ncols=True, position=0)
    for cell in bar:
        bar.set_postfix_str(f"{cell.task}/{cell.dataset}/{cell.protocol}")
        res = run.attempt(cell)
        if res == "busy":
            pending.append(cell)
        else:
            run.tally(res)
    bar.close()
    # cells other workers held: check again (their owners may have died), poll up to wait_s
    deadline = time.time() + max(0.0, wait_s)
    while pending:
        run.latest = reader.refresh()
        still = []
        for cell in pending:
            res = run.attempt(cell)
            if res == "busy":
                still.append(cell)
            else:
                run.tally(res)
        pending = still
        if not pending or time.time() >= deadline:
            break
        time.sleep(min(heartbeat_s, 2.0, max(0.05, deadline - time.time())))
    summary.busy = len(pending)
    summary.busy_keys = [c.key() for c in pending]
    summary.wall_s = time.perf_counter() - t0
    return summary


def _own_rows(rows_to: str, main: ResultsStore, results, me: Identity, log):
    """Where this worker appends its rows: the main file (repaired and compacted first) or its own
    worker file."""
    if rows_to == "main":
        quarantine_and_warn(main, log)  # unreadable lines go to <file>.rejected, never deleted
        dropped = main.compact()
        if dropped:
            log(f"compacted {main.path}: {dropped} superseded row(s) moved to {superseded_path(main.path)}")
        return main
    if rows_to == "worker":
        own = OwnRowFile(worker_file(results, me.worker))
        own.repair()
        return own
    raise ValueError(f"rows_to must be 'main' or 'worker', got {rows_to!r}")


@dataclass
class _Attempts:
    """One worker's attempts at cells: claim, compute, append, release (state of one run_worker)."""

    book: ClaimBook
    reader: UnionReader
    latest: dict
    own: object
    me: Identity
    summary: WorkerSummary
    log: Callable[[str], None]
    on_row: Callable[[dict], None] | None
    since: float
    force: bool
    redo: set
    plan: Plan
    versions: dict[Cell, CellVersion]
    run_kw: dict

    def settled(self, k: str) -> str | None:
        """'done' / 'failed' when the union already answers for this cell in this launch."""
        r = self.latest.get(k)
        if r is None:
            return None
        fresh = row_time(r) >= self.since
        if r.get("status") == "ok" and (fresh or not (self.force or k in self.redo)):
            return "done"
        if r.get("status") == "failed" and fresh:
            return "failed"
        return None

    def attempt(self, cell: Cell) -> str:
        """done | failed | busy | ok | failed_now | dropped."""
        k = cell.key()
        s = self.settled(k)
        if s:
            return s
        r = self.latest.get(k)
        out = self.book.acquire(k, cell.label(), since=self.since, force=self.force or k in self.redo,
                                have_row=bool(r and r.get("status") == "ok"))
        if out.claim is None:
            if out.verdict in ("busy", "lost_race"):
                return "busy"
            return "done" if out.verdict == "done" else "failed"
        claim = out.claim
        try:
            self.latest = self.reader.refresh()  # the previous owner may have finished it just now
            s = self.settled(k)
            if s:
                claim.finish("done" if s == "done" else "failed", note="row already in the store")
                return s
            if out.verdict == "took_over":
                prev = out.info
                self.summary.taken_over += 1
                self.log(f"takeover {cell.label()} | claim of {prev.get('worker')} (pid {prev.get('pid')} on "
                         f"{prev.get('host')}, state {prev.get('state')})")
            claim.start_heartbeat()
            row = run_cell(cell, write=False, version=self.versions.get(cell), profile=self.plan.profile_of(cell),
                           **self.run_kw)
            if claim.lost():
                claim.stop_heartbeat()
                self.log(f"DROPPED {cell.label()} | our claim was taken over while this worker stalled")
                return "dropped"
            row["provenance"]["worker"] = self.me.as_dict()
            row["provenance"]["finished"] = datetime.now(timezone.utc).isoformat(timespec="microseconds")
            self.own.append(row)
            claim.finish("done" if row["status"] == "ok" else "failed", rows=self.own.path)
        except BaseException:
            claim.release()
            raise
        return self.report(cell, row)

    def report(self, cell: Cell, row: dict) -> str:
        if self.on_row is not None:
            self.on_row(row)
        self.log(row_line(cell, row))
        if row["status"] == "ok":
            return "ok"
        self.summary.failed_keys.append(row["key"])
        return "failed_now"

    def tally(self, result: str) -> None:
        field_of = {"done": "skipped", "failed": "failed_elsewhere", "ok": "ok", "failed_now": "failed",
                    "dropped": "dropped"}  # "failed": in another worker during this launch, not retried twice
        if result in field_of:
            setattr(self.summary, field_of[result], getattr(self.summary, field_of[result]) + 1)
