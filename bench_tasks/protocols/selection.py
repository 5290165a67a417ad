"""The head's learning rate chosen on `val`, the same way for every backbone.

A fixed learning rate favours the backbones it happens to suit (MAE's and DINOv2's linear-probe
protocols choose it per backbone on held-out data). Each protocol declares a small grid
(`lr_grid`, three values by default; a profile may change it, one value turns selection off).
`select_and_fit` trains every value of the grid with validation only (the test split is not
read), takes the value whose best epoch scores best on `val` (ties: the earlier value of the
grid), and only then trains the chosen value once more, identically, with the test split scored:
the one run whose test numbers the row reports. The row records the grid, each value's `val`
score and the choice (`config.task.selection`).

`run(value, with_test)` is the caller's training run: everything built afresh from the cell's seed
(head, data order, a fine-tuned backbone's starting weights), `fit` called with `test_loader=None`
when `with_test` is False.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bench_tasks.contracts import CellResult

PARAM = "lr_head"


def grid_of(setting, default: float) -> list[float]:
    """A protocol's grid from its setting: a list of values, or None / empty -> [default]."""
    if setting is None or setting == [] or setting == ():
        return [float(default)]
    if isinstance(setting, (int, float)):
        return [float(setting)]
    values = [float(v) for v in setting]
    if any(v <= 0 for v in values):
        raise ValueError(f"lr_grid values must be positive, got {list(setting)}")
    return list(dict.fromkeys(values))


def choose(scores: dict[float, float], higher_is_better: bool) -> float:
    """The grid value with the best `val` score (the first of equals, in grid order)."""
    best, best_v = None, None
    for value, s in scores.items():
        if best is None or (s > best if higher_is_better else s < best):
            best, best_v = s, value
    return best_v


def chosen(selection: dict) -> None:
    """Called once the choice is made, before the test split is read (a test hooks it)."""


def select_and_fit(run: Callable[[float, bool], CellResult], values: Sequence[float], higher_is_better: bool,
                   param: str = PARAM, pilot: str = "") -> tuple[CellResult, dict]:
    """(the chosen value's CellResult with test scores, the selection record for the row)."""
    values = list(values)
    if len(values) == 1:
        selection = {"param": param, "grid": values, "val": {}, "chosen": values[0],
                     "rule": "one value: nothing selected"}
        chosen(selection)
        return run(values[0], True), selection
    scores: dict[float, float] = {}
    for v in values:
        res = run(v, False)
        if "val_score" not in res.metrics:
            raise ValueError("selection on val needs a validation split (fit returned no val_score)")
        scores[v] = float(res.metrics["val_score"])
    pick = choose(scores, higher_is_better)
    selection = {"param": param, "grid": values, "val": {repr(v): s for v, s in scores.items()}, "chosen": pick,
                 "rule": "best val score of each value's selected epoch; test scored for the chosen value only"
                 + (f"; {pilot}" if pilot else "")}
    chosen(selection)
    return run(pick, True), selection
