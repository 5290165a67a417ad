"""Verification metrics against hand-worked examples."""

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from bench_tasks.metrics.verification import (
    best_threshold,
    combine_flip,
    cosine_scores,
    far_name,
    lfw_folds,
    roc_auc,
    tar_at_far,
    ten_fold_accuracy,
    verification_metrics,
)


def test_lfw_folds_are_contiguous_blocks():
    folds = lfw_folds(600, 10)
    assert [f[0] for f in folds] == list(range(0, 600, 60))
    assert all(len(f) == 60 for f in folds)
    assert np.array_equal(np.concatenate(folds), np.arange(600))


def test_hand_worked_two_fold_example():
    # fold A = pairs 0-2, fold B = pairs 3-5 (see docs/recognition.md for the worked example)
    scores = [0.9, 0.8, 0.3, 0.7, 0.2, 0.1]
    same = [True, True, False, True, False, True]
    # training on B: candidates -inf, 0.15, 0.45, inf -> acc 2/3, 1/3, 2/3, 1/3; median maximiser 0.45
    assert best_threshold(scores[3:], same[3:]) == pytest.approx((0.45, 2 / 3))
    r = ten_fold_accuracy(scores, same, n_folds=2)
    assert r["thresholds"] == pytest.approx([0.45, 0.55])
    assert r["fold_acc"] == pytest.approx([100.0, 200 / 3])
    assert r["acc"] == pytest.approx(250 / 3)  # 83.33 %


def _separable(n_id=40, per_id=5, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:n_id]
    ident = np.repeat(np.arange(n_id), per_id)
    emb = centres[ident] + 0.05 * rng.normal(size=(len(ident), dim))
    pairs = []
    for i in range(len(ident)):
        for j in range(i + 1, len(ident)):
            pairs.append((i, j, ident[i] == ident[j]))
    pairs = np.array(pairs)
    same_p, diff_p = pairs[pairs[:, 2] == 1], pairs[pairs[:, 2] == 0]
    diff_p = diff_p[rng.choice(len(diff_p), len(same_p), replace=False)]
    sel = np.concatenate([same_p, diff_p])
    sel = sel[rng.permutation(len(sel))]
    return emb, sel[:, 0], sel[:, 1], sel[:, 2].astype(bool)


def test_perfectly_separable_embeddings():
    emb, i1, i2, same = _separable()
    s = cosine_scores(torch.as_tensor(emb), i1, i2)
    m = verification_metrics(s, same)
    assert m["acc"] == 100.0 and m["auc"] == 1.0
    assert m["tar@far=1e-3"] == 1.0 and m["tar@far=1e-2"] == 1.0
    assert m["far_resolution"] == pytest.approx(1 / (~same).sum())


def test_shuffled_flags_give_chance():
    emb, i1, i2, same = _separable(n_id=60, per_id=6)
    s = cosine_scores(emb, i1, i2)
    shuffled = np.random.default_rng(1).permutation(same)
    m = verification_metrics(s, shuffled)
    assert 40 < m["acc"] < 60
    assert 0.4 < m["auc"] < 0.6


def test_tar_at_far_hand_made():
    neg = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.95]
    pos = [0.99, 0.9, 0.85, 0.75, 0.5]
    s, y = neg + pos, [False] * 10 + [True] * 5
    r = tar_at_far(s, y, 0.1)  # k = 1 impostor allowed: threshold 0.8
    assert (r["threshold"], r["tar"], r["far"]) == (0.8, 0.6, 0.1)
    r = tar_at_far(s, y, 0.25)  # k = floor(2.5) = 2: threshold 0.7
    assert (r["threshold"], r["tar"], r["far"]) == (0.7, 0.8, 0.2)
    r = tar_at_far(s, y, 1e-3)  # below the 1/10 resolution: TAR at FAR = 0
    assert (r["threshold"], r["tar"], r["far"], r["resolution"]) == (0.95, 0.2, 0.0, 0.1)
    assert tar_at_far(s, y, 1.0)["tar"] == 1.0


def test_auc_hand_worked_and_matches_torchmetrics():
    # pos 0.9, 0.5 vs neg 0.5, 0.1: 1 + 1 + 0.5 (tie) + 1 over 4
    assert roc_auc([0.9, 0.5, 0.5, 0.1], [True, True, False, False]) == pytest.approx(0.875)
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=300).round(1), rng.random(300) < 0.5
    s = (s + y * 0.5).astype(np.float32)  # float32: torchmetrics compares in float32
    ref = binary_auroc(torch.as_tensor(s), torch.as_tensor(y).long()).item()
    assert roc_auc(s, y) == pytest.approx(ref, abs=1e-6)


def test_flip_sum_before_normalising():
    a = torch.tensor([[3.0, 0.0]])
    b = torch.tensor([[0.0, 1.0]])
    out = combine_flip(a, b)
    assert torch.allclose(out, torch.tensor([[3.0, 1.0]]) / 10 ** 0.5)
    assert torch.allclose(combine_flip(a, None), torch.tensor([[1.0, 0.0]]))


def test_far_names():
    assert far_name(1e-3) == "1e-3" and far_name(1e-2) == "1e-2" and far_name(1e-4) == "1e-4"
