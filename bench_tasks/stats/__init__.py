"""Statistics of result rows, below every plug-in: per-item scores and their bootstrap intervals
(`scores`), comparisons of rows under the study's design and their verdicts (`design`), and the
pairs of the verification protocol (`pairs`). `from bench_tasks import stats; stats.verdict(...)`
reads every public name of `scores` and `design`.

Every test-set metric of a row is a function of *additive per-item sums*: accuracy is a sum of
per-item correctness, balanced accuracy a ratio of per-attribute TP / TN / P / N counts, parsing F1
a function of the summed per-image confusion matrices, NME a sum of per-image NMEs, verification
accuracy a sum of per-pair correctness (each pair scored with its fold's threshold). An
`ItemScores` holds those per-item arrays (item axis first) and the name of the *statistic* that
turns their sums into metrics. A bootstrap resample of the test items is then a vector of
multinomial counts `w` (n_boot, n), and every metric of every resample is `statistic(w @ arrays)`:
vectorised, exact for ratios of sums (no per-resample re-evaluation), and the same `w` applied to
two rows scored on the same items gives the *paired* bootstrap of their difference.

The per-item scores and their intervals are `scores`; the comparisons, verdicts and the normalised
gain are `design`; the equivalence margins the verdict reads are `margins`
(bench_tasks/configs/verdicts/margins.yaml).
"""

from bench_tasks.stats.design import (
    BEATS_FLOOR,
    BETTER,
    NOT_ABOVE_FLOOR,
    NOT_SHOWN,
    SAME,
    WORSE,
    Coverage,
    Difference,
    Side,
    SpreadPools,
    as_side,
    beats_floor,
    cluster_weights,
    design_interval,
    equivalent,
    floor_difference,
    floor_verdict,
    item_weights,
    normalised_gain,
    paired_difference,
    residual_pool,
    side_replicates,
    spread_pools,
    unpaired_difference,
    verdict,
)
from bench_tasks.stats.margins import margin_for
from bench_tasks.stats.scores import (
    ALPHA,
    BOOT_SEED,
    MIN_TEST_ITEMS,
    N_BOOT,
    TOO_FEW_ITEMS,
    Z95,
    ItemScores,
    Statistic,
    bootstrap_weights,
    confusion_items,
    items_note,
    mean_ci,
    multiclass_items,
    multilabel_items,
    multilabel_items_from_pred,
    percentile_ci,
    statistic,
)

__all__ = [
    "MIN_TEST_ITEMS",
    "TOO_FEW_ITEMS",
    "items_note",
    "N_BOOT",
    "ALPHA",
    "BOOT_SEED",
    "Z95",
    "Statistic",
    "statistic",
    "ItemScores",
    "bootstrap_weights",
    "percentile_ci",
    "mean_ci",
    "multilabel_items",
    "multilabel_items_from_pred",
    "multiclass_items",
    "confusion_items",
    "BETTER",
    "WORSE",
    "SAME",
    "NOT_SHOWN",
    "BEATS_FLOOR",
    "NOT_ABOVE_FLOOR",
    "Difference",
    "SpreadPools",
    "residual_pool",
    "spread_pools",
    "item_weights",
    "cluster_weights",
    "Side",
    "as_side",
    "Coverage",
    "side_replicates",
    "design_interval",
    "paired_difference",
    "unpaired_difference",
    "verdict",
    "equivalent",
    "floor_difference",
    "margin_for",
    "normalised_gain",
    "floor_verdict",
    "beats_floor",
]
