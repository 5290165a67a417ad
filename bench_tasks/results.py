"""The results store: one JSON object per line in `results/<profile>.jsonl`.

Row schema (docs/ARCHITECTURE.md):
    key, cell, status ("ok" | "failed"), headline, higher_is_better, metrics, metrics_last,
    metrics_best_test, ci ({metric: [lo, hi]}, 95 % bootstrap over test items), slices, artifacts,
    config, provenance, error, method (what the backbone is: bench_tasks.method), task_version,
    protocol_used, head, history
Rows written before `method` ... `history` existed lack them (`OPTIONAL_ROW_KEYS`); readers
treat a row without `task_version` as version 1 and one without `method` through
`bench_tasks.method.method_of_row`.
The backbone URI says what a row measures (`row_kind`): `floor:input-free` = the task's best
input-free predictor (bench_tasks.floors), `supervised:<arch>` = the ceiling (that architecture
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
    (bench_tasks.rowfiles, bench_tasks.claims; what holds on NFS: docs/cluster.md).

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
import math
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

try:  # advisory locking is POSIX-only; elsewhere appends are still single writes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

ROW_KEYS = ("key", "cell", "status", "headline", "higher_is_better", "metrics", "metrics_last",
            "metrics_best_test", "ci", "slices", "artifacts", "config", "provenance", "error",
            "method", "task_version", "data_version", "settings_hash", "protocol_used", "head", "history")
# keys added after rows were first written: an older row without them is still a valid row
OPTIONAL_ROW_KEYS = ("ci", "method", "task_version", "data_version", "settings_hash", "protocol_used", "head",
                     "history")
STATUSES = ("ok", "failed")


# ----------------------------------------------------------------------------- building rows


def _plain(v: Any) -> Any:
    """Make a value JSON-safe: tensors/numpy scalars -> floats, NaN/inf -> None."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 0) == 0:
        v = v.item()
    if hasattr(v, "tolist"):
        return _plain(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Path):
        return str(v)
    return v


def _metrics(d: dict | None) -> dict[str, float]:
    out = {}
    for k, v in (d or {}).items():
        v = _plain(v)
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, int):
            v = float(v)
        out[str(k)] = v
    return out


