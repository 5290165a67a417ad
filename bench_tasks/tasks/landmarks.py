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

from bench_tasks.contracts import CellContext, CellResult, Task
from bench_tasks.heads.dense import build_dense_head
from bench_tasks.metrics import landmarks as LM
from bench_tasks.metrics.items import landmark_items
from bench_tasks.protocols.farl import cell_image_size, run_farl
from bench_tasks.registry import TASKS
from bench_tasks.stats import items_note
from bench_tasks.tasks import _dense as D
from bench_tasks.tasks import _heatmaps as H
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
class LandmarksTask(Task):
    name = "landmarks"
    default_datasets = ("300w", "wflw", "aflw19")
    protocols = ("frozen", "finetune", "farl-frozen", "farl-refine")  # farl-*: protocols/farl.py
    protocol_aliases = D.PROTOCOL_ALIASES  # a plan's `linear` runs (and is recorded) as `frozen`
    headline = "nme"
    # 2: scale-free head inputs (per-channel standardised tapped features) and the head's learning
    # rate chosen on val from a grid (old rows are recomputed)
    version = 2
    higher_is_better = False

    @classmethod
    def missing_requirements(cls) -> list[str]:
        return D.missing_requirements(cls.name)

    @classmethod
    def setting_keys(cls) -> tuple[str, ...]:
        return D.dense_setting_keys()

    def settings_section(self, cell, profile) -> dict:
        return D.dense_section(profile)

    def image_size(self, profile) -> int:
        return D.dense_settings(profile)["size"]

    def cell_image_size(self, cell, profile) -> int:
        if cell.protocol.startswith("farl-"):
            return cell_image_size(cell, profile)
        return self.image_size(profile)

    def floor(self, ctx: CellContext) -> CellResult:
        """The mean training shape, in the crop frame the task evaluates in, scored on the test split."""
        train, test = train_and_test(self, ctx)
        mean_shape = target_tensor(train).double().mean(0).numpy()  # (K, 2) in crop pixels
        gt = target_tensor(test).numpy()
        preds = {i: (mean_shape, gt[i]) for i in range(len(gt))}
        metrics, slices = landmark_metrics(preds, test)
        items = landmark_items(preds, test)
        return floor_result(ctx, metrics, items, "mean training shape (crop pixels)", slices)

    def run(self, ctx: CellContext) -> CellResult:
        if ctx.cell.protocol.startswith("farl-"):  # FaRL's own configuration files, exactly
            return run_farl(ctx, "landmarks")
        st = D.dense_settings(ctx.profile)
        size = st["size"]
        train, val, test = D.load_splits(ctx, "landmarks", size)
        k = int(test.meta.get("num_points") or test[0][1].shape[0])
        torch.manual_seed(ctx.cell.seed)  # the head's initialisation is part of the cell's seed
        head, layers = build_dense_head(ctx.backbone, k, st["channels"], coords=st["coords"])
        device = ctx.device

        def loss_fn(logits, pts):
            return landmark_loss(logits, pts, size, kind=st["landmark_loss"], sigma=st["heatmap_sigma"])

        def evaluate(model, loader):
            preds, _ = predict(model, loader, size, device)
            return landmark_metrics(preds, loader.dataset.ds)[0]

        model, res, test_loader, protocol = D.fit_dense(
            ctx, head, layers, st, train, val, test, loss_fn, evaluate, "nme", False)

        with torch.no_grad():
            preds, images = predict(model, test_loader, size, device)
        _, slices = landmark_metrics(preds, test)
        items = landmark_items(preds, test)  # per-image NME: the row's bootstrap CI, paired comparisons
        path, rel = D.artifact(ctx, "items.npz")
        artifacts = {"items": rel}
        items.save(path)
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
        artifacts["landmarks_preview"] = rel
        return CellResult(
            metrics=res.metrics, metrics_last=res.metrics_last, metrics_best_test=res.metrics_best_test,
            slices=slices, artifacts=artifacts, ci=items.ci(),
            history=res.extra.get("history", []), protocol_used=protocol, head=D.DENSE_HEAD,
            config={**st, **items_note(items), "input_norm": res.extra.get("input_norm"), "layers": layers, "num_points": k, "norm": test.meta.get("norm", "inter_ocular"),
                    "eyes": list(test.meta.get("eyes", (36, 45))),
                    **({"bce_weight": BCE_WEIGHT} if st["landmark_loss"] == "farl" else {})},
        )
