"""The equivalence margins of the verdicts: per task and metric, the largest difference that still
counts as "the same" (bench_tasks/configs/verdicts/margins.yaml; why each value, in that file).

    margin_for("parsing", "f1_mean")  -> 1.0
    margin_for("parsing", "nme")      -> None (no margin: never "the same")
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import yaml

MARGINS_FILE = Path(__file__).resolve().parents[1] / "configs" / "verdicts" / "margins.yaml"


def load_margins(path: str | Path | None = None) -> dict[str, dict[str, float]]:
    """{task: {metric: margin}} of a margins file; a clear error naming the file and the key when an
    entry is not a positive number under a task's mapping."""
    path = Path(path) if path is not None else MARGINS_FILE
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping {{task: {{metric: margin}}}}, got {type(data).__name__}")
    out: dict[str, dict[str, float]] = {}
    for task, metrics in data.items():
        if not isinstance(metrics, dict):
            raise ValueError(f"{path}: `{task}` must map metric names to margins, got {metrics!r}")
        for metric, m in metrics.items():
            try:
                v = float(m)
            except (TypeError, ValueError):
                v = float("nan")
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{path}: `{task}.{metric}` must be a positive number (the margin in the "
                                 f"metric's units), got {m!r}")
            out.setdefault(str(task), {})[str(metric)] = v
    return out


@functools.lru_cache(maxsize=1)
def _bundled() -> dict[str, dict[str, float]]:
    return load_margins()


def margin_for(task: str, metric: str, margins: dict | None = None) -> float | None:
    """The equivalence margin of `metric` on `task` (the bundled file unless `margins` is given), or
    None when none is declared."""
    table = _bundled() if margins is None else margins
    return (table.get(task) or {}).get(metric)
