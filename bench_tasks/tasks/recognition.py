"""Face recognition: a margin-softmax embedding head on a ViT backbone, scored by verification.

One cell = (backbone, "recognition", dataset, protocol, fraction, seed). The head
(`bench_tasks.heads.margin.RecognitionHead`: BN -> Linear -> BN embedding, ArcFace s=64 m=0.5 by
default, CosFace m=0.35 as an option) trains on the identities of a training split; the epoch is
selected on the 10-fold accuracy of a validation pair set built from identities disjoint from
the test identities; test pair sets are scored with `bench_tasks.metrics.verification`.

Protocols:
  * ``linear``: frozen backbone, features cached once (`cached_features`, layers=[depth-1]); the
    feature is [final normalised CLS ; mean of the last block's patch tokens] (2 * D); the
    embedding head trains on the cached vectors. Flipped images are cached as their own split.
  * ``frozen``: `BackboneWithHead(frozen=True)`, the same feature computed on the fly.
  * ``finetune``: the whole network trains, backbone LR decayed layer-wise (`fit`'s LLRD).
  * ``cosine``: no head, nothing trained: the parameter-free probe. The same frozen, cached
    feature, standardised per dimension with the training split's mean / std (no labels used),
    flip-summed, compared by cosine, scored with the same 10-fold protocol. A failed ArcFace head
    cannot make an encoder look worse than random init here.
Every protocol stores a 95 % bootstrap CI of `acc` over the test pairs (per-pair correctness
under the 10-fold thresholds, `ten_fold_correct`) and the per-pair scores (artifact `items`).

Data:
  * datasets with train/val/test identity splits (``synthface``, ``face_folder``): train on
    train identities, pairs from val (selection) and test (report) built by `bench_tasks.stats.pairs`;
    for SynthFace the test split also gives the hard pair sets pose / expression / occlusion /
    lighting, reported in `CellResult.slices`.
  * test-only verification sets (``lfw``, ``lfw_bin``, ``cfp_fp``, ``agedb_30``: the shipped pair
    lists): the training source is, in order, settings["train_root"] (`run --set
    recognition.train_root=<folder>`) / `<parent of the dataset root>/train_faces` (a `face_folder`:
    train identities train, val identities select), else SynthFace train / val identities.

Settings (the profile's `extra.recognition`, or `run --set recognition.<key>=...`, override
`DEFAULTS`): margin, s, m, easy_margin,
emb_dim, flip, n_pairs, n_hard_pairs, lr_head, lr_backbone, linear_epochs, epochs, train_root.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from bench_tasks.contracts import CellContext, CellResult, Profile, Task
from bench_tasks.datasets.face_folder import load_face_folder
from bench_tasks.heads.margin import RecognitionHead
from bench_tasks.metrics.verification import (
    combine_flip,
    cosine_scores,
    ten_fold_correct,
    verification_metrics,
)
from bench_tasks.protocols.feature_norm import standardize_rows
from bench_tasks.protocols.features import cached_features
from bench_tasks.protocols.fractions import subset_indices
from bench_tasks.protocols.selection import grid_of, select_and_fit
from bench_tasks.protocols.train import BackboneWithHead, FitConfig, fit
from bench_tasks.registry import DATASETS, TASKS
from bench_tasks.stats import ItemScores, items_note
from bench_tasks.stats.pairs import Pairs, make_pair_sets, make_pairs
from bench_tasks.tasks._ceiling import ceiling_recipe, is_ceiling
from bench_tasks.tasks._floors import floor_result
from bench_tasks.tasks._recognition_splits import Flipped, Relabel, Subset, split_identity, split_labels

DEFAULTS = {
    "margin": "arcface",  # or "cosface"
    "s": 64.0,
    "m": None,  # None: 0.5 for arcface, 0.35 for cosface
    "easy_margin": False,
    "emb_dim": 512,  # smoke profile: 128 (bench_tasks/configs/smoke.yaml)
    "flip": True,  # embedding = emb(x) + emb(hflip(x)), then L2-normalised
    "n_pairs": 6000,  # per pair set (balanced), capped by the genuine pairs available
    "n_hard_pairs": 2000,
    "lr_head": 3e-3,
    # the head learning rates chosen between on val (linear, frozen, finetune; protocols/selection.py);
    # one value (or []: lr_head alone) turns selection off
    "lr_grid": [1e-3, 3e-3, 1e-2],
    "lr_backbone": 1e-4,
    "layer_decay": 0.75,
    "linear_epochs": None,  # None: profile.linear_epochs
    "epochs": None,  # frozen / finetune; None: profile.recognition_epochs
    "train_root": None,
}

SLICE_SEP = "/"


def settings_for(profile: Profile) -> dict:
    s = dict(DEFAULTS)
    s.update(profile.extra.get("recognition", {}) if profile.extra else {})
    if s["m"] is None:
        s["m"] = 0.5 if s["margin"] == "arcface" else 0.35
    return s


def _spec(name: str):
    spec = DATASETS.get(name)
    return spec() if isinstance(spec, type) else spec


# ----------------------------------------------------------------------------- evaluation


class PairEval:
    """A split's images (or cached features) and its pair sets; `evaluate` scores them all from
    one embedding pass. Keys: the "all" set's metrics plain, others as "<set>/<metric>"."""

    def __init__(self, pairs: dict[str, Pairs], images=None, feats=None, feats_flip=None,
                 batch_size: int = 64, device=None, flip: bool = True):
        self.pairs, self.images, self.feats, self.feats_flip = pairs, images, feats, feats_flip
        self.batch_size, self.device, self.flip = batch_size, device or torch.device("cpu"), flip

    @torch.no_grad()
    def embeddings(self, model) -> torch.Tensor:
        if self.feats is not None:
            out, out_f = [], []
            for k in range(0, len(self.feats), 1024):
                out.append(model(self.feats[k:k + 1024].to(self.device)).float().cpu())
                if self.flip:
                    out_f.append(model(self.feats_flip[k:k + 1024].to(self.device)).float().cpu())
            return combine_flip(torch.cat(out), torch.cat(out_f) if self.flip else None)
        out, out_f = [], []
        for x, _ in DataLoader(self.images, batch_size=self.batch_size, shuffle=False, num_workers=0):
            x = x.to(self.device)
            if self.flip:
                e = model(torch.cat([x, x.flip(-1)])).float().cpu()
                out.append(e[: len(x)])
                out_f.append(e[len(x):])
            else:
                out.append(model(x).float().cpu())
        return combine_flip(torch.cat(out), torch.cat(out_f) if self.flip else None)

    def evaluate(self, model) -> dict[str, float]:
        emb = self.embeddings(model)
        res: dict[str, float] = {}
        for name, p in self.pairs.items():
            m = verification_metrics(cosine_scores(emb, p.idx1, p.idx2), p.issame)
            res.update(m if name == "all" else {f"{name}{SLICE_SEP}{k}": v for k, v in m.items()})
        return res


