"""The shared training loop every task uses for its heads.

Protocols (FaRL's naming in brackets):
  * ``frozen``   [freeze_backbone]: the backbone runs under no_grad in eval mode; only the head trains.
  * ``finetune``: backbone and head train together; the backbone's LR decays layer-wise
    (`layer_decay` ** (depth + 1 - layer_id)), the head uses `lr_head`. A ViT's blocks are numbered
    by timm's `blocks.<i>` or by its encoder's own `lr_layer_id` (Hugging Face, OpenCLIP towers);
    a pyramid's stages all train at `lr_backbone` (docs/backbones.md).
  * ``linear``: a frozen backbone whose features are extracted once and cached
    (see features.py); the task then calls `fit` with a head on cached features and
    `backbone=None`.

`fit` evaluates on the validation and test splits every `eval_every` epochs and returns the test
metrics at the epoch selected on validation (`metrics`, the headline), at the last epoch
(`metrics_last`) and the best test score over epochs (`metrics_best_test`, FaRL's published
convention, stored for comparison only). When `ema_decay` is set, evaluation uses an EMA copy
of the trained parameters (FaRL: 0.999).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from bench_tasks.contracts import CellResult
from bench_tasks.protocols.feature_norm import TapStandardizer

# the fewest training items any trained head accepts: BatchNorm in a head (the dense FPN / UPerHead,
# the recognition embedding) cannot train on a batch of one; the plan refuses smaller training
# sets before anything runs (plan.validate.check_data), `fit` refuses them too
MIN_TRAIN_ITEMS = 2


@dataclass
class FitConfig:
    epochs: int
    lr_head: float = 1e-3
    lr_backbone: float = 1e-4
    weight_decay: float = 1e-5
    layer_decay: float = 0.75
    warmup_frac: float = 0.05
    ema_decay: float | None = None
    grad_clip: float | None = 1.0
    eval_every: int = 1
    select_metric: str = ""
    higher_is_better: bool = True
    # "warmup_cosine" (per step) or "multistep" (FaRL: MultiStepLR stepped once per epoch,
    # lr * gamma ** (number of milestones <= epoch), no warm-up)
    lr_schedule: str = "warmup_cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    # False: no weight decay on biases / norms / pos-embed (ours); True: on every parameter (FaRL)
    decay_all_params: bool = False
    extra: dict = field(default_factory=dict)


class BackboneWithHead(nn.Module):
    """head(standardise(backbone(x01, layers))); with `frozen` the backbone runs without gradients.

    `normalize` (default): every tapped feature is standardised per channel with training-split
    statistics before the head (`feature_norm.TapStandardizer`, fitted by `fit` before the first
    step), so the head's score does not depend on the scale of the backbone's features. FaRL's
    exact protocol (`FarlNet`) turns it off."""

    def __init__(self, backbone: nn.Module, head: nn.Module, layers: list[int], frozen: bool,
                 normalize: bool = True):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.layers = layers
        self.frozen = frozen
        self.input_norm = TapStandardizer() if normalize else None
        if frozen:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def fit_input_stats(self, dataset, batch_size: int, device) -> dict | None:
        """Estimate the standardiser's statistics on the training `dataset` (once; None when the
        head reads raw features)."""
        if self.input_norm is None:
            return None
        return self.input_norm.fit_stats(self.backbone, dataset, self.layers, batch_size, device)

    def forward(self, x01: torch.Tensor):
        if self.frozen:
            with torch.no_grad():
                feats = self.backbone(x01, self.layers)
        else:
            feats = self.backbone(x01, self.layers)
        if self.input_norm is not None:
            feats = self.input_norm(feats)
        return self.head(feats)


def vit_layer_id(name: str, depth: int) -> int:
    """Layer index for layer-wise LR decay on timm ViT parameter names (inside any wrapper)."""
    if ".pyramid." in f".{name}":  # a CNN's stages (bench_tasks.backbones.pyramid): no layer-wise decay
        return depth + 1
    if any(k in name for k in ("cls_token", "pos_embed", "patch_embed", "reg_token", "norm_pre")):
        return 0
    if ".blocks." in f".{name}":
        after = f".{name}".split(".blocks.", 1)[1]
        return int(after.split(".", 1)[0]) + 1
    return depth + 1


def own_layer_rules(model: nn.Module) -> list[tuple[str, Callable[[str], int]]]:
    """(name prefix, `lr_layer_id`) of the submodules that number their own parameters' layers (an
    encoder whose blocks are not timm's `blocks.<i>`: bench_tasks.backbones.block_tokens)."""
    return [(f"{n}.", m.lr_layer_id) for n, m in model.named_modules()
            if n and callable(getattr(m, "lr_layer_id", None))]


