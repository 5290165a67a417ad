"""What face parsing and landmarks share: settings per profile, split loading, geometry (affine
warps in pixel coordinates), the base class of the real-data readers, model building and fit
through `bench_tasks.protocols.train`, and preview drawing.

Pixel convention (the same as `paco_fr.data.template`): pixel centres at integer coordinates,
(x, y) order; a 2x3 matrix `m` maps source pixel coords to destination pixel coords.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset, Subset

from bench_tasks.contracts import CellContext, Profile, TaskSplit
from bench_tasks.heads.dense import DENSE_HEAD  # noqa: F401 - D.DENSE_HEAD for the dense tasks
from bench_tasks.protocols.fractions import subset_indices
from bench_tasks.protocols.frozen_cache import FrozenFeatureCache
from bench_tasks.protocols.selection import grid_of, select_and_fit
from bench_tasks.protocols.train import BackboneWithHead, FitConfig, fit
from bench_tasks.tasks._ceiling import ceiling_recipe, is_ceiling

# ----------------------------------------------------------------------------- settings

# Defaults below; a profile's `extra["dense_<key>"]` (bench_tasks/configs/<profile>.yaml, or
# `run --set dense_<key>=...`) overrides any of them: e.g. smoke's 32 UPerHead channels and EMA 0.9
# (FaRL: 768 channels and EMA 0.999 over ~300 epochs; 0 or None turns EMA off). docs/dense.md.
DENSE_KEYS = ("size", "channels", "ema_decay", "epochs", "batch_size", "lr_head", "lr_backbone", "weight_decay",
              "layer_decay", "coords", "landmark_loss", "heatmap_sigma", "frozen_cache_mb", "min_steps", "evals",
              "class_weight", "lr_grid", "pilot_frac")


# the dense heads' grid: a third of, and three times, the head's learning rate; each value's pilot
# trains a quarter of the budget on val (three full runs more would quadruple the dense heads' cost,
# the larger part of every study), the chosen value the whole budget
DENSE_GRID_FACTORS = (1 / 3, 1.0, 3.0)
DENSE_PILOT_FRAC = 0.25


def dense_section(profile: Profile) -> dict:
    """A dense cell's settings section (Task.settings_section): `dense_settings` and the training
    subset (`dense_train_images`)."""
    return {**dense_settings(profile), "train_images": (profile.extra or {}).get("dense_train_images")}


def dense_settings(profile: Profile) -> dict:
    ex = profile.extra or {}
    return {
        "size": int(ex.get("dense_size", profile.dense_size)),
        "channels": int(ex.get("dense_channels", 128)),
        "ema_decay": ex.get("dense_ema_decay", 0.999) or None,
        "epochs": int(ex.get("dense_epochs", profile.dense_epochs)),
        "batch_size": int(ex.get("dense_batch_size", profile.batch_size)),
        # FaRL: AdamW, wd 1e-5, lr 1e-3 head / 1e-4 backbone (the backbone's lr decays layer-wise)
        "lr_head": float(ex.get("dense_lr_head", 1e-3)),
        "lr_backbone": float(ex.get("dense_lr_backbone", 1e-4)),
        "weight_decay": float(ex.get("dense_weight_decay", 1e-5)),
        "layer_decay": float(ex.get("dense_layer_decay", 0.9)),
        "num_workers": int(profile.num_workers),
        # the head reads token positions (CoordConv, bench_tasks.heads.dense); landmarks loss
        # `ce` (heatmap softmax cross-entropy + L1) or FaRL's `farl` (L1 + BCE), see _heatmaps.py
        "coords": bool(ex.get("dense_coords", True)),
        "landmark_loss": str(ex.get("dense_landmark_loss", "ce")),
        "heatmap_sigma": float(ex.get("dense_heatmap_sigma", 1.0)),
        # frozen protocol: memoise the backbone's token maps per image (0 = off), MiB
        "frozen_cache_mb": float(ex.get("dense_frozen_cache_mb", 2048)),
        # at least this many optimiser steps (epochs raised for small training fractions); how
        # many times val/test are evaluated over the run (0 = every epoch)
        "min_steps": int(ex.get("dense_min_steps", 0)),
        "evals": int(ex.get("dense_evals", 0)),
        # parsing: per-class loss weights from the training masks (`none` | `inv_sqrt`)
        "class_weight": str(ex.get("dense_class_weight", "inv_sqrt")),
        # the head learning rates chosen between on val (None: lr_head x DENSE_GRID_FACTORS; one
        # value: no selection) and the share of the budget each value's pilot trains (fit_dense)
        "lr_grid": ex.get("dense_lr_grid"),
        "pilot_frac": float(ex.get("dense_pilot_frac", DENSE_PILOT_FRAC)),
    }


# A plan's `linear` is planned as `frozen` for dense tasks (Task.protocol_aliases): a linear probe
# on cached pooled features cannot predict masks or points, so the dense protocol with the weakest
# head (frozen backbone, FPN + UPerHead trained, FaRL's freeze_backbone) stands in for it, and
# rows, tables and `list` say `frozen`.
PROTOCOL_ALIASES = {"linear": "frozen"}


def resolve_protocol(protocol: str) -> str:
    """`linear` (rows written before PROTOCOL_ALIASES) runs as `frozen`."""
    if protocol in ("frozen", "linear"):
        return "frozen"
    if protocol == "finetune":
        return "finetune"
    raise ValueError(f"dense tasks support protocols frozen, linear (= frozen), finetune; got {protocol!r}")


# ----------------------------------------------------------------------------- data


def load_splits(ctx: CellContext, task: str, size: int) -> tuple[Dataset, TaskSplit, TaskSplit]:
    """train (the cell's seeded fraction of it), val, test TaskSplits at `size`."""
    spec = get_dataset_spec(ctx.cell.dataset)
    if task not in spec.tasks:
        raise ValueError(f"dataset {ctx.cell.dataset!r} does not serve {task!r} (serves {spec.tasks})")
    splits = {s: spec.load(task, s, ctx.data_root, ctx.profile, size) for s in ("train", "val", "test")}
    train: Dataset = splits["train"]
    if ctx.cell.fraction < 1:
        idx = subset_indices(len(train), ctx.cell.fraction, ctx.cell.seed)
        train = Subset(train, idx.tolist())
    cap = (ctx.profile.extra or {}).get("dense_train_images")
    if cap and len(train) > cap:  # smoke: bound the CPU cost of training FPN + UPerHead
        train = Subset(train, list(range(int(cap))))
    return train, splits["val"], splits["test"]


def loaders(train: Dataset, val: Dataset, test: Dataset, batch_size: int, num_workers: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    # drop_last: BatchNorm in the FPN / UPerHead's 1x1 pooling branch needs > 1 sample per batch
    bs_train = max(2, min(batch_size, len(train)))
    tl = DataLoader(train, batch_size=bs_train, shuffle=True, drop_last=len(train) > bs_train,
                    num_workers=num_workers, generator=g, persistent_workers=False)
    vl = DataLoader(WithIndex(val), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    te = DataLoader(WithIndex(test), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    return tl, vl, te


def missing_requirements(task: str) -> list[str]:
    """[a sentence] when mmsegmentation's UPerHead (mmcv with compiled ops) does not import here."""
    from bench_tasks.heads.dense import require_mmseg

    try:
        require_mmseg()
    except ImportError as err:
        return [f"{task}: {err}"]
    return []


# ----------------------------------------------------------------------------- geometry and readers

# the pixel geometry and reader bases live with the readers (datasets never import tasks); the
# dense tasks and FaRL's protocol use them from here too
from bench_tasks.datasets._readers import (  # noqa: E402,F401
    AlignedParsingSplit,
    LandmarkRecordsSplit,
    WithIndex,
    apply_affine,
    check_root,
    compose,
    crop_matrix,
    get_dataset_spec,
    holdout,
    image_tensor,
    invert_affine,
    read_image,
    read_label,
    resize_matrix,
    warp_affine,
)

# ----------------------------------------------------------------------------- training


def step_budget(steps_per_epoch: int, settings: dict) -> tuple[int, int]:
    """(epochs, eval_every): `epochs`, raised so that training takes at least `min_steps`
    optimiser steps (a small training fraction gets as many updates as the full set, not 10x
    fewer), and evaluated `evals` times (evenly, the last epoch always) rather than every epoch."""
    epochs = int(settings["epochs"])
    min_steps = int(settings.get("min_steps") or 0)
    if min_steps:
        epochs = max(epochs, -(-min_steps // max(1, steps_per_epoch)))
    evals = int(settings.get("evals") or 0)
    eval_every = max(1, -(-epochs // evals)) if evals else 1
    return epochs, eval_every


def dense_grid(settings: dict) -> list[float]:
    """The head learning rates a dense cell chooses between on val: `lr_grid` (absolute values), else
    `lr_head` x DENSE_GRID_FACTORS; one value turns selection off."""
    if settings.get("lr_grid") is not None:
        return grid_of(settings["lr_grid"], settings["lr_head"])
    return grid_of([float(f"{settings['lr_head'] * f:.3g}") for f in DENSE_GRID_FACTORS], settings["lr_head"])


def pilot_settings(settings: dict) -> dict:
    """A grid value's pilot run: `pilot_frac` of the epochs and of the minimum steps (at least one
    epoch), evaluated on val only."""
    frac = float(settings.get("pilot_frac") or 1.0)
    out = dict(settings)
    out["epochs"] = max(1, math.ceil(int(settings["epochs"]) * frac))
    if settings.get("min_steps"):
        out["min_steps"] = max(1, math.ceil(int(settings["min_steps"]) * frac))
    return out


def fit_dense(ctx: CellContext, head: torch.nn.Module, layers: list[int], settings: dict,
              train: Dataset, val: Dataset, test: Dataset, loss_fn, evaluate, select_metric: str,
              higher_is_better: bool):
    """Train `head` (built from the cell's seed) on the backbone's tapped layers. The head's learning
    rate is chosen on val from `dense_grid(settings)`: each value trains a pilot (`pilot_settings`,
    val only), the chosen one the full budget with test scored; a ceiling keeps its recipe."""
    protocol = resolve_protocol(ctx.cell.protocol)
    backbone = ctx.backbone
    if protocol == "frozen" and settings.get("frozen_cache_mb"):
        # the frozen backbone's token maps of each image are computed once, not once per epoch
        # (shared by every run of the grid)
        backbone = FrozenFeatureCache(backbone, settings["frozen_cache_mb"])
    frozen = protocol == "frozen"
    head_init = copy.deepcopy(head.state_dict())
    start = None if frozen else copy.deepcopy(ctx.backbone.state_dict())
    ceiling = is_ceiling(ctx.cell.backbone)
    grid = [settings["lr_head"]] if ceiling else dense_grid(settings)
    runs: dict = {}

    def run(lr: float, with_test: bool):
        st = settings if with_test else pilot_settings(settings)
        head.load_state_dict(head_init)
        if start is not None:
            ctx.backbone.load_state_dict(start)
        torch.manual_seed(ctx.cell.seed)
        model = BackboneWithHead(backbone, head, layers, frozen=frozen)
        tl, vl, te = loaders(train, val, test, st["batch_size"], st["num_workers"], ctx.cell.seed)
        epochs, eval_every = step_budget(len(tl), st)
        cfg = FitConfig(
            epochs=epochs, lr_head=lr, lr_backbone=st["lr_backbone"],
            weight_decay=st["weight_decay"], layer_decay=st["layer_decay"],
            ema_decay=st["ema_decay"], select_metric=select_metric, higher_is_better=higher_is_better,
            eval_every=eval_every,
        )
        cfg = ceiling_recipe(cfg, ctx.cell.backbone, ctx.profile, ctx.cell.task)
        res = fit(model, tl, vl, te if with_test else None, loss_fn, evaluate, cfg, ctx.device,
                  backbone_depth=None if frozen else ctx.backbone.depth,
                  progress=ctx.progress, desc=f"{ctx.cell.task}/{ctx.cell.dataset}/lr={lr:g}")
        runs.update(model=model, te=te, cfg=cfg)
        return res

    pilot = (f"each value's pilot: {settings.get('pilot_frac'):g} of the epochs and minimum steps, val only"
             if len(grid) > 1 else "")
    result, selection = select_and_fit(run, grid, higher_is_better, pilot=pilot)
    cfg = runs["cfg"]
    settings.update(lr_head=cfg.lr_head, lr_backbone=cfg.lr_backbone, layer_decay=cfg.layer_decay,
                    selection=selection)
    return runs["model"], result, runs["te"], protocol


# ----------------------------------------------------------------------------- previews

PALETTE = np.array([
    [0, 0, 0], [255, 204, 153], [0, 128, 0], [0, 200, 100], [0, 0, 255], [0, 128, 255],
    [255, 128, 0], [255, 0, 0], [128, 0, 128], [200, 0, 80], [128, 64, 0], [255, 255, 0],
    [0, 255, 255], [255, 0, 255], [128, 128, 128], [64, 0, 128], [0, 64, 64], [192, 192, 0],
    [64, 128, 192], [192, 64, 192],
], dtype=np.uint8)


def colorize(mask: np.ndarray) -> np.ndarray:
    return PALETTE[np.asarray(mask) % len(PALETTE)]


def to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_grid(rows: list[list[np.ndarray]], path: Path, scale: int = 1, pad: int = 2) -> Path:
    h = max(t.shape[0] for r in rows for t in r)
    w = max(t.shape[1] for r in rows for t in r)
    ncol = max(len(r) for r in rows)
    canvas = np.full(((h + pad) * len(rows) + pad, (w + pad) * ncol + pad, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, t in enumerate(r):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y:y + t.shape[0], x:x + t.shape[1]] = t
    im = Image.fromarray(canvas)
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def draw_points(img: np.ndarray, pts_list: list[tuple[np.ndarray, tuple[int, int, int]]],
                scale: int = 1) -> np.ndarray:
    im = Image.fromarray(img)
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.BILINEAR)
    d = ImageDraw.Draw(im)
    r = max(1, scale // 2)
    for pts, color in pts_list:
        for x, y in np.asarray(pts, dtype=np.float64):
            cx, cy = (x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    return np.asarray(im)


def preview_scale(size: int) -> int:
    return max(1, 192 // size)


def artifact(ctx: CellContext, name: str) -> tuple[Path, str]:
    """(path to write, path to store in CellResult.artifacts). Uses the runner's
    `ctx.artifact_dir()` (<results>/artifacts/<cell key>/) and `ctx.artifact_relpath` when the
    context has them, else ctx.work_dir/artifacts/<cell key>/."""
    if hasattr(ctx, "artifact_dir"):
        path = Path(ctx.artifact_dir()) / name
        return path, ctx.artifact_relpath(path)
    d = Path(ctx.work_dir) / "artifacts" / ctx.cell.key()
    d.mkdir(parents=True, exist_ok=True)
    return d / name, str(d / name)


def slice_items(split: TaskSplit) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=bool) for k, v in (getattr(split, "slices", None) or {}).items()}