def _evaluate(model, evalset: PairEval) -> dict[str, float]:
    return evalset.evaluate(model)


def _split_slices(d: dict) -> tuple[dict, dict]:
    main, slices = {}, {}
    for k, v in d.items():
        if SLICE_SEP in k:
            name, metric = k.split(SLICE_SEP, 1)
            slices.setdefault(name, {})[metric] = v
        else:
            main[k] = v
    return main, slices


# ----------------------------------------------------------------------------- the task


@TASKS.register("recognition")
class RecognitionTask(Task):
    name = "recognition"
    default_datasets = ("lfw", "lfw_bin", "cfp_fp", "agedb_30")  # the runner adds synthface
    protocols = ("linear", "frozen", "finetune", "cosine")
    headline = "acc"
    # 2: scale-free head inputs (per-channel standardised tapped features) and the head's learning
    # rate chosen on val from a grid (old rows are recomputed)
    version = 2
    higher_is_better = True

    @classmethod
    def setting_keys(cls) -> tuple[str, ...]:
        return tuple(f"recognition.{k}" for k in DEFAULTS)

    def settings_section(self, cell, profile: Profile) -> dict:
        return settings_for(profile)

    # ------------------------------------------------------------------ data

    def _training_source(self, ctx: CellContext, s: dict, size: int):
        root = s.get("train_root")
        if not root and ctx.data_root:
            cand = Path(ctx.data_root).resolve().parent / "train_faces"
            root = str(cand) if cand.is_dir() else None
        if root:
            return (load_face_folder(root, "train", size, test_frac=0.0),
                    load_face_folder(root, "val", size, test_frac=0.0), f"face_folder:{root}")
        sf = _spec("synthface")
        return (sf.load("recognition", "train", None, ctx.profile, size),
                sf.load("recognition", "val", None, ctx.profile, size), "synthface")

    def load_data(self, ctx: CellContext, s: dict):
        size = ctx.profile.image_size
        spec = _spec(ctx.cell.dataset)
        if spec.test_only:
            test = spec.load("recognition", "test", ctx.data_root, ctx.profile, size)
            train, val, source = self._training_source(ctx, s, size)
        else:
            train, val, test = (spec.load("recognition", sp, ctx.data_root, ctx.profile, size)
                                for sp in ("train", "val", "test"))
            source = ctx.cell.dataset
        seed = ctx.cell.seed
        val_pairs = {"all": make_pairs(split_identity(val), s["n_pairs"], seed=1_000_003 + seed)}
        if getattr(test, "pairs", None):
            test_pairs = dict(test.pairs)
        else:
            test_pairs = make_pair_sets(split_identity(test), split_labels(test), s["n_pairs"],
                                        s["n_hard_pairs"], seed=seed)
        for name, p in {**val_pairs, **test_pairs}.items():
            if len(p) < 20 or p.issame.all() or not p.issame.any():
                raise ValueError(f"recognition/{ctx.cell.dataset}: pair set {name!r} has {len(p)} pairs "
                                 f"({int(p.issame.sum())} genuine); need >= 10 of each kind")
        return train, val, test, val_pairs, test_pairs, source

    # ------------------------------------------------------------------ run

    def floor(self, ctx: CellContext) -> CellResult:
        """One constant similarity for every test pair: the 10-fold protocol then predicts one answer
        for all pairs (chance on balanced pair lists)."""
        _train, _val, _test, _val_pairs, test_pairs, _source = self.load_data(ctx, settings_for(ctx.profile))
        metrics: dict[str, float] = {}
        for name, p in test_pairs.items():
            m = verification_metrics(np.zeros(len(p)), p.issame)
            metrics.update(m if name == "all" else {f"{name}{SLICE_SEP}{k}": v for k, v in m.items()})
        metrics, slices = _split_slices(metrics)
        n_img = int(max(p.idx1.max(initial=0) for p in test_pairs.values())) + 1
        n_img = max(n_img, int(max(p.idx2.max(initial=0) for p in test_pairs.values())) + 1)
        items = pair_items(torch.ones(n_img, 1), test_pairs["all"])  # every pair: cosine 1 (constant)
        return floor_result(ctx, metrics, items,
                            "constant similarity for every pair (chance under the 10-fold protocol)",
                            slices, {"n_pairs": len(test_pairs["all"])})

    def run(self, ctx: CellContext) -> CellResult:
        t0 = time.perf_counter()
        s = settings_for(ctx.profile)
        cell, prof, dev = ctx.cell, ctx.profile, ctx.device
        torch.manual_seed(cell.seed)
        train, val, test, val_pairs, test_pairs, source = self.load_data(ctx, s)
        ident = split_identity(train)
        keep = subset_indices(len(train), cell.fraction, cell.seed, labels=ident)
        classes, labels = np.unique(ident[keep], return_inverse=True)
        t_data = time.perf_counter() - t0
        bb = ctx.backbone
        layers = [bb.depth - 1]
        margin_kw = {"s": s["s"], "m": s["m"]}
        if s["margin"] == "arcface":
            margin_kw["easy_margin"] = s["easy_margin"]
        bs = prof.batch_size
        info: dict = {"train_source": source, "n_train_images": int(len(keep)), "n_train_identities": int(len(classes)),
                      "pairs": {f"val/{k}": len(p) for k, p in val_pairs.items()} | {f"test/{k}": len(p) for k, p in test_pairs.items()},
                      "pair_info": {k: {a: b for a, b in p.info.items() if isinstance(b, (int, float, str))}
                                    for k, p in test_pairs.items()},
                      "settings": {k: v for k, v in s.items()}, "data_seconds": t_data,
                      "image_size": int(ctx.profile.image_size)}
        if cell.protocol == "cosine":
            return self.run_cosine(ctx, s, train, keep, test, test_pairs, info, t0)
        if cell.protocol == "linear":
            cache = Path(ctx.work_dir) / "features"
            t1 = time.perf_counter()

            def feats(split):
                f, _ = cached_features(bb, split, layers, prof.image_size, bs, dev, cache, ctx.progress)
                return torch.cat([f["cls"], f["layer_feats"][:, -1, 1]], dim=1)

            x_raw = feats(train)[torch.as_tensor(keep)]

            def std(x):  # the training subset's per-dimension statistics: a scale-free head input
                return standardize_rows(x_raw, x)[1]

            def pair_eval(split, pairs):
                return PairEval(pairs, feats=std(feats(split)),
                                feats_flip=std(feats(Flipped(split))) if s["flip"] else None, device=dev, flip=s["flip"])

            x_train = std(x_raw)
            val_eval = pair_eval(val, val_pairs)
            info["feature_seconds"] = time.perf_counter() - t1
            test_eval = _Lazy(lambda: pair_eval(test, test_pairs))  # read once the head's lr is chosen
            ds = TensorDataset(x_train, torch.as_tensor(labels))
            num_workers = 0

            def make_model():
                return RecognitionHead(x_train.shape[1], len(classes), s["emb_dim"], s["margin"], **margin_kw)

            epochs = s["linear_epochs"] or prof.linear_epochs
            depth = None
        elif cell.protocol in ("frozen", "finetune"):
            frozen = cell.protocol == "frozen"
            start = None if frozen else {k: v.detach().clone() for k, v in bb.state_dict().items()}

            def make_model():
                if start is not None:  # every value of the grid fine-tunes from the same weights
                    bb.load_state_dict(start)
                head = RecognitionHead(2 * bb.embed_dim, len(classes), s["emb_dim"], s["margin"],
                                       from_backbone=True, **margin_kw)
                return BackboneWithHead(bb, head, layers, frozen=frozen)

            ds = Relabel(Subset(train, keep), dict(zip(classes.tolist(), range(len(classes)))))
            num_workers = prof.num_workers
            val_eval = PairEval(val_pairs, images=val, batch_size=bs, device=dev, flip=s["flip"])
            test_eval = _Lazy(lambda: PairEval(test_pairs, images=test, batch_size=bs, device=dev, flip=s["flip"]))
            epochs = s["epochs"] or prof.recognition_epochs
            depth = None if frozen else bb.depth
        else:
            raise ValueError(f"recognition has protocols {self.protocols}, not {cell.protocol!r}")
        cfg = FitConfig(epochs=epochs, lr_head=s["lr_head"], lr_backbone=s["lr_backbone"],
                        layer_decay=s["layer_decay"], select_metric="acc", higher_is_better=True)
        cfg = ceiling_recipe(cfg, cell.backbone, prof, cell.task)
        grid = [cfg.lr_head] if is_ceiling(cell.backbone) else grid_of(s.get("lr_grid"), cfg.lr_head)

        def train_one(lr: float, with_test: bool) -> CellResult:
            torch.manual_seed(cell.seed)  # every value: the same head init and data order
            model = make_model()
            head = model.head if isinstance(model, BackboneWithHead) else model
            loader = DataLoader(ds, batch_size=bs, shuffle=True, drop_last=len(ds) > bs, num_workers=num_workers,
                                generator=torch.Generator().manual_seed(cell.seed))
            res = fit(model, loader, val_eval, test_eval.get() if with_test else None,
                      lambda emb, y: head.loss(emb, y), _evaluate, dataclasses.replace(cfg, lr_head=lr), dev,
                      backbone_depth=depth, progress=ctx.progress,
                      desc=f"recognition/{cell.dataset}/{cell.protocol}/lr={lr:g}")
            res.extra["model"] = model
            return res

        t2 = time.perf_counter()
        res, selection = select_and_fit(train_one, grid, True)
        cfg = dataclasses.replace(cfg, lr_head=selection["chosen"])
        s.update(lr_head=cfg.lr_head, lr_backbone=cfg.lr_backbone, layer_decay=cfg.layer_decay, epochs=cfg.epochs)
        info["settings"] = {k: v for k, v in s.items()}
        info["selection"] = selection
        model = res.extra.pop("model")
        evals = [val_eval, test_eval.get()]
        info["fit_seconds"] = time.perf_counter() - t2
        metrics, slices = _split_slices(res.metrics)
        last, _ = _split_slices(res.metrics_last)
        best, _ = _split_slices(res.metrics_best_test)
        info["history"] = res.extra.get("history", [])
        if res.extra.get("input_norm"):
            info["input_norm"] = res.extra["input_norm"]
        # the model holds the selected epoch's weights: per-pair scores of the test pairs for the CI
        items = pair_items(evals[1].embeddings(model), test_pairs["all"])
        info.update(items_note(items))
        ci, artifacts = self.store_items(ctx, items)
        info["seconds"] = time.perf_counter() - t0
        return CellResult(metrics=metrics, metrics_last=last, metrics_best_test=best, slices=slices,
                          ci=ci, artifacts=artifacts, **typed_info(info, cell.protocol, s["margin"]))

    @staticmethod
    def store_items(ctx: CellContext, items: ItemScores) -> tuple[dict, dict]:
        ci = items.ci()
        path = items.save(ctx.artifact_dir() / "items.npz")
        return ci, {"items": ctx.artifact_relpath(path)}

    def run_cosine(self, ctx: CellContext, s: dict, train, keep, test, test_pairs, info, t0) -> CellResult:
        """The parameter-free probe: cosine of standardised, flip-summed frozen features."""
        bb, prof, dev = ctx.backbone, ctx.profile, ctx.device
        cache = Path(ctx.work_dir) / "features"
        layers = [bb.depth - 1]

        def feats(split):
            f, _ = cached_features(bb, split, layers, prof.image_size, prof.batch_size, dev, cache, ctx.progress)
            return torch.cat([f["cls"], f["layer_feats"][:, -1, 1]], dim=1)

        t1 = time.perf_counter()
        x_train = feats(train)[torch.as_tensor(keep)]
        x_test, *x_flip = standardize_rows(x_train, feats(test), *((feats(Flipped(test)),) if s["flip"] else ()))[1:]
        x_flip = x_flip[0] if x_flip else None
        info["feature_seconds"] = time.perf_counter() - t1
        ev = PairEval(test_pairs, feats=x_test, feats_flip=x_flip, device=torch.device("cpu"), flip=s["flip"])
        identity = torch.nn.Identity()
        metrics, slices = _split_slices(ev.evaluate(identity))
        items = pair_items(ev.embeddings(identity), test_pairs["all"])
        info.update(items_note(items))
        ci, artifacts = self.store_items(ctx, items)
        info["probe"] = "cosine of [final CLS ; mean last-block patch token], standardised with train-split stats"
        info["seconds"] = time.perf_counter() - t0
        return CellResult(metrics=metrics, metrics_last=dict(metrics), metrics_best_test=dict(metrics),
                          slices=slices, ci=ci, artifacts=artifacts, **typed_info(info, "cosine", "cosine"))