def layer_id(name: str, depth: int, rules: list[tuple[str, Callable[[str], int]]]) -> int:
    """The layer of parameter `name`: its encoder's own numbering when it has one, else the timm ViT rule."""
    for prefix, number in rules:
        if name.startswith(prefix):
            return number(name[len(prefix):])
    return vit_layer_id(name, depth)


def param_groups(model: nn.Module, cfg: FitConfig, depth: int | None) -> list[dict]:
    """Head params at lr_head; backbone params (names starting with 'backbone.') at lr_backbone
    scaled by layer_decay ** (depth + 1 - layer_id). No weight decay on biases and norms."""
    groups: dict[tuple, dict] = {}
    rules = own_layer_rules(model)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_wd = not cfg.decay_all_params and (p.ndim <= 1 or name.endswith(".bias") or "pos_embed" in name
                                              or "cls_token" in name)
        if name.startswith("backbone.") and depth is not None:
            lid = layer_id(name, depth, rules)
            lr = cfg.lr_backbone * cfg.layer_decay ** (depth + 1 - lid)
        else:
            lid, lr = -1, cfg.lr_head
        key = (lid, no_wd)
        g = groups.setdefault(key, {"params": [], "lr": lr, "weight_decay": 0.0 if no_wd else cfg.weight_decay})
        g["params"].append(p)
    return list(groups.values())


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def lr_scale(cfg: FitConfig, step: int, epoch: int, total: int, warmup: int) -> float:
    if cfg.lr_schedule == "multistep":
        return cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)
    if cfg.lr_schedule != "warmup_cosine":
        raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r} (warmup_cosine | multistep)")
    return warmup_cosine(step, total, warmup)


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def _better(a: float, b: float | None, higher: bool) -> bool:
    return b is None or (a > b if higher else a < b)


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    test_loader: Iterable,
    loss_fn: Callable[[object, object], torch.Tensor],
    evaluate: Callable[[nn.Module, Iterable], dict[str, float]],
    cfg: FitConfig,
    device: torch.device,
    backbone_depth: int | None = None,
    progress: bool = True,
    desc: str = "train",
) -> CellResult:
    """Train `model` on batches (inputs, targets) and select the epoch on validation.

    loss_fn(model_output, targets) -> scalar; evaluate(model, loader) -> {metric: float}
    (the model is in eval mode; `cfg.select_metric` must be one of its keys).
    On return the model holds the weights of the selected epoch (the EMA weights when EMA is on).
    With `val_loader=None` (no validation split) the last epoch is the selected one. With
    `test_loader=None` the test split is not read (a run of `selection.select_and_fit`'s grid):
    `metrics` then hold the selected epoch and its `val_score` only.
    """
    try:
        n_train = len(train_loader.dataset)  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # a plain iterable of batches: nothing to check
        n_train = MIN_TRAIN_ITEMS
    if n_train < MIN_TRAIN_ITEMS:
        raise ValueError(f"{desc}: {n_train} training item(s); a trained head needs at least {MIN_TRAIN_ITEMS} "
                         "(its BatchNorm layers cannot train on a batch of one)")
    model.to(device)
    input_norm = None
    if isinstance(model, BackboneWithHead):  # training-split statistics of the head's inputs, once
        input_norm = model.fit_input_stats(train_loader.dataset, getattr(train_loader, "batch_size", 64)
                                           or 64, device)
    opt = torch.optim.AdamW(param_groups(model, cfg, backbone_depth), betas=(0.9, 0.999))
    steps_per_epoch = max(1, len(train_loader))  # type: ignore[arg-type]
    total = cfg.epochs * steps_per_epoch
    ema = None
    if cfg.ema_decay:
        # use_buffers: BatchNorm running statistics are averaged too (else the EMA copy would keep
        # the statistics it was created with)
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True
        )
    steps = _Steps(opt, [g["lr"] for g in opt.param_groups], cfg, total, ema,
                   warmup=int(cfg.warmup_frac * total) if cfg.lr_schedule == "warmup_cosine" else 0,
                   bar=tqdm(total=total, desc=desc, leave=False, disable=not progress, dynamic_ncols=True))
    sel = _Selection(cfg, has_val=val_loader is not None)
    for epoch in range(cfg.epochs):
        running = steps.epoch(model, train_loader, loss_fn, device, epoch)
        is_last = epoch == cfg.epochs - 1
        if (epoch + 1) % cfg.eval_every and not is_last:
            continue
        eval_model = ema.module if ema is not None else model
        eval_model.eval()
        with torch.no_grad():
            test = evaluate(eval_model, test_loader) if test_loader is not None else None
            val = evaluate(eval_model, val_loader) if val_loader is not None else None
        sel.record(epoch, running / steps_per_epoch, val, test, eval_model)
    steps.bar.close()
    # leave the selected epoch's (EMA, when on) weights in the model the caller holds, so the task
    # can compute confusion matrices, slices and previews at the selected epoch
    model.load_state_dict(sel.best_state)
    model.eval()
    return CellResult(metrics=sel.selected, metrics_last=sel.last, metrics_best_test=sel.best_test,
                      extra={"history": sel.history, "input_norm": input_norm})


