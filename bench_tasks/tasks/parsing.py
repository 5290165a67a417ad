"""Face parsing (FaRL protocol): ViT -> simple FPN -> mmseg UPerHead -> per-pixel logits.

Loss: per-pixel cross-entropy on the logits upsampled (bilinear) to the input size.
Metrics: one confusion matrix over the whole test set (bench_tasks.metrics.parsing); headline
`f1_mean` = mean F1 over the foreground classes (%). Datasets whose test split sets
meta["warp_back"] (LaPa) are scored at the original resolution: the aligned crop's logits are
warped back with the inverse similarity (bilinear, border padding) before the argmax.
No flip augmentation (left/right classes would need swapping).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bench_tasks.contracts import CellContext, CellResult
from bench_tasks.metrics.items import parsing_items
from bench_tasks.metrics.parsing import confusion_matrix, scores_from_confusion
from bench_tasks.registry import TASKS
from bench_tasks.tasks import _dense as D
from bench_tasks.tasks._dense_task import DenseObjective, DenseScores, DenseTask
from bench_tasks.tasks._floors import floor_result, train_and_test
from bench_tasks.tasks._targets import iter_targets

LAPA_CLASSES = ["background", "skin", "left_eyebrow", "right_eyebrow", "left_eye", "right_eye",
                "nose", "upper_lip", "inner_mouth", "lower_lip", "hair"]


def split_classes(split) -> list[str]:
    """The class names of a parsing split (its meta's `classes` / `class_names`; LaPa's by default)."""
    return list(split.meta.get("classes") or split.meta.get("class_names") or LAPA_CLASSES)


def upsampled_logits(model, images: torch.Tensor) -> torch.Tensor:
    logits = model(images)
    return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def warp_logits_back(logits: torch.Tensor, m_orig_to_crop, out_hw: tuple[int, int]) -> torch.Tensor:
    """Aligned-crop logits (K, S, S) -> logits on the original image grid (K, H0, W0): each
    original pixel p samples the crop at m @ p (bilinear; outside the crop: nearest border)."""
    return D.warp_affine(logits, D.invert_affine(m_orig_to_crop), out_hw, mode="bilinear",
                         padding_mode="border")


def per_image_confusions(model, loader, split, num_classes: int, device, keep_preview: int = 0):
    """{index: (K, K) confusion} over the loader (a WithIndex loader of `split`), and a few
    (image, gt, pred) triples for the preview."""
    warp_back = bool(split.meta.get("warp_back"))
    cms: dict[int, np.ndarray] = {}
    previews = []
    for images, extra in loader:
        images = images.to(device)
        logits = upsampled_logits(model, images).float().cpu()
        targets = extra["target"]
        for b, idx in enumerate(extra["index"].tolist()):
            if warp_back:
                gt = split.original_label(idx)
                lg = warp_logits_back(logits[b], split.matrix(idx, gt.shape[:2]), gt.shape[:2])
                pred = lg.argmax(0)
                gt = torch.from_numpy(gt.astype(np.int64))
            else:
                pred = logits[b].argmax(0)
                gt = targets[b]
            cms[idx] = confusion_matrix(pred, gt, num_classes)
            if len(previews) < keep_preview:
                previews.append((images[b].cpu(), targets[b], logits[b].argmax(0)))
    return cms, previews


def class_weights(train, num_classes: int, kind: str) -> torch.Tensor | None:
    """Per-class loss weights from the training masks' pixel frequencies f_c: `none` -> None;
    `inv_sqrt` -> 1 / sqrt(f_c), scaled so that the pixel-weighted mean is 1 (a class absent
    from the training masks gets the largest weight present)."""
    if kind == "none":
        return None
    if kind != "inv_sqrt":
        raise ValueError(f"parsing class_weight must be 'none' or 'inv_sqrt', got {kind!r}")
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for i in range(len(train)):
        m = train[i][1].reshape(-1).long()
        m = m[(m >= 0) & (m < num_classes)]
        counts += torch.bincount(m, minlength=num_classes).double()
    f = counts / counts.sum().clamp_min(1)
    w = torch.where(f > 0, f.clamp_min(1e-12).rsqrt(), torch.tensor(float("nan"), dtype=torch.float64))
    w = torch.nan_to_num(w, nan=float(w[f > 0].max()) if (f > 0).any() else 1.0)
    return (w / (w * f).sum()).float()


@TASKS.register("parsing")
class ParsingTask(DenseTask):
    name = "parsing"
    default_datasets = ("lapa", "celebamaskhq")
    headline = "f1_mean"
    higher_is_better = True

    def floor(self, ctx: CellContext) -> CellResult:
        """The most frequent training class of each pixel of the crop the task predicts at, scored on
        the test split (warped back like the logits for datasets scored at original resolution)."""
        train, test = train_and_test(self, ctx)
        classes = split_classes(test)
        k = len(classes)
        counts = None  # (K, H, W) class counts per pixel of the crop the task evaluates on
        for m in iter_targets(train):
            m = torch.as_tensor(m).long()
            valid = (m >= 0) & (m < k)
            c = F.one_hot(m.clamp(0, k - 1), k).permute(2, 0, 1).double() * valid
            counts = c if counts is None else counts + c
        if counts is None:
            raise ValueError(f"parsing/{ctx.cell.dataset}: the training split is empty")
        prior = counts.argmax(0)  # (S, S) the most frequent class of each pixel
        onehot = F.one_hot(prior, k).permute(2, 0, 1).float()
        warp_back = bool(test.meta.get("warp_back"))
        cms = {}
        for i, gt in enumerate(iter_targets(test)):
            if warp_back:
                g = test.original_label(i)
                pred = warp_logits_back(onehot, test.matrix(i, g.shape[:2]), g.shape[:2]).argmax(0)
                gt = torch.from_numpy(g.astype(np.int64))
            else:
                pred = prior
            cms[i] = confusion_matrix(pred, gt, k)
        metrics = scores_from_confusion(sum(cms.values()), classes)
        items = parsing_items(cms)
        slices = {}
        for name, sel in (getattr(test, "slices", None) or {}).items():
            idx = np.flatnonzero(np.asarray(sel, dtype=bool))
            if len(idx):
                s = scores_from_confusion(sum(cms[i] for i in idx), classes)
                slices[name] = {"f1_mean": s["f1_mean"], "miou": s["miou"], "n": float(len(idx))}
        return floor_result(ctx, metrics, items, "most frequent training class of each pixel (crop frame)", slices,
                            {"warp_back": warp_back})

    def num_outputs(self, test) -> int:
        return len(split_classes(test))

    def objective(self, ctx: CellContext, train, test, k: int, settings: dict) -> DenseObjective:
        classes, device = split_classes(test), ctx.device
        weight = class_weights(train, k, settings["class_weight"])

        def loss_fn(logits, masks):
            logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
            w = weight.to(logits.device) if weight is not None else None
            return F.cross_entropy(logits, masks.long(), weight=w, ignore_index=255)

        def evaluate(model, loader):
            cms, _ = per_image_confusions(model, loader, loader.dataset.ds, k, device)
            return scores_from_confusion(sum(cms.values()), classes)

        return DenseObjective(loss_fn, evaluate,
                              {"class_weights": [round(float(x), 4) for x in weight]} if weight is not None else {})

    def score_test(self, ctx: CellContext, model, loader, test, k: int, settings: dict) -> DenseScores:
        classes = split_classes(test)
        cms, previews = per_image_confusions(model, loader, test, k, ctx.device, keep_preview=6)
        total = sum(cms.values())
        items = parsing_items(cms)  # per-image confusions
        slices = {}
        for name, sel in D.slice_items(test).items():
            idx = np.flatnonzero(sel)
            if len(idx):
                s = scores_from_confusion(sum(cms[i] for i in idx), classes)
                slices[name] = {"f1_mean": s["f1_mean"], "miou": s["miou"], "n": float(len(idx))}
        artifacts = {}
        path, rel = D.artifact(ctx, "confusion.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(path, total, fmt="%d", delimiter=",", header=",".join(classes))
        artifacts["confusion"] = rel
        path, rel = D.artifact(ctx, "parsing_preview.png")
        sc = D.preview_scale(settings["size"])
        rows = [[D.to_uint8(img), D.colorize(gt.numpy()), D.colorize(pred.numpy())] for img, gt, pred in previews]
        D.save_grid(rows, path, scale=sc)
        artifacts["parsing_preview"] = rel
        return DenseScores(slices, items, artifacts,
                           {"classes": classes, "warp_back": bool(test.meta.get("warp_back"))})
