"""A small, tolerant JSONL loader for result rows (no dependency on bench_tasks.store.results).

Rules: one JSON object per line; torn / non-JSON lines, and rows whose metrics are not numbers,
are skipped (counted); the LAST row for each `key` and version of its computation wins (a cell
re-run after a failure replaces the failed row): within a file the last line, across files the row
finished last. Rows of one cell group (the cell without its seed) made with different settings,
task or data versions are never pooled: only the current version is kept (the settings this
process's profile gives the cell; else the version of the row finished last) and the others are
described in `settings_notes` (bench_tasks.store.settings_split). A results file `X.jsonl` stands for the union of it and
the per-worker files `X.d/*.jsonl` of cluster runs (bench_tasks.store.rowfiles). Rows without a key get
one derived from their `cell` dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bench_tasks.contracts import BackboneURI, Cell
from bench_tasks.store.readers import bad_metrics
from bench_tasks.store.rowfiles import row_time, union_files, worker_dir
from bench_tasks.store.settings_split import row_version, split_settings


@dataclass
class LoadedRows:
    rows: list[dict]
    skipped_lines: int = 0
    missing_files: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    # one line per cell group whose rows were made with several settings (the others left out)
    settings_notes: list[str] = field(default_factory=list)
    set_aside: list[dict] = field(default_factory=list)


def row_key(row: dict) -> str:
    key = row.get("key")
    if key:
        return str(key)
    return json.dumps(row.get("cell", {}), sort_keys=True)


def current_settings():
    """A check `prefer(row) -> bool`: True when `row` was made with the settings (and task / data
    versions) that the cell's profile, as registered in this process now (bundled, or loaded with
    --set by `run`), gives it. Each check computes a version once per kind of cell."""
    # lazy: the plan layer (profiles, task registry) only when rows are read for a report or table
    from bench_tasks.plan.cell_plan import cell_version

    memo: dict[tuple, object] = {}

    def prefer(row: dict) -> bool:
        cell = row.get("cell") or {}
        try:
            k = (cell.get("profile"), cell.get("task"), cell.get("dataset"), cell.get("protocol"),
                 BackboneURI.read(str(cell.get("backbone", ""))).is_ceiling)
        except Exception:  # noqa: BLE001 - a row whose backbone URI cannot be read has no current version
            return False
        if k not in memo:
            try:
                memo[k] = cell_version(Cell(**{f: cell[f] for f in Cell.__dataclass_fields__ if f in cell}))
            except Exception:  # noqa: BLE001 - an unknown task / profile: no current version to prefer
                memo[k] = None
        v = memo[k]
        if v is None or v.settings is None:
            return False
        got = row_version(row)
        return (got.task, got.data, got.settings) == (v.task, v.data, v.settings)

    return prefer


CURRENT = "current"


def load_rows(paths, prefer=CURRENT) -> LoadedRows:
    """The rows of `paths` (see the module docstring). `prefer`: which version of a cell group to
    keep when its rows differ ("current": the settings this process's profiles give; None: the
    row finished last; or a function row -> bool)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    by_key: dict[tuple, dict] = {}
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
            in_file: dict[tuple, dict] = {}
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
                    if not isinstance(row, dict) or not isinstance(row.get("cell"), dict) or bad_metrics(row):
                        out.skipped_lines += 1
                        continue
                    row["_source"] = str(f)  # artifact paths in the row are relative to its folder
                    k = (row_key(row), row_version(row))
                    in_file.pop(k, None)  # keep file order of the last occurrence
                    in_file[k] = row
            for k, row in in_file.items():  # across files the row finished last wins
                if k not in by_key or row_time(row) >= row_time(by_key[k]):
                    by_key.pop(k, None)
                    by_key[k] = row
    split = split_settings(list(by_key.values()), current_settings() if prefer == CURRENT else prefer)
    out.rows, out.set_aside, out.settings_notes = split.rows, split.set_aside, split.notes
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
