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
    possible, else from the two rows' intervals (unpaired), and the verdict of `stats.verdict`
    ("better" / "worse" / "the same" within the task's declared equivalence margin / "not shown");
  * `floor_comparison(...)`: score - floor the same way, whose verdict is the report's † (a score
    that does not beat its floor).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench_tasks import stats
from bench_tasks.plan.references import matching_ceiling
from bench_tasks.stats.pairs import clusters_from_pair_ids, shared_clusters

from .fairness import unreached_ceilings
from .naming import task_name

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
    # ceilings that do not beat an encoder / random init of their architecture (report.fairness):
    # no gain against them
    not_reached: set = field(default_factory=set)

    def for_encoder(self, uri: str | None) -> Reference:
        """This reference with the ceiling of `uri`'s own architecture and input size
        (bench_tasks.plan.references.matching_ceiling), or no ceiling when the plan has none of it."""
        got = matching_ceiling(uri, self.ceilings) if uri else None
        value, ci = self.ceilings.get(got, (None, None)) if got not in self.not_reached else (None, None)
        return replace(self, ceiling=value, ceiling_ci=ci)


def _mean_ci(cis) -> list | None:
    cis = [c for c in cis if isinstance(c, (list, tuple)) and len(c) == 2]
    if not cis:
        return None
    return [float(np.mean([c[0] for c in cis])), float(np.mean([c[1] for c in cis]))]


def references(df: pd.DataFrame) -> dict[tuple[str, str], Reference]:
    out: dict[tuple[str, str], Reference] = {}
    ref = reference_rows(df)
    unreached = unreached_ceilings(df)  # ceilings an encoder of their architecture beats
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
            r.not_reached = {u for u in r.ceilings if (task, ds, u) in unreached}
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
    word: str  # stats.verdict: "better" | "worse" | "the same" | "not shown"
    metric: str
    margin: float | None = None  # the equivalence margin the verdict used (stats.margin_for)

    def text(self, digits: int = 2) -> str:
        kind = f"paired; {self.diff.covers}" if self.diff.paired else "unpaired"
        word = self.word
        if self.word == stats.SAME:
            word += f", within ±{self.margin:g}"
        elif self.word == stats.NOT_SHOWN:
            word += " (no difference, no equivalence" + (
                f" within ±{self.margin:g})" if self.margin else ": no margin declared)")
        return (f"{self.diff.delta:+.{digits}f} [{self.diff.lo:+.{digits}f}, {self.diff.hi:+.{digits}f}] "
                f"({word}; {kind})")


@functools.lru_cache(maxsize=4096)
def _load_items_cached(path: str) -> stats.ItemScores | None:
    try:
        return stats.ItemScores.load(path)
    except (OSError, ValueError, KeyError):
        return None


def _load_items(path) -> stats.ItemScores | None:
    if not path or not isinstance(path, str) or not Path(path).is_file():
        return None
    return _load_items_cached(path)


def clusters_for(task: str, units: list[stats.ItemScores]):
    """Identity clusters of verification rows' pairs (bench_tasks.stats.pairs): one (n, 2) array when every
    unit scored the same pairs, {id(unit): its array} in one identity space when the seeds drew
    different pairs of the same images; None otherwise (items resampled one by one)."""
    if task != "recognition" or any(u.items is None for u in units):
        return None
    if all(np.array_equal(units[0].items, u.items) for u in units[1:]):
        return _cached_clusters(units[0].items.tobytes(), lambda: clusters_from_pair_ids(units[0].items))
    units = sorted(units, key=lambda u: u.items.tobytes())
    key = b"|".join(u.items.tobytes() for u in units)
    got = _cached_clusters(key, lambda: shared_clusters([u.items for u in units]))
    return None if got is None else {id(u): c for u, c in zip(units, got)}


_CLUSTERS: dict = {}


def _cached_clusters(key: bytes, make):
    if key not in _CLUSTERS:
        _CLUSTERS[key] = make()
    return _CLUSTERS[key]