class _Lazy:
    """A value built on first use (the test split's pair evaluation: read after the choice on val)."""

    def __init__(self, make):
        self.make, self.value = make, None

    def get(self):
        if self.value is None:
            self.value = self.make()
        return self.value


def typed_info(info: dict, protocol: str, head: str) -> dict:
    """CellResult's typed fields from a recognition run's `info`: `*_seconds` are timings, the
    history is the history, the rest is the config."""
    timings = {k: round(float(v), 4) for k, v in info.items() if k.endswith("seconds")}
    config = {k: v for k, v in info.items() if k not in timings and k != "history"}
    return {"config": config, "timings": timings, "history": list(info.get("history", [])),
            "protocol_used": protocol, "head": head}


def pair_items(emb: torch.Tensor, pairs: Pairs) -> ItemScores:
    """Per-pair correctness (x 100, so the mean is `acc` in %) of one pair set under the 10-fold
    thresholds; item ids identify the pairs (a paired comparison needs the same pair list)."""
    scores = cosine_scores(emb, pairs.idx1, pairs.idx2)
    correct = ten_fold_correct(scores, pairs.issame)
    ids = np.asarray(pairs.idx1, dtype=np.int64) * 1_000_003 + np.asarray(pairs.idx2, dtype=np.int64)
    return ItemScores("mean", {"acc": 100.0 * correct}, items=ids)
