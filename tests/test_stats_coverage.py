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


if __name__ == "__main__":
    for est in ("old", "new"):
        for one in (False, True):
            c, f = run(est, one)
            print(f"{est:3s} {'1 seed ' if one else '3 seeds'}: coverage {100 * c:.1f} %, null false-verdict {100 * f:.1f} %")
