"""Classification metrics (attributes: multi-label; expression: multi-class).

All accuracies are percentages (0-100).

multilabel_metrics(logits, targets, names):
    mean_acc        mean over attributes of the per-attribute accuracy (FaRL's CelebA headline)
    balanced_acc    mean over attributes of (TPR + TNR) / 2; an attribute with no positives (or no
                    negatives) in the evaluated set uses the one rate that is defined
    acc/<name>      per-attribute accuracy (torchmetrics MultilabelAccuracy, average=None)
multiclass_metrics(logits, targets, num_classes) -> (metrics, confusion (C, C) rows = true class):
    acc             overall accuracy
    mean_class_acc  mean over classes present in the targets of the per-class recall
Chance levels (the constant predictor fitted on the training targets, scored on the test targets):
    multiclass_majority -> majority_acc (and majority_mean_class_acc = 100 / #classes present)
    multilabel_majority -> majority_mean_acc (each attribute predicted as its training majority value)
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import (
    multilabel_accuracy,
    multilabel_stat_scores,
)

from bench_tasks.metrics import parsing


def multilabel_metrics(logits: torch.Tensor, targets: torch.Tensor, names: list[str] | None = None,
                       threshold: float = 0.5) -> dict[str, float]:
    """logits: (N, A) raw scores (sigmoid applied here); targets: (N, A) in {0, 1}."""
    probs = torch.sigmoid(logits.float())
    t = targets.long()
    num = t.shape[1]
    names = names or [str(i) for i in range(num)]
    if num == 1:  # torchmetrics wants >= 2 labels: score a duplicate column and drop it
        probs, t = probs.repeat(1, 2), t.repeat(1, 2)
    k = probs.shape[1]
    per = multilabel_accuracy(probs, t, num_labels=k, threshold=threshold, average=None)[:num]
    stats = multilabel_stat_scores(probs, t, num_labels=k, threshold=threshold, average=None)[:num]
    tp, fp, tn, fn = (stats[:, i].double() for i in range(4))
    pos, neg = tp + fn, tn + fp
    tpr = torch.where(pos > 0, tp / pos.clamp(min=1), torch.nan)
    tnr = torch.where(neg > 0, tn / neg.clamp(min=1), torch.nan)
    bal = torch.nanmean(torch.stack([tpr, tnr]), dim=0)
    out = {"mean_acc": 100.0 * per.mean().item(), "balanced_acc": 100.0 * torch.nanmean(bal).item()}
    for n, a in zip(names, per.tolist()):
        out[f"acc/{n}"] = 100.0 * a
    return out


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts, row = true class, column = predicted class: the one confusion matrix of
    the package (bench_tasks.metrics.parsing.confusion_matrix), as a tensor."""
    return torch.from_numpy(parsing.confusion_matrix(preds, targets, num_classes, ignore_index=None))


def multiclass_metrics(logits: torch.Tensor, targets: torch.Tensor, num_classes: int,
                       names: list[str] | None = None) -> tuple[dict[str, float], torch.Tensor]:
    preds = logits.argmax(1) if logits.ndim == 2 else logits
    cm = confusion_matrix(preds, targets, num_classes)
    support = cm.sum(1)
    correct = cm.diag()
    acc = 100.0 * correct.sum().item() / max(1, support.sum().item())
    present = support > 0
    recall = correct[present].double() / support[present].double()
    out = {"acc": acc, "mean_class_acc": 100.0 * recall.mean().item() if present.any() else float("nan")}
    if names:
        for i, n in enumerate(names):
            if present[i]:
                out[f"recall/{n}"] = 100.0 * correct[i].item() / support[i].item()
    return out, cm


def multiclass_majority(train_targets: torch.Tensor, test_targets: torch.Tensor,
                        num_classes: int) -> dict[str, float]:
    """Test accuracy of always predicting the most frequent training class."""
    counts = torch.bincount(train_targets.long().flatten(), minlength=num_classes)
    preds = torch.full_like(test_targets.long(), int(counts.argmax()))
    m, _ = multiclass_metrics(preds, test_targets, max(num_classes, len(counts)))
    return {"majority_acc": m["acc"], "majority_mean_class_acc": m["mean_class_acc"]}


def multilabel_majority(train_targets: torch.Tensor, test_targets: torch.Tensor) -> dict[str, float]:
    """Mean per-attribute test accuracy of predicting each attribute's majority training value."""
    maj = (train_targets.float().mean(0) >= 0.5).float()
    per = (test_targets.float() == maj.unsqueeze(0)).float().mean(0)
    return {"majority_mean_acc": 100.0 * per.mean().item()}
