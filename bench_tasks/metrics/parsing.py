"""Face-parsing metrics from one confusion matrix accumulated over a whole test set (FaRL).

F1 per class = 2 TP / (#pred + #gt); the headline `f1_mean` is the mean over the *foreground*
classes (every class but background, index 0); mIoU = mean over foreground classes of
TP / (#pred + #gt - TP) (also `miou_all` including background). Percentages (0-100).
A class absent from both prediction and ground truth has an undefined score and is left out
of the means (reported as NaN per class).
"""

from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(pred, gt, num_classes: int, ignore_index: int | None = 255) -> np.ndarray:
    """(K, K) int64 counts, rows = ground truth, columns = prediction (bincount)."""
    pred = torch.as_tensor(pred).reshape(-1).long()
    gt = torch.as_tensor(gt).reshape(-1).long()
    if pred.shape != gt.shape:
        raise ValueError(f"prediction and ground truth differ in size: {pred.shape} vs {gt.shape}")
    keep = (gt >= 0) & (gt < num_classes)
    if ignore_index is not None:
        keep &= gt != ignore_index
    idx = gt[keep] * num_classes + pred[keep].clamp(0, num_classes - 1)
    cm = torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    return cm.cpu().numpy().astype(np.int64)


def scores_from_confusion(cm: np.ndarray, class_names: list[str] | None = None,
                          background: int | None = 0) -> dict[str, float]:
    """f1_mean, miou, miou_all, pixel_acc and f1/<class>, iou/<class> (percentages)."""
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0]
    names = class_names or [str(i) for i in range(k)]
    tp = np.diag(cm)
    n_gt = cm.sum(1)
    n_pred = cm.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(n_gt + n_pred > 0, 2 * tp / (n_gt + n_pred), np.nan)
        iou = np.where(n_gt + n_pred - tp > 0, tp / (n_gt + n_pred - tp), np.nan)
    fg = [i for i in range(k) if i != background]
    out = {
        "f1_mean": float(np.nanmean(f1[fg]) * 100) if np.isfinite(f1[fg]).any() else float("nan"),
        "miou": float(np.nanmean(iou[fg]) * 100) if np.isfinite(iou[fg]).any() else float("nan"),
        "miou_all": float(np.nanmean(iou) * 100) if np.isfinite(iou).any() else float("nan"),
        "pixel_acc": float(tp.sum() / max(cm.sum(), 1) * 100),
    }
    for i, n in enumerate(names):
        out[f"f1/{n}"] = float(f1[i] * 100)
        out[f"iou/{n}"] = float(iou[i] * 100)
    return out
