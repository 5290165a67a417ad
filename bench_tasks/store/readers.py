"""Reading a results file: every complete row (`load_rows`), the last row per key
(`latest_rows`), and the lines that are not rows (`inspect`, `describe_rejected`; the store
quarantines them to `<file>.rejected`). A reader never raises on a torn or corrupt line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path


def _scan_lines(data: bytes) -> tuple[list[dict], list[tuple[int, bytes, str]]]:
    """(rows, rejected): rows of every complete, parseable line; rejected lists (line number,
    raw bytes, reason) of each line that is not a usable row (a torn last line without its
    newline, a line that is not JSON, a JSON value that is not an object with `key` and `status`,
    a row whose metrics are not numbers)."""
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
            bad = bad_metrics(row)
            if bad:
                rejected.append((no, raw, bad))
                continue
            rows.append(row)
        elif isinstance(row, dict):
            missing = [k for k in ("key", "status") if k not in row]
            rejected.append((no, raw, f"a JSON object without {' and '.join(repr(k) for k in missing)}"))
        else:
            rejected.append((no, raw, f"a JSON {type(row).__name__}, not a result row"))
    if tail.strip():  # torn last line: the write never finished
        rejected.append((len(lines) + 1, tail, "torn last line (no newline: an interrupted write)"))
    return rows, rejected


METRIC_FIELDS = ("metrics", "metrics_last", "metrics_best_test")


def bad_metrics(row: dict) -> str | None:
    """Why a row's metrics are unusable (a value that is not a number: a string, a hand edit), or
    None. Numbers, null (a NaN stored as JSON null) and nested lists / objects of them pass."""
    for fld in METRIC_FIELDS:
        block = row.get(fld)
        if block is None:
            continue
        if not isinstance(block, dict):
            return f"{fld} is a JSON {type(block).__name__}, not an object of numbers"
        for name, v in block.items():
            if not _numeric(v):
                return f"{fld}.{name} is {v!r}, not a number"
    return None


def _numeric(v) -> bool:
    if v is None or isinstance(v, (int, float)):
        return True
    if isinstance(v, list):
        return all(_numeric(x) for x in v)
    if isinstance(v, dict):
        return all(_numeric(x) for x in v.values())
    return False


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
