"""Plain ViTs whose code is not timm's (Hugging Face `transformers`, OpenCLIP) as the harness reads
them: the tokens of their blocks, like `paco_fr.backbone.ViTBackbone`.

A subclass implements `run_blocks(x, wanted)`: the output of each wanted block (B, prefix + N, D),
before the final norm, and the model's own pooled embedding (B, D). `forward_features` turns them
into a `BackboneOutput` exactly as the timm ViT path does (patch tokens per block, the class token
per block, `cls` the pooled embedding).

Fine-tuning decays the learning rate layer by layer as for a timm ViT (bench_tasks.protocols.train):
a subclass says where its model keeps its blocks (`block_pattern`, a regex whose group 1 is the
block index) and what comes before the first block (`embedding_names`); `lr_layer_id` numbers
each parameter from them.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from paco_fr.backbone import BackboneOutput


class BlockTokenEncoder(nn.Module):
    block_pattern: str = ""  # e.g. r"(?:^|\.)encoder\.layer\.(\d+)\.": no pattern, no layer-wise decay
    embedding_names: tuple[str, ...] = ()  # parameter-name parts of the embeddings (before block 0)

    def __init__(self, arch: str, embed_dim: int, depth: int, patch_size: int, num_prefix_tokens: int,
                 mean, std):
        super().__init__()
        self.arch = arch
        self.embed_dim = int(embed_dim)
        self.depth = int(depth)
        self.patch_size = int(patch_size)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean) / self.std

    def lr_layer_id(self, name: str) -> int:
        """The layer of parameter `name` (relative to this module) for layer-wise LR decay, as
        `bench_tasks.protocols.train.vit_layer_id` numbers a timm ViT's: 0 for the embeddings,
        i + 1 for block i, depth + 1 for what follows the last block (final norm, pooler)."""
        found = re.search(self.block_pattern, name) if self.block_pattern else None
        if found:
            return int(found.group(1)) + 1
        if self.block_pattern and any(part in name for part in self.embedding_names):
            return 0
        return self.depth + 1

    def grid_size(self, h: int, w: int) -> tuple[int, int]:
        return h // self.patch_size, w // self.patch_size

    def run_blocks(self, x: torch.Tensor, wanted: list[int]) -> tuple[dict[int, torch.Tensor], torch.Tensor,
                                                                      torch.Tensor]:
        """({block: (B, prefix + N, D)}, pooled (B, D), final tokens after the final norm (B, N, D))."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor, layers: list[int] | None = None) -> BackboneOutput:
        grid = self.grid_size(x.shape[-2], x.shape[-1])
        wanted = sorted({i % self.depth for i in (layers or [])})
        blocks, pooled, last = self.run_blocks(x, wanted)
        p = self.num_prefix_tokens
        patch = [blocks[i][:, p:] for i in wanted]
        cls_tokens = [blocks[i][:, 0] if p else blocks[i].mean(1) for i in wanted]
        return BackboneOutput(cls=pooled, patch_tokens=patch, grid=grid, last_tokens=last, cls_tokens=cls_tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).cls
