"""A split's targets read without decoding images where the split exposes them (its `targets`, a
reader's `labels` array): the classification tasks' class names and fractions, and the floors'
input-free predictors (bench_tasks.tasks._floors)."""

from __future__ import annotations

import numpy as np
import torch

from bench_tasks.contracts import TaskSplit
from bench_tasks.contracts import split_targets as declared_targets
from bench_tasks.protocols.features import split_targets


def known_targets(split: TaskSplit) -> np.ndarray | None:
    """Targets of a split without decoding images when the split exposes them (None otherwise)."""
    t = declared_targets(split)
    if t is None:  # a reader's `labels` array (SynthFace's `labels` is a dict of every label: skipped)
        lab = getattr(split, "labels", None)
        t = None if lab is None or isinstance(lab, dict) or callable(lab) or len(lab) != len(split) else lab
    if t is None:
        return None
    t = np.asarray(t)
    return t if t.ndim >= 1 else None


def target_tensor(split) -> torch.Tensor:
    """All targets of a split, stacked: without decoding images where the split exposes them, else
    by iterating the split."""
    t = known_targets(split)
    return torch.as_tensor(t) if t is not None else torch.as_tensor(split_targets(split))


def iter_targets(split):
    """The split's targets one by one, without decoding images when it exposes them."""
    t = getattr(split, "targets", None)
    if callable(t):
        yield from t()
        return
    if t is not None and len(t) == len(split):
        yield from (torch.as_tensor(x) for x in t)
        return
    for i in range(len(split)):
        yield torch.as_tensor(split[i][1])
