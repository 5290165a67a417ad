"""Per-item scores of the dense tasks (bench_tasks.stats.ItemScores), shared by the tasks (CIs of
their rows) and the floors (bench_tasks.plan.floors), so both are scored identically.

    landmark_items(preds, split)  preds {index: (pred (K, 2), gt (K, 2))} in the split's pixels ->
                                  ItemScores "mean" with `nme` = per-image headline NME in %
                                  (inter-ocular, or the box diagonal when meta["norm"] == "box",
                                  as bench_tasks.tasks.landmarks.landmark_metrics)
    parsing_items(cms)            {index: (K, K) confusion} -> ItemScores "confusion"
                                  (f1_mean, miou, pixel_acc of the summed matrix)
"""

from __future__ import annotations

import numpy as np

from bench_tasks.metrics import landmarks as LM
from bench_tasks.stats import ItemScores, confusion_items


def per_image_nme(pred: np.ndarray, gt: np.ndarray, meta: dict, idx: np.ndarray) -> np.ndarray:
    """Headline NME (fraction) of each image: `idx` are the images' indices in the split (for
    meta["boxes"])."""
    if meta.get("norm", "inter_ocular") == "box":
        boxes = np.asarray(meta["boxes"])[idx]
        return LM.nme_per_image(pred, gt, LM.box_diag(boxes))
    i, j = meta.get("eyes", (36, 45))
    return LM.nme_per_image(pred, gt, LM.inter_ocular(gt, i, j))


def landmark_items(preds: dict, split) -> ItemScores:
    idx = np.array(sorted(preds))
    pred = np.stack([preds[i][0] for i in idx])
    gt = np.stack([preds[i][1] for i in idx])
    nme = per_image_nme(pred, gt, split.meta, idx)
    return ItemScores("mean", {"nme": 100.0 * nme}, items=idx)


def parsing_items(cms: dict) -> ItemScores:
    return confusion_items(cms)