def _metric_value(metrics, metric: str) -> float | None:
    v = (metrics or {}).get(metric) if isinstance(metrics, dict) else None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def cell_pools(df: pd.DataFrame, task: str, dataset: str, protocol: str, fraction: float, metric: str,
               exclude=()) -> stats.SpreadPools:
    """The seed / pre-training-run residual pools of one cell (every encoder's rows of this task,
    dataset, protocol and fraction; floors left out: an input-free predictor has no seed spread).
    exclude: method labels left out (the A/A check's leave-one-out)."""
    sub = df[(df["task"] == task) & (df["dataset"] == dataset) & (df["protocol"] == protocol)
             & (df["fraction"] == fraction)]
    if "kind" in sub:
        sub = sub[sub["kind"] != "floor"]
    labels = sub["method_label"] if "method_label" in sub else sub["uri"]
    units = {}
    for lab, uri, seed, m in zip(labels, sub["run"] if "run" in sub else sub["uri"], sub["seed"], sub["metrics"]):
        v = _metric_value(m, metric)
        if v is not None:
            units[(lab, uri, seed)] = v
    return stats.spread_pools(units, exclude=exclude)


def side_of(rows: pd.DataFrame, metric: str) -> stats.Side | None:
    """{run (backbone URI): {seed: ItemScores}} of these rows, or None when one lacks its per-item
    scores (or the metric)."""
    side: stats.Side = {}
    for uri, seed, path in zip(rows["run"] if "run" in rows else rows["uri"], rows["seed"], rows["items"]):
        sc = _load_items(path)
        if sc is None or metric not in sc.point():
            return None
        side.setdefault(uri, {})[seed] = sc
    return side or None


def _units(*sides: stats.Side) -> list[stats.ItemScores]:
    return [u for s in sides for seeds in s.values() for u in seeds.values()]


def _same_items(units: list[stats.ItemScores]) -> bool:
    ids = [u.items for u in units if u.items is not None]
    return len({u.n for u in units}) == 1 and all(np.array_equal(ids[0], x) for x in ids[1:])


def _design(task: str, units: list[stats.ItemScores]):
    """(ok, clusters) for these units: identity clusters (shared or per unit) for verification;
    else the units must share their test items."""
    cl = clusters_for(task, units)
    if isinstance(cl, dict):
        return True, cl
    return _same_items(units), cl


def _pools_for(df: pd.DataFrame, rows: pd.DataFrame, metric: str, exclude=()) -> stats.SpreadPools | None:
    if rows["kind"].iloc[0] == "floor":
        return None
    r = rows.iloc[0]
    return cell_pools(df, r["task"], r["dataset"], r["protocol"], r["fraction"], metric, exclude)


def design_difference(df: pd.DataFrame, a: pd.DataFrame, b: pd.DataFrame, metric: str, n_boot: int = stats.N_BOOT,
                      exclude=()) -> stats.Difference | None:
    """The study-design bootstrap of metric(a) - metric(b) over these two selections of rows of
    the frame `df` (pools from df's cells), or None when per-item scores are missing or differ."""
    sa, sb = side_of(a, metric), side_of(b, metric)
    if sa is None or sb is None:
        return None
    ok, clusters = _design(a["task"].iloc[0], _units(sa, sb))
    if not ok:
        return None
    return stats.paired_difference(sa, sb, metric, n_boot=n_boot, pools_a=_pools_for(df, a, metric, exclude),
                                   pools_b=_pools_for(df, b, metric, exclude), clusters=clusters)


