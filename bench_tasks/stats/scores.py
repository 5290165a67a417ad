"""Per-item scores of a row's test metrics (`ItemScores`: additive per-item sums and the statistic
that turns them into metrics) and their bootstrap intervals; why sums of items make every
resample exact is told in bench_tasks/stats/__init__.py. The comparisons of two rows are
bench_tasks.stats.design.

    scores = ItemScores("mean", {"value": per_image_nme * 100})
    scores.ci()                          -> {"value": (lo, hi)}       (95 %, percentile)

Per-item scores are saved next to a row (`artifacts/<key>/items.npz`, see `save` / `load`) so
the report can compare two rows pairwise long after they ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

N_BOOT = 1000
ALPHA = 0.05
BOOT_SEED = 20261127
Z95 = 1.959963984540054
# fewer test items than this give no interval and no verdict ("beats the floor", "better",
# "worse"): a bootstrap of a handful of items does not estimate how the score would vary; the row
# and the report say TOO_FEW_ITEMS instead (docs/harness.md, "Floors, ceilings and confidence intervals")
MIN_TEST_ITEMS = 10
TOO_FEW_ITEMS = "too few test items for a verdict"

# ----------------------------------------------------------------------------- statistics
# A statistic maps summed per-item arrays {name: (B, ...)} to {metric: (B,)} values. Sums, not
# means: a resample's weights sum to n, so dividing by the summed count arrays is exact.

Statistic = Callable[[dict[str, np.ndarray], float], dict[str, np.ndarray]]
STATISTICS: dict[str, Statistic] = {}


def statistic(name: str):
    def deco(fn):
        STATISTICS[name] = fn
        return fn

    return deco


def _col(n, like: np.ndarray):
    """n (a float, or a (B,) array of replicate weight sums) shaped to broadcast against `like`."""
    n = np.asarray(n, dtype=np.float64)
    return n.reshape(n.shape + (1,) * (like.ndim - n.ndim)) if n.ndim else n


@statistic("mean")
def _mean(s: dict[str, np.ndarray], n: float) -> dict[str, np.ndarray]:
    """Every array is a per-item value; the metric of the same name is its mean."""
    return {k: v / _col(n, v) for k, v in s.items()}


@statistic("multilabel")
def _multilabel(s: dict[str, np.ndarray], n: float) -> dict[str, np.ndarray]:
    """Arrays tp, tn, pos (per item x attribute, 0/1). mean_acc: mean over attributes of the
    accuracy; balanced_acc: mean over attributes of (TPR + TNR) / 2, an attribute without positives
    (negatives) in the resample using the one rate that is defined (bench_tasks.metrics)."""
    tp, tn, pos = s["tp"], s["tn"], s["pos"]
    n = _col(n, tp)
    neg = n - pos
    acc = (tp + tn) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.where(pos > 0, tp / np.maximum(pos, 1e-12), np.nan)
        tnr = np.where(neg > 0, tn / np.maximum(neg, 1e-12), np.nan)
        bal = np.nanmean(np.stack([tpr, tnr]), axis=0)
    return {"mean_acc": 100.0 * acc.mean(-1), "balanced_acc": 100.0 * np.nanmean(bal, axis=-1)}


@statistic("multiclass")
def _multiclass(s: dict[str, np.ndarray], n: float) -> dict[str, np.ndarray]:
    """Arrays onehot (true class, per item x class) and hit (onehot * correct). acc and
    mean_class_acc (mean recall over the classes present)."""
    support, hit = s["onehot"], s["hit"]
    acc = 100.0 * hit.sum(-1) / np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, hit / np.maximum(support, 1e-12), np.nan)
        mca = 100.0 * np.nanmean(recall, axis=-1)
    return {"acc": acc, "mean_class_acc": mca}


@statistic("confusion")
def _confusion(s: dict[str, np.ndarray], n: float) -> dict[str, np.ndarray]:
    """Array cm (per item: K x K confusion, rows = ground truth), background class 0. f1_mean and
    miou over the foreground classes, pixel_acc (percentages; bench_tasks.metrics.parsing)."""
    cm = s["cm"]
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    n_gt, n_pred = cm.sum(-1), cm.sum(-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(n_gt + n_pred > 0, 2 * tp / (n_gt + n_pred), np.nan)
        iou = np.where(n_gt + n_pred - tp > 0, tp / (n_gt + n_pred - tp), np.nan)
        out = {"f1_mean": 100.0 * np.nanmean(f1[..., 1:], axis=-1),
               "miou": 100.0 * np.nanmean(iou[..., 1:], axis=-1),
               "pixel_acc": 100.0 * tp.sum(-1) / np.maximum(cm.sum((-2, -1)), 1)}
    return out


# ----------------------------------------------------------------------------- per-item scores


@dataclass
class ItemScores:
    """Per-item sufficient statistics of a test set's metrics (item axis first in every array).
    `items`: identifiers of the test items (e.g. indices into the test split, or pair indices)
    so a paired comparison can check both rows scored the same items."""

    statistic: str
    arrays: dict[str, np.ndarray]
    items: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.statistic not in STATISTICS:
            raise KeyError(f"unknown statistic {self.statistic!r}; known: {sorted(STATISTICS)}")
        self.arrays = {k: np.asarray(v, dtype=np.float64) for k, v in self.arrays.items()}
        ns = {len(v) for v in self.arrays.values()}
        if len(ns) != 1:
            raise ValueError(f"per-item arrays of different lengths: { {k: len(v) for k, v in self.arrays.items()} }")
        if self.items is not None:
            self.items = np.asarray(self.items)
            if len(self.items) != self.n:
                raise ValueError(f"{len(self.items)} item ids for {self.n} items")

    @property
    def n(self) -> int:
        return len(next(iter(self.arrays.values())))

    def _eval(self, w: np.ndarray | None) -> dict[str, np.ndarray]:
        """Metrics under item weights w (B, n); None = every item once. Weights need not sum to n
        (an identity-cluster resample does not): each replicate is normalised by its own sum."""
        if w is None:
            sums = {k: v.sum(0)[None] for k, v in self.arrays.items()}
            return STATISTICS[self.statistic](sums, float(self.n))
        sums = {k: np.tensordot(w, v, axes=(1, 0)) for k, v in self.arrays.items()}
        return STATISTICS[self.statistic](sums, w.sum(1))

    @property
    def too_few(self) -> bool:
        """Fewer than MIN_TEST_ITEMS items: no interval, no verdict."""
        return self.n < MIN_TEST_ITEMS

    def evaluate(self, w: np.ndarray, metric: str) -> np.ndarray:
        """One metric under item weights w (B, n): (B,) values."""
        return self._eval(w)[metric]

    def point(self) -> dict[str, float]:
        return {k: float(v[0]) for k, v in self._eval(None).items()}

    def bootstrap(self, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> dict[str, np.ndarray]:
        """{metric: (n_boot,) values over bootstrap resamples of the items}."""
        out: dict[str, list[np.ndarray]] = {}
        for w in bootstrap_weights(self.n, n_boot, seed):
            for k, v in self._eval(w).items():
                out.setdefault(k, []).append(v)
        return {k: np.concatenate(v) for k, v in out.items()}

    def ci(self, n_boot: int = N_BOOT, alpha: float = ALPHA, seed: int = BOOT_SEED,
           rename: dict[str, str] | None = None) -> dict[str, list[float]]:
        """{metric: [lo, hi]} percentile intervals (1 - alpha); `rename` maps statistic metric
        names to the row's metric names (e.g. {"value": "nme"}). Empty when the items are too few
        for a verdict (`too_few`)."""
        out = {}
        if self.too_few:
            return out
        for k, v in self.bootstrap(n_boot, seed).items():
            lo, hi = percentile_ci(v, alpha)
            out[(rename or {}).get(k, k)] = [lo, hi]
        return out

    # -------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {} if self.items is None else {"__items__": self.items}
        # float32 is ample for 0/1 indicators, counts < 2^24 and per-image NMEs
        arrays = {f"a_{k}": v.astype(np.float32) for k, v in self.arrays.items()}
        np.savez_compressed(path, __statistic__=np.array(self.statistic), **arrays, **extra)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ItemScores:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k[2:]: z[k] for k in z.files if k.startswith("a_")}
            items = z["__items__"] if "__items__" in z.files else None
            return cls(str(z["__statistic__"]), arrays, items)


def items_note(items: ItemScores) -> dict:
    """What a row's config records about its test items: their number, and TOO_FEW_ITEMS as its
    `verdict` when they are too few for one."""
    return {"test_items": int(items.n), **({"verdict": TOO_FEW_ITEMS} if items.too_few else {})}


def bootstrap_weights(n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED, chunk_cells: int = 4_000_000):
    """Yield (b, n) arrays of multinomial resampling counts (each row sums to n), n_boot rows in
    all, in chunks of at most `chunk_cells` numbers. Same (n, n_boot, seed) -> same weights."""
    if n <= 0:
        raise ValueError("cannot bootstrap an empty test set")
    rng = np.random.default_rng(seed)
    per = max(1, chunk_cells // n)
    done = 0
    while done < n_boot:
        b = min(per, n_boot - done)
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        done += b


def percentile_ci(samples, alpha: float = ALPHA) -> tuple[float, float]:
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(s, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def mean_ci(values, n_boot: int = N_BOOT, alpha: float = ALPHA, seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-item values."""
    ci = ItemScores("mean", {"v": np.asarray(values, dtype=np.float64)}).ci(n_boot, alpha, seed)
    return tuple(ci["v"])  # type: ignore[return-value]


