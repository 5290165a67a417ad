"""Floors, ceilings, normalised gain and noise-aware comparisons for the report.

Everything here reads the ok-rows frame of `tables.rows_to_frames` (columns uri, task, dataset,
protocol, fraction, seed, metric, higher_is_better, value, kind, ci, items, ...):

  * `main_protocols(df)`: the protocol each task is shown under in the main table: `linear` where
    the task has it, else `frozen` (the dense tasks), else the first protocol found;
  * `references(df)`: {(task, dataset): Reference(floor, floor_ci, ceiling, ceiling_ci)}: the floor
    row (`floor:`) and the mean over seeds of the ceiling rows (`supervised:`, fraction 1.0);
  * `gain(...)` / `beats_floor(...)` (bench_tasks.stats) applied to the frame's aggregates;
  * `compare(df, uri_a, uri_b, task, dataset, ...)`: metric(a) - metric(b) with its 95 % interval,
    paired bootstrap over the same test items (the rows' `items` artifacts, same seeds) where
    possible, else from the two rows' intervals (unpaired), and the verdict
    "better" / "worse" / "same within noise".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench_tasks import stats

PROTOCOL_PREFERENCE = ("linear", "frozen", "finetune")


def main_protocols(df: pd.DataFrame, preferred: str = "linear") -> dict[str, str]:
    """{task: protocol} among encoder rows (floors / ceilings have their own protocols)."""
    out: dict[str, str] = {}
    if df.empty:
        return out
    enc = df[df["kind"].isin(["main", "ablation", "other"])] if "kind" in df else df
    for task, sub in enc.groupby("task", sort=False):
        protos = list(dict.fromkeys(sub["protocol"]))
        order = [preferred] + [p for p in PROTOCOL_PREFERENCE if p != preferred]
        out[task] = next((p for p in order if p in protos), protos[0])
    return out


def protocol_mask(df: pd.DataFrame, protocol) -> pd.Series:
    """Rows under `protocol` (a name, or {task: name})."""
    if isinstance(protocol, dict):
        return pd.Series([protocol.get(t) == p for t, p in zip(df["task"], df["protocol"])], index=df.index,
                         dtype=bool)
    return df["protocol"] == protocol


def protocol_text(protocol) -> str:
    """`linear` or `linear` (Parsing, Landmarks: `frozen`)."""
    from .naming import task_name

    if not isinstance(protocol, dict):
        return f"`{protocol}`"
    if not protocol:
        return "`-`"
    vals = list(protocol.values())
    common = "linear" if "linear" in vals else pd.Series(vals).mode().iloc[0]
    others = {t: p for t, p in protocol.items() if p != common}
    if not others:
        return f"`{common}`"
    return f"`{common}` (" + ", ".join(f"{task_name(t)}: `{p}`" for t, p in others.items()) + ")"


def reference_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Floor rows and fraction-1.0 ceiling rows (they belong in every selection)."""
    if df.empty or "kind" not in df:
        return df.iloc[0:0]
    return df[(df["kind"] == "floor") | ((df["kind"] == "ceiling") & (df["fraction"] == 1.0))]


@dataclass
class Reference:
    floor: float | None = None
    floor_ci: list | None = None
    ceiling: float | None = None
    ceiling_ci: list | None = None
    higher_is_better: bool = True
    ceilings: dict = field(default_factory=dict)  # ceiling uri -> (mean over seeds, mean ci)

    def for_encoder(self, uri: str | None) -> Reference:
        """This reference with the ceiling of `uri`'s own architecture and input size
        (bench_tasks.references.matching_ceiling), or no ceiling when the plan has none of it."""
        from dataclasses import replace

        from bench_tasks.references import matching_ceiling

        got = matching_ceiling(uri, self.ceilings) if uri else None
        value, ci = self.ceilings.get(got, (None, None))
        return replace(self, ceiling=value, ceiling_ci=ci)


def _mean_ci(cis) -> list | None:
    cis = [c for c in cis if isinstance(c, (list, tuple)) and len(c) == 2]
    if not cis:
        return None
    return [float(np.mean([c[0] for c in cis])), float(np.mean([c[1] for c in cis]))]


