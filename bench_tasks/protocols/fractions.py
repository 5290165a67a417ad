"""Seeded low-data subsets of a training split (e.g. 1%, 10%, 100%)."""

from __future__ import annotations

import numpy as np


def subset_indices(n: int, fraction: float, seed: int, labels: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of round(n * fraction) items (at least 1), the same for the same seed.
    With `labels` (one class per item), every class keeps at least one item when possible."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return np.arange(n)
    k = max(1, int(round(n * fraction)))
    rng = np.random.default_rng([seed, int(fraction * 1e6)])
    if labels is None:
        return np.sort(rng.choice(n, size=k, replace=False))
    labels = np.asarray(labels)
    first = [rng.choice(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    first = np.array(first[:k], dtype=int)
    rest = np.setdiff1d(np.arange(n), first)
    extra = rng.choice(rest, size=max(0, k - len(first)), replace=False)
    return np.sort(np.concatenate([first, extra]))
