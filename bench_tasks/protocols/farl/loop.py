"""FaRL's training loop for one cell: `run_farl` reads the cell's splits, builds FarlNet with its
dense head, trains with FaRL's optimizer file (protocols.train.fit), scores the test set and its
slices and records every setting; `cell_image_size` is the backbone's input size of a FaRL cell."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from bench_tasks.contracts import CellContext, CellResult
from bench_tasks.datasets._readers import WithIndex
from bench_tasks.heads import dense as dense_heads
from bench_tasks.heads.dense import DENSE_HEAD
from bench_tasks.metrics.parsing import scores_from_confusion
from bench_tasks.protocols.farl.model import FarlNet, farl_layers, landmark_loss, parsing_loss
from bench_tasks.protocols.farl.readers import load_farl_splits
from bench_tasks.protocols.farl.scoring import landmark_scores, parsing_confusions, predict_landmarks
from bench_tasks.protocols.farl.settings import FARL_REPO, farl_settings
from bench_tasks.protocols.farl.splits import FarlLandmarkSplit
from bench_tasks.protocols.train import FitConfig, fit


def _loaders(train, val, test, st, seed, num_workers):
    g = torch.Generator().manual_seed(seed)
    bs = max(2, min(int(st["batch_size"]), len(train)))
    tl = DataLoader(train, batch_size=bs, shuffle=True, drop_last=len(train) > bs, num_workers=num_workers,
                    generator=g)
    ev = max(1, int(st["batch_size"]))
    vl = DataLoader(WithIndex(val), batch_size=ev, num_workers=num_workers) if val is not None else None
    te = DataLoader(WithIndex(test), batch_size=ev, num_workers=num_workers)
    return tl, vl, te


def run_farl(ctx: CellContext, task: str) -> CellResult:
    """Train and score one cell with FaRL's protocol; the row's config is `farl_settings`."""
    st = farl_settings(ctx.cell.dataset, ctx.cell.protocol, ctx.profile)
    if st["task"] != task:
        raise ValueError(f"{ctx.cell.dataset} is a {st['task']} data set in FaRL's files, not {task}")
    train, val, test = load_farl_splits(ctx, st)
    if len(train) < 2:
        raise ValueError(f"{ctx.cell.dataset}: {len(train)} training image(s) at fraction {ctx.cell.fraction:g}; "
                         "the FPN / UPerHead BatchNorm layers need at least 2 per batch")
    _trim_test(test, st)
    layers = farl_layers(ctx.backbone)
    k = st["num_classes"] if task == "parsing" else st["num_points"]
    torch.manual_seed(ctx.cell.seed)
    head, layers = dense_heads.build_dense_head(ctx.backbone, k, int(st["head_channels"]), layers=layers)
    model = FarlNet(ctx.backbone, head, layers, frozen=st["frozen"], input_size=st["input_size"])
    tl, vl, te = _loaders(train, val, test, st, ctx.cell.seed, int(ctx.profile.num_workers))
    device = ctx.device
    classes = test.meta.get("classes")
    loss_fn, evaluate, select, higher = _task_functions(task, st, k, classes, device)
    cfg = FitConfig(epochs=int(st["epochs"]), lr_head=st["lr_head"], lr_backbone=st["lr_backbone"] or 0.0,
                    weight_decay=st["weight_decay"], layer_decay=1.0, ema_decay=st["ema_decay"] or None,
                    grad_clip=st["grad_clip"], eval_every=int(st["eval_every"]), select_metric=select,
                    higher_is_better=higher, lr_schedule="multistep", milestones=tuple(st["milestones"]),
                    gamma=st["gamma"], decay_all_params=True)
    res = fit(model, tl, vl, te, loss_fn, evaluate, cfg, device,
              backbone_depth=None if st["frozen"] else ctx.backbone.depth, progress=ctx.progress,
              desc=f"{task}/{ctx.cell.dataset}/{ctx.cell.protocol}")
    slices = _slice_scores(task, model, te, test, st, k, classes, device)  # with the selected weights
    metrics = dict(res.metrics)
    for name, s in slices.items():
        metrics[f"{'f1_mean' if task == 'parsing' else 'nme'}/{name}"] = s["f1_mean" if task == "parsing" else "nme"]
    config = {key: v for key, v in st.items() if key not in ("files",)}
    config.update(layers=layers, farl_files=[f"{FARL_REPO}/farl/experiments/{f}" if not f.startswith("datasets")
                                             else f"{FARL_REPO}/farl/{f}" for f in st["files"]],
                  selection="val split" if val is not None else "last epoch (no val split in FaRL's files)")
    return CellResult(metrics=metrics, metrics_last=res.metrics_last, metrics_best_test=res.metrics_best_test,
                      slices=slices, history=res.extra.get("history", []), protocol_used=ctx.cell.protocol,
                      head=DENSE_HEAD, config={"farl": config})


def _trim_test(test, st: dict) -> None:
    """`test_images` (a CPU profile's override): keep the test split's first items only."""
    if not (st.get("test_images") and len(test) > st["test_images"]):
        return
    keep = int(st["test_images"])
    test.images = test.images[:keep] if hasattr(test, "images") else test.images
    if isinstance(test, FarlLandmarkSplit):
        test.paths, test.points, test.boxes = test.paths[:keep], test.points[:keep], test.boxes[:keep]
        test.matrices = test.matrices[:keep]
    else:
        test.labels, test.matrices = test.labels[:keep], test.matrices[:keep]
    test.slices = {k: v[:keep] for k, v in test.slices.items()}


def _task_functions(task: str, st: dict, k: int, classes, device):
    """(loss_fn, evaluate, selection metric, higher is better) of FaRL's parsing or alignment trainer."""
    if task == "parsing":
        def loss_fn(out, labels):
            return parsing_loss(out, labels)

        def evaluate(m, loader):
            cms = parsing_confusions(m, loader, loader.dataset.ds, k, device)
            return scores_from_confusion(sum(cms.values()), classes)
        return loss_fn, evaluate, "f1_mean", True

    def loss_fn(out, pts):
        return landmark_loss(out, pts, st)

    def evaluate(m, loader):
        return landmark_scores(predict_landmarks(m, loader, loader.dataset.ds, device), loader.dataset.ds, st)
    return loss_fn, evaluate, "nme", False


def _slice_scores(task: str, model, te, test, st: dict, k: int, classes, device) -> dict[str, dict[str, float]]:
    """The headline of each slice of the test split (parsing: F1 of the slice's pooled confusion)."""
    slices: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        if task == "parsing":
            cms = parsing_confusions(model, te, test, k, device)
            for name, sel in test.slices.items():
                ids = np.flatnonzero(sel)
                if len(ids):
                    s = scores_from_confusion(sum(cms[i] for i in ids), classes)
                    slices[name] = {"f1_mean": s["f1_mean"], "n": float(len(ids))}
        else:
            preds = predict_landmarks(model, te, test, device)
            for name, sel in test.slices.items():
                s = landmark_scores(preds, test, st, np.asarray(sel, bool))
                if s:
                    slices[name] = s
    return slices


def cell_image_size(cell, profile) -> int:
    """The backbone's input size for a FaRL cell (448 unless overridden)."""
    return int(farl_settings(cell.dataset, cell.protocol, profile)["input_size"])
