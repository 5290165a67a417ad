"""Verification pair lists: construction from identity labels, and hard-condition pair sets.

A `Pairs` is (idx1, idx2, issame) over the items of one split, in *fold order*: the list is made
of `n_folds` contiguous blocks, each holding its share of genuine pairs followed by its share of
impostor pairs (the layout of LFW's pairs.txt), so `metrics.verification.ten_fold_accuracy`'s
contiguous folds are balanced.

`make_pairs(identity, n_pairs, seed)` draws a balanced, seeded pair list from identity labels:
genuine pairs uniformly from all same-identity pairs (every unordered pair i < j of one
identity), impostor pairs uniformly among different-identity pairs (rejection sampling).
`condition` restricts both kinds to pairs (i, j) where condition(i, j) holds, which is how the
hard sets are built (each keeps its *own* impostor pairs under the same condition):

* ``pose``: |yaw_i - yaw_j| >= the 75th percentile of |yaw difference| over the split's
  genuine pairs (the threshold in degrees is stored in the pair set's info);
* ``expression``: different expression labels;
* ``occlusion``: exactly one of the two images occluded;
* ``lighting``: |illum_strength_i - illum_strength_j| >= the 75th percentile of that difference
  over the split's genuine pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

HARD_QUANTILE = 0.75


@dataclass
class Pairs:
    idx1: np.ndarray
    idx2: np.ndarray
    issame: np.ndarray
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.issame)

    def __post_init__(self):
        self.idx1 = np.asarray(self.idx1, dtype=np.int64)
        self.idx2 = np.asarray(self.idx2, dtype=np.int64)
        self.issame = np.asarray(self.issame, dtype=bool)
        if not len(self.idx1) == len(self.idx2) == len(self.issame):
            raise ValueError("idx1, idx2 and issame must have the same length")


def genuine_pairs(identity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All unordered same-identity pairs (i < j)."""
    identity = np.asarray(identity)
    order = np.argsort(identity, kind="stable")
    ids = identity[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    a, b = [], []
    for s, e in zip(starts, ends):
        members = np.sort(order[s:e])
        if len(members) < 2:
            continue
        ii, jj = np.triu_indices(len(members), k=1)
        a.append(members[ii])
        b.append(members[jj])
    if not a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(a), np.concatenate(b)


def _impostor_pairs(identity, k, rng, condition, max_rounds=50):
    n = len(identity)
    got1, got2, seen = [], [], set()
    for _ in range(max_rounds):
        if len(got1) >= k:
            break
        m = max(256, 4 * (k - len(got1)))
        i, j = rng.integers(0, n, m), rng.integers(0, n, m)
        i, j = np.minimum(i, j), np.maximum(i, j)
        ok = identity[i] != identity[j]
        if condition is not None:
            ok &= condition(i, j)
        for a, b in zip(i[ok], j[ok]):
            if (a, b) not in seen:
                seen.add((a, b))
                got1.append(a)
                got2.append(b)
                if len(got1) >= k:
                    break
    return np.asarray(got1, np.int64), np.asarray(got2, np.int64)


def fold_order(g1, g2, i1, i2, n_folds: int) -> Pairs:
    """Interleave genuine and impostor pairs into `n_folds` contiguous blocks (genuine first)."""
    parts1, parts2, flags = [], [], []
    for gs, is_ in zip(np.array_split(np.arange(len(g1)), n_folds), np.array_split(np.arange(len(i1)), n_folds)):
        parts1 += [g1[gs], i1[is_]]
        parts2 += [g2[gs], i2[is_]]
        flags += [np.ones(len(gs), bool), np.zeros(len(is_), bool)]
    return Pairs(np.concatenate(parts1), np.concatenate(parts2), np.concatenate(flags))


def make_pairs(identity, n_pairs: int, seed: int, condition: Callable | None = None,
               n_folds: int = 10, name: str = "all") -> Pairs:
    """Balanced seeded pairs: min(n_pairs // 2, available genuine pairs) of each kind."""
    identity = np.asarray(identity)
    rng = np.random.default_rng(seed)
    g1, g2 = genuine_pairs(identity)
    if condition is not None and len(g1):
        keep = condition(g1, g2)
        g1, g2 = g1[keep], g2[keep]
    k = min(n_pairs // 2, len(g1))
    if k < len(g1):
        sel = np.sort(rng.choice(len(g1), k, replace=False))
        g1, g2 = g1[sel], g2[sel]
    i1, i2 = _impostor_pairs(identity, k, rng, condition)
    k = min(k, len(i1))
    if k < len(g1):  # fewer impostor pairs satisfy the condition: stay balanced
        sel = np.sort(rng.choice(len(g1), k, replace=False))
        g1, g2 = g1[sel], g2[sel]
    perm_g, perm_i = rng.permutation(k), rng.permutation(k)
    pairs = fold_order(g1[perm_g], g2[perm_g], i1[perm_i], i2[perm_i], max(1, min(n_folds, k)))
    pairs.info.update(name=name, seed=seed, n_genuine=int(k), n_impostor=int(k))
    return pairs


def _quantile_threshold(values: np.ndarray, identity: np.ndarray, q: float) -> float:
    g1, g2 = genuine_pairs(identity)
    if len(g1) == 0:
        return float("inf")
    return float(np.quantile(np.abs(values[g1] - values[g2]), q))


def hard_conditions(labels: dict[str, np.ndarray], identity: np.ndarray,
                    quantile: float = HARD_QUANTILE) -> dict[str, tuple[Callable, dict]]:
    """{name: (condition(i, j) -> bool array, info)} for the hard sets the labels allow.
    labels: per-image arrays; uses yaw, expression, occluded, illum_strength when present."""
    conds: dict[str, tuple[Callable, dict]] = {}
    if "yaw" in labels:
        yaw = np.asarray(labels["yaw"], dtype=np.float64)
        t = _quantile_threshold(yaw, identity, quantile)
        conds["pose"] = (lambda i, j, yaw=yaw, t=t: np.abs(yaw[i] - yaw[j]) >= t,
                         {"yaw_diff_min_deg": t})
    if "expression" in labels:
        ex = np.asarray(labels["expression"])
        conds["expression"] = (lambda i, j, ex=ex: ex[i] != ex[j], {})
    if "occluded" in labels:
        occ = np.asarray(labels["occluded"]).astype(bool)
        conds["occlusion"] = (lambda i, j, occ=occ: occ[i] != occ[j], {"rule": "exactly one occluded"})
    if "illum_strength" in labels:
        il = np.asarray(labels["illum_strength"], dtype=np.float64)
        t = _quantile_threshold(il, identity, quantile)
        conds["lighting"] = (lambda i, j, il=il, t=t: np.abs(il[i] - il[j]) >= t,
                             {"illum_strength_diff_min": t})
    return conds


def make_pair_sets(identity, labels: dict[str, np.ndarray] | None, n_pairs: int, n_hard_pairs: int,
                   seed: int, n_folds: int = 10) -> dict[str, Pairs]:
    """{"all": balanced pairs, "<hard set>": balanced pairs under the condition, ...}."""
    identity = np.asarray(identity)
    sets = {"all": make_pairs(identity, n_pairs, seed, n_folds=n_folds)}
    for k, (name, (cond, info)) in enumerate(hard_conditions(labels or {}, identity).items()):
        p = make_pairs(identity, n_hard_pairs, seed + 1000 * (k + 1), condition=cond, n_folds=n_folds, name=name)
        p.info.update(info)
        sets[name] = p
    return sets


# ----------------------------------------------------------------------------- identity clusters
# Verification pairs are not independent samples: ~1,000 images of ~100 identities make thousands
# of pairs. The bootstrap (bench_tasks.stats.item_weights) resamples identities: every pair that
# touches a drawn identity goes with it. The rows store pair ids only (idx1 * PAIR_ID_BASE + idx2),
# so the identities are recovered from the pair list itself: images joined by genuine pairs are one
# identity (connected components; an image seen only in impostor pairs is a cluster of its own).

PAIR_ID_BASE = 1_000_003  # bench_tasks.tasks.recognition.pair_items


def decode_pair_ids(ids) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64)
    return ids // PAIR_ID_BASE, ids % PAIR_ID_BASE


def layout_issame(n: int, n_folds: int = 10) -> np.ndarray:
    """The is-same flags of a balanced pair list in fold order (`fold_order`: each of n_folds blocks
    holds its share of genuine pairs, then as many impostor pairs)."""
    if n % 2:
        raise ValueError(f"{n} pairs: a balanced pair list has an even length")
    k = n // 2
    flags = [np.r_[np.ones(len(g), bool), np.zeros(len(g), bool)]
             for g in np.array_split(np.arange(k), max(1, min(n_folds, k)))]
    return np.concatenate(flags)


def identity_clusters(idx1, idx2, issame) -> np.ndarray:
    """(n, 2) cluster ids of each pair's two images: connected components of the genuine pairs.
    Raises ValueError when an impostor pair joins two images of one component (the flags do not
    match the pairs)."""
    idx1, idx2 = np.asarray(idx1, np.int64), np.asarray(idx2, np.int64)
    issame = np.asarray(issame, bool)
    # lazy: scipy.sparse only where verification pairs are clustered
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    images, inv = np.unique(np.r_[idx1, idx2], return_inverse=True)
    a, b = inv[: len(idx1)], inv[len(idx1):]
    g = coo_matrix((np.ones(int(issame.sum())), (a[issame], b[issame])), shape=(len(images), len(images)))
    _, comp = connected_components(g, directed=False)
    ca, cb = comp[a], comp[b]
    if np.any(ca[~issame] == cb[~issame]):
        raise ValueError("an impostor pair joins two images of one genuine-pair component: the is-same flags "
                         "do not belong to these pairs")
    return np.stack([ca, cb], axis=1)


def clusters_from_pair_ids(ids, n_folds: int = 10) -> np.ndarray | None:
    """Identity clusters of a stored pair list (its ids and the balanced fold layout), or None when
    the ids do not decode to a consistent balanced pair list."""
    try:
        i1, i2 = decode_pair_ids(ids)
        return identity_clusters(i1, i2, layout_issame(len(i1), n_folds))
    except ValueError:
        return None


def shared_clusters(id_lists, n_folds: int = 10) -> list[np.ndarray] | None:
    """Identity clusters in ONE cluster space for several stored pair lists over the same images
    (e.g. each evaluation seed draws its own pairs): genuine pairs of every list join images, so a
    drawn identity weighs the same in every list. None when a list does not decode consistently."""
    try:
        dec = [decode_pair_ids(ids) for ids in id_lists]
        flags = [layout_issame(len(i1), n_folds) for i1, _ in dec]
        i1 = np.concatenate([d[0] for d in dec])
        i2 = np.concatenate([d[1] for d in dec])
        c = identity_clusters(i1, i2, np.concatenate(flags))
    except ValueError:
        return None
    bounds = np.cumsum([0] + [len(d[0]) for d in dec])
    return [c[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
