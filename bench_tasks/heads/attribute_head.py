"""FaRL / facer attribute head.

For each chosen backbone block l: its CLS token, the mean of its patch tokens and the max of its
patch tokens -> 3 * L vectors of width D. A learned softmax over those 3 * L positions weights
their sum (FaRL initialises the logits to zero: a plain average), then one linear layer.

Input: a `BackboneOutput` (frozen / finetune protocols; uses `cls_tokens` and `patch_tokens` of
the requested layers) or the cached tensor (B, L, 3, D) of `protocols/features.py`
(`layer_feats`, linear protocol).
"""

from __future__ import annotations

import torch
from torch import nn

from bench_tasks.registry import HEADS


def pooled_layer_feats(out) -> torch.Tensor:
    """BackboneOutput -> (B, L, 3, D): [CLS, mean(patches), max(patches)] per requested block
    (the same layout `protocols.features.extract` caches)."""
    per_layer = [torch.stack([c, p.mean(1), p.amax(1)], dim=1) for c, p in zip(out.cls_tokens, out.patch_tokens)]
    return torch.stack(per_layer, dim=1)


@HEADS.register("attribute")
class AttributeHead(nn.Module):
    feature_key = "layer_feats"  # what the linear protocol feeds from the feature cache

    def __init__(self, embed_dim: int, num_layers: int, num_outputs: int, dropout: float = 0.0):
        super().__init__()
        self.num_layers = num_layers
        self.weight_logits = nn.Parameter(torch.zeros(num_layers * 3))
        self.norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, num_outputs)

    def forward(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = pooled_layer_feats(x)
        b, n_layers, three, d = x.shape
        if n_layers * three != self.weight_logits.numel():
            raise ValueError(f"AttributeHead built for {self.num_layers} layers, got features of {n_layers}")
        w = torch.softmax(self.weight_logits, 0)
        feat = (x.reshape(b, n_layers * three, d) * w.view(1, -1, 1)).sum(1)
        return self.fc(self.dropout(self.norm(feat)))


@HEADS.register("concat_linear")
class ConcatLinearHead(nn.Module):
    """Logistic regression on the *concatenation* of the 3 * L pooled vectors (3 * L * D inputs),
    where FaRL's head above averages them into one D-vector first. One linear map per vector lets a
    probe read what lies in different blocks or poolings: on the cpu profile's frozen random-init
    ViT the FaRL head leaves expression at its floor. Not FaRL's protocol: select it with
    `run --set linear.head=concat_linear` (rows record it in their settings)."""

    feature_key = "layer_feats"

    def __init__(self, embed_dim: int, num_layers: int, num_outputs: int, dropout: float = 0.0):
        super().__init__()
        self.num_layers = num_layers
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_layers * 3 * embed_dim, num_outputs)

    def forward(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = pooled_layer_feats(x)
        if x.shape[1] != self.num_layers:
            raise ValueError(f"ConcatLinearHead built for {self.num_layers} layers, got features of {x.shape[1]}")
        return self.fc(self.dropout(x.flatten(1)))
