"""The identity-cluster bootstrap of verification pairs, worked by hand on a small fixture."""

from __future__ import annotations

import numpy as np
import pytest

from bench_tasks import stats
from bench_tasks.stats import pairs

# 6 images, identities A = {0, 1}, B = {2, 3}, C = {4, 5}: genuine pairs (0,1) (2,3) (4,5), impostor
# pairs (0,2) (1,4) (3,5), in the fold layout of one fold (genuine first)
IDX1 = np.array([0, 2, 4, 0, 1, 3])
IDX2 = np.array([1, 3, 5, 2, 4, 5])
SAME = np.array([True, True, True, False, False, False])


def test_clusters_are_the_identities():
    c = pairs.identity_clusters(IDX1, IDX2, SAME)
    a, b, cc = c[0, 0], c[1, 0], c[2, 0]
    assert len({a, b, cc}) == 3
    assert c.tolist() == [[a, a], [b, b], [cc, cc], [a, b], [a, cc], [b, cc]]


def test_an_impostor_inside_a_component_is_refused():
    with pytest.raises(ValueError, match="impostor pair joins"):
        pairs.identity_clusters([0, 0], [1, 1], [True, False])


def test_every_pair_touching_a_drawn_identity_goes_with_it():
    c = pairs.identity_clusters(IDX1, IDX2, SAME)
    w = stats.item_weights(6, n_boot=200, seed=1, clusters=c)
    # identity counts k_A, k_B, k_C (sum 3); genuine pair weight = its identity's count, impostor = the mean
    kA, kB, kC = w[:, 0], w[:, 1], w[:, 2]
    assert np.allclose(kA + kB + kC, 3)
    assert np.allclose(w[:, 3], (kA + kB) / 2) and np.allclose(w[:, 4], (kA + kC) / 2)
    assert np.allclose(w[:, 5], (kB + kC) / 2)
    # a replicate that draws A three times: only A's pairs and half of the impostors touching A
    row = np.flatnonzero(np.isclose(kA, 3))
    assert len(row), "200 draws of 3 identities include A, A, A"
    assert np.allclose(w[row[0]], [3, 0, 0, 1.5, 1.5, 0])


def test_the_mean_is_normalised_by_the_replicate_weights():
    # correctness 100 on A's pairs, 0 elsewhere: drawing A three times gives (3*100 + 1.5*0 + 1.5*0) / 6
    sc = stats.ItemScores("mean", {"acc": np.array([100.0, 0, 0, 0, 0, 0])})
    w = np.array([[3, 0, 0, 1.5, 1.5, 0], [1, 1, 1, 1, 1, 1.0]])
    assert sc.evaluate(w, "acc").tolist() == pytest.approx([50.0, 100 / 6])


def test_stored_pair_ids_decode_to_the_same_clusters():
    ids = IDX1 * pairs.PAIR_ID_BASE + IDX2
    # fold layout of 1 fold: genuine first, then impostors
    assert pairs.layout_issame(6, n_folds=1).tolist() == SAME.tolist()
    c = pairs.clusters_from_pair_ids(ids, n_folds=1)
    assert (c == pairs.identity_clusters(IDX1, IDX2, SAME)).all()
    # a layout that does not fit the pairs is not used
    # a layout that does not fit the pairs is not used: "genuine" (0,1) (0,2) make 1 and 2 one
    # identity, and the "impostor" (1,2) contradicts it
    bad = np.array([0, 0, 4, 1, 1, 3]) * pairs.PAIR_ID_BASE + np.array([1, 2, 5, 2, 4, 5])
    assert pairs.clusters_from_pair_ids(bad, n_folds=1) is None


def test_identity_intervals_are_wider_than_pair_intervals_when_identities_share_errors():
    rng = np.random.default_rng(0)
    ident = np.repeat(np.arange(40), 10)
    ps = pairs.make_pairs(ident, 2000, seed=0)
    c = pairs.identity_clusters(ps.idx1, ps.idx2, ps.issame)
    hard = rng.random(40) < 0.5  # half the identities are hard: their pairs are mostly wrong
    p_ok = np.where(hard[ident[ps.idx1]] | hard[ident[ps.idx2]], 0.6, 0.95)
    sc = stats.ItemScores("mean", {"acc": 100.0 * (rng.random(len(ps)) < p_ok)})
    _, lo_p, hi_p, _ = stats.design_interval(sc, "acc")
    _, lo_i, hi_i, cov = stats.design_interval(sc, "acc", clusters=c)
    assert cov.items == "identities" and "identities" in cov.note()
    assert (hi_i - lo_i) > 1.5 * (hi_p - lo_p)
