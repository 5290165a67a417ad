"""Floors: the best *input-free* predictor of each task, fitted on the training labels and scored
with the task's own metric on the test split.

A floor is an ordinary row of the results store whose cell has the backbone URI
`floor:input-free` and the protocol `floor` (fraction 1.0, seed 0): one per (task, dataset,
profile). The runner adds these cells to every plan (bench_tasks.plan.references) and runs them here
instead of building a backbone; they take seconds. The row has the task's headline and metrics,
the bootstrap CI over test items (`ci`), the per-item scores (artifact `items`) and its
provenance; `config.task.predictor` says what the predictor is:
  * attributes  - majority value of each attribute in the training split (balanced accuracy 50);
  * expression  - the majority training class;
  * landmarks   - the mean training shape, in the crop frame the task evaluates in;
  * parsing     - the most frequent class of each pixel over the training masks (in the crop
                  frame; warped back like the logits for datasets scored at original resolution);
  * recognition - one constant similarity for every pair: the 10-fold protocol then predicts one
                  answer for all pairs (50 % on balanced pair lists).

Plug-in tasks provide a floor with a `floor(ctx) -> CellResult` method, or register a function
here with `@floor_for("task")`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from bench_tasks.contracts import CellContext, CellResult, uri_scheme
from bench_tasks.metrics.items import landmark_items, parsing_items
from bench_tasks.metrics.parsing import confusion_matrix, scores_from_confusion
from bench_tasks.metrics.verification import verification_metrics
from bench_tasks.protocols.features import split_targets
from bench_tasks.registry import DATASETS, TASKS
from bench_tasks.stats import ItemScores, multiclass_items, multilabel_items_from_pred
from bench_tasks.tasks._classification import _split_targets
from bench_tasks.tasks.landmarks import landmark_metrics
from bench_tasks.tasks.parsing import LAPA_CLASSES, warp_logits_back
from bench_tasks.tasks.recognition import _split_slices, pair_items, settings_for

FLOOR_URI = "floor:input-free"
FLOOR_PROTOCOL = "floor"

FLOORS: dict[str, Callable[[object, CellContext], CellResult]] = {}


def floor_for(task: str):
    def deco(fn):
        FLOORS[task] = fn
        return fn

    return deco


def has_floor(task_name: str) -> bool:
    return task_name in FLOORS or (task_name in TASKS and hasattr(TASKS.get(task_name), "floor"))


def is_floor(uri: str) -> bool:
    return uri_scheme(uri) == "floor"


def compute_floor(task, ctx: CellContext) -> CellResult:
    """The floor row's result for `task` (a Task instance) on ctx.cell.dataset."""
    if hasattr(task, "floor"):
        return task.floor(ctx)
    if task.name not in FLOORS:
        raise KeyError(f"no floor (input-free predictor) for task {task.name!r}; known: {sorted(FLOORS)}. "
                       "Give the task a `floor(ctx)` method or register one with bench_tasks.plan.floors.floor_for")
    return FLOORS[task.name](task, ctx)


def _finish(ctx: CellContext, metrics: dict, items: ItemScores, predictor: str, slices=None,
            extra_config: dict | None = None) -> CellResult:
    path = items.save(ctx.artifact_dir() / "items.npz")
    return CellResult(metrics=metrics, metrics_last=dict(metrics), metrics_best_test=dict(metrics),
                      slices=slices or {}, artifacts={"items": ctx.artifact_relpath(path)}, ci=items.ci(),
                      protocol_used="floor", config={"predictor": predictor, "n_test": items.n, **(extra_config or {})})


def _item_slices(items: ItemScores, split, keys: tuple[str, ...]) -> dict:
    """Slices of the test split scored on the floor's per-item scores (only for per-image items)."""
    out = {}
    for name, mask in (getattr(split, "slices", None) or {}).items():
        m = np.asarray(mask, dtype=bool)
        if m.shape[0] != items.n or not m.any():
            continue
        sub = ItemScores(items.statistic, {k: v[m] for k, v in items.arrays.items()})
        p = sub.point()
        out[name] = {k: p[k] for k in keys if k in p}
        out[name]["n"] = float(m.sum())
    return out


# ----------------------------------------------------------------------------- classification


def _targets(split) -> torch.Tensor:
    """All targets of a split without decoding images where the split exposes them (`targets()`,
    a `targets` / `labels` array); else by iterating the split."""
    t = _split_targets(split)
    return torch.as_tensor(t) if t is not None else torch.as_tensor(split_targets(split))


