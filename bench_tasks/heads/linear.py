"""Linear head on the final (normalised) CLS token: the classic linear probe.

Input: a `BackboneOutput` (uses `.cls`) or the cached (B, D) `cls` tensor of protocols/features.py.
"""

from __future__ import annotations

import torch
from torch import nn

from bench_tasks.registry import HEADS


@HEADS.register("linear")
class LinearHead(nn.Module):
    feature_key = "cls"

    def __init__(self, embed_dim: int, num_outputs: int, num_layers: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, num_outputs)

    def forward(self, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = x.cls
        return self.fc(self.dropout(x))
