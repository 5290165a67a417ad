"""The results store: one JSON object per line in `results/<profile>.jsonl`.

Row schema (docs/ARCHITECTURE.md):
    key, cell, status ("ok" | "failed"), headline, higher_is_better, metrics, metrics_last,
    metrics_best_test, ci ({metric: [lo, hi]}, 95 % bootstrap over test items), slices, artifacts,
    config, provenance, error, method (what the backbone is: bench_tasks.store.method), task_version,
    protocol_used, head, history
Rows written before `method` ... `history` existed lack them (`OPTIONAL_ROW_KEYS`); readers
treat a row without `task_version` as version 1 and one without `method` through
`bench_tasks.plan.suite.method_of_row`.
The backbone URI says what a row measures (`row_kind`): `floor:input-free` = the task's best
input-free predictor (bench_tasks.plan.floors), `supervised:<arch>` = the ceiling (that architecture
trained end to end from random init), anything else = an encoder.

Guarantees:
  * a row is appended with ONE `os.write` of a complete line on an O_APPEND file descriptor,
    then fsync'd, under an advisory lock (`<file>.lock`), so concurrent writers never interleave;
  * a torn last line (a kill in the middle of a write, a full disk) or any unreadable line is
    ignored by `load_rows` and moved by `repair` to `<file>.rejected` (appended, never deleted;
    the file is rewritten atomically: tmp file + os.replace); `inspect(path)` lists them read-only;
  * readers take the LAST row per key: a `failed` row that was retried is superseded by the
    new row; `compact` moves superseded rows to `<file>.superseded` (the runner calls it at the
    start of a run).
  * the flock holds between processes of ONE machine; cluster workers never share a file: each
    appends to its own `<stem>.d/<worker>.jsonl` and `ResultsStore.latest()` reads the union
    (bench_tasks.store.rowfiles, bench_tasks.run.claims; what holds on NFS: docs/cluster.md).

Python API for other modules (report, notebooks):
    load_rows(path) -> list[dict]            every complete row, in file order
    latest_rows(path_or_rows) -> dict[key, row]  the last row per key
    done_keys(path) -> set[str]              keys whose last row is "ok"
    to_dataframe(paths) -> pandas.DataFrame  one row per (file, key), metrics as metric/<name>
    ResultsStore(path).append(row) / .repair() / .quarantine() / .compact()
    inspect(path) -> [(line no, raw, reason)]  unreadable lines, read-only
    make_row(...)                            builds a schema-complete row
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench_tasks.store.readers import (
    _scan_lines,
    describe_rejected,
    latest_rows,
    load_rows,
    rejected_path,
    superseded_path,
)
from bench_tasks.store.rowfiles import union_latest
from bench_tasks.store.rows import validate_row

try:  # advisory locking is POSIX-only; elsewhere appends are still single writes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


# ----------------------------------------------------------------------------- building rows


# ----------------------------------------------------------------------------- reading


def to_dataframe(paths: str | Path | Iterable[str | Path], latest_only: bool = True):
    """A pandas DataFrame with one row per result: cell fields as columns (backbone, task, ...),
    key, status, headline, higher_is_better, `metric/<name>`, `last/<name>`, `best_test/<name>`,
    `ci_lo/<name>` / `ci_hi/<name>`,
    `slice/<slice>/<name>`, `artifact/<name>`, provenance fields as `prov/<name>`, `error`,
    and `source` (the file). With latest_only (default) only the last row per key per file."""
    # lazy: pandas only for the DataFrame view (a worker writing rows never needs it)
    import pandas as pd

    if isinstance(paths, (str, Path)):
        paths = [paths]
    records = []
    for p in paths:
        rows = load_rows(p)
        if latest_only:
            rows = list(latest_rows(rows).values())
        for r in rows:
            rec: dict[str, Any] = dict(r.get("cell", {}))
            rec.update(key=r["key"], status=r["status"], headline=r.get("headline"),
                       higher_is_better=r.get("higher_is_better"), error=r.get("error"), source=str(p))
            for prefix, field in (("metric", "metrics"), ("last", "metrics_last"),
                                  ("best_test", "metrics_best_test")):
                for k, v in (r.get(field) or {}).items():
                    if not isinstance(v, (dict, list)):
                        rec[f"{prefix}/{k}"] = v
            for k, v in (r.get("ci") or {}).items():
                if isinstance(v, (list, tuple)) and len(v) == 2:
                    rec[f"ci_lo/{k}"], rec[f"ci_hi/{k}"] = v
            for s, m in (r.get("slices") or {}).items():
                for k, v in (m or {}).items():
                    rec[f"slice/{s}/{k}"] = v
            for k, v in (r.get("artifacts") or {}).items():
                rec[f"artifact/{k}"] = v
            for k, v in (r.get("provenance") or {}).items():
                if isinstance(v, dict):
                    for k2, v2 in v.items():
                        rec[f"prov/{k}/{k2}"] = v2
                else:
                    rec[f"prov/{k}"] = v
            if r.get("headline"):
                rec["headline_value"] = (r.get("metrics") or {}).get(r["headline"])
            records.append(rec)
    return pd.DataFrame.from_records(records)


# ----------------------------------------------------------------------------- writing


class ResultsStore:
    """Append-only JSONL store with atomic appends, torn-line repair and compaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @property
    def root(self) -> Path:
        """The results folder (artifact paths in rows are relative to it)."""
        return self.path.parent

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def rows(self) -> list[dict]:
        return load_rows(self.path)

    def latest(self) -> dict[str, dict]:
        """The last row per key over the union of this file and the per-worker files in
        `<stem>.d/` (cluster runs; bench_tasks.store.rowfiles): the row finished last wins."""
        return union_latest(self.path)

    def done_keys(self) -> set[str]:
        return {k for k, r in self.latest().items() if r.get("status") == "ok"}

    def _rewrite(self, rows: list[dict]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        data = b"".join(_encode(r) for r in rows)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data) if data else None
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    @property
    def rejected_path(self) -> Path:
        return rejected_path(self.path)

    def _repair_unlocked(self) -> list[tuple[int, bytes, str]]:
        if not self.path.exists():
            return []
        rows, rejected = _scan_lines(self.path.read_bytes())
        if not rejected:
            return []
        # quarantine first (appended, fsync'd), then rewrite: a line is never lost
        fd = os.open(self.rejected_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"".join(raw.rstrip(b"\r") + b"\n" for _, raw, _ in rejected))
            os.fsync(fd)
        finally:
            os.close(fd)
        self._rewrite(rows)
        return rejected

    def quarantine(self) -> list[tuple[int, bytes, str]]:
        """Move a torn last line / unreadable lines to `<file>.rejected` (appended) and rewrite the
        file atomically without them. Returns the moved lines as (line number, raw, reason);
        empty when the file was clean."""
        with self._locked():
            return self._repair_unlocked()

    def repair(self) -> bool:
        """`quarantine()`; True when something was moved."""
        return bool(self.quarantine())

    def compact(self) -> int:
        """Keep only the last row per key in the file. The rows it supersedes (a retried failure, or
        an ok row computed with settings since changed) are not deleted: they are appended to
        `<file>.superseded` first (same JSONL; not read by the report or the planner). Returns the
        number of rows moved. Atomic (tmp + os.replace) and under the lock."""
        with self._locked():
            self._repair_unlocked()
            rows = load_rows(self.path)
            latest = latest_rows(rows)
            if len(latest) == len(rows):
                return 0
            kept = {id(r) for r in latest.values()}
            old = [r for r in rows if id(r) not in kept]
            with open(superseded_path(self.path), "ab") as f:
                f.write(b"".join(_encode(r) for r in old))
                f.flush()
                os.fsync(f.fileno())
            self._rewrite(list(latest.values()))
            return len(old)

    def append(self, row: dict) -> None:
        """Append one row: one os.write of the complete line on an O_APPEND fd, then fsync."""
        validate_row(row)
        line = _encode(row)
        with self._locked():
            # never glue a new row onto a torn line left by a killed writer
            if self.path.exists() and self.path.stat().st_size > 0:
                with open(self.path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        self._repair_unlocked()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                n = os.write(fd, line)
                if n != len(line):  # pragma: no cover - disk full etc.
                    raise OSError(f"short write to {self.path} ({n} of {len(line)} bytes)")
                os.fsync(fd)
            finally:
                os.close(fd)


def _encode(row: dict) -> bytes:
    # json.dumps escapes newlines inside strings, so a row is always exactly one line
    return (json.dumps(row, sort_keys=False, allow_nan=False, default=str) + "\n").encode()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def quarantine_and_warn(store: ResultsStore, log) -> list:
    """Move unreadable lines of `store` to `<file>.rejected` (never deleted) and say so through
    `log`; returns the moved lines (see ResultsStore.quarantine)."""
    moved = store.quarantine()
    if moved:
        log(f"warning: {describe_rejected(store.path, moved)}: moved to {store.rejected_path} "
            "(inspect it; a row there is not counted as done)")
    return moved
