"""Shared code of the image-level classification tasks (attributes, expression).

`ClassificationTask.run(ctx)` implements the four protocols on a registered dataset:
  * linear   - features of the frozen backbone are extracted once per split and cached
               (protocols/features.py); the head (FaRL's attribute head) trains on the cached tensors;
  * concat   - the probe next to it (bench_tasks.plan.references.PROBE_PROTOCOLS): the same cached
               features and recipe, read by a logistic regression on the concatenation of every
               pooled vector (`concat_linear`) instead of FaRL's head, which averages them first;
  * frozen   - BackboneWithHead with a frozen backbone, images through the backbone every step;
  * finetune - BackboneWithHead, the backbone trains with layer-wise LR decay.
Training data are a seeded subset (protocols/fractions.py) of the train split; the epoch is
selected on the val split (protocols/train.py `fit`); test metrics at the selected epoch are the
headline, last-epoch and best-test are stored too. Robustness slices of the test split are scored
with the selected weights.

Subclasses set: name, default_datasets, headline, kind ("multilabel" | "multiclass") and may
override `class_names` and `write_artifacts`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from bench_tasks.contracts import CellContext, CellResult, Profile, Task, TaskSplit
from bench_tasks.metrics.classification import (
    multiclass_majority,
    multiclass_metrics,
    multilabel_majority,
    multilabel_metrics,
)
from bench_tasks.protocols.feature_norm import standardize_rows
from bench_tasks.protocols.features import cached_features
from bench_tasks.protocols.fractions import subset_indices
from bench_tasks.protocols.selection import grid_of, select_and_fit
from bench_tasks.protocols.train import BackboneWithHead, FitConfig, fit
from bench_tasks.registry import DATASETS, HEADS
from bench_tasks.stats import (
    ItemScores,
    items_note,
    multiclass_items,
    multilabel_items,
    multilabel_items_from_pred,
)
from bench_tasks.tasks._ceiling import ceiling_recipe, is_ceiling
from bench_tasks.tasks._floors import floor_result, item_slices, train_and_test
from bench_tasks.tasks._targets import known_targets, target_tensor

# per-protocol defaults; a profile's `extra` may override any of them as "<protocol>.<name>"
# (e.g. Profile(extra={"finetune.lr_backbone": 5e-5})) or for all protocols as "<name>"
# The linear probe trains on cached features (seconds even at 100 epochs), so it is trained to
# convergence: at least `min_epochs` epochs (the profile's `linear_epochs` when larger) on features
# standardised with the train subset's per-dimension mean / std. With the profile's 8 smoke epochs
# at lr 3e-3 on raw features the expression probe ended at a train loss of 1.85 (chance: ln 7 = 1.95).
DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {"lr_head": 1e-2, "weight_decay": 1e-4, "epochs_field": "linear_epochs", "min_epochs": 50,
               "standardize": True, "lr_grid": [3e-3, 1e-2, 3e-2]},
    # FaRL's head averages the 3 * L pooled vectors before its one linear layer; on the cpu profile's
    # frozen random-init ViT that left expression at its floor (14.73 [12.40, 17.07] vs 13.80), where a
    # logistic regression on their concatenation reads it (16.43, 3 seeds; docs/harness.md)
    "concat": {"lr_head": 1e-2, "weight_decay": 1e-4, "epochs_field": "linear_epochs", "min_epochs": 50,
               "standardize": True, "head": "concat_linear", "lr_grid": [3e-3, 1e-2, 3e-2]},
    "frozen": {"lr_head": 3e-3, "weight_decay": 1e-4, "epochs_field": "linear_epochs", "lr_grid": [1e-3, 3e-3, 1e-2]},
    "finetune": {"lr_head": 1e-3, "lr_backbone": 1e-4, "weight_decay": 0.05, "layer_decay": 0.75,
                 "epochs_field": "finetune_epochs", "lr_grid": [3e-4, 1e-3, 3e-3]},
}
# `lr_grid`: the head learning rates chosen between on val (protocols/selection.py; one value, or
# `<protocol>.lr_grid=[]` for `lr_head` alone, turns selection off); `lr_head` is the value used
# when the grid is off
CACHED_PROTOCOLS = ("linear", "concat")  # heads trained on cached frozen features
SLICE_METRICS = ("mean_acc", "balanced_acc", "acc", "mean_class_acc")


def settings(profile: Profile, protocol: str) -> dict[str, Any]:
    if protocol not in DEFAULTS:
        raise ValueError(f"unknown protocol {protocol!r}; this task supports {sorted(DEFAULTS)}")
    s = dict(DEFAULTS[protocol])
    s["epochs"] = max(int(getattr(profile, s.pop("epochs_field"))), int(s.pop("min_epochs", 0)))
    s["ema_decay"] = None
    s["head"] = s.get("head")
    for k in list(s) + ["ema_decay", "head", "layers"]:
        for name in (k, f"{protocol}.{k}"):
            if name in profile.extra:
                s[k] = profile.extra[name]
    return s


def _standardize(feats: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-dimension standardisation with the mean / std of the training subset `idx` of
    feats["train"] (frozen features can have scales differing by 30x between dimensions, which a
    short AdamW run does not undo; the result does not depend on the features' scale)."""
    names = list(feats)
    out = standardize_rows(feats["train"][idx], *(feats[s] for s in names))
    return dict(zip(names, out[1:]))


