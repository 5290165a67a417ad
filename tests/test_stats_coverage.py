"""Coverage of the study-design bootstrap (bench_tasks.stats) on simulated studies with known truth.

Each simulated study is a cell of 5 encoders x 3 evaluation seeds scored on the same 300 test
items: score[m, s, i] = mu[m] + item[i] + seed[m, s] + noise[m, s, i], with an item effect (sd 1),
a seed effect (sd 0.3), per-item noise (sd 1). Encoders 0 and 2 have the same mu (a null
comparison); encoder 1 is 0.4 better. Over 250 studies, the 95 % interval of each comparison must
contain the true difference >= 93 % of the time and a null comparison must be called "better" /
"worse" <= 7 % of the time.

The OLD estimator (each seed's copy of the test items resampled with its own weights, the seeds'
replicates averaged, no seed spread sampled) fails this test: on these 250 studies it covers the
truth 27.8 % of the time (3-seed comparisons) and calls 72.4 % of the null comparisons different;
with one seed per side 30.4 % coverage, 68.4 % false verdicts. The new layer: 94.8 % coverage,
4.0 % false verdicts (3 seeds); 97.4 % / 2.0 % (one seed per side, the seed spread borrowed from
the other encoders of the cell). Printed by `PYTHONPATH=. python tests/test_stats_coverage.py`.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench_tasks import stats

N_STUDIES, N_ITEMS, N_ENC, N_SEEDS, N_BOOT = 250, 300, 5, 3, 400
MU = np.array([0.0, 0.4, 0.0, 0.2, -0.3])
SD_ITEM, SD_SEED, SD_NOISE = 1.0, 0.3, 1.0


def simulate(rng):
    item = rng.normal(0, SD_ITEM, N_ITEMS)
    seed = rng.normal(0, SD_SEED, (N_ENC, N_SEEDS))
    noise = rng.normal(0, SD_NOISE, (N_ENC, N_SEEDS, N_ITEMS))
    return MU[:, None, None] + item + seed[..., None] + noise


def new_intervals(y, one_seed: bool):
    """(a, b, interval) of encoder 1 - 0 and 2 - 0 under the new layer."""
    scores = [[stats.ItemScores("mean", {"v": y[m, s]}) for s in range(N_SEEDS)] for m in range(N_ENC)]
    pools = stats.spread_pools({(m, m, s): float(y[m, s].mean()) for m in range(N_ENC) for s in range(N_SEEDS)})
    out = []
    for a in (1, 2):
        sa, sb = (scores[a][:1], scores[0][1:2]) if one_seed else (scores[a], scores[0])
        d = stats.paired_difference(sa, sb, "v", n_boot=N_BOOT, pools_a=pools)
        out.append((MU[a] - MU[0], d.lo, d.hi))
    return out


def old_intervals(y, one_seed: bool, rng):
    """The old estimator: per-seed independent item weights, seed replicates averaged."""
    out = []
    for a in (1, 2):
        pairs = [(y[a, 0], y[0, 1])] if one_seed else [(y[a, s], y[0, s]) for s in range(N_SEEDS)]
        boots = []
        for xa, xb in pairs:
            w = rng.multinomial(N_ITEMS, np.full(N_ITEMS, 1 / N_ITEMS), size=N_BOOT) / N_ITEMS
            boots.append(w @ (xa - xb))
        lo, hi = np.quantile(np.mean(boots, axis=0), [0.025, 0.975])
        out.append((MU[a] - MU[0], lo, hi))
    return out


def rates(intervals):
    cover = np.mean([lo <= t <= hi for t, lo, hi in intervals])
    null = [(lo > 0 or hi < 0) for t, lo, hi in intervals if t == 0]
    return float(cover), float(np.mean(null))


def run(estimator, one_seed: bool, seed: int = 7, n_studies: int = N_STUDIES):
    rng = np.random.default_rng(seed)
    res = []
    for _ in range(n_studies):
        y = simulate(rng)
        res += new_intervals(y, one_seed) if estimator == "new" else old_intervals(y, one_seed, rng)
    return rates(res)


def test_on_a_few_studies_the_new_layer_covers_and_the_old_one_does_not():
    """The fast tier's version of the three tests below: 30 studies (60 intervals), wide margins."""
    cover, false_rate = run("new", one_seed=False, n_studies=30)
    assert cover >= 0.85 and false_rate <= 0.15, (cover, false_rate)  # 250 studies: 94.8 %, 4.0 %
    cover, false_rate = run("old", one_seed=False, n_studies=30)
    assert cover < 0.6 and false_rate > 0.4, (cover, false_rate)  # 250 studies: 27.8 %, 72.4 %


@pytest.mark.slow  # ~6 s
def test_three_seed_comparisons_cover_the_truth():
    cover, false_rate = run("new", one_seed=False)
    assert cover >= 0.93, cover
    assert false_rate <= 0.07, false_rate


