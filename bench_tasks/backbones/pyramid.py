"""Backbones that are not plain ViTs (CNNs, hierarchical transformers) as the harness reads them:
the feature maps of their stages, a *pyramid*.

`PyramidEncoder` is the encoder a `BenchBackbone` wraps for them (the ViT path uses
`paco_fr.backbone.ViTBackbone`). A subclass implements `stage_maps(x, wanted)`: the (B, C_i, h_i, w_i)
map of each wanted stage and the model's own pooled embedding. The `BackboneOutput` it returns
fills the ViT fields one entry per requested stage:

* `patch_tokens[i]` (B, h_i * w_i, C_i) and `grids[i]` (h_i, w_i), so `patch_maps()` gives the maps
  the dense heads take (UPerHead's natural input: stage strides such as 4, 8, 16, 32);
* `cls_tokens[i]`: the stage's average-pooled map (the last stage: the model's pooled embedding);
* `cls`: the model's pooled embedding (what a classifier's head would read, `pre_logits`);
* `last_tokens`: the last stage's tokens.

The last stage is the model's final feature map (after a final norm or 1x1 head convolution
where the model has one), so `embed_dim` is the width of both `cls` and the last stage's tokens:
the probes (`probe_layers()` = the last stage) and recognition read it as they read a ViT's last
block. `dense_layers()` are the last four stages (ResNet: strides 4, 8, 16, 32).

Fine-tuning gives every stage of a pyramid the backbone's learning rate (no layer-wise decay: its
blocks are not one sequence of equal blocks); a subclass keeps the model it wraps under an
attribute `pyramid` (or names without `.blocks.<i>.`) so the ViT decay rule does not read a
stage's block index as a depth (bench_tasks.protocols.train.vit_layer_id).
"""

from __future__ import annotations

import torch
from torch import nn

from paco_fr.backbone import BackboneOutput


class PyramidEncoder(nn.Module):
    """Stage maps of a CNN or hierarchical model. `channels[i]` / `strides[i]`: width and stride of
    stage i; `mean` / `std`: the input normalisation of its weights."""

    is_pyramid = True

    def __init__(self, arch: str, channels: list[int], strides: list[int], mean, std):
        super().__init__()
        if len(channels) != len(strides) or not channels:
            raise ValueError(f"{arch}: one width and one stride per stage, got {channels} and {strides}")
        self.arch = arch
        self.channels = [int(c) for c in channels]
        self.strides = [int(s) for s in strides]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def embed_dim(self) -> int:
        return self.channels[-1]

    @property
    def depth(self) -> int:
        return len(self.channels)

    @property
    def patch_size(self) -> int:
        return self.strides[-1]

    def dense_layers(self) -> list[int]:
        return list(range(max(0, self.depth - 4), self.depth))

    def probe_layers(self) -> list[int]:
        return [self.depth - 1]

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean) / self.std

    def grid_size(self, h: int, w: int) -> tuple[int, int]:
        """The last stage's grid (approximate: each model rounds odd sizes its own way)."""
        s = self.patch_size
        return -(-h // s), -(-w // s)

    def stage_maps(self, x: torch.Tensor, wanted: list[int]) -> tuple[dict[int, torch.Tensor], torch.Tensor,
                                                                      torch.Tensor]:
        """({stage: (B, C, h, w) map} for `wanted`, the last stage's map, the pooled embedding (B, D))
        of normalised images `x`."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor, layers: list[int] | None = None) -> BackboneOutput:
        wanted = sorted({i % self.depth for i in (layers or [])})
        maps, last, pooled = self.stage_maps(x, wanted)
        tokens, grids, cls_tokens = [], [], []
        for i in wanted:
            m = maps[i]
            tokens.append(m.flatten(2).transpose(1, 2))
            grids.append((int(m.shape[-2]), int(m.shape[-1])))
            cls_tokens.append(pooled if i == self.depth - 1 else m.mean((2, 3)))
        last_grid = (int(last.shape[-2]), int(last.shape[-1]))
        return BackboneOutput(cls=pooled, patch_tokens=tokens, grid=grids[-1] if grids else last_grid,
                              last_tokens=last.flatten(2).transpose(1, 2), cls_tokens=cls_tokens, grids=grids)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).cls


def to_nchw(t: torch.Tensor, channels: int) -> torch.Tensor:
    """A (B, C, h, w) view of a map that a model returns as NCHW or NHWC (Swin's final map)."""
    if t.ndim == 4 and t.shape[1] != channels and t.shape[-1] == channels:
        return t.permute(0, 3, 1, 2)
    return t
