"""A small, tolerant JSONL loader for result rows (no dependency on bench_tasks.store.results).

Rules: one JSON object per line; torn / non-JSON lines are skipped (counted); the LAST row for
each `key` wins (a cell re-run after a failure replaces the failed row): within a file the last
line, across files the row finished last. A results file `X.jsonl` stands for the union of it and
the per-worker files `X.d/*.jsonl` of cluster runs (bench_tasks.store.rowfiles). Rows without a key get
one derived from their `cell` dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bench_tasks.store.rowfiles import row_time, union_files, worker_dir


@dataclass
class LoadedRows:
    rows: list[dict]
    skipped_lines: int = 0
    missing_files: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def row_key(row: dict) -> str:
    key = row.get("key")
    if key:
        return str(key)
    return json.dumps(row.get("cell", {}), sort_keys=True)


def load_rows(paths) -> LoadedRows:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    by_key: dict[str, dict] = {}
    out = LoadedRows(rows=[])
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files = sorted(p.glob("*.jsonl"))
        elif p.exists() or worker_dir(p).is_dir():
            files = [f for f in union_files(p) if f.exists()]  # + results/<profile>.d/*.jsonl
        else:
            out.missing_files.append(str(p))
            continue
        for f in files:
            in_file: dict[str, dict] = {}
            out.files.append(str(f))
            with open(f, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        out.skipped_lines += 1
                        continue
                    if not isinstance(row, dict) or not isinstance(row.get("cell"), dict):
                        out.skipped_lines += 1
                        continue
                    row["_source"] = str(f)  # artifact paths in the row are relative to its folder
                    k = row_key(row)
                    in_file.pop(k, None)  # keep file order of the last occurrence
                    in_file[k] = row
            for k, row in in_file.items():  # across files the row finished last wins
                if k not in by_key or row_time(row) >= row_time(by_key[k]):
                    by_key.pop(k, None)
                    by_key[k] = row
    out.rows = list(by_key.values())
    return out


def first_error_line(error) -> str:
    """The line that says what went wrong: for a Python traceback the exception line (the last
    non-blank line), otherwise the first non-blank line."""
    if not error:
        return "(no error text)"
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    if not lines:
        return "(no error text)"
    if lines[0].startswith("Traceback"):
        return lines[-1][:300]
    return lines[0][:300]
