"""Atomic cell claims: no cell computed twice by workers that share a results folder.

Before computing a cell a worker creates a claim file with `os.open(O_CREAT | O_EXCL)`, which
succeeds for exactly one creator, on a local disk and on NFS (v3 and later do the exclusive
create on the server). A claim is a *generation*: `claims/<key>.<gen>.claim`, gen = 0, 1, ...;
the highest generation is the cell's current claim. Taking over a claim (its owner died, its
cell failed before this launch, `--force`) is creating the next generation, with the same
O_EXCL create, so two workers that both see a stale claim race for one file and one wins.
Claims are never deleted or renamed: a worker that stops early marks its claim `released`.

Claim file (JSON, padded with spaces so heartbeats rewrite it in place):
    key, cell (label), gen, state ("running" | "done" | "failed" | "released"),
    host, pid, job_id, worker, claimed_at, heartbeat, finished (epoch seconds), rows (row file),
    took_over (the previous generation's owner and state, when this one took it over)

While the cell runs, a thread rewrites `heartbeat` every `heartbeat_s` seconds. A `running`
claim is stale when
  * its heartbeat is older than `timeout_s` (clocks of the nodes must agree to well within
    that: NTP does; default 10 minutes, heartbeat every 30 s), or
  * it was made on this host by a process that no longer exists (a killed local worker is taken
    over at once), or
  * it carries this worker's job id with another pid (a SLURM job requeued after preemption or
    a time-out resumes its own cells).
A claim file that cannot be parsed (caught between a create and its first write) counts as
running until its mtime is older than `timeout_s`.

    book = ClaimBook(folder, timeout_s=600, heartbeat_s=30)
    outcome = book.acquire(key, label, since=t0, force=False, have_row=False)
    if outcome.claim:                 # ours: compute, then
        outcome.claim.finish("done", rows_file)   # or "failed"; .release() when giving up
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_tasks.store.rowfiles import worker_dir

CLAIM_TIMEOUT_S = 600.0
HEARTBEAT_S = 30.0
PAD = 1024  # claim files are padded to a multiple of this: heartbeats rewrite them in place
STATES = ("running", "done", "failed", "released")


# ----------------------------------------------------------------------------- who am I


@dataclass(frozen=True)
class Identity:
    host: str
    pid: int
    job_id: str | None  # SLURM job id (array jobs: <array id>_<task id>) or submitit's job id
    worker: str  # names the worker's row file: results/<profile>.d/<worker>.jsonl

    def as_dict(self) -> dict:
        return {"host": self.host, "pid": self.pid, "job_id": self.job_id, "worker": self.worker}


def current_job_id() -> str | None:
    """The scheduler's id for this process's job: SLURM array task, SLURM job, or submitit's."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if env.get("SLURM_JOB_ID"):
        return env["SLURM_JOB_ID"]
    if env.get("SUBMITIT_LOCAL_JOB_ID"):
        return env["SUBMITIT_LOCAL_JOB_ID"]
    return None


def identity(worker: str | None = None) -> Identity:
    """This process as a worker. Default worker name: `<job id>-<host>-<pid>` in a job, else
    `<host>-<pid>` (unique among concurrent processes; a requeued job gets a new file)."""
    host, pid, job = socket.gethostname(), os.getpid(), current_job_id()
    if worker is None:
        worker = f"{job}-{host}-{pid}" if job else f"{host}-{pid}"
    return Identity(host=host, pid=pid, job_id=job, worker=worker)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as dead)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, ValueError, TypeError):
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


# ----------------------------------------------------------------------------- claim files


