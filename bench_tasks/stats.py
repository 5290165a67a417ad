"""Uncertainty of test-set metrics: per-item scores, bootstrap confidence intervals, paired
differences and the "better / worse / same within noise" verdict; normalised gain.

Every test-set metric of a row is a function of *additive per-item sums*: accuracy is a sum of
per-item correctness, balanced accuracy a ratio of per-attribute TP / TN / P / N counts, parsing F1
a function of the summed per-image confusion matrices, NME a sum of per-image NMEs, verification
accuracy a sum of per-pair correctness (each pair scored with its fold's threshold). An
`ItemScores` holds those per-item arrays (item axis first) and the name of the *statistic* that
turns their sums into metrics. A bootstrap resample of the test items is then a vector of
multinomial counts `w` (n_boot, n), and every metric of every resample is `statistic(w @ arrays)`:
vectorised, exact for ratios of sums (no per-resample re-evaluation), and the same `w` applied to
two rows scored on the same items gives the *paired* bootstrap of their difference.

    scores = ItemScores("mean", {"value": per_image_nme * 100})
    scores.ci()                          -> {"value": (lo, hi)}       (95 %, percentile)
    paired_difference(a, b, "acc")       -> Difference(delta, lo, hi, paired=True)
    verdict(diff, higher_is_better)      -> "better" | "worse" | "same within noise"
    normalised_gain(score, floor, ceiling) = (score - floor) / (ceiling - floor)

Per-item scores are saved next to a row (`artifacts/<key>/items.npz`, see `save` / `load`) so
the report can compare two rows pairwise long after they ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

N_BOOT = 1000
ALPHA = 0.05
BOOT_SEED = 20261127
Z95 = 1.959963984540054

# ----------------------------------------------------------------------------- statistics
# A statistic maps summed per-item arrays {name: (B, ...)} to {metric: (B,)} values. Sums, not
# means: a resample's weights sum to n, so dividing by the summed count arrays is exact.

Statistic = Callable[[dict[str, np.ndarray], float], dict[str, np.ndarray]]
STATISTICS: dict[str, Statistic] = {}


def statistic(name: str):
    def deco(fn):
        STATISTICS[name] = fn
        return fn

    return deco


def _col(n, like: np.ndarray):
    """n (a float, or a (B,) array of replicate weight sums) shaped to broadcast against `like`."""
    n = np.asarray(n, dtype=np.float64)
    return n.reshape(n.shape + (1,) * (like.ndim - n.ndim)) if n.ndim else n


@statistic("mean")
def _mean(s: dict[str, np.ndarray], n: float) -> dict[str, np.ndarray]:
    """Every array is a per-item value; the metric of the same name is its mean."""
    return {k: v / _col(n, v) for k, v in s.items()}


@statistic("multilabel")
def _multilabel(s: dict[str, np.ndarray], n: float) -> dict[str, np.ndarray]:
    """Arrays tp, tn, pos (per item x attribute, 0/1). mean_acc: mean over attributes of the
    accuracy; balanced_acc: mean over attributes of (TPR + TNR) / 2, an attribute without positives
    (negatives) in the resample using the one rate that is defined (bench_tasks.metrics)."""
    tp, tn, pos = s["tp"], s["tn"], s["pos"]
    n = _col(n, tp)
    neg = n - pos
    acc = (tp + tn) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.where(pos > 0, tp / np.maximum(pos, 1e-12), np.nan)
        tnr = np.where(neg > 0, tn / np.maximum(neg, 1e-12), np.nan)
        bal = np.nanmean(np.stack([tpr, tnr]), axis=0)
    return {"mean_acc": 100.0 * acc.mean(-1), "balanced_acc": 100.0 * np.nanmean(bal, axis=-1)}


@statistic("multiclass")
def _multiclass(s: dict[str, np.ndarray], n: float) -> dict[str, np.ndarray]:
    """Arrays onehot (true class, per item x class) and hit (onehot * correct). acc and
    mean_class_acc (mean recall over the classes present)."""
    support, hit = s["onehot"], s["hit"]
    acc = 100.0 * hit.sum(-1) / np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, hit / np.maximum(support, 1e-12), np.nan)
        mca = 100.0 * np.nanmean(recall, axis=-1)
    return {"acc": acc, "mean_class_acc": mca}


@statistic("confusion")
def _confusion(s: dict[str, np.ndarray], n: float) -> dict[str, np.ndarray]:
    """Array cm (per item: K x K confusion, rows = ground truth), background class 0. f1_mean and
    miou over the foreground classes, pixel_acc (percentages; bench_tasks.metrics.parsing)."""
    cm = s["cm"]
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    n_gt, n_pred = cm.sum(-1), cm.sum(-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(n_gt + n_pred > 0, 2 * tp / (n_gt + n_pred), np.nan)
        iou = np.where(n_gt + n_pred - tp > 0, tp / (n_gt + n_pred - tp), np.nan)
        out = {"f1_mean": 100.0 * np.nanmean(f1[..., 1:], axis=-1),
               "miou": 100.0 * np.nanmean(iou[..., 1:], axis=-1),
               "pixel_acc": 100.0 * tp.sum(-1) / np.maximum(cm.sum((-2, -1)), 1)}
    return out


# ----------------------------------------------------------------------------- per-item scores


@dataclass
class ItemScores:
    """Per-item sufficient statistics of a test set's metrics (item axis first in every array).
    `items`: identifiers of the test items (e.g. indices into the test split, or pair indices)
    so a paired comparison can check both rows scored the same items."""

    statistic: str
    arrays: dict[str, np.ndarray]
    items: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.statistic not in STATISTICS:
            raise KeyError(f"unknown statistic {self.statistic!r}; known: {sorted(STATISTICS)}")
        self.arrays = {k: np.asarray(v, dtype=np.float64) for k, v in self.arrays.items()}
        ns = {len(v) for v in self.arrays.values()}
        if len(ns) != 1:
            raise ValueError(f"per-item arrays of different lengths: { {k: len(v) for k, v in self.arrays.items()} }")
        if self.items is not None:
            self.items = np.asarray(self.items)
            if len(self.items) != self.n:
                raise ValueError(f"{len(self.items)} item ids for {self.n} items")

    @property
    def n(self) -> int:
        return len(next(iter(self.arrays.values())))

    def _eval(self, w: np.ndarray | None) -> dict[str, np.ndarray]:
        """Metrics under item weights w (B, n); None = every item once. Weights need not sum to n
        (an identity-cluster resample does not): each replicate is normalised by its own sum."""
        if w is None:
            sums = {k: v.sum(0)[None] for k, v in self.arrays.items()}
            return STATISTICS[self.statistic](sums, float(self.n))
        sums = {k: np.tensordot(w, v, axes=(1, 0)) for k, v in self.arrays.items()}
        return STATISTICS[self.statistic](sums, w.sum(1))

    def evaluate(self, w: np.ndarray, metric: str) -> np.ndarray:
        """One metric under item weights w (B, n): (B,) values."""
        return self._eval(w)[metric]

    def point(self) -> dict[str, float]:
        return {k: float(v[0]) for k, v in self._eval(None).items()}

    def bootstrap(self, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> dict[str, np.ndarray]:
        """{metric: (n_boot,) values over bootstrap resamples of the items}."""
        out: dict[str, list[np.ndarray]] = {}
        for w in bootstrap_weights(self.n, n_boot, seed):
            for k, v in self._eval(w).items():
                out.setdefault(k, []).append(v)
        return {k: np.concatenate(v) for k, v in out.items()}

    def ci(self, n_boot: int = N_BOOT, alpha: float = ALPHA, seed: int = BOOT_SEED,
           rename: dict[str, str] | None = None) -> dict[str, list[float]]:
        """{metric: [lo, hi]} percentile intervals (1 - alpha); `rename` maps statistic metric
        names to the row's metric names (e.g. {"value": "nme"})."""
        out = {}
        for k, v in self.bootstrap(n_boot, seed).items():
            lo, hi = percentile_ci(v, alpha)
            out[(rename or {}).get(k, k)] = [lo, hi]
        return out

    # -------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {} if self.items is None else {"__items__": self.items}
        # float32 is ample for 0/1 indicators, counts < 2^24 and per-image NMEs
        arrays = {f"a_{k}": v.astype(np.float32) for k, v in self.arrays.items()}
        np.savez_compressed(path, __statistic__=np.array(self.statistic), **arrays, **extra)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ItemScores:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k[2:]: z[k] for k in z.files if k.startswith("a_")}
            items = z["__items__"] if "__items__" in z.files else None
            return cls(str(z["__statistic__"]), arrays, items)