# ----------------------------------------------------------------------------- builders


def multilabel_items(logits, targets, threshold: float = 0.5) -> ItemScores:
    """Per-image tp / tn / pos indicators (N, A) of sigmoid(logits) > threshold (torchmetrics'
    multi-label rule, so the point values equal bench_tasks.metrics.classification's)."""
    pred = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64))) > threshold
    return multilabel_items_from_pred(pred, targets)


def multilabel_items_from_pred(pred, targets) -> ItemScores:
    pred, t = np.asarray(pred).astype(bool), np.asarray(targets).astype(bool)
    return ItemScores("multilabel", {"tp": pred & t, "tn": ~pred & ~t, "pos": t})


def multiclass_items(pred, targets, num_classes: int) -> ItemScores:
    pred, t = np.asarray(pred).astype(np.int64).reshape(-1), np.asarray(targets).astype(np.int64).reshape(-1)
    onehot = np.zeros((len(t), num_classes), dtype=np.float64)
    onehot[np.arange(len(t)), t] = 1.0
    return ItemScores("multiclass", {"onehot": onehot, "hit": onehot * (pred == t)[:, None]})


def confusion_items(cms) -> ItemScores:
    """Per-image (K, K) confusion matrices (rows = ground truth), e.g. {index: cm} or (N, K, K)."""
    if isinstance(cms, dict):
        keys = sorted(cms)
        return ItemScores("confusion", {"cm": np.stack([cms[k] for k in keys])}, items=np.asarray(keys))
    return ItemScores("confusion", {"cm": np.asarray(cms)})