def _encode(info: dict, min_len: int = 0) -> bytes:
    data = json.dumps(info, sort_keys=True).encode()
    size = max(min_len, -(-(len(data) + 1) // PAD) * PAD)
    return data + b" " * (size - len(data) - 1) + b"\n"


def read_claim(path: str | Path) -> dict | None:
    """The claim's content; {} when the file exists but does not parse (being written); None when
    it does not exist."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(data)
        return info if isinstance(info, dict) else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


@dataclass
class Outcome:
    """What `acquire` found. verdict: "claimed" (fresh), "took_over" (we own the next generation),
    "busy" (running elsewhere), "done" / "failed" (finished in this launch, or done before it
    and not forced), "lost_race" (another worker created the generation first)."""

    verdict: str
    claim: Claim | None = None
    info: dict = field(default_factory=dict)


class Claim:
    """A claim this process owns: heartbeats while the cell runs, then `finish` or `release`."""

    def __init__(self, book: ClaimBook, key: str, gen: int, info: dict, size: int):
        self.book, self.key, self.gen, self.info, self._size = book, key, gen, info, size
        self.path = book.path(key, gen)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _write(self) -> None:
        data = _encode(self.info, self._size)
        self._size = len(data)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY)
            try:
                os.pwrite(fd, data, 0)
                os.fsync(fd)
            finally:
                os.close(fd)

    def lost(self) -> bool:
        """True when another worker took this claim over (a next generation exists): this worker
        was considered dead (stalled past the timeout) and must not write its row."""
        return self.book.path(self.key, self.gen + 1).exists()

    def beat(self) -> None:
        self.info["heartbeat"] = time.time()
        self._write()

    def start_heartbeat(self) -> Claim:
        def loop():
            while not self._stop.wait(self.book.heartbeat_s):
                with contextlib.suppress(OSError):
                    self.beat()

        self._thread = threading.Thread(target=loop, name=f"claim-heartbeat-{self.key}", daemon=True)
        self._thread.start()
        return self

    def stop_heartbeat(self) -> None:
        """Stop beating, leaving the claim as it is (a claim lost to another worker)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def finish(self, state: str, rows: str | Path | None = None, note: str | None = None) -> None:
        if state not in STATES:
            raise ValueError(f"claim state must be one of {STATES}, got {state!r}")
        self.stop_heartbeat()
        now = time.time()
        self.info.update(state=state, heartbeat=now, finished=now)
        if rows is not None:
            self.info["rows"] = str(rows)
        if note:
            self.info["note"] = note
        self._write()

    def release(self, note: str = "worker stopped before the cell finished") -> None:
        self.finish("released", note=note)


class ClaimBook:
    """The claim ledger of one results file: `<results stem>.d/claims/`."""

    def __init__(self, folder: str | Path, timeout_s: float = CLAIM_TIMEOUT_S, heartbeat_s: float = HEARTBEAT_S,
                 me: Identity | None = None):
        if heartbeat_s <= 0 or timeout_s <= heartbeat_s:
            raise ValueError(f"the claim timeout ({timeout_s}s) must exceed the heartbeat interval ({heartbeat_s}s)")
        self.folder = Path(folder)
        self.timeout_s = float(timeout_s)
        self.heartbeat_s = float(heartbeat_s)
        self.me = me or identity()
        # a "done" claim whose row no reader sees is trusted for this long (NFS caches directory
        # listings up to a minute), then treated as orphaned (row file deleted) and recomputed
        self.visibility_s = max(120.0, 2 * self.heartbeat_s)

    @classmethod
    def for_results(cls, results: str | Path, **kw) -> ClaimBook:
        return cls(worker_dir(results) / "claims", **kw)

    def path(self, key: str, gen: int) -> Path:
        return self.folder / f"{key}.{gen}.claim"

    def head(self, key: str) -> tuple[int, dict | None]:
        """(highest generation, its content) or (-1, None) when the cell was never claimed."""
        gen = -1
        while self.path(key, gen + 1).exists():
            gen += 1
        if gen < 0:
            return -1, None
        info = read_claim(self.path(key, gen))
        return gen, (info if info is not None else {})

    def all_heads(self) -> dict[str, tuple[int, dict]]:
        """{key: (gen, content)} of every claimed cell (for `status`)."""
        best: dict[str, int] = {}
        if self.folder.is_dir():
            for f in self.folder.iterdir():
                parts = f.name.split(".")
                if len(parts) == 3 and parts[2] == "claim" and parts[1].isdigit():
                    best[parts[0]] = max(best.get(parts[0], -1), int(parts[1]))
        out = {}
        for k, g in best.items():
            info = read_claim(self.path(k, g))
            out[k] = (g, info or {})
        return out

    def verdict(self, key: str, gen: int, info: dict, now: float | None = None) -> str:
        """running | stale | done | failed | released."""
        now = time.time() if now is None else now
        state = info.get("state")
        if not info or state is None:
            try:
                age = now - self.path(key, gen).stat().st_mtime
            except FileNotFoundError:
                return "stale"
            return "stale" if age > self.timeout_s else "running"
        if state != "running":
            return state
        job, host, pid = info.get("job_id"), info.get("host"), info.get("pid")
        if job and job == self.me.job_id and pid != self.me.pid:
            return "stale"  # our own job, requeued: the previous incarnation is gone
        if host == self.me.host and pid is not None and pid != self.me.pid and not pid_alive(pid):
            return "stale"
        if now - float(info.get("heartbeat") or 0.0) > self.timeout_s:
            return "stale"
        return "running"

    def _create(self, key: str, gen: int, label: str, previous: dict | None) -> Claim | None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key, gen)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
        now = time.time()
        info = {"key": key, "cell": label, "gen": gen, "state": "running", **self.me.as_dict(),
                "claimed_at": now, "heartbeat": now, "finished": None, "rows": None}
        if previous is not None:
            info["took_over"] = {k: previous.get(k) for k in ("state", "host", "pid", "job_id", "worker", "heartbeat")}
        data = _encode(info)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return Claim(self, key, gen, info, len(data))

    def acquire(self, key: str, label: str = "", *, since: float = 0.0, force: bool = False,
                have_row: bool = False) -> Outcome:
        """Claim the cell `key` if nobody else is computing it and it still needs computing.

        since: start of this launch (epoch seconds): a cell that failed or (with force) was done
        before it is taken over; one that finished after it was handled by another worker of this
        launch. have_row: whether the caller sees an ok row for the cell (a `done` claim without a
        visible row is recomputed once it is older than `visibility_s`)."""
        gen, info = self.head(key)
        if info is None:
            c = self._create(key, 0, label, None)
            return Outcome("claimed", c) if c else Outcome("lost_race")
        v = self.verdict(key, gen, info)
        finished = float(info.get("finished") or 0.0)
        take = False
        if v == "running":
            return Outcome("busy", info=info)
        if v in ("stale", "released"):
            take = True
        elif v == "done":
            orphan = not have_row and time.time() - finished > self.visibility_s
            take = (force and finished < since) or orphan
        elif v == "failed":
            take = finished < since
        if not take:
            return Outcome(v, info=info)
        c = self._create(key, gen + 1, label, info)
        return Outcome("took_over", c, info) if c else Outcome("lost_race", info=info)
