"""The splits recognition trains and evaluates on: per-item identities and nuisance labels read from
whatever a reader exposes, and the subset / flipped / relabelled views of a split."""

from __future__ import annotations

import numpy as np

from bench_tasks.contracts import TaskSplit

# label names looked up on a split (first hit wins) for the hard pair sets
_LABEL_KEYS = ("yaw", "pitch", "roll", "expression", "occluded", "illum_strength")


def _labels_source(split) -> list:
    out = [split]
    for attr in ("labels", "raw", "nuisance", "data", "source"):
        v = getattr(split, attr, None)
        if v is not None:
            out.append(v)
            if isinstance(v, dict) and isinstance(v.get("nuisance"), dict):
                out.append(v["nuisance"])
            if getattr(v, "nuisance", None) is not None:
                out.append(v.nuisance)
    return out


def _lookup(split, key: str):
    n = len(split)
    for src in _labels_source(split):
        v = src.get(key) if isinstance(src, dict) else getattr(src, key, None)
        if v is not None and not callable(v):
            arr = np.asarray(v)
            if arr.ndim >= 1 and len(arr) == n:
                return arr
    return None


def split_identity(split) -> np.ndarray:
    """Per-item identity labels of a split (attribute lookup; iterating the split as a last resort)."""
    ident = _lookup(split, "identity")
    if ident is None:
        ident = np.array([int(split[i][1]) for i in range(len(split))])
    return ident.astype(np.int64)


def split_labels(split) -> dict[str, np.ndarray]:
    return {k: v for k in _LABEL_KEYS if (v := _lookup(split, k)) is not None}


class Subset(TaskSplit):
    def __init__(self, base, idx: np.ndarray):
        super().__init__(base.name, base.split, meta=dict(base.meta))
        self.base, self.idx = base, np.asarray(idx)
        self.meta["subset"] = int(len(idx))

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        return self.base[int(self.idx[i])]


class Flipped(TaskSplit):
    """The horizontal flips of a split's images (its own feature-cache key)."""

    def __init__(self, base):
        super().__init__(base.name, base.split, meta=dict(base.meta))
        self.base = base
        self.meta["transform"] = f"{base.meta.get('transform', 'resize')}+hflip"

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x.flip(-1), y


class Relabel(TaskSplit):
    def __init__(self, base, mapping: dict[int, int]):
        super().__init__(base.name, base.split, meta=base.meta)
        self.base, self.mapping = base, mapping

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x, self.mapping[int(y)]