@floor_for("attributes")
@floor_for("expression")
def classification_floor(task, ctx: CellContext) -> CellResult:
    size = task.image_size(ctx.profile)
    spec = _dataset(ctx.cell.dataset)
    train = spec.load(task.name, "train", ctx.data_root, ctx.profile, size)
    test = spec.load(task.name, "test", ctx.data_root, ctx.profile, size)
    y_train, y_test = _targets(train), _targets(test)
    names = task.class_names(train, y_train)
    if task.kind == "multilabel":
        majority = (y_train.float().mean(0) >= 0.5).numpy()
        pred = np.broadcast_to(majority, y_test.shape)
        items = multilabel_items_from_pred(pred, y_test.numpy())
        metrics = items.point()
        for n, a in zip(names, (pred == y_test.numpy().astype(bool)).mean(0)):
            metrics[f"acc/{n}"] = 100.0 * float(a)
        return _finish(ctx, metrics, items, "majority value of each attribute in the training split",
                       _item_slices(items, test, ("balanced_acc", "mean_acc")),
                       {"majority": {n: int(v) for n, v in zip(names, majority)}})
    counts = torch.bincount(y_train.long(), minlength=len(names))
    cls = int(counts.argmax())
    pred = np.full(len(y_test), cls)
    items = multiclass_items(pred, y_test.numpy(), max(len(names), int(y_test.max()) + 1))
    return _finish(ctx, items.point(), items, f"majority training class ({names[cls]})",
                   _item_slices(items, test, ("acc", "mean_class_acc")), {"majority_class": names[cls]})


def _dataset(name: str):
    spec = DATASETS.get(name)
    return spec() if isinstance(spec, type) else spec


# ----------------------------------------------------------------------------- dense


@floor_for("landmarks")
def landmarks_floor(task, ctx: CellContext) -> CellResult:
    size = task.image_size(ctx.profile)
    spec = _dataset(ctx.cell.dataset)
    train = spec.load("landmarks", "train", ctx.data_root, ctx.profile, size)
    test = spec.load("landmarks", "test", ctx.data_root, ctx.profile, size)
    mean_shape = _targets(train).double().mean(0).numpy()  # (K, 2) in crop pixels
    gt = _targets(test).numpy()
    preds = {i: (mean_shape, gt[i]) for i in range(len(gt))}
    metrics, slices = landmark_metrics(preds, test)
    items = landmark_items(preds, test)
    return _finish(ctx, metrics, items, "mean training shape (crop pixels)", slices)


@floor_for("parsing")
def parsing_floor(task, ctx: CellContext) -> CellResult:
    size = task.image_size(ctx.profile)  # the crop size the task predicts at
    spec = _dataset(ctx.cell.dataset)
    train = spec.load("parsing", "train", ctx.data_root, ctx.profile, size)
    test = spec.load("parsing", "test", ctx.data_root, ctx.profile, size)
    classes = list(test.meta.get("classes") or test.meta.get("class_names") or LAPA_CLASSES)
    k = len(classes)
    counts = None  # (K, H, W) class counts per pixel of the crop the task evaluates on
    for m in _iter_targets(train):
        m = torch.as_tensor(m).long()
        valid = (m >= 0) & (m < k)
        c = torch.nn.functional.one_hot(m.clamp(0, k - 1), k).permute(2, 0, 1).double() * valid
        counts = c if counts is None else counts + c
    if counts is None:
        raise ValueError(f"parsing/{ctx.cell.dataset}: the training split is empty")
    prior = counts.argmax(0)  # (S, S) the most frequent class of each pixel
    onehot = torch.nn.functional.one_hot(prior, k).permute(2, 0, 1).float()
    warp_back = bool(test.meta.get("warp_back"))
    cms = {}
    for i, gt in enumerate(_iter_targets(test)):
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
    return _finish(ctx, metrics, items, "most frequent training class of each pixel (crop frame)", slices,
                   {"warp_back": warp_back})


def _iter_targets(split):
    """The split's targets one by one, without decoding images when it exposes them."""
    t = getattr(split, "targets", None)
    if callable(t):
        yield from t()
        return
    if t is not None and len(t) == len(split):
        yield from (torch.as_tensor(x) for x in t)
        return
    for i in range(len(split)):
        yield torch.as_tensor(split[i][1])


# ----------------------------------------------------------------------------- recognition


@floor_for("recognition")
def recognition_floor(task, ctx: CellContext) -> CellResult:
    s = settings_for(ctx.profile)
    _train, _val, _test, _val_pairs, test_pairs, _source = task.load_data(ctx, s)
    metrics: dict[str, float] = {}
    for name, p in test_pairs.items():
        m = verification_metrics(np.zeros(len(p)), p.issame)
        metrics.update(m if name == "all" else {f"{name}/{k}": v for k, v in m.items()})
    metrics, slices = _split_slices(metrics)
    n_img = int(max(p.idx1.max(initial=0) for p in test_pairs.values())) + 1
    n_img = max(n_img, int(max(p.idx2.max(initial=0) for p in test_pairs.values())) + 1)
    items = pair_items(torch.ones(n_img, 1), test_pairs["all"])  # every pair: cosine 1 (constant)
    return _finish(ctx, metrics, items, "constant similarity for every pair (chance under the 10-fold protocol)",
                   slices, {"n_pairs": len(test_pairs["all"])})
