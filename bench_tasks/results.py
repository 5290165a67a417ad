"""The results store: one JSON object per line in `results/<profile>.jsonl`.

Row schema (docs/ARCHITECTURE.md):
    key, cell, status ("ok" | "failed"), headline, higher_is_better, metrics, metrics_last,
    metrics_best_test, slices, artifacts, config, provenance, error

Guarantees:
  * a row is appended with ONE `os.write` of a complete line on an O_APPEND file descriptor,
    then fsync'd, under an advisory lock (`<file>.lock`), so concurrent writers never interleave;
  * a torn last line (a kill in the middle of a write, a full disk) is ignored by `load_rows`
    and removed by `repair` (the file is rewritten atomically: tmp file + os.replace);
  * readers take the LAST row per key: a `failed` row that was retried is superseded by the
    new row; `compact` drops superseded rows (the runner calls it at the start of a run).
  * the flock holds between processes of ONE machine; cluster workers never share a file: each
    appends to its own `<stem>.d/<worker>.jsonl` and `ResultsStore.latest()` reads the union
    (bench_tasks.rowfiles, bench_tasks.claims; what holds on NFS: docs/cluster.md).

Python API for other modules (report, notebooks):
    load_rows(path) -> list[dict]            every complete row, in file order
    latest_rows(path_or_rows) -> dict[key, row]  the last row per key
    done_keys(path) -> set[str]              keys whose last row is "ok"
    to_dataframe(paths) -> pandas.DataFrame  one row per (file, key), metrics as metric/<name>
    ResultsStore(path).append(row) / .repair() / .compact()
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
            "metrics_best_test", "slices", "artifacts", "config", "provenance", "error")
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
             config: dict | None = None, provenance: dict | None = None, error: str | None = None) -> dict:
    """A schema-complete row for `cell` (a bench_tasks.api.Cell) from a CellResult (or None)."""
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
        "slices": {k: _metrics(v) for k, v in (getattr(result, "slices", None) or {}).items()},
        "artifacts": {k: str(v) for k, v in (getattr(result, "artifacts", None) or {}).items()},
        "config": _plain(config or {}),
        "provenance": _plain(provenance or {}),
        "error": error,
    }
    return row


def validate_row(row: dict) -> None:
    missing = [k for k in ROW_KEYS if k not in row]
    extra = [k for k in row if k not in ROW_KEYS]
    if missing or extra:
        raise ValueError(f"result row does not follow the schema: missing {missing}, unexpected {extra}")
    if row["status"] not in STATUSES:
        raise ValueError(f"bad status {row['status']!r}")


# ----------------------------------------------------------------------------- reading


def _parse_lines(data: bytes) -> tuple[list[dict], bool]:
    """(rows, clean): rows of every complete, parseable line; clean is False when something was
    dropped (a torn last line without its newline, or an unparseable line)."""
    rows: list[dict] = []
    clean = True
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail.strip():
        clean = False  # torn last line: the write never finished
    for raw in lines:
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            clean = False
            continue
        if isinstance(row, dict) and "key" in row and "status" in row:
            rows.append(row)
        else:
            clean = False
    return rows, clean


def load_rows(path: str | Path) -> list[dict]:
    """Every complete row of a results file, in file order (a missing file gives []). A torn or
    corrupt line is ignored (never raises); `ResultsStore(path).repair()` removes it."""
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

    def _repair_unlocked(self) -> bool:
        if not self.path.exists():
            return False
        rows, clean = _parse_lines(self.path.read_bytes())
        if clean:
            return False
        self._rewrite(rows)
        return True

    def repair(self) -> bool:
        """Drop a torn last line / unparseable lines by rewriting the file atomically.
        Returns True when something was repaired."""
        with self._locked():
            return self._repair_unlocked()

    def compact(self) -> int:
        """Keep only the last row per key (superseded failed rows disappear). Returns the number
        of rows dropped. Atomic (tmp + os.replace) and under the lock."""
        with self._locked():
            self._repair_unlocked()
            rows = load_rows(self.path)
            latest = latest_rows(rows)
            if len(latest) == len(rows):
                return 0
            self._rewrite(list(latest.values()))
            return len(rows) - len(latest)

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
