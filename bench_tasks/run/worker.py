"""Several workers on one results file (local processes, `--num-shards` processes, SLURM / submitit
jobs): `SharedWriter`, the writer of the one loop (bench_tasks.run.loop.run_plan) that claims each
cell before computing it, so the workers run the same plan at once without computing a cell twice.

    summary = run_plan(plan, ctx, SharedWriter(Claims(rows_to="worker", since=t0)))

rows_to="main": rows go to the results file itself (appends serialised by the store's lock);
rows_to="worker": rows go to this worker's own file `results/<profile>.d/<worker>.jsonl` (no
shared appends across nodes). Either way the done / todo decisions read the union
(bench_tasks.store.rowfiles) and every computed cell goes through the claim ledger
(bench_tasks.run.claims):
  1. a cell the plan's SkipRule skips is skipped: its latest row is ok and current (under --force:
     written during this launch), or it failed during this launch (another worker's row: not
     retried twice);
  2. otherwise the worker claims it; busy cells (a live worker has them) are handed back to the
     loop, which asks again once the pass is over (and polls for `wait_s` seconds), so a claim
     whose owner died meanwhile is taken over;
  3. after claiming, the union is re-read: the previous owner may have written the row just
     before it died;
  4. the row is written, then the claim marked done / failed. A worker whose claim was taken
     over while it stalled drops its row instead of writing a duplicate.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from bench_tasks.contracts import Cell
from bench_tasks.plan.cell_plan import SkipRule
from bench_tasks.run.claims import CLAIM_TIMEOUT_S, HEARTBEAT_S, Claim, ClaimBook, Identity, identity
from bench_tasks.run.loop import Log, RowWriter, repaired
from bench_tasks.run.runner import RunContext
from bench_tasks.store.results import ResultsStore
from bench_tasks.store.rowfiles import UnionReader, worker_file


class OwnRowFile(ResultsStore):
    """A worker's own row file: it has one writer, so appends take no lock (`flock` fails or is
    a no-op on some NFS mounts); each row is still one os.write of a whole line, then fsync."""

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        yield


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


class SharedWriter(RowWriter):
    """The writer of one of several workers on a results file: each cell claimed first (see the
    module docstring); `claims` says where the rows go and how claims time out."""

    def __init__(self, claims: Claims = Claims()):
        self.claims = claims
        self.me: Identity = identity(claims.worker)
        self.name, self.desc = self.me.worker, f"worker {self.me.worker}"
        self.since = time.time() if claims.since is None else float(claims.since)

    def open(self, ctx: RunContext, log: Log) -> dict[str, dict]:
        """This worker's row file (repaired), the union of the row files, the claim ledger; the
        union's latest row per key."""
        c = self.claims
        self.taken_over = 0
        self.held: dict[str, Claim] = {}
        self.deadline: float | None = None
        self.own = _own_rows(c.rows_to, ctx.results, self.me, log)
        self.reader = UnionReader(ctx.results)
        self.book = ClaimBook.for_results(ctx.results, timeout_s=c.timeout_s, heartbeat_s=c.heartbeat_s, me=self.me)
        self.latest = self.reader.refresh()
        return self.latest

    def take(self, cell: Cell, rule: SkipRule, log: Log) -> str | None:
        """done | failed (the union answers) | busy (another live worker holds it) | None (claimed:
        ours to compute)."""
        k = cell.key()
        s = rule.state(k, self.latest.get(k))
        if s:
            return s
        r = self.latest.get(k)
        out = self.book.acquire(k, cell.label(), since=self.since, force=rule.force or k in rule.redo,
                                have_row=bool(r and r.get("status") == "ok"))
        if out.claim is None:
            if out.verdict in ("busy", "lost_race"):
                return "busy"
            return "done" if out.verdict == "done" else "failed"
        claim = out.claim
        try:
            self.latest = self.reader.refresh()  # the previous owner may have finished it just now
            s = rule.state(k, self.latest.get(k))
            if s:
                claim.finish("done" if s == "done" else "failed", note="row already in the store")
                return s
            if out.verdict == "took_over":
                prev = out.info
                self.taken_over += 1
                log(f"takeover {cell.label()} | claim of {prev.get('worker')} (pid {prev.get('pid')} on "
                    f"{prev.get('host')}, state {prev.get('state')})")
            claim.start_heartbeat()
        except BaseException:
            claim.release()
            raise
        self.held[k] = claim
        return None

    def keep(self, cell: Cell, row: dict, log: Log) -> str:
        """ok | failed_now, or dropped when our claim was taken over while the cell ran."""
        claim = self.held.pop(cell.key())
        try:
            if claim.lost():
                claim.stop_heartbeat()
                log(f"DROPPED {cell.label()} | our claim was taken over while this worker stalled")
                return "dropped"
            row["provenance"]["worker"] = self.me.as_dict()
            row["provenance"]["finished"] = datetime.now(timezone.utc).isoformat(timespec="microseconds")
            self.own.append(row)
            claim.finish("done" if row["status"] == "ok" else "failed", rows=self.own.path)
        except BaseException:
            claim.release()
            raise
        return "ok" if row["status"] == "ok" else "failed_now"

    def give_back(self, cell: Cell) -> None:
        claim = self.held.pop(cell.key(), None)
        if claim is not None:
            claim.release()

    def again(self, busy: list, log: Log) -> bool:
        """Ask the busy cells again: at once after the first pass, then every heartbeat (at most 2 s)
        until `wait_s` seconds have passed; the union re-read each time."""
        now = time.time()
        if self.deadline is None:
            self.deadline = now + max(0.0, self.claims.wait_s)
        elif now >= self.deadline:
            return False
        else:
            time.sleep(min(self.claims.heartbeat_s, 2.0, max(0.05, self.deadline - now)))
        self.latest = self.reader.refresh()
        return True


def _own_rows(rows_to: str, results, me: Identity, log: Log) -> ResultsStore:
    """Where this worker appends its rows: the main file (repaired and compacted first) or its own
    worker file."""
    if rows_to == "main":
        return repaired(ResultsStore(results), log)
    if rows_to == "worker":
        own = OwnRowFile(worker_file(results, me.worker))
        own.repair()
        return own
    raise ValueError(f"rows_to must be 'main' or 'worker', got {rows_to!r}")