class _Steps:
    """The optimizer steps of `fit`: learning-rate schedule, clipping, EMA, the progress bar."""

    def __init__(self, opt, base_lrs, cfg: FitConfig, total: int, ema, warmup: int, bar):
        self.opt, self.base_lrs, self.cfg, self.total, self.ema, self.warmup, self.bar = (
            opt, base_lrs, cfg, total, ema, warmup, bar)
        self.step = 0

    def epoch(self, model: nn.Module, train_loader: Iterable, loss_fn, device, epoch: int) -> float:
        """One epoch of training; returns the summed training loss."""
        cfg, opt = self.cfg, self.opt
        model.train()
        running = 0.0
        for inputs, targets in train_loader:
            inputs, targets = _to(inputs, device), _to(targets, device)
            scale = lr_scale(cfg, self.step, epoch, self.total, self.warmup)
            for g, lr in zip(opt.param_groups, self.base_lrs):
                g["lr"] = lr * scale
            loss = loss_fn(model(inputs), targets)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at epoch {epoch}, step {self.step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.grad_clip)
            opt.step()
            if self.ema is not None:
                self.ema.update_parameters(model)
            running += loss.item()
            self.step += 1
            self.bar.update(1)
            self.bar.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}")
        return running


class _Selection:
    """The epoch `fit` selects on validation (the last one without a validation split), the best
    test epoch (stored for comparison only), the last epoch and the history."""

    def __init__(self, cfg: FitConfig, has_val: bool):
        self.cfg, self.has_val = cfg, has_val
        self.history: list[dict] = []
        self.best_val, self.best_test_score = None, None
        self.selected: dict[str, float] = {}
        self.best_test: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.best_state: dict[str, torch.Tensor] = {}

    def record(self, epoch: int, train_loss: float, val: dict | None, test: dict | None, eval_model: nn.Module) -> None:
        cfg = self.cfg
        if val is None:  # no validation split: the last epoch is selected
            val = {cfg.select_metric: float(epoch)}
            select_higher = True
        else:
            select_higher = cfg.higher_is_better
        if cfg.select_metric not in val:
            raise KeyError(f"select_metric {cfg.select_metric!r} not in evaluated metrics {sorted(val)}")
        self.history.append({"epoch": epoch, "train_loss": train_loss,
                             **({f"val/{k}": v for k, v in val.items()} if self.has_val else {}),
                             **{f"test/{k}": v for k, v in (test or {}).items()}})
        if _better(val[cfg.select_metric], self.best_val, select_higher):
            self.best_val = val[cfg.select_metric]
            self.selected = dict(test or {}, selected_epoch=epoch, **({"val_score": self.best_val} if self.has_val else {}))
            self.best_state = {k: v.detach().clone() for k, v in eval_model.state_dict().items()}
        if test is None:  # a selection run: the test split is not read
            return
        if _better(test[cfg.select_metric], self.best_test_score, cfg.higher_is_better):
            self.best_test_score = test[cfg.select_metric]
            self.best_test = dict(test, epoch=epoch)
        self.last = dict(test, epoch=epoch)
