"""The table model every report table is built in: columns (`Col`: a task's headline, a secondary
metric, a probe, a gain, the mean gain), rows (`TRow`: measured, reported, floor, ceiling), cells
(`TCell`: mean, std, interval, flag, note, bold), `Table`; `fmt_num` and `mark_best`.
Values are mean ± sample std (ddof=1) over seeds; the std is omitted with one seed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .compare import fmt_ci
from .naming import dataset_name, dataset_sort_key, metric_name, task_name, task_sort_key

MISSING = "–"
BOLD_FOOTNOTE = ("Bold: best among our measured rows in each column (lower is better for ↓ metrics such as "
                 "NME); shown only where at least two measured rows have a value. \"(reported)\" rows are "
                 "published numbers on the real data sets (ViT-B/16, the authors' protocols) and are never "
                 "compared with our measured rows.")

# column variants next to a task's headline column (bench_tasks.report.compare)
VARIANT_ORDER = {"": 0, "secondary": 1, "probe": 2, "gain": 3}
GAIN_COL = "gain"
MEAN_GAIN = "mean_gain"


@dataclass(frozen=True)
class Col:
    task: str
    dataset: str
    metric: str
    higher_is_better: bool = True
    variant: str = ""  # "" headline | "secondary" (another metric) | "probe" | "gain" | "mean_gain"
    probe: str = ""  # variant "probe": the probe's protocol (references.PROBE_PROTOCOLS)
    post_hoc: bool = False  # a protocol added after the study's results were seen (POST_HOC)

    @property
    def key(self):
        return (self.task, self.dataset, self.variant)

    def sort_key(self):
        if self.variant == MEAN_GAIN:
            return ((99, ""), (99, ""), 99)
        return (task_sort_key(self.task), dataset_sort_key(self.dataset), VARIANT_ORDER.get(self.variant, 9))

    def header(self, style: str = "md") -> str:
        arrow = {"md": ("↑", "↓"), "tex": (r"$\uparrow$", r"$\downarrow$"),
                 "csv": ("(higher is better)", "(lower is better)")}[style][0 if self.higher_is_better else 1]
        if self.variant == MEAN_GAIN:
            return f"Mean gain {arrow}"
        probe = f"{self.probe} probe" + (", post hoc" if self.post_hoc else "")
        metric = {"gain": "gain", "probe": f"{metric_name(self.metric)} ({probe})"}.get(
            self.variant, metric_name(self.metric))
        if style == "csv":
            return f"{task_name(self.task)} / {dataset_name(self.dataset)} / {metric} {arrow}"
        return f"{task_name(self.task)} {dataset_name(self.dataset)} {metric} {arrow}"


FLAG = "†"  # stats.floor_verdict: the score does not beat its floor
FLAG_FOOTNOTE = (f"{FLAG}: does not beat the input-free predictor: the 95 % interval of score − floor (paired "
                 "over the same test items, so the floor's own noise counts) does not exclude zero on the "
                 "better side (stats.floor_verdict; never bold).")


@dataclass
class TCell:
    mean: float
    std: float | None = None
    n: int = 1
    note: str | None = None
    best: bool = False
    ci: list | None = None  # 95 % bootstrap interval over test items (mean over seeds)
    flag: str | None = None
    digits: int | None = None  # None: fmt_num's choice

    def text(self) -> str:
        s = fmt_num(self.mean) if self.digits is None else (MISSING if math.isnan(self.mean) else f"{self.mean:.{self.digits}f}")
        if self.n > 1 and self.std is not None and not math.isnan(self.std):
            s += f" ± {fmt_num(self.std, ref=self.mean)}"
        if self.ci:
            s += f" {fmt_ci(self.ci, self.mean)}"
        if self.flag:
            s += f" {self.flag}"
        if self.note:
            s += f" ({self.note})"
        return s


@dataclass
class TRow:
    label: str
    kind: str = "measured"  # "measured" | "reported" | "floor" | "ceiling"
    extra: dict = field(default_factory=dict)  # e.g. {"Setting": "64"}


@dataclass
class Table:
    title: str
    rows: list[TRow]
    cols: list[Col]
    cells: dict  # (row label, col.key) -> TCell
    first_col: str = "Method"
    extra_cols: list[str] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)  # "<row>: <column>" whose CI includes the floor
    uris: dict = field(default_factory=dict)  # row label -> backbone URI (measured rows)
    selection: tuple = (None, None)  # (protocol or {task: protocol}, fraction) of the measured rows

    @property
    def empty(self) -> bool:
        return not self.rows or not self.cols


def fmt_num(v: float, ref: float | None = None) -> str:
    ref = v if ref is None else ref
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    return f"{v:.3f}" if abs(ref) < 1 else f"{v:.2f}"


def mark_best(table: Table, min_values: int = 2) -> None:
    """Bold the best measured value per column (ties all bold); reported rows never, and a score
    marked † (its interval includes the floor) never: the best among the others is bold."""
    for col in table.cols:
        vals = [(r.label, table.cells[(r.label, col.key)].mean) for r in table.rows
                if r.kind == "measured" and (r.label, col.key) in table.cells
                and not math.isnan(table.cells[(r.label, col.key)].mean)
                and table.cells[(r.label, col.key)].flag != FLAG]
        if len(vals) < min_values:
            continue
        best = max(v for _, v in vals) if col.higher_is_better else min(v for _, v in vals)
        for label, v in vals:
            if math.isclose(v, best, rel_tol=1e-9, abs_tol=1e-12):
                table.cells[(label, col.key)].best = True
