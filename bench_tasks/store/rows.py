"""What a result row is: its keys (`ROW_KEYS`, `OPTIONAL_ROW_KEYS`), `make_row` from a cell's
result, the versions it records and `validate_row` (the schema: docs/ARCHITECTURE.md, "Result rows").
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench_tasks.contracts import uri_scheme
from bench_tasks.registry import DATASETS

ROW_KEYS = ("key", "cell", "status", "headline", "higher_is_better", "metrics", "metrics_last",
            "metrics_best_test", "ci", "slices", "artifacts", "config", "provenance", "error",
            "method", "task_version", "data_version", "settings_hash", "protocol_used", "head", "history")


# keys added after rows were first written: an older row without them is still a valid row
OPTIONAL_ROW_KEYS = ("ci", "method", "task_version", "data_version", "settings_hash", "protocol_used", "head",
                     "history")


STATUSES = ("ok", "failed")


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
    """A schema-complete row for `cell` (a bench_tasks.contracts.Cell) from a CellResult (or None).
    `method`: the backbone's identity block (bench_tasks.store.method.identity_for); `task_version`:
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
    return {"floor": "floor", "supervised": "ceiling"}.get(uri_scheme(uri), "encoder")


def validate_row(row: dict) -> None:
    missing = [k for k in ROW_KEYS if k not in row and k not in OPTIONAL_ROW_KEYS]
    extra = [k for k in row if k not in ROW_KEYS]
    if missing or extra:
        raise ValueError(f"result row does not follow the schema: missing {missing}, unexpected {extra}")
    if row["status"] not in STATUSES:
        raise ValueError(f"bad status {row['status']!r}")