def design_interval(df: pd.DataFrame, rows: pd.DataFrame, metric: str, n_boot: int = stats.N_BOOT):
    """(lo, hi, what it covers) of the mean over these rows (one encoder's seeds, or a method's runs)
    under the study's design, or None without per-item scores."""
    side = side_of(rows, metric)
    if side is None:
        return None
    ok, clusters = _design(rows["task"].iloc[0], _units(side))
    if not ok:
        return None
    _, lo, hi, cov = stats.design_interval(side, metric, _pools_for(df, rows, metric), clusters, n_boot=n_boot)
    return lo, hi, cov.note()


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
    """a - b on the task's headline, with the verdict (stats.verdict). The study-design bootstrap
    (stats.paired_difference: one set of item weights shared by every seed of both sides, seed /
    run spread from the cell's pools, identities for verification) where both sides stored per-item
    scores on the same test items; else unpaired from the mean value and mean interval of each side.
    None when either side has no row or no interval, or too few test items for a verdict. uri_a / uri_b may be a list of URIs: the
    pre-training runs of one method."""
    a = pd.concat([_select(df, u, task, dataset, protocol, fraction) for u in _as_list(uri_a)])
    b = pd.concat([_select(df, u, task, dataset, protocol, fraction) for u in _as_list(uri_b)])
    if a.empty or b.empty:
        return None
    if any(bool(side["too_few"].any()) for side in (a, b) if "too_few" in side):
        return None  # fewer test items than stats.MIN_TEST_ITEMS: no verdict
    a, b = common_seeds(a, b)
    metric = a["metric"].iloc[0]
    hib = bool(a["higher_is_better"].iloc[0])
    margin = stats.margin_for(task, metric)
    d = design_difference(df, a, b, metric, n_boot)
    if d is None:
        ca, cb = _mean_ci(a["ci"]), _mean_ci(b["ci"])
        if ca is None or cb is None:
            return None
        d = stats.unpaired_difference(float(a["value"].mean()), ca, float(b["value"].mean()), cb)
    return Comparison(d, stats.verdict(d, hib, margin), metric, margin)


def floor_comparison(df: pd.DataFrame, uri, task: str, dataset: str, protocol=None,
                     fraction: float | None = 1.0, n_boot: int = stats.N_BOOT) -> Comparison | None:
    """score(uri) - floor on the task's headline (`compare` against the floor row of the same task
    and dataset: paired over the same test items where both stored per-item scores, so the floor's
    own noise on these items counts), with the floor verdict as its word ("beats the floor" /
    "does not beat the floor", stats.floor_verdict). None without a floor row or an interval."""
    floors = df[(df["task"] == task) & (df["dataset"] == dataset) & (df["kind"] == "floor")] \
        if "kind" in df else df.iloc[0:0]
    if floors.empty:
        return None
    c = compare(df, uri, floors["uri"].iloc[0], task, dataset, protocol, fraction, n_boot)
    if c is None:
        return None
    hib = bool(floors["higher_is_better"].iloc[0])
    return Comparison(c.diff, stats.floor_verdict(c.diff, higher_is_better=hib), c.metric)


def common_seeds(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two encoders that share evaluation seeds are compared on those seeds only (same head init,
    data order and, in the committed cpu study, device: seed 0 ran on a GPU, seeds 1-2 on a CPU);
    a floor (one deterministic row) goes with every seed of the other side."""
    if "floor" in (a["kind"].iloc[0], b["kind"].iloc[0]):
        return a, b
    common = set(a["seed"]) & set(b["seed"])
    if common and (common != set(a["seed"]) or common != set(b["seed"])):
        return a[a["seed"].isin(common)], b[b["seed"].isin(common)]
    return a, b


def method_uris(df: pd.DataFrame, label: str) -> list[str]:
    """The backbone URIs (pre-training runs) of one method label (the rows' method block label)."""
    col = "method_label" if "method_label" in df else "method"
    return list(dict.fromkeys(df[df[col] == label]["uri"]))


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def fmt_ci(ci, ref_value: float | None = None) -> str:
    if not ci:
        return ""
    lo, hi = ci
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (lo, hi)):
        return ""
    digits = 3 if ref_value is not None and abs(ref_value) < 1 else 1
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"
