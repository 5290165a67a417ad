"""Light transformer pixel decoder (MAE-style): tokens -> per-patch pixels."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from paco_fr.models.common import sincos_2d


class PixelDecoder(nn.Module):
    def __init__(self, in_dim: int, patch_dim: int, dim: int = 128, depth: int = 2, heads: int = 4):
        super().__init__()
        self.dim = dim
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, patch_dim)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int], keep_idx: torch.Tensor | None = None,
                prefix: torch.Tensor | None = None) -> torch.Tensor:
        """tokens: (B, n, in_dim) patch tokens (all N patches, or the kept ones with keep_idx (B, n));
        prefix: optional (B, p, in_dim) CLS tokens prepended. Returns (B, N, patch_dim)."""
        x = self.embed(tokens)
        B = x.shape[0]
        N = grid[0] * grid[1]
        if keep_idx is not None:
            full = self.mask_token.to(x.dtype).expand(B, N, -1).clone()
            full = full.scatter(1, keep_idx[..., None].expand(-1, -1, self.dim), x)
            x = full
        x = x + sincos_2d(grid, self.dim, x.device).to(x.dtype)[None]
        npre = 0
        if prefix is not None:
            x = torch.cat([self.embed(prefix), x], 1)
            npre = prefix.shape[1]
        for blk in self.blocks:
            x = blk(x)
        return self.pred(self.norm(x[:, npre:]))