def references(df: pd.DataFrame) -> dict[tuple[str, str], Reference]:
    out: dict[tuple[str, str], Reference] = {}
    ref = reference_rows(df)
    for (task, ds), sub in ref.groupby(["task", "dataset"], sort=False):
        r = Reference(higher_is_better=bool(sub["higher_is_better"].iloc[0]))
        fl = sub[sub["kind"] == "floor"]
        if not fl.empty:
            r.floor = float(fl["value"].mean())
            r.floor_ci = _mean_ci(fl["ci"])
        ce = sub[sub["kind"] == "ceiling"]
        if not ce.empty:
            # several ceiling archs: the best one is the ceiling
            per = ce.groupby("uri")["value"].mean()
            r.ceilings = {u: (float(v), _mean_ci(ce[ce["uri"] == u]["ci"])) for u, v in per.items()}
            best = per.idxmax() if r.higher_is_better else per.idxmin()
            r.ceiling = float(per[best])
            r.ceiling_ci = _mean_ci(ce[ce["uri"] == best]["ci"])
        out[(task, ds)] = r
    return out


def gain(value: float | None, ref: Reference | None) -> float:
    if value is None or ref is None or ref.floor is None or ref.ceiling is None:
        return float("nan")
    return stats.normalised_gain(value, ref.floor, ref.ceiling, ref.higher_is_better)


def beats_floor(ci, ref: Reference | None) -> bool | None:
    if ref is None or ref.floor is None:
        return None
    return stats.beats_floor(ci, ref.floor, ref.higher_is_better)


# ----------------------------------------------------------------------------- comparisons


@dataclass
class Comparison:
    diff: stats.Difference
    word: str  # "better" | "worse" | "same within noise"
    metric: str

    def text(self, digits: int = 2) -> str:
        kind = "paired" if self.diff.paired else "unpaired"
        return (f"{self.diff.delta:+.{digits}f} [{self.diff.lo:+.{digits}f}, {self.diff.hi:+.{digits}f}] "
                f"({self.word}; {kind})")


def _load_items(path) -> stats.ItemScores | None:
    if not path or not isinstance(path, str) or not Path(path).is_file():
        return None
    try:
        return stats.ItemScores.load(path)
    except (OSError, ValueError, KeyError):
        return None


def _select(df: pd.DataFrame, uri: str, task: str, dataset: str, protocol, fraction) -> pd.DataFrame:
    sub = df[(df["uri"] == uri) & (df["task"] == task) & (df["dataset"] == dataset)]
    kind = sub["kind"].iloc[0] if len(sub) else None
    if kind == "floor":
        return sub
    if kind == "ceiling":
        return sub[sub["fraction"] == 1.0]
    if protocol is not None:
        sub = sub[protocol_mask(sub, protocol)]
    if fraction is not None:
        sub = sub[sub["fraction"] == fraction]
    return sub


def compare(df: pd.DataFrame, uri_a: str, uri_b: str, task: str, dataset: str, protocol=None,
            fraction: float | None = 1.0, n_boot: int = stats.N_BOOT) -> Comparison | None:
    """a - b on the task's headline, with the verdict. Paired over the seeds both have (and the
    same test items) when their per-item scores exist; a floor is one row paired with each seed.
    Else unpaired from the mean value and mean interval of each side. None when either side
    has no row or no interval."""
    a = _select(df, uri_a, task, dataset, protocol, fraction)
    b = _select(df, uri_b, task, dataset, protocol, fraction)
    if a.empty or b.empty:
        return None
    metric = a["metric"].iloc[0]
    hib = bool(a["higher_is_better"].iloc[0])
    sa, sb = a.set_index("seed"), b.set_index("seed")
    if len(sb) == 1 and b["kind"].iloc[0] == "floor":
        pairs = [(s, sb.index[0]) for s in sa.index]
    elif len(sa) == 1 and a["kind"].iloc[0] == "floor":
        pairs = [(sa.index[0], s) for s in sb.index]
    else:
        pairs = [(s, s) for s in sa.index if s in sb.index]
    if pairs:
        ia = [_load_items(sa.loc[x, "items"]) for x, _ in pairs]
        ib = [_load_items(sb.loc[y, "items"]) for _, y in pairs]
        ok = all(x is not None and y is not None and x.n == y.n and metric in x.point() and metric in y.point()
                 and (x.items is None or y.items is None or np.array_equal(x.items, y.items))
                 for x, y in zip(ia, ib))
        if ok:
            d = stats.paired_difference(ia, ib, metric, n_boot=n_boot)  # type: ignore[arg-type]
            return Comparison(d, stats.verdict(d, hib), metric)
    ca, cb = _mean_ci(a["ci"]), _mean_ci(b["ci"])
    if ca is None or cb is None:
        return None
    d = stats.unpaired_difference(float(a["value"].mean()), ca, float(b["value"].mean()), cb)
    return Comparison(d, stats.verdict(d, hib), metric)


def fmt_ci(ci, ref_value: float | None = None) -> str:
    if not ci:
        return ""
    lo, hi = ci
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (lo, hi)):
        return ""
    digits = 3 if ref_value is not None and abs(ref_value) < 1 else 1
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"