@dataclass
class _TrainData:
    """What a classification cell trains and evaluates on (features or images). `make_model()`
    builds the model afresh (the head from the cell's seed; a fine-tuned backbone from its starting
    weights); `test()` gives the test set, read only once the head's learning rate is chosen."""

    train_ds: Any
    val_ds: Any
    test: Callable[[], Any]
    train_targets: torch.Tensor | None
    make_model: Callable[[], nn.Module]
    depth: int | None
    n_train: int
    eval_bs: int
    names: list
    model: nn.Module | None = None
    metrics_sel: dict = field(default_factory=dict)
    items_note: dict = field(default_factory=dict)


def _predict(m, loader, device) -> tuple[torch.Tensor, torch.Tensor]:
    outs, ys = [], []
    with torch.no_grad():
        for x, y in loader:
            outs.append(m(x.to(device)).float().cpu())
            ys.append(y)
    return torch.cat(outs), torch.cat(ys)

class ClassificationTask(Task):
    kind: str = "multiclass"
    default_head: str = "attribute"

    @classmethod
    def setting_keys(cls) -> tuple[str, ...]:
        """Every protocol's keys, bare (all protocols) and as `<protocol>.<key>`."""
        keys = sorted({k for s in DEFAULTS.values() for k in s if k not in ("epochs_field", "min_epochs")}
                      | {"epochs", "ema_decay", "head", "layers"})
        return (*keys, *(f"{p}.{k}" for p in DEFAULTS for k in keys))

    def settings_section(self, cell, profile: Profile) -> dict[str, Any]:
        """`settings(profile, protocol)` of the cell's protocol (another protocol, e.g. a floor's:
        the four protocols' settings, as rows have always recorded them)."""
        every = {p: settings(profile, p) for p in ("linear", "concat", "frozen", "finetune")}
        return every.get(cell.protocol, every)

    # ------------------------------------------------------------------ task-specific hooks
    def class_names(self, split: TaskSplit, targets: torch.Tensor) -> list[str]:
        meta = split.meta
        for k in ("class_names", "attribute_names", "classes", "names"):
            if meta.get(k):
                return list(meta[k])
        n = targets.shape[1] if self.kind == "multilabel" else int(targets.max().item()) + 1
        return [str(i) for i in range(n)]

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "multilabel":
            return nn.functional.binary_cross_entropy_with_logits(logits, y.float())
        return nn.functional.cross_entropy(logits, y.long())

    def score(self, logits: torch.Tensor, y: torch.Tensor, names: list[str]):
        """-> (metrics, confusion matrix or None)"""
        if self.kind == "multilabel":
            return multilabel_metrics(logits, y, names), None
        return multiclass_metrics(logits, y, len(names), names)

    def item_scores(self, logits: torch.Tensor, y: torch.Tensor, names: list[str]) -> ItemScores:
        """Per-test-image scores whose sums give this task's metrics (bootstrap CIs, paired
        comparisons in the report)."""
        if self.kind == "multilabel":
            return multilabel_items(logits.float().numpy(), y.numpy())
        pred = logits.argmax(1) if logits.ndim == 2 else logits
        return multiclass_items(pred.numpy(), y.numpy(), len(names))

    def majority_baseline(self, train_targets: torch.Tensor, test_targets: torch.Tensor,
                          num_classes: int) -> dict[str, float]:
        """Test score of the constant predictor fitted on the training targets (chance level)."""
        if self.kind == "multilabel":
            return multilabel_majority(train_targets, test_targets)
        return multiclass_majority(train_targets, test_targets, num_classes)

    def floor(self, ctx: CellContext) -> CellResult:
        """The majority value of each attribute (multilabel) or the majority class (multiclass) of
        the training split, scored on the test split."""
        train, test = train_and_test(self, ctx)
        y_train, y_test = target_tensor(train), target_tensor(test)
        names = self.class_names(train, y_train)
        if self.kind == "multilabel":
            majority = (y_train.float().mean(0) >= 0.5).numpy()
            pred = np.broadcast_to(majority, y_test.shape)
            items = multilabel_items_from_pred(pred, y_test.numpy())
            metrics = items.point()
            for n, a in zip(names, (pred == y_test.numpy().astype(bool)).mean(0)):
                metrics[f"acc/{n}"] = 100.0 * float(a)
            return floor_result(ctx, metrics, items, "majority value of each attribute in the training split",
                                item_slices(items, test, ("balanced_acc", "mean_acc")),
                                {"majority": {n: int(v) for n, v in zip(names, majority)}})
        counts = torch.bincount(y_train.long(), minlength=len(names))
        cls = int(counts.argmax())
        pred = np.full(len(y_test), cls)
        items = multiclass_items(pred, y_test.numpy(), max(len(names), int(y_test.max()) + 1))
        return floor_result(ctx, items.point(), items, f"majority training class ({names[cls]})",
                            item_slices(items, test, ("acc", "mean_class_acc")), {"majority_class": names[cls]})

    def write_artifacts(self, ctx: CellContext, names: list[str], confusion, history) -> dict[str, str]:
        out = {}
        d = ctx.artifact_dir()
        if history:
            p = d / "history.json"
            p.write_text(json.dumps(history, indent=1, default=float))
            out["history"] = ctx.artifact_relpath(p)
        if confusion is not None:
            p = d / "confusion.csv"
            cm = confusion.cpu().numpy()
            lines = ["true\\pred," + ",".join(names)]
            lines += [f"{n}," + ",".join(str(int(v)) for v in row) for n, row in zip(names, cm)]
            p.write_text("\n".join(lines) + "\n")
            out["confusion"] = ctx.artifact_relpath(p)
            png = self._confusion_png(cm, names, d / "confusion.png")
            if png:
                out["confusion_png"] = ctx.artifact_relpath(png)
        return out

    @staticmethod
    def _confusion_png(cm: np.ndarray, names: list[str], path):
        try:
            # lazy: matplotlib only when a confusion-matrix figure is drawn
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        norm = cm / np.maximum(1, cm.sum(1, keepdims=True))
        fig, ax = plt.subplots(figsize=(1 + 0.6 * len(names), 1 + 0.6 * len(names)))
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    # ------------------------------------------------------------------ the protocols
    def load_splits(self, ctx: CellContext, size: int) -> dict[str, TaskSplit]:
        spec = DATASETS.get(ctx.cell.dataset)
        spec = spec() if isinstance(spec, type) else spec
        if self.name not in spec.tasks:
            raise ValueError(f"dataset {ctx.cell.dataset!r} does not serve task {self.name!r} "
                             f"(it serves {spec.tasks})")
        splits = {}
        for s in ("train", "val", "test"):
            splits[s] = spec.load(self.name, s, ctx.data_root, ctx.profile, size)
            splits[s].meta.setdefault("task", self.name)
        return splits

    def make_head(self, name: str, dim: int, num_layers: int, num_outputs: int) -> nn.Module:
        cls = HEADS.get(name)
        return cls(embed_dim=dim, num_layers=num_layers, num_outputs=num_outputs)

    def run(self, ctx: CellContext) -> CellResult:
        cell, profile = ctx.cell, ctx.profile
        st = settings(profile, cell.protocol)
        size = self.image_size(profile)
        seed = cell.seed
        torch.manual_seed(seed)
        np.random.seed(seed)
        layers = list(st.get("layers") or ctx.backbone.probe_layers())
        head_name = st["head"] or self.default_head
        splits = self.load_splits(ctx, size)
        timings: dict[str, Any] = {}
        bs = profile.batch_size
        if cell.protocol in CACHED_PROTOCOLS:
            d = self._feature_data(ctx, splits, layers, size, head_name, st, timings)
        else:
            d = self._image_data(ctx, splits, layers, head_name)
        nw = profile.num_workers if cell.protocol not in CACHED_PROTOCOLS else 0

        def evaluate(m, loader):
            logits, y = _predict(m, loader, ctx.device)
            return self.score(logits, y, d.names)[0]

        cfg = FitConfig(epochs=int(st["epochs"]), lr_head=st["lr_head"], lr_backbone=st.get("lr_backbone", 1e-4),
                        weight_decay=st["weight_decay"], layer_decay=st.get("layer_decay", 0.75),
                        ema_decay=st["ema_decay"], select_metric=self.headline,
                        higher_is_better=self.higher_is_better)
        cfg = ceiling_recipe(cfg, cell.backbone, profile, cell.task)
        # the head's learning rate is chosen on val from the protocol's grid (the ceiling keeps its
        # from-scratch recipe: one learning rate for the whole network)
        grid = [cfg.lr_head] if is_ceiling(cell.backbone) else grid_of(st.get("lr_grid"), cfg.lr_head)

        def train(lr: float, with_test: bool) -> CellResult:
            torch.manual_seed(seed)  # every value of the grid: the same head init and data order
            model = d.make_model()
            gen = torch.Generator().manual_seed(seed)
            train_loader = DataLoader(d.train_ds, batch_size=bs, shuffle=True, generator=gen, num_workers=nw,
                                      drop_last=len(d.train_ds) > bs)
            val_loader = DataLoader(d.val_ds, batch_size=d.eval_bs, shuffle=False, num_workers=nw)
            test_loader = (DataLoader(d.test(), batch_size=d.eval_bs, shuffle=False, num_workers=nw)
                           if with_test else None)
            res = fit(model, train_loader, val_loader, test_loader, self.loss, evaluate,
                      dataclasses.replace(cfg, lr_head=lr), ctx.device, backbone_depth=d.depth,
                      progress=ctx.progress, desc=f"{self.name}/{cell.protocol}/lr={lr:g}")
            res.extra.update(model=model, test_loader=test_loader)
            return res

        t0 = time.perf_counter()
        result, selection = select_and_fit(train, grid, self.higher_is_better)
        cfg = dataclasses.replace(cfg, lr_head=selection["chosen"])
        st.update(lr_head=cfg.lr_head, lr_backbone=cfg.lr_backbone, layer_decay=cfg.layer_decay, epochs=cfg.epochs)
        timings["fit_s"] = round(time.perf_counter() - t0, 3)
        d.model, test_loader = result.extra.pop("model"), result.extra.pop("test_loader")
        self._score_selected(ctx, result, d, splits["test"], test_loader)
        result.config = {"protocol": cell.protocol, "head": head_name, "layers": layers, "image_size": size,
                         "n_train": d.n_train, "standardize": bool(st.get("standardize")), "n_val": len(d.val_ds),
                         "n_test": len(test_loader.dataset), "num_outputs": len(d.names), "class_names": d.names,
                         **{k: v for k, v in cfg.__dict__.items() if k != "extra"}, **d.items_note,
                         "selection": selection}
        if result.extra.get("input_norm"):
            result.config["input_norm"] = result.extra["input_norm"]
        result.timings, result.history = timings, list(result.extra.get("history", []))
        result.protocol_used, result.head = cell.protocol, head_name
        result.extra = {"selected_check": {k: d.metrics_sel.get(k) for k in (self.headline,)}}
        return result

    def _feature_data(self, ctx: CellContext, splits, layers, size, head_name, st, timings) -> _TrainData:
        """A head on cached features (linear, concat): the features of the train and val splits,
        read from the cache or extracted once, and the head; the test split's features only when
        `test()` is called (after the choice on val)."""
        cell, backbone = ctx.cell, ctx.backbone
        feats, hits = {}, {}

        def features(s):
            f, info = cached_features(backbone, splits[s], layers, size, ctx.profile.batch_size, ctx.device,
                                      ctx.work_dir / "features", ctx.progress)
            hits[s] = info["cache_hit"]
            timings[f"features_{s}_s"] = round(info["seconds"], 4)
            timings[f"features_{s}_cache_hit"] = info["cache_hit"]
            return f

        for s in ("train", "val"):
            feats[s] = features(s)
        targets = {s: f["targets"] for s, f in feats.items()}
        names = self.class_names(splits["train"], targets["train"])
        labels = targets["train"].numpy() if self.kind == "multiclass" else None
        idx = subset_indices(len(targets["train"]), cell.fraction, cell.seed, labels)
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        probe = self.make_head(head_name, backbone.embed_dim, len(layers), len(names))
        key = getattr(probe, "feature_key", "layer_feats")
        x = {s: f[key] for s, f in feats.items()}
        x_train_raw = x["train"][idx_t]
        if st.get("standardize"):
            x = _standardize(x, idx_t)

        def test() -> TensorDataset:
            f = features("test")
            xt = f[key]
            if st.get("standardize"):  # the training subset's statistics, as for train and val
                xt = standardize_rows(x_train_raw, xt)[1]
            total = sum(timings[f"features_{s}_s"] for s in ("train", "val", "test"))
            timings["features_load_s" if all(hits.values()) else "features_extract_s"] = round(total, 4)
            timings["features_cache_hit"] = all(hits.values())
            return TensorDataset(xt, f["targets"])

        def make_model() -> nn.Module:
            # the head's initialisation depends on the seed only (train draws it after re-seeding),
            # not on whether the features came from the cache
            return self.make_head(head_name, backbone.embed_dim, len(layers), len(names))

        return _TrainData(train_ds=TensorDataset(x["train"][idx_t], targets["train"][idx_t]),
                          val_ds=TensorDataset(x["val"], targets["val"]), test=test,
                          train_targets=targets["train"][idx_t], make_model=make_model, depth=None, n_train=len(idx),
                          eval_bs=max(ctx.profile.batch_size, 512), names=names)

    def _image_data(self, ctx: CellContext, splits, layers, head_name) -> _TrainData:
        """The backbone and its head on images (frozen, finetune); a fine-tuned backbone starts
        every run of the grid from the same weights."""
        cell, backbone = ctx.cell, ctx.backbone
        train = splits["train"]
        y0 = known_targets(train)
        probe = torch.as_tensor(np.asarray(y0)) if y0 is not None else torch.stack(
            [torch.as_tensor(train[i][1]) for i in range(min(len(train), 64))])
        names = self.class_names(train, probe)
        labels = y0 if (self.kind == "multiclass" and y0 is not None) else None
        idx = subset_indices(len(train), cell.fraction, cell.seed, labels)
        train_targets = (torch.as_tensor(y0)[torch.as_tensor(idx, dtype=torch.long)] if y0 is not None
                         else None)
        frozen = cell.protocol == "frozen"
        start = None if frozen else {k: v.detach().clone() for k, v in backbone.state_dict().items()}

        def make_model() -> nn.Module:
            if start is not None:
                backbone.load_state_dict(start)
            head = self.make_head(head_name, backbone.embed_dim, len(layers), len(names))
            return BackboneWithHead(backbone, head, layers, frozen=frozen)

        return _TrainData(train_ds=Subset(train, idx.tolist()), val_ds=splits["val"], test=lambda: splits["test"],
                          train_targets=train_targets, make_model=make_model,
                          depth=None if frozen else backbone.depth, n_train=len(idx),
                          eval_bs=ctx.profile.batch_size, names=names)

    def _score_selected(self, ctx: CellContext, result: CellResult, d: _TrainData, test_split, test_loader) -> None:
        """The model holds the selected epoch's weights: its test scores, robustness slices, the
        majority baseline, artifacts (confusion, history), per-item scores and their CIs."""
        logits, y = _predict(d.model, test_loader, ctx.device)
        d.metrics_sel, confusion = self.score(logits, y, d.names)
        slices = {}
        for sname, mask in (test_split.slices or {}).items():
            mask_t = torch.as_tensor(np.asarray(mask, dtype=bool))
            if mask_t.numel() != len(y) or not mask_t.any():
                continue
            m, _ = self.score(logits[mask_t], y[mask_t], d.names)
            slices[sname] = {k: v for k, v in m.items() if k in SLICE_METRICS}
            slices[sname]["n"] = int(mask_t.sum())
        # a split without cheap targets: the test split's own majority (an upper bound of the chance
        # level; no image decoding)
        train_targets = y if d.train_targets is None else d.train_targets
        baseline = self.majority_baseline(train_targets, y, len(d.names))
        for m in (result.metrics, result.metrics_last, result.metrics_best_test):
            m.update(baseline)
        history = result.extra.get("history", [])
        result.artifacts.update(self.write_artifacts(ctx, d.names, confusion, history))
        items = self.item_scores(logits, y, d.names)
        result.ci = items.ci()
        d.items_note = items_note(items)
        result.artifacts["items"] = ctx.artifact_relpath(items.save(ctx.artifact_dir() / "items.npz"))
        result.slices.update(slices)
