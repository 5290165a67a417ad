"""bench_tasks.stats: bootstrap intervals against closed forms, per-item statistics against the
task metrics, paired differences and their verdicts, normalised gain by hand."""

import math

import numpy as np
import pytest
import torch

from bench_tasks import stats
from bench_tasks.metrics.classification import multiclass_metrics, multilabel_metrics
from bench_tasks.metrics.parsing import scores_from_confusion


@pytest.mark.parametrize("p,n", [(0.3, 2000), (0.8, 800)])
def test_bootstrap_ci_of_a_bernoulli_mean_matches_the_normal_interval(p, n):
    rng = np.random.default_rng(1)
    x = (rng.random(n) < p).astype(float)
    phat = x.mean()
    half = 1.959964 * math.sqrt(phat * (1 - phat) / n)
    lo, hi = stats.mean_ci(x, n_boot=4000)
    # percentile bootstrap of a binomial proportion: within a few % of the half-width
    assert lo == pytest.approx(phat - half, abs=0.12 * half)
    assert hi == pytest.approx(phat + half, abs=0.12 * half)
    assert lo < phat < hi


def test_bootstrap_is_deterministic_and_weights_sum_to_n():
    w = np.concatenate(list(stats.bootstrap_weights(37, 50, seed=3, chunk_cells=200)))
    assert w.shape == (50, 37) and np.all(w.sum(1) == 37)
    x = np.arange(37.0)
    assert stats.mean_ci(x, 300) == stats.mean_ci(x, 300)


def test_multilabel_items_match_the_task_metrics():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 6, generator=g)
    y = (torch.rand(200, 6, generator=g) < torch.tensor([0.1, 0.5, 0.9, 0.3, 0.02, 0.7])).float()
    want = multilabel_metrics(logits, y)
    got = stats.multilabel_items(logits.numpy(), y.numpy()).point()
    assert got["mean_acc"] == pytest.approx(want["mean_acc"], abs=1e-4)
    assert got["balanced_acc"] == pytest.approx(want["balanced_acc"], abs=1e-4)


def test_multiclass_and_confusion_items_match_the_task_metrics():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 5, 300))
    want, _ = multiclass_metrics(torch.as_tensor(pred), torch.as_tensor(y), 5)
    got = stats.multiclass_items(pred, y, 5).point()
    assert got["acc"] == pytest.approx(want["acc"]) and got["mean_class_acc"] == pytest.approx(want["mean_class_acc"])
    cms = rng.integers(0, 20, (10, 4, 4))
    want = scores_from_confusion(cms.sum(0))
    got = stats.confusion_items(cms).point()
    for k in ("f1_mean", "miou", "pixel_acc"):
        assert got[k] == pytest.approx(want[k])


def test_paired_difference_sees_a_constant_shift_that_unpaired_intervals_hide():
    rng = np.random.default_rng(0)
    base = rng.normal(50, 20, 300)  # large per-item spread
    a = stats.ItemScores("mean", {"acc": base + 1.0})
    b = stats.ItemScores("mean", {"acc": base})
    d = stats.paired_difference(a, b, "acc")
    assert d.paired and d.delta == pytest.approx(1.0) and d.lo == pytest.approx(1.0) and d.hi == pytest.approx(1.0)
    assert stats.verdict(d, higher_is_better=True) == "better"
    assert stats.verdict(d, higher_is_better=False) == "worse"  # e.g. +1 NME
    u = stats.unpaired_difference(a.point()["acc"], a.ci()["acc"], b.point()["acc"], b.ci()["acc"])
    assert not u.paired and u.lo < 0 < u.hi
    assert stats.verdict(u) == "not shown"


def test_paired_difference_of_noise_is_same_within_noise_and_checks_items():
    rng = np.random.default_rng(2)
    a = stats.ItemScores("mean", {"acc": 100.0 * (rng.random(400) < 0.7)}, items=np.arange(400))
    b = stats.ItemScores("mean", {"acc": 100.0 * (rng.random(400) < 0.7)}, items=np.arange(400))
    d = stats.paired_difference(a, b, "acc")
    assert d.lo < d.delta < d.hi
    assert stats.verdict(stats.Difference(0.5, -0.2, 1.2, True)) == "not shown"
    c = stats.ItemScores("mean", {"acc": np.zeros(400)}, items=np.arange(1, 401))
    with pytest.raises(ValueError, match="different test items"):
        stats.paired_difference(a, c, "acc")


def test_normalised_gain_by_hand():
    assert stats.normalised_gain(60, 50, 90) == pytest.approx(0.25)
    assert stats.normalised_gain(50, 50, 90) == 0.0 and stats.normalised_gain(90, 50, 90) == 1.0
    # NME (lower is better): floor 26, ceiling 8, score 20 -> 6 / 18
    assert stats.normalised_gain(20, 26, 8, higher_is_better=False) == pytest.approx(1 / 3)
    assert stats.normalised_gain(30, 26, 8, higher_is_better=False) == pytest.approx(-4 / 18)
    # a ceiling that does not beat the floor gives no gain
    assert math.isnan(stats.normalised_gain(60, 50, 40))
    assert math.isnan(stats.normalised_gain(10, 26, 30, higher_is_better=False))


def test_beats_floor_orientation():
    assert stats.beats_floor([51, 55], 50) is True
    assert stats.beats_floor([49, 55], 50) is False
    assert stats.beats_floor([20, 24], 26, higher_is_better=False) is True
    assert stats.beats_floor([20, 27], 26, higher_is_better=False) is False
    assert stats.beats_floor(None, 26) is None


def test_item_scores_roundtrip(tmp_path):
    s = stats.multiclass_items(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]), 3)
    s.items = np.array([5, 6, 7, 8])
    t = stats.ItemScores.load(s.save(tmp_path / "items.npz"))
    assert t.statistic == "multiclass" and np.array_equal(t.items, s.items)
    assert t.point() == pytest.approx(s.point()) and t.ci(200) == s.ci(200)
