"""Facial landmarks (FaRL protocol): ViT -> simple FPN -> mmseg UPerHead with one heatmap per
point (stride 4 of the input) -> soft-argmax -> coordinates.

Soft-argmax: softmax over each heatmap's pixels, expectation of the pixel-centre coordinates.
Loss (setting `landmark_loss`, bench_tasks.tasks._heatmaps): `ce` (default) = cross-entropy of
each heatmap's softmax against the normalised Gaussian target (sigma = 1 heatmap pixel) + L1 on
the soft-argmax coordinates normalised to the crop ([0, 1]); `farl` = FaRL's pair, the same L1
+ BCE-with-logits against Gaussian targets (peak 1). The head reads token positions
(`coords`, bench_tasks.heads.dense). Why not FaRL's pair by default: docs/dense.md.
No flip augmentation (left/right points would need re-indexing).

Metrics (bench_tasks.metrics.landmarks), chosen from the test split's meta:
  * meta["norm"] == "inter_ocular": distance of points meta["eyes"] (300W / SynthFace 36, 45;
    WFLW 60, 72); `nme` headline;
  * meta["norm"] == "box": meta["boxes"] (N, 4) x1, y1, x2, y2 in crop pixels; `nme_diag`
    (sqrt(w^2 + h^2), the headline, also stored as `nme`) and `nme_box` (sqrt(w * h));
  * meta["fr_thr"] / meta["auc_thr"]: FR@thr (%) and AUC@thr ([0, 1]) of the headline NMEs;
  * every slice of the split (TaskSplit.slices) -> `nme/<slice>` (+ fr/auc) and CellResult.slices.
NMEs are percentages.
"""

from __future__ import annotations

import numpy as np
import torch

from bench_tasks.contracts import CellContext, CellResult
from bench_tasks.metrics import landmarks as LM
from bench_tasks.metrics.items import landmark_items
from bench_tasks.registry import TASKS
from bench_tasks.tasks import _dense as D
from bench_tasks.tasks import _heatmaps as H
from bench_tasks.tasks._dense_task import DenseObjective, DenseScores, DenseTask
from bench_tasks.tasks._floors import floor_result, train_and_test
from bench_tasks.tasks._heatmaps import gaussian_targets, soft_argmax  # noqa: F401 (public names)
from bench_tasks.tasks._targets import target_tensor

HEATMAP_SIGMA = 1.0  # heatmap pixels
BCE_WEIGHT = 1.0  # the `farl` loss's BCE term


def landmark_loss(logits: torch.Tensor, pts_px: torch.Tensor, size: int, kind: str = "ce",
                  sigma: float = HEATMAP_SIGMA) -> torch.Tensor:
    """The loss of the task's setting `landmark_loss` (bench_tasks.tasks._heatmaps): `ce`
    (default) or FaRL's `farl` pair."""
    return H.landmark_loss(logits, pts_px, size, kind=kind, sigma=sigma, bce_weight=BCE_WEIGHT)


def predict(model, loader, size: int, device):
    """{index: (pred (K, 2), gt (K, 2))} in crop pixels, plus the images of the first batch."""
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    first = None
    for images, extra in loader:
        logits = model(images.to(device))
        pred = (soft_argmax(logits) * size - 0.5).cpu().numpy()
        gt = extra["target"].numpy()
        for b, idx in enumerate(extra["index"].tolist()):
            out[idx] = (pred[b], gt[b])
        if first is None:
            first = images
    return out, first


def landmark_metrics(preds: dict, split) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(metrics, slices) for one split's predictions."""
    meta = split.meta
    idx = np.array(sorted(preds))
    pred = np.stack([preds[i][0] for i in idx])
    gt = np.stack([preds[i][1] for i in idx])
    fr, au = meta.get("fr_thr"), meta.get("auc_thr")
    per: dict[str, np.ndarray] = {}
    if meta.get("norm", "inter_ocular") == "box":
        boxes = np.asarray(meta["boxes"])[idx]
        per["nme_diag"] = LM.nme_per_image(pred, gt, LM.box_diag(boxes))
        per["nme_box"] = LM.nme_per_image(pred, gt, LM.box_size(boxes))
        per["nme"] = per["nme_diag"]
    else:
        i, j = meta.get("eyes", (36, 45))
        per["nme"] = LM.nme_per_image(pred, gt, LM.inter_ocular(gt, i, j))
    metrics: dict[str, float] = {}
    for name, v in per.items():
        metrics.update(LM.summarize(v, fr if name == "nme" else None, au if name == "nme" else None, prefix=name))
    slices: dict[str, dict[str, float]] = {}
    for sname, sel in D.slice_items(split).items():
        m = sel[idx]
        if not m.any():
            continue
        s = {}
        for name, v in per.items():
            s.update(LM.summarize(v[m], fr if name == "nme" else None, au if name == "nme" else None, prefix=name))
        s["n"] = float(m.sum())
        slices[sname] = s
        metrics[f"nme/{sname}"] = s["nme"]
    return metrics, slices


@TASKS.register("landmarks")
class LandmarksTask(DenseTask):
    name = "landmarks"
    default_datasets = ("300w", "wflw", "aflw19")
    headline = "nme"
    higher_is_better = False

    def floor(self, ctx: CellContext) -> CellResult:
        """The mean training shape, in the crop frame the task evaluates in, scored on the test split."""
        train, test = train_and_test(self, ctx)
        mean_shape = target_tensor(train).double().mean(0).numpy()  # (K, 2) in crop pixels
        gt = target_tensor(test).numpy()
        preds = {i: (mean_shape, gt[i]) for i in range(len(gt))}
        metrics, slices = landmark_metrics(preds, test)
        items = landmark_items(preds, test)
        return floor_result(ctx, metrics, items, "mean training shape (crop pixels)", slices)

    def num_outputs(self, test) -> int:
        return int(test.meta.get("num_points") or test[0][1].shape[0])

    def objective(self, ctx: CellContext, train, test, k: int, settings: dict) -> DenseObjective:
        size, device = settings["size"], ctx.device

        def loss_fn(logits, pts):
            return landmark_loss(logits, pts, size, kind=settings["landmark_loss"], sigma=settings["heatmap_sigma"])

        def evaluate(model, loader):
            preds, _ = predict(model, loader, size, device)
            return landmark_metrics(preds, loader.dataset.ds)[0]

        return DenseObjective(loss_fn, evaluate,
                              {"bce_weight": BCE_WEIGHT} if settings["landmark_loss"] == "farl" else {})

    def score_test(self, ctx: CellContext, model, loader, test, k: int, settings: dict) -> DenseScores:
        size = settings["size"]
        preds, images = predict(model, loader, size, ctx.device)
        _, slices = landmark_metrics(preds, test)
        items = landmark_items(preds, test)  # per-image NME
        path, rel = D.artifact(ctx, "landmarks_preview.png")
        sc = D.preview_scale(size)
        rows, row = [], []
        for b in range(min(8, len(images))):
            p, g = preds[b]
            row.append(D.draw_points(D.to_uint8(images[b]), [(g, (0, 255, 0)), (p, (255, 0, 0))], scale=sc))
            if len(row) == 4:
                rows.append(row)
                row = []
        if row:
            rows.append(row)
        D.save_grid(rows, path)
        return DenseScores(slices, items, {"landmarks_preview": rel},
                           {"num_points": k, "norm": test.meta.get("norm", "inter_ocular"),
                            "eyes": list(test.meta.get("eyes", (36, 45)))})
