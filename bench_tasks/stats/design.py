"""Comparisons of rows: paired and unpaired differences under the study's design (items, evaluation
seeds and pre-training runs resampled together), THE verdict of a difference, the floor verdict
built on it, and the normalised gain (score - floor) / (ceiling - floor).

    paired_difference(a, b, "acc")        -> Difference(delta, lo, hi, paired=True, eq_lo, eq_hi)
    verdict(diff, higher_is_better, margin)
        -> "better" | "worse"   the 95 % interval of a - b excludes zero
        -> "the same"           equivalence shown: two one-sided tests at 5 % each (TOST), i.e. the
                                90 % interval of a - b inside (-margin, +margin)
        -> "not shown"          neither (a wide interval across zero is NOT "the same")
    floor_verdict(score - floor)          -> "beats the floor" only when verdict(...) is "better"
    normalised_gain(score, floor, ceiling) = (score - floor) / (ceiling - floor)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import t as student_t

from bench_tasks.stats.scores import (
    ALPHA,
    BOOT_SEED,
    N_BOOT,
    Z95,
    ItemScores,
    bootstrap_weights,
    percentile_ci,
)

BETTER, WORSE, SAME, NOT_SHOWN = "better", "worse", "the same", "not shown"
BEATS_FLOOR, NOT_ABOVE_FLOOR = "beats the floor", "does not beat the floor"
Z90 = 1.6448536269514722  # the one-sided 5 % normal quantile: the TOST interval of an unpaired difference


@dataclass
class Difference:
    """a - b of one metric: point difference and its (1 - alpha) interval."""

    delta: float
    lo: float
    hi: float
    paired: bool
    n_seeds: int = 1
    covers: str = "test items only"  # what the interval resamples (Coverage.note)
    # the (1 - 2 alpha) interval of the same replicates: the two one-sided tests of equivalence (TOST)
    # at alpha each; None = not computed, the (wider) 1 - alpha interval stands in (conservative)
    eq_lo: float | None = None
    eq_hi: float | None = None

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
#      >= 2 seeds: value - its seed mean, scaled by sqrt(k / (k - 1)); only the encoders of methods
#      with >= 2 pre-training runs when there are any, so that both components come from the same
#      encoders), so a single-seed side still
#      carries the spread seeds show elsewhere in the study; no pool (no encoder has 2 seeds): the
#      interval covers items only, and says so;
#   3. pre-training runs: each run of a side gets one draw of the *run* effect, from the pool of run
#      residuals (methods with >= 2 runs: per-run seed-mean minus the method's mean, scaled) shrunk
#      by the part of their variance their own seeds explain (a run mean of k seeds carries the
#      seed variance / k: variance components), plus its k seeds' draws as in step 2. A run that
#      is on both sides (the same encoder at two evaluation seeds) gets the same run draw on both,
#      so it cancels as it does in the true difference. No pool: the interval covers one
#      pre-training run, and says so.


@dataclass
class SpreadPools:
    """Residual pools of one cell and metric (see above); empty arrays = not measured."""

    seed: np.ndarray = field(default_factory=lambda: np.zeros(0))
    run: np.ndarray = field(default_factory=lambda: np.zeros(0))
    run_inv_k: float = 1.0  # mean of 1 / (seeds of a run) over the runs behind `run`

    def pure_run(self) -> np.ndarray:
        """The run residuals shrunk to the run effect alone: their variance less the seed variance
        their own seed means carry (seed variance x mean 1/k), never below zero."""
        if not len(self.run) or not len(self.seed):
            return self.run
        v_run, v_seed = float(np.mean(self.run ** 2)), float(np.mean(self.seed ** 2))
        if v_run <= 0:
            return self.run
        return self.run * math.sqrt(max(0.0, 1.0 - v_seed * self.run_inv_k / v_run))


def residual_pool(groups, alpha: float = ALPHA) -> np.ndarray:
    """Scaled residuals (value - group mean) * sqrt(k / (k - 1)) of every group with k >= 2 finite
    values (each residual's variance is then the between-unit variance), times t(df) / z (df: the
    pool's degrees of freedom, sum of k - 1), the small-sample allowance of a t interval: a spread
    estimated from a few seeds is itself uncertain."""
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
    by_run, by_method, inv_k = {}, {}, {}
    for (m, r, _s), v in sorted(units.items(), key=lambda kv: tuple(map(str, kv[0]))):
        if m in exclude:
            continue
        by_run.setdefault((m, r), []).append(v)
    for (m, _r), vs in by_run.items():
        by_method.setdefault(m, []).append(float(np.mean(vs)))
        inv_k.setdefault(m, []).append(1.0 / len(vs))
    replicated = {m for m, means in by_method.items() if len(means) >= 2}
    in_pool = [x for m in replicated for x in inv_k[m]]
    # the two variance components from the same encoders: with methods of >= 2 runs, their seeds
    # give the seed component (an encoder whose seeds vary far more, e.g. random init's, does not
    # widen every comparison of the cell); without, every encoder's seeds
    seed_groups = [vs for (m, _r), vs in by_run.items() if m in replicated] if replicated else by_run.values()
    return SpreadPools(residual_pool(seed_groups), residual_pool(by_method.values()),
                       float(np.mean(in_pool)) if in_pool else 1.0)


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
            what.append("pre-training runs" + (" (with their evaluation seeds)" if self.seeds else ""))
        elif self.seeds:
            what.append("evaluation seeds")
        out = " + ".join(what)
        if not (self.seeds or self.runs):
            out += " only"
        if not self.runs:
            out += "; one pre-training run" if self.n_runs == 1 else ""
        return out


def side_replicates(side: Side, metric: str, w: np.ndarray, pools: SpreadPools | None,
                    rng: np.random.Generator, run_draws: dict | None = None) -> tuple[float, np.ndarray, Coverage]:
    """(point, (B,) replicate values, coverage) of a side's mean over runs of its seed means.
    `run_draws` ({run: (B,) draws}) is shared by the two sides of a comparison, so a run on both
    sides gets one run effect."""
    pools = pools or SpreadPools()
    run_draws = {} if run_draws is None else run_draws
    B = len(next(iter(w.values()))) if isinstance(w, dict) else len(w)
    runs = [(run, list(seeds.values())) for run, seeds in side.items() if seeds]
    if not runs:
        raise ValueError("a side without per-item scores")
    point = float(np.mean([np.mean([sc.point()[metric] for sc in seeds]) for _, seeds in runs]))
    wt = (lambda sc: w[id(sc)]) if isinstance(w, dict) else (lambda sc: w)
    vals = np.mean([np.mean([sc.evaluate(wt(sc), metric) for sc in seeds], axis=0) for _, seeds in runs], axis=0)
    cov = Coverage(n_seeds=max(len(s) for _, s in runs), n_runs=len(runs))
    noise = np.zeros(B)
    if len(pools.run):
        pure = pools.pure_run()
        for run, _ in runs:
            if run not in run_draws:
                run_draws[run] = rng.choice(pure, size=B)
            noise = noise + run_draws[run] / len(runs)
        cov.runs = cov.seeds = True
    if len(pools.seed):
        noise = noise + np.mean([rng.choice(pools.seed, size=(B, len(seeds))).mean(1) for _, seeds in runs], axis=0)
        cov.seeds = True
    return point, vals + noise, cov


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
    draws: dict = {}  # one run effect per run, whichever side it is on
    pa, va, ca = side_replicates(sa, metric, w, pools_a, rng, draws)
    pb, vb, cb = side_replicates(sb, metric, w, pools_b if pools_b is not None else pools_a, rng, draws)
    lo, hi = percentile_ci(va - vb, alpha)
    eq_lo, eq_hi = percentile_ci(va - vb, 2 * alpha)
    cov = Coverage("identities" if clusters is not None else "items", ca.seeds and cb.seeds, ca.runs and cb.runs,
                   max(ca.n_seeds, cb.n_seeds), max(ca.n_runs, cb.n_runs))
    return Difference(pa - pb, lo, hi, paired=True, n_seeds=max(ca.n_seeds, cb.n_seeds), covers=cov.note(),
                      eq_lo=eq_lo, eq_hi=eq_hi)


def unpaired_difference(a: float, a_ci, b: float, b_ci) -> Difference:
    """a - b from two point values and their 95 % intervals (normal approximation: each interval's
    half-width / 1.96 is a standard error; independent errors add in quadrature)."""
    se_a = (float(a_ci[1]) - float(a_ci[0])) / (2 * Z95)
    se_b = (float(b_ci[1]) - float(b_ci[0])) / (2 * Z95)
    d = float(a) - float(b)
    se = math.sqrt(se_a**2 + se_b**2)
    return Difference(d, d - Z95 * se, d + Z95 * se, paired=False, eq_lo=d - Z90 * se, eq_hi=d + Z90 * se)


def equivalent(diff: Difference, margin: float | None) -> bool:
    """Equivalence within +-margin by two one-sided tests (TOST) at alpha each: H0 a - b <= -margin
    and H0 a - b >= +margin are both rejected, i.e. the (1 - 2 alpha) interval of a - b lies inside
    (-margin, +margin). False without a margin or an interval."""
    if margin is None or not math.isfinite(float(margin)) or float(margin) <= 0:
        return False
    lo = diff.eq_lo if diff.eq_lo is not None else diff.lo
    hi = diff.eq_hi if diff.eq_hi is not None else diff.hi
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return False
    return -float(margin) < lo and hi < float(margin)


def verdict(diff: Difference, higher_is_better: bool = True, margin: float | None = None) -> str:
    """THE verdict of a difference a - b (report tables, SUMMARY.md, the floor marks, the ablation
    table, the end-of-run table, the Python API):
      "better" / "worse" (a relative to b) when the 95 % interval of a - b excludes zero;
      "the same" when equivalence within +-margin is shown by two one-sided tests (`equivalent`);
      "not shown" otherwise: no difference shown, and no equivalence either (a wide interval across
      zero, no interval, or no margin declared for the metric: bench_tasks.stats.margins)."""
    if not (math.isfinite(diff.lo) and math.isfinite(diff.hi)):
        return NOT_SHOWN
    if diff.excludes_zero:
        up = diff.lo > 0
        return BETTER if up == bool(higher_is_better) else WORSE
    return SAME if equivalent(diff, margin) else NOT_SHOWN


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


def floor_difference(ci, floor: float) -> Difference | None:
    """score - floor from the score's interval alone, the floor taken as exact (for rows without
    per-item scores; with them, compare the two rows: paired_difference(score, floor rows))."""
    if ci is None or floor is None or not math.isfinite(float(floor)):
        return None
    lo, hi = (float(ci[0]), float(ci[1]))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return Difference((lo + hi) / 2 - float(floor), lo - float(floor), hi - float(floor), paired=False)


def floor_verdict(x, floor: float | None = None, higher_is_better: bool = True) -> str | None:
    """THE floor verdict (the report's †, SUMMARY.md, the calibration, the end-of-run table):
    "beats the floor" only when `verdict(score - floor)` is "better", else "does not beat the floor";
    None when unknown. x: the Difference score - floor (paired over the same test items: the floor's
    own noise counts), or the score's interval with `floor` (the floor taken as exact)."""
    d = x if isinstance(x, Difference) else floor_difference(x, floor)
    if d is None:
        return None
    return BEATS_FLOOR if verdict(d, higher_is_better) == BETTER else NOT_ABOVE_FLOOR


def beats_floor(x, floor: float | None = None, higher_is_better: bool = True) -> bool | None:
    """floor_verdict as a bool (None when unknown)."""
    v = floor_verdict(x, floor, higher_is_better)
    return None if v is None else v == BEATS_FLOOR