def make_row(cell, status: str, headline: str = "", higher_is_better: bool = True, result=None,
             config: dict | None = None, provenance: dict | None = None, error: str | None = None,
             method: dict | None = None, task_version: int = 1, data_version: str | None = None,
             settings_hash: str | None = None) -> dict:
    """A schema-complete row for `cell` (a bench_tasks.api.Cell) from a CellResult (or None).
    `method`: the backbone's identity block (bench_tasks.method.identity_for); `task_version`:
    the `Task.version` that computed the row."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    row = {
        "key": cell.key(),
        "cell": asdict(cell),
        "status": status,
        "headline": headline,
        "higher_is_better": bool(higher_is_better),
        "metrics": _metrics(getattr(result, "metrics", None)),
        "metrics_last": _metrics(getattr(result, "metrics_last", None)),
        "metrics_best_test": _metrics(getattr(result, "metrics_best_test", None)),
        "ci": {str(k): [_plain(x) for x in v] for k, v in (getattr(result, "ci", None) or {}).items()},
        "slices": {k: _metrics(v) for k, v in (getattr(result, "slices", None) or {}).items()},
        "artifacts": {k: str(v) for k, v in (getattr(result, "artifacts", None) or {}).items()},
        "config": _plain(config or {}),
        "provenance": _plain(provenance or {}),
        "error": error,
        "method": _plain(method or {}),
        "task_version": int(task_version),
        "data_version": str(data_version if data_version is not None else dataset_version(cell.dataset)),
        "settings_hash": settings_hash,
        "protocol_used": str(getattr(result, "protocol_used", "") or cell.protocol),
        "head": str(getattr(result, "head", "") or ""),
        "history": _plain(list(getattr(result, "history", None) or [])),
    }
    return row


def row_task_version(row: dict) -> int:
    """The task version that computed a row (rows written before versions existed: 1)."""
    v = row.get("task_version")
    return 1 if v is None else int(v)


def dataset_version(dataset: str) -> str:
    """`DatasetSpec.version` of a registered dataset ("1" for one that is not registered)."""
    from bench_tasks.registry import DATASETS

    try:
        return str(getattr(DATASETS.get(dataset), "version", "1"))
    except KeyError:
        return "1"


def row_data_version(row: dict) -> str:
    """The dataset version a row was computed on (rows written before versions existed: "1")."""
    v = row.get("data_version")
    return "1" if v is None else str(v)


def row_kind(row_or_uri) -> str:
    """"floor" | "ceiling" | "encoder" from a row (or a backbone URI)."""
    uri = row_or_uri if isinstance(row_or_uri, str) else str((row_or_uri.get("cell") or {}).get("backbone", ""))
    scheme = uri.partition(":")[0]
    return {"floor": "floor", "supervised": "ceiling"}.get(scheme, "encoder")


def validate_row(row: dict) -> None:
    missing = [k for k in ROW_KEYS if k not in row and k not in OPTIONAL_ROW_KEYS]
    extra = [k for k in row if k not in ROW_KEYS]
    if missing or extra:
        raise ValueError(f"result row does not follow the schema: missing {missing}, unexpected {extra}")
    if row["status"] not in STATUSES:
        raise ValueError(f"bad status {row['status']!r}")


# ----------------------------------------------------------------------------- reading


def _scan_lines(data: bytes) -> tuple[list[dict], list[tuple[int, bytes, str]]]:
    """(rows, rejected): rows of every complete, parseable line; rejected lists (line number,
    raw bytes, reason) of each line that is not a usable row (a torn last line without its
    newline, a line that is not JSON, a JSON value that is not an object with `key` and `status`)."""
    rows: list[dict] = []
    rejected: list[tuple[int, bytes, str]] = []
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    for no, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            rejected.append((no, raw, f"not JSON ({err.__class__.__name__}: {str(err).splitlines()[0]})"))
            continue
        if isinstance(row, dict) and "key" in row and "status" in row:
            rows.append(row)
        elif isinstance(row, dict):
            missing = [k for k in ("key", "status") if k not in row]
            rejected.append((no, raw, f"a JSON object without {' and '.join(repr(k) for k in missing)}"))
        else:
            rejected.append((no, raw, f"a JSON {type(row).__name__}, not a result row"))
    if tail.strip():  # torn last line: the write never finished
        rejected.append((len(lines) + 1, tail, "torn last line (no newline: an interrupted write)"))
    return rows, rejected


def _parse_lines(data: bytes) -> tuple[list[dict], bool]:
    """(rows, clean): rows of every complete, parseable line; clean is False when something was
    dropped (a torn last line without its newline, or an unparseable line)."""
    rows, rejected = _scan_lines(data)
    return rows, not rejected


def rejected_path(path: str | Path) -> Path:
    """Where unreadable lines of a results file are quarantined: `<file>.rejected`."""
    path = Path(path)
    return path.with_name(path.name + ".rejected")


def superseded_path(path: str | Path) -> Path:
    """Where `compact` moves the rows a later row of the same cell superseded: `<file>.superseded`."""
    path = Path(path)
    return path.with_name(path.name + ".superseded")


def describe_rejected(path: str | Path, rejected: list[tuple[int, bytes, str]], limit: int = 3) -> str:
    """'3 unreadable line(s) in results/x.jsonl (line 4: not JSON ...; line 9: ...; ...)'."""
    parts = [f"line {no}: {why}" for no, _, why in rejected[:limit]]
    more = f"; ... (+{len(rejected) - limit} more)" if len(rejected) > limit else ""
    return f"{len(rejected)} unreadable line(s) in {path} ({'; '.join(parts)}{more})"


def inspect(path: str | Path) -> list[tuple[int, bytes, str]]:
    """The lines of a results file that are not usable rows (read-only; `--dry-run` shows them)."""
    path = Path(path)
    if not path.exists():
        return []
    return _scan_lines(path.read_bytes())[1]


def load_rows(path: str | Path) -> list[dict]:
    """Every complete row of a results file, in file order (a missing file gives []). A torn or
    corrupt line is ignored (never raises); `ResultsStore(path).repair()` moves it to `<file>.rejected`."""
    path = Path(path)
    if not path.exists():
        return []
    return _parse_lines(path.read_bytes())[0]


def latest_rows(rows_or_path: str | Path | Iterable[dict]) -> dict[str, dict]:
    """The last row per key (later rows supersede earlier ones)."""
    rows = load_rows(rows_or_path) if isinstance(rows_or_path, (str, Path)) else rows_or_path
    out: dict[str, dict] = {}
    for r in rows:
        out.pop(r["key"], None)  # keep file order of the latest occurrence
        out[r["key"]] = r
    return out


def done_keys(path: str | Path) -> set[str]:
    return {k for k, r in latest_rows(path).items() if r.get("status") == "ok"}


def to_dataframe(paths: str | Path | Iterable[str | Path], latest_only: bool = True):
    """A pandas DataFrame with one row per result: cell fields as columns (backbone, task, ...),
    key, status, headline, higher_is_better, `metric/<name>`, `last/<name>`, `best_test/<name>`,
    `ci_lo/<name>` / `ci_hi/<name>`,
    `slice/<slice>/<name>`, `artifact/<name>`, provenance fields as `prov/<name>`, `error`,
    and `source` (the file). With latest_only (default) only the last row per key per file."""
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
        `<stem>.d/` (cluster runs; bench_tasks.rowfiles): the row finished last wins."""
        from bench_tasks.rowfiles import union_latest

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
