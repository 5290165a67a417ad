"""Can a task tell pre-training methods apart? Each task's discriminating power, in calibration.md.

The unit is the half-width of the 95 % interval of PaCo-FR − MAE on the task (the study's own
comparison, `compare.compare`, so it carries the test items, evaluation seeds and pre-training
runs of that comparison). In that unit, per task column (the headline under the main protocol, and
the task's probe):

  * best − random init: how far the best compared encoder is from a random-init encoder of the
    same architecture (the spread the task shows between "no pre-training" and the best method);
  * ceiling − random init: how far the supervised ceiling is above random init (the room left).

A task *discriminates* when the best encoder is at least DISCRIMINATION_MIN half-widths from random
init and, where a ceiling exists, the ceiling is too: below that, at most the two ends of the spread
can be told apart, and two methods inside it almost never. Columns that do not discriminate are
printed with the reason, and their comparisons in SUMMARY.md are flagged (`FLAG`): their verdicts
are not evidence about the methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench_tasks.plan.references import PROBE_PROTOCOLS
from bench_tasks.store.method import METHOD_LABELS

from .compare import compare, main_protocols, method_uris
from .naming import dataset_name, metric_name, task_name

DISCRIMINATION_MIN = 2.0  # half-widths of PaCo-FR - MAE
FLAG = "‡"  # a comparison on a column that does not discriminate (calibration.md)


@dataclass
class Power:
    task: str
    dataset: str
    protocol: str
    metric: str
    higher_is_better: bool
    probe: bool
    half_width: float | None  # of PaCo-FR - MAE
    random: float | None
    best: float | None
    best_label: str = ""
    ceiling: float | None = None

    def _units(self, value: float | None) -> float | None:
        if value is None or self.random is None or not self.half_width:
            return None
        sign = 1.0 if self.higher_is_better else -1.0
        return sign * (value - self.random) / self.half_width

    @property
    def best_units(self) -> float | None:
        return self._units(self.best)

    @property
    def ceiling_units(self) -> float | None:
        return self._units(self.ceiling)

    def reason(self) -> str | None:
        """Why this column does not discriminate, or None when it does (or cannot be judged)."""
        b, c = self.best_units, self.ceiling_units
        if b is None:
            return None
        why = []
        if b < DISCRIMINATION_MIN:
            why.append(f"the best encoder is {b:.2f} half-widths from random init (< {DISCRIMINATION_MIN:g})")
        if c is not None and c < DISCRIMINATION_MIN:
            why.append(f"the ceiling is {c:.2f} half-widths from random init (< {DISCRIMINATION_MIN:g})")
        return "; ".join(why) or None

    @property
    def discriminates(self) -> bool | None:
        return None if self.best_units is None else self.reason() is None

    def column(self) -> str:
        return (f"{task_name(self.task)} {dataset_name(self.dataset)} {metric_name(self.metric)}"
                + (f" ({self.protocol} probe)" if self.probe else ""))


def _value(df: pd.DataFrame, uris: list[str], task: str, dataset: str, protocol: str, fraction: float) -> float | None:
    sub = df[df["uri"].isin(uris) & (df["task"] == task) & (df["dataset"] == dataset)
             & (df["protocol"] == protocol) & (df["fraction"] == fraction)]
    return float(sub["value"].mean()) if len(sub) else None


def discriminating_power(df_ok: pd.DataFrame, fraction: float = 1.0) -> list[Power]:
    """One Power per (task, dataset, main protocol) and per task probe that has random-init rows."""
    if df_ok is None or df_ok.empty or "kind" not in df_ok:
        return []
    paco, mae = method_uris(df_ok, METHOD_LABELS["paco"]), method_uris(df_ok, METHOD_LABELS["mae"])
    rand = sorted({u for u in df_ok["uri"] if str(u).startswith("random:")})
    mains = sorted({u for u, k in zip(df_ok["uri"], df_ok["kind"]) if k == "main" and u not in rand})
    ceil = df_ok[(df_ok["kind"] == "ceiling") & (df_ok["fraction"] == 1.0)]
    out = []
    for task, main_proto in main_protocols(df_ok).items():
        for ds in dict.fromkeys(df_ok[df_ok["task"] == task]["dataset"]):
            for proto, probe in ((main_proto, False), (PROBE_PROTOCOLS.get(task), True)):
                if proto is None:
                    continue
                frac = 1.0 if probe else fraction
                r = _value(df_ok, rand[:1], task, ds, proto, frac)
                if r is None:
                    continue
                sub = df_ok[(df_ok["task"] == task) & (df_ok["dataset"] == ds)]
                hib = bool(sub["higher_is_better"].iloc[0])
                vals = {u: _value(df_ok, [u], task, ds, proto, frac) for u in mains}
                vals = {u: v for u, v in vals.items() if v is not None}
                best_u = (max if hib else min)(vals, key=vals.get) if vals else None
                hw = None
                if paco and mae:
                    c = compare(df_ok, paco, mae, task, ds, proto, frac)
                    if c is not None and math.isfinite(c.diff.hi - c.diff.lo):
                        hw = (c.diff.hi - c.diff.lo) / 2
                cs = ceil[(ceil["task"] == task) & (ceil["dataset"] == ds)]
                ceiling = None
                if len(cs) and not probe:
                    per = cs.groupby("uri")["value"].mean()
                    ceiling = float(per.max() if hib else per.min())
                label = sub[sub["uri"] == best_u]["method"].iloc[0] if best_u is not None else ""
                out.append(Power(task, ds, proto, sub["metric"].iloc[0], hib, probe, hw, r,
                                 vals.get(best_u), label, ceiling))
    return out


def non_discriminating(powers: list[Power]) -> dict[tuple[str, str, str], str]:
    """{(task, dataset, protocol): reason} of the columns that do not discriminate."""
    return {(p.task, p.dataset, p.protocol): p.reason() for p in powers if p.discriminates is False}


def _u(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def power_markdown(powers: list[Power]) -> str | None:
    """The section, or None when no column has the unit (rows without both PaCo-FR and MAE, e.g. a
    report about the user's own backbones)."""
    if not any(p.half_width for p in powers):
        return None
    L = ["## Discriminating power of each task", "",
         "In units of the half-width of the 95 % interval of PaCo-FR − MAE on the same column (the study's "
         "own comparison: test items, evaluation seeds and pre-training runs): how far the best compared "
         "encoder and the supervised ceiling are from a random-init encoder of the same architecture, in the "
         f"metric's better direction. A column discriminates when both are at least {DISCRIMINATION_MIN:g} "
         "half-widths (the ceiling where there is one); below that at most the two ends of the spread can be "
         f"told apart. Comparisons on a column that does not discriminate are marked {FLAG} in SUMMARY.md: "
         "their verdicts say nothing about the methods.", "",
         "| column | protocol | half-width (PaCo-FR − MAE) | random init | best (method) | ceiling | "
         "(best − random) / hw | (ceiling − random) / hw | discriminates |",
         "|---|---|---|---|---|---|---|---|---|"]
    for p in powers:
        d = p.discriminates
        word = "— (no PaCo-FR − MAE interval)" if d is None else ("yes" if d else f"**no**: {p.reason()}")
        L.append(f"| {p.column()} | `{p.protocol}` | {_u(p.half_width)} | {_u(p.random)} | "
                 f"{_u(p.best)} ({p.best_label or '—'}) | {_u(p.ceiling)} | {_u(p.best_units)} | "
                 f"{_u(p.ceiling_units)} | {word} |")
    return "\n".join(L) + "\n"
