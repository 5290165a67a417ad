"""Scale-free head inputs: per-channel standardisation of every tapped feature map.

A head trained on a backbone's features should score the representation, not its scale. Two
backbones that compute the same function up to a constant factor on a tapped layer (a ViT whose
residual stream is x100: LayerNorm removes the factor inside the blocks, the tapped tokens keep
it) are the same representation, yet a head trained with one learning rate on raw features sees
inputs 100x apart: a different problem for its optimiser, and for anything it adds to them at a
fixed scale (the dense head's coordinate channels). `TapStandardizer` removes the factor before
the head: each tapped feature is standardised per channel with the mean and standard deviation
of that channel over the training split,

    x_c  ->  (x_c - mean_c) / std_c,

so multiplying a tapped layer by any constant (a different one per layer, any sign) leaves the
head's input unchanged; the linear probes standardise their cached vectors the same way
(`standardize`, `standardize_rows`). The statistics are estimated once, before training, from up
to `max_items` training items (evenly spaced, no labels read) with the backbone as it is at
the start (frozen: as it stays; fine-tuned: fixed constants the backbone then trains under).

What counts as a tapped feature: every tensor the backbone returns, per field and per level —
`BackboneOutput`'s `cls`, each of `patch_tokens` / `cls_tokens`, `last_tokens`; a list or tuple of
maps (a feature pyramid: (B, C, H, W) maps of different strides, one set of statistics per level);
any dataclass of such fields. The channel axis is dim 1 of a 4-d map (B, C, H, W) and the last
dim of tokens (B, N, D) or vectors (B, D); statistics pool every other axis.
A channel whose standard deviation is below `rel_eps` times the largest of its map is constant:
its floor scales with the map, so the floor is scale-free too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

MAX_ITEMS = 1024  # training items the statistics are estimated from (evenly spaced)
REL_EPS = 1e-6


def channel_dim(t: torch.Tensor) -> int:
    """The channel axis of a tapped feature: 1 for (B, C, H, W) maps, the last for tokens / vectors."""
    return 1 if t.ndim == 4 else t.ndim - 1


def _leaves(feats, prefix: str = "") -> Iterable[tuple[str, torch.Tensor]]:
    """(path, tensor) of every tensor in a backbone output (tensor, list / tuple, dict, dataclass)."""
    if isinstance(feats, torch.Tensor):
        yield prefix or "x", feats
    elif isinstance(feats, (list, tuple)):
        for i, v in enumerate(feats):
            yield from _leaves(v, f"{prefix}[{i}]")
    elif isinstance(feats, dict):
        for k, v in feats.items():
            yield from _leaves(v, f"{prefix}.{k}")
    elif dataclasses.is_dataclass(feats):
        for f in dataclasses.fields(feats):
            yield from _leaves(getattr(feats, f.name), f"{prefix}.{f.name}")


def _map(feats, fn, prefix: str = ""):
    """The same structure with fn(path, tensor) applied to every tensor."""
    if isinstance(feats, torch.Tensor):
        return fn(prefix or "x", feats)
    if isinstance(feats, (list, tuple)):
        out = [_map(v, fn, f"{prefix}[{i}]") for i, v in enumerate(feats)]
        return type(feats)(out) if isinstance(feats, tuple) else out
    if isinstance(feats, dict):
        return {k: _map(v, fn, f"{prefix}.{k}") for k, v in feats.items()}
    if dataclasses.is_dataclass(feats):
        return dataclasses.replace(feats, **{f.name: _map(getattr(feats, f.name), fn, f"{prefix}.{f.name}")
                                             for f in dataclasses.fields(feats) if f.init})
    return feats


def _buffer_name(path: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in path).strip("_")


class _Moments:
    """Per-channel sums of one tapped feature (float64)."""

    def __init__(self):
        self.n = 0
        self.s = None
        self.ss = None

    def add(self, t: torch.Tensor) -> None:
        d = channel_dim(t)
        x = t.detach().double().movedim(d, -1).reshape(-1, t.shape[d])
        s, ss = x.sum(0), (x * x).sum(0)
        self.s = s if self.s is None else self.s + s
        self.ss = ss if self.ss is None else self.ss + ss
        self.n += x.shape[0]

    def mean_std(self, rel_eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.s / self.n
        var = (self.ss / self.n - mean * mean).clamp_min(0.0)
        # a second pass would be more exact; centred sums are enough for float64 moments of
        # feature maps (the standardised values are checked by the tests to be scale-free)
        std = var.sqrt()
        floor = rel_eps * float(std.max()) if float(std.max()) > 0 else 1.0
        return mean.float(), std.clamp_min(floor).float()


class TapStandardizer(nn.Module):
    """forward(feats) -> feats with every tapped tensor standardised per channel by the training
    split's statistics (`fit_stats` first; an unfitted standardiser raises)."""

    def __init__(self, rel_eps: float = REL_EPS, max_items: int = MAX_ITEMS):
        super().__init__()
        self.rel_eps = rel_eps
        self.max_items = int(max_items)
        self.paths: list[str] = []

    @property
    def fitted(self) -> bool:
        return bool(self.paths)

    def set_stats(self, moments: dict[str, _Moments]) -> None:
        for path, m in moments.items():
            mean, std = m.mean_std(self.rel_eps)
            name = _buffer_name(path)
            # non-persistent: statistics are recomputed from the data, never loaded with weights
            self.register_buffer(f"mean_{name}", mean, persistent=False)
            self.register_buffer(f"std_{name}", std, persistent=False)
        self.paths = list(moments)

    @torch.no_grad()
    def fit_stats(self, backbone, dataset, layers, batch_size: int, device) -> dict:
        """Statistics of every tapped feature of `backbone(x, layers)` over up to `max_items` items
        of `dataset` (items (input, target); evenly spaced, in order). The backbone runs in eval
        mode without gradients and is put back in the mode it was in. Returns a summary for rows."""
        n = len(dataset)
        if n == 0:
            raise ValueError("cannot standardise features: the training split is empty")
        idx = np.unique(np.linspace(0, n - 1, min(n, self.max_items)).round().astype(int)).tolist()
        moments: dict[str, _Moments] = {}
        was_training = backbone.training
        backbone.eval()
        try:
            for k in range(0, len(idx), max(1, batch_size)):
                x = torch.stack([_input(dataset[i]) for i in idx[k:k + batch_size]]).to(device)
                for path, t in _leaves(backbone(x, layers)):
                    if t.is_floating_point():
                        moments.setdefault(path, _Moments()).add(t)
        finally:
            backbone.train(was_training)
        self.set_stats(moments)
        self.to(device)
        return {"kind": "per-channel standardisation of each tapped feature, training-split statistics",
                "items": len(idx), "features": len(self.paths)}

    def forward(self, feats):
        if not self.fitted:
            raise RuntimeError("TapStandardizer used before fit_stats (its statistics come from the training split)")

        def norm(path: str, t: torch.Tensor) -> torch.Tensor:
            name = _buffer_name(path)
            if not t.is_floating_point() or not hasattr(self, f"mean_{name}"):
                return t
            mean, std = getattr(self, f"mean_{name}"), getattr(self, f"std_{name}")
            shape = [1] * t.ndim
            shape[channel_dim(t)] = -1
            return (t - mean.view(shape).to(t.dtype)) / std.view(shape).to(t.dtype)

        return _map(feats, norm)


def _input(item) -> torch.Tensor:
    x = item[0] if isinstance(item, (tuple, list)) else item
    return torch.as_tensor(x)


def standardize_rows(train: torch.Tensor, *others: torch.Tensor, rel_eps: float = REL_EPS):
    """Per-dimension standardisation of row vectors (N, ...) with the mean / std of `train`
    (the cached-feature probes); the std floor is relative, so the result is scale-free."""
    mu = train.mean(0, keepdim=True)
    sd = train.std(0, keepdim=True) if len(train) > 1 else torch.ones_like(mu)
    sd = torch.nan_to_num(sd, nan=1.0)
    top = float(sd.max()) if sd.numel() else 1.0
    sd = sd.clamp_min(rel_eps * top if top > 0 else 1.0)
    return tuple((v - mu) / sd for v in (train, *others))