def bootstrap_weights(n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED, chunk_cells: int = 4_000_000):
    """Yield (b, n) arrays of multinomial resampling counts (each row sums to n), n_boot rows in
    all, in chunks of at most `chunk_cells` numbers. Same (n, n_boot, seed) -> same weights."""
    if n <= 0:
        raise ValueError("cannot bootstrap an empty test set")
    rng = np.random.default_rng(seed)
    per = max(1, chunk_cells // n)
    done = 0
    while done < n_boot:
        b = min(per, n_boot - done)
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        done += b


def percentile_ci(samples, alpha: float = ALPHA) -> tuple[float, float]:
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(s, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def mean_ci(values, n_boot: int = N_BOOT, alpha: float = ALPHA, seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-item values."""
    ci = ItemScores("mean", {"v": np.asarray(values, dtype=np.float64)}).ci(n_boot, alpha, seed)
    return tuple(ci["v"])  # type: ignore[return-value]


# ----------------------------------------------------------------------------- builders


def multilabel_items(logits, targets, threshold: float = 0.5) -> ItemScores:
    """Per-image tp / tn / pos indicators (N, A) of sigmoid(logits) > threshold (torchmetrics'
    multi-label rule, so the point values equal bench_tasks.metrics.classification's)."""
    pred = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64))) > threshold
    return multilabel_items_from_pred(pred, targets)


def multilabel_items_from_pred(pred, targets) -> ItemScores:
    pred, t = np.asarray(pred).astype(bool), np.asarray(targets).astype(bool)
    return ItemScores("multilabel", {"tp": pred & t, "tn": ~pred & ~t, "pos": t})


def multiclass_items(pred, targets, num_classes: int) -> ItemScores:
    pred, t = np.asarray(pred).astype(np.int64).reshape(-1), np.asarray(targets).astype(np.int64).reshape(-1)
    onehot = np.zeros((len(t), num_classes), dtype=np.float64)
    onehot[np.arange(len(t)), t] = 1.0
    return ItemScores("multiclass", {"onehot": onehot, "hit": onehot * (pred == t)[:, None]})


def confusion_items(cms) -> ItemScores:
    """Per-image (K, K) confusion matrices (rows = ground truth), e.g. {index: cm} or (N, K, K)."""
    if isinstance(cms, dict):
        keys = sorted(cms)
        return ItemScores("confusion", {"cm": np.stack([cms[k] for k in keys])}, items=np.asarray(keys))
    return ItemScores("confusion", {"cm": np.asarray(cms)})


# ----------------------------------------------------------------------------- comparisons


@dataclass
class Difference:
    """a - b of one metric: point difference and its (1 - alpha) interval."""

    delta: float
    lo: float
    hi: float
    paired: bool
    n_seeds: int = 1
    covers: str = "test items only"  # what the interval resamples (Coverage.note)

    @property
    def excludes_zero(self) -> bool:
        return bool(self.lo > 0 or self.hi < 0)


# ----------------------------------------------------------------------------- the study's design
# A comparison is between two *sides*; a side is {run: {seed: ItemScores}}: the pre-training runs of
# a method (distinct backbones under one method label; one run for most methods), each evaluated at
# one or more evaluation seeds, every seed scored on the same test items. One bootstrap replicate:
#   1. test items: ONE set of item weights (multinomial over items, or over identity clusters for
#      verification pairs), shared by every seed, every run and both sides;
#   2. evaluation seeds: a side's run with k seeds gets the mean of k residuals drawn from the cell's
#      pool of seed residuals (every encoder of the same task / dataset / protocol / fraction with
#      >= 2 seeds: value - its seed mean, scaled by sqrt(k / (k - 1))), so a single-seed side still
#      carries the spread seeds show elsewhere in the study; no pool (no encoder has 2 seeds): the
#      interval covers items only, and says so;
#   3. pre-training runs: likewise from the pool of run residuals (methods with >= 2 runs: per-run
#      seed-mean minus the method's mean, scaled); a run residual already carries its seeds' spread,
#      so it replaces step 2's draw. No pool: the interval covers one pre-training run, and says so.


@dataclass
class SpreadPools:
    """Residual pools of one cell and metric (see above); empty arrays = not measured."""

    seed: np.ndarray = field(default_factory=lambda: np.zeros(0))
    run: np.ndarray = field(default_factory=lambda: np.zeros(0))


def residual_pool(groups, alpha: float = ALPHA) -> np.ndarray:
    """Scaled residuals (value - group mean) * sqrt(k / (k - 1)) of every group with k >= 2 finite
    values (each residual's variance is then the between-unit variance), times t(df) / z (df: the
    pool's degrees of freedom, sum of k - 1), the small-sample allowance of a t interval: a spread
    estimated from a few seeds is itself uncertain."""
    from scipy.stats import t as student_t

    out, df = [], 0
    for g in groups:
        v = np.asarray([x for x in g if x is not None and math.isfinite(float(x))], dtype=np.float64)
        if len(v) >= 2:
            out.append((v - v.mean()) * math.sqrt(len(v) / (len(v) - 1)))
            df += len(v) - 1
    if not out:
        return np.zeros(0)
    z = float(student_t.ppf(1 - alpha / 2, 1e9))
    # sorted: the pool (and so every draw from it) does not depend on the order the rows were read
    return np.sort(np.concatenate(out)) * float(student_t.ppf(1 - alpha / 2, df)) / z


def spread_pools(units, exclude=()) -> SpreadPools:
    """Pools from one cell's point values. units: {(method, run, seed): value}; groups of `exclude`
    (method names) are left out (the A/A check's leave-one-out)."""
    by_run, by_method = {}, {}
    for (m, r, _s), v in sorted(units.items(), key=lambda kv: tuple(map(str, kv[0]))):
        if m in exclude:
            continue
        by_run.setdefault((m, r), []).append(v)
    for (m, _r), vs in by_run.items():
        by_method.setdefault(m, []).append(float(np.mean(vs)))
    return SpreadPools(residual_pool(by_run.values()), residual_pool(by_method.values()))


def item_weights(n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED, clusters: np.ndarray | None = None) -> np.ndarray:
    """(n_boot, n) weights of the test items for every replicate. clusters: per item, the (a, b)
    cluster ids it touches (an (n, 2) int array; a == b for an item of one cluster): clusters are
    drawn with replacement and an item weighs the mean of its two clusters' counts, so every item
    that touches a drawn cluster goes with it (verification pairs resampled by identity)."""
    if clusters is None:
        return np.concatenate(list(bootstrap_weights(n, n_boot, seed)))
    return cluster_weights([clusters], n_boot, seed)[0]


def cluster_weights(cluster_lists, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> list[np.ndarray]:
    """Item weights of several item lists whose (n_i, 2) cluster ids share one cluster space: one
    draw of the clusters per replicate, shared by every list."""
    cs = [np.asarray(c, dtype=np.int64).reshape(len(c), -1) for c in cluster_lists]
    ids, inv = np.unique(np.concatenate(cs), return_inverse=True)
    counts = np.concatenate(list(bootstrap_weights(len(ids), n_boot, seed)))
    out, at = [], 0
    for c in cs:
        k = inv.reshape(-1, cs[0].shape[1])[at:at + len(c)]
        out.append(counts[:, k].mean(-1))
        at += len(c)
    return out


Side = dict  # {run: {seed: ItemScores}}


def as_side(x) -> Side:
    """ItemScores -> one run, one seed; a list -> one run, its seeds; a dict is taken as is."""
    if isinstance(x, ItemScores):
        return {"run": {0: x}}
    if isinstance(x, list):
        return {"run": dict(enumerate(x))}
    # runs and seeds in a fixed order: the replicates do not depend on the order rows were read
    return {r: dict(sorted(x[r].items(), key=lambda kv: str(kv[0]))) for r in sorted(x, key=str)}


def _units(side: Side):
    return [sc for seeds in side.values() for sc in seeds.values()]


@dataclass
class Coverage:
    """What an interval's replicates resample."""

    items: str = "items"  # "items" | "identities"
    seeds: bool = False
    runs: bool = False
    n_seeds: int = 1
    n_runs: int = 1

    def note(self) -> str:
        what = ["test " + ("identities" if self.items == "identities" else "items")]
        if self.runs:
            what.append("pre-training runs")
        elif self.seeds:
            what.append("evaluation seeds")
        out = " + ".join(what)
        if not (self.seeds or self.runs):
            out += " only"
        if not self.runs:
            out += "; one pre-training run" if self.n_runs == 1 else ""
        return out


def side_replicates(side: Side, metric: str, w: np.ndarray, pools: SpreadPools | None,
                    rng: np.random.Generator) -> tuple[float, np.ndarray, Coverage]:
    """(point, (B,) replicate values, coverage) of a side's mean over runs of its seed means."""
    pools = pools or SpreadPools()
    B = len(next(iter(w.values()))) if isinstance(w, dict) else len(w)
    runs = [list(seeds.values()) for seeds in side.values() if seeds]
    if not runs:
        raise ValueError("a side without per-item scores")
    point = float(np.mean([np.mean([sc.point()[metric] for sc in seeds]) for seeds in runs]))
    wt = (lambda sc: w[id(sc)]) if isinstance(w, dict) else (lambda sc: w)
    vals = np.mean([np.mean([sc.evaluate(wt(sc), metric) for sc in seeds], axis=0) for seeds in runs], axis=0)
    cov = Coverage(n_seeds=max(len(s) for s in runs), n_runs=len(runs))
    if len(pools.run):
        vals = vals + rng.choice(pools.run, size=(B, len(runs))).mean(1)
        cov.runs = cov.seeds = True
    elif len(pools.seed):
        noise = [rng.choice(pools.seed, size=(B, len(seeds))).mean(1) for seeds in runs]
        vals = vals + np.mean(noise, axis=0)
        cov.seeds = True
    return point, vals, cov


def _weights(units: list[ItemScores], n_boot: int, seed: int, clusters):
    """One replicate set of item weights for every unit: shared (same items), or per unit in one
    cluster space (clusters: {id(unit): cluster ids})."""
    if isinstance(clusters, dict):  # {id(unit): its (n, 2) cluster ids}, in the units' (sorted) order
        return dict(zip(map(id, units), cluster_weights([clusters[id(u)] for u in units], n_boot, seed)))
    _check_items(units)
    return item_weights(units[0].n, n_boot, seed, clusters)


def _check_items(units: list[ItemScores]) -> None:
    n = {u.n for u in units}
    if len(n) != 1:
        raise ValueError(f"paired comparison on {sorted(n)} items: not the same test items")
    ids = [u.items for u in units if u.items is not None]
    if any(not np.array_equal(ids[0], x) for x in ids[1:]):
        raise ValueError("paired comparison on different test items (item ids differ)")


def design_interval(side, metric: str, pools: SpreadPools | None = None, clusters=None, n_boot: int = N_BOOT,
                    alpha: float = ALPHA, seed: int = BOOT_SEED) -> tuple[float, float, float, Coverage]:
    """(point, lo, hi, coverage) of a side's metric under the study's design."""
    side = as_side(side)
    units = _units(side)
    w = _weights(units, n_boot, seed, clusters)
    point, vals, cov = side_replicates(side, metric, w, pools, np.random.default_rng(seed + 1))
    cov.items = "identities" if clusters is not None else "items"
    lo, hi = percentile_ci(vals, alpha)
    return point, lo, hi, cov


def paired_difference(a, b, metric: str, n_boot: int = N_BOOT, alpha: float = ALPHA, seed: int = BOOT_SEED,
                      pools_a: SpreadPools | None = None, pools_b: SpreadPools | None = None,
                      clusters=None) -> Difference:
    """metric(a) - metric(b) under the study's design: one set of item weights per replicate shared
    by every seed and run of both sides (a, b: ItemScores, a list of seeds, or {run: {seed: scores}});
    seed / run spread from the pools (pools_b defaults to pools_a). Without pools the interval covers
    the test items only (Difference.covers says what it covers)."""
    sa, sb = as_side(a), as_side(b)
    units = _units(sa) + _units(sb)
    if not _units(sa) or not _units(sb):
        raise ValueError("paired_difference needs per-item scores on each side")
    w = _weights(units, n_boot, seed, clusters)
    rng = np.random.default_rng(seed + 1)
    pa, va, ca = side_replicates(sa, metric, w, pools_a, rng)
    pb, vb, cb = side_replicates(sb, metric, w, pools_b if pools_b is not None else pools_a, rng)
    lo, hi = percentile_ci(va - vb, alpha)
    cov = Coverage("identities" if clusters is not None else "items", ca.seeds and cb.seeds, ca.runs and cb.runs,
                   max(ca.n_seeds, cb.n_seeds), max(ca.n_runs, cb.n_runs))
    return Difference(pa - pb, lo, hi, paired=True, n_seeds=max(ca.n_seeds, cb.n_seeds), covers=cov.note())


def unpaired_difference(a: float, a_ci, b: float, b_ci) -> Difference:
    """a - b from two point values and their 95 % intervals (normal approximation: each interval's
    half-width / 1.96 is a standard error; independent errors add in quadrature)."""
    se_a = (float(a_ci[1]) - float(a_ci[0])) / (2 * Z95)
    se_b = (float(b_ci[1]) - float(b_ci[0])) / (2 * Z95)
    d = float(a) - float(b)
    half = Z95 * math.sqrt(se_a**2 + se_b**2)
    return Difference(d, d - half, d + half, paired=False)


BETTER, WORSE, SAME = "better", "worse", "same within noise"
BEATS_FLOOR, NOT_ABOVE_FLOOR = "beats the floor", "does not beat the floor"


def verdict(diff: Difference, higher_is_better: bool = True) -> str:
    """THE verdict of a difference (report, SUMMARY, end-of-run table, status, Python API):
    "better" / "worse" (for a, relative to b) only when the interval of a - b excludes zero, else
    "same within noise"."""
    if not (math.isfinite(diff.lo) and math.isfinite(diff.hi)) or not diff.excludes_zero:
        return "same within noise"
    up = diff.lo > 0
    return "better" if up == bool(higher_is_better) else "worse"


# ----------------------------------------------------------------------------- floors / gain


def normalised_gain(score: float, floor: float, ceiling: float, higher_is_better: bool = True) -> float:
    """g = (score - floor) / (ceiling - floor): 0 at the floor, 1 at the ceiling, whatever the
    metric's direction (for lower-is-better metrics both differences change sign). NaN when the
    ceiling does not beat the floor in the metric's direction (the gain would be meaningless)."""
    vals = (score, floor, ceiling)
    if any(v is None or not math.isfinite(float(v)) for v in vals):
        return float("nan")
    span = float(ceiling) - float(floor)
    if span == 0 or (span > 0) != bool(higher_is_better):
        return float("nan")
    return (float(score) - float(floor)) / span


def floor_verdict(ci, floor: float, higher_is_better: bool = True) -> str | None:
    """THE floor verdict: "beats the floor" only when the score's interval excludes the floor on
    the better side, else "does not beat the floor"; None when unknown."""
    b = beats_floor(ci, floor, higher_is_better)
    return None if b is None else (BEATS_FLOOR if b else NOT_ABOVE_FLOOR)


def beats_floor(ci, floor: float, higher_is_better: bool = True) -> bool | None:
    """True when the whole interval is on the better side of the floor; None when unknown."""
    if ci is None or floor is None or not math.isfinite(float(floor)):
        return None
    lo, hi = (float(ci[0]), float(ci[1]))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return lo > floor if higher_is_better else hi < floor