@pytest.mark.slow  # ~6 s
def test_one_seed_comparisons_borrow_the_seed_spread_and_cover_the_truth():
    cover, false_rate = run("new", one_seed=True)
    assert cover >= 0.93, cover
    assert false_rate <= 0.07, false_rate


@pytest.mark.slow  # ~3 s
def test_the_old_estimator_fails_the_same_studies():
    """Guards the test itself: the simulated seed effect is large enough to matter."""
    cover, false_rate = run("old", one_seed=False)
    assert cover < 0.90 and false_rate > 0.10, (cover, false_rate)


# ----------------------------------------------------------------------------- runs and seeds together
# A study of 5 methods x 3 pre-training runs x 3 evaluation seeds on 300 items: score = item + run
# effect + seed effect + noise. The A/A check's two null comparisons of method 0, with method 0 left
# out of the pools as the check does: its run 0 at seed 1 vs seed 0 (the run effect is the same on
# both sides and must cancel; the seed spread of ONE seed per side must be covered), and its run 1
# vs run 0 with 3 seeds each. Measured with 200 studies at 1000 replicates: when the seed spread
# dominates (run sd 0.1, seed sd 0.5) the layer that drew a whole run residual for a one-seed side
# (a run mean of 3 seeds: a third of the seed variance) called 21 % of the seed comparisons
# different; drawing the run effect once per run (shared by the two sides) plus one seed draw per
# seed: 6.5 %, and 3.0 % / 3.5 % (seed / run comparisons) when the run spread dominates (0.5, 0.1).


def study_runs_seeds(rng, sd_run, sd_seed, n_meth=5, n_runs=3, n_seeds=3, n_items=300):
    item = rng.normal(0, 1.0, n_items)
    run = rng.normal(0, sd_run, (n_meth, n_runs))
    seed = rng.normal(0, sd_seed, (n_meth, n_runs, n_seeds))
    return item + run[..., None, None] + seed[..., None] + rng.normal(0, 1.0, (n_meth, n_runs, n_seeds, n_items))


def aa_false_rates(sd_run, sd_seed, n_studies, seed=11, n_boot=1000):
    rng = np.random.default_rng(seed)
    false_seed = false_run = 0
    for _ in range(n_studies):
        y = study_runs_seeds(rng, sd_run, sd_seed)
        units = {(m, r, s): float(y[m, r, s].mean()) for m in range(5) for r in range(3) for s in range(3)}
        pools = stats.spread_pools(units, exclude=(0,))

        def sc(r, s, y=y):
            return stats.ItemScores("mean", {"v": y[0, r, s]})

        d = stats.paired_difference({"run0": {1: sc(0, 1)}}, {"run0": {0: sc(0, 0)}}, "v", n_boot=n_boot, pools_a=pools)
        false_seed += d.excludes_zero
        d = stats.paired_difference({"run1": {s: sc(1, s) for s in range(3)}}, {"run0": {s: sc(0, s) for s in range(3)}},
                                    "v", n_boot=n_boot, pools_a=pools)
        false_run += d.excludes_zero
    return false_seed / n_studies, false_run / n_studies


@pytest.mark.parametrize("sd_run,sd_seed", [(0.1, 0.5), (0.5, 0.1)])
def test_aa_null_comparisons_of_seeds_and_runs_hold_their_rate(sd_run, sd_seed):
    seeds, runs = aa_false_rates(sd_run, sd_seed, n_studies=80)
    assert seeds <= 0.10 and runs <= 0.10, (seeds, runs)  # 200 studies: <= 6.5 % (the old layer: 21 %)


def test_a_run_on_both_sides_gets_one_run_effect():
    """Two seeds of one run: the run effect cancels (the interval is as wide as with no run pool but
    the seed pool); two runs: it does not."""
    y = np.random.default_rng(0).normal(0, 1, (2, 2, 200))
    sc = [[stats.ItemScores("mean", {"v": y[r, s]}) for s in range(2)] for r in range(2)]
    big_runs = stats.SpreadPools(seed=np.array([-0.1, 0.1]), run=np.array([-5.0, 5.0]), run_inv_k=0.5)
    seeds_only = stats.SpreadPools(seed=np.array([-0.1, 0.1]))
    same_run = stats.paired_difference({"r": {1: sc[0][1]}}, {"r": {0: sc[0][0]}}, "v", pools_a=big_runs)
    ref = stats.paired_difference({"r": {1: sc[0][1]}}, {"r": {0: sc[0][0]}}, "v", pools_a=seeds_only)
    assert abs((same_run.hi - same_run.lo) - (ref.hi - ref.lo)) < 0.05
    two_runs = stats.paired_difference({"a": {0: sc[1][0]}}, {"b": {0: sc[0][0]}}, "v", pools_a=big_runs)
    assert two_runs.hi - two_runs.lo > 10


if __name__ == "__main__":
    for est in ("old", "new"):
        for one in (False, True):
            c, f = run(est, one)
            print(f"{est:3s} {'1 seed ' if one else '3 seeds'}: coverage {100 * c:.1f} %, null false-verdict {100 * f:.1f} %")
