"""Shared helpers of the pre-training models: patchify, fixed 2-D sin-cos position embeddings,
visible-token encoding (MAE-style) and small MLPs."""

from __future__ import annotations

import math

import torch
from torch import nn

from paco_fr.backbone import ViTBackbone


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C), patches row-major, pixels (py, px, c) inside a patch."""
    B, C, H, W = x.shape
    h, w = H // p, W // p
    x = x.reshape(B, C, h, p, w, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, h * w, p * p * C)


def unpatchify(x: torch.Tensor, p: int, grid: tuple[int, int], c: int = 3) -> torch.Tensor:
    B = x.shape[0]
    h, w = grid
    x = x.reshape(B, h, w, p, p, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(B, c, h * p, w * p)


def sincos_2d(grid: tuple[int, int], dim: int, device=None) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding (N, dim) for any grid (dim divisible by 4)."""
    h, w = grid
    assert dim % 4 == 0, "sincos dim must be divisible by 4"
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    q = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(q, dtype=torch.float32) / q))
    out = []
    for t in (ys.reshape(-1), xs.reshape(-1)):
        a = t[:, None] * omega[None]
        out += [a.sin(), a.cos()]
    return torch.cat(out, 1).to(device)


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2, bn: bool = False) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden)]
        if bn:
            mods += [nn.LayerNorm(hidden)]
        mods += [nn.GELU()]
        d = hidden
    mods += [nn.Linear(d, out_dim)]
    return nn.Sequential(*mods)


def encode_visible(encoder: ViTBackbone, xn: torch.Tensor, keep_idx: torch.Tensor | None,
                   layers: list[int] | None = None):
    """MAE-style encoding of only the kept patches.

    xn: normalised images; keep_idx: (B, n_keep) patch indices (None = all patches).
    Returns (tokens after the final norm incl. prefix (B, prefix + n_keep, D), {layer: patch tokens}).
    """
    vit = encoder.vit
    npt = encoder.num_prefix_tokens
    tokens = encoder.embed(xn)  # (B, prefix + N, D)
    if keep_idx is not None:
        prefix, patches = tokens[:, :npt], tokens[:, npt:]
        patches = patches.gather(1, keep_idx[..., None].expand(-1, -1, patches.shape[-1]))
        tokens = torch.cat([prefix, patches], 1)
    wanted = sorted({i % encoder.depth for i in (layers or [])})
    outs = {}
    for i, blk in enumerate(vit.blocks):
        tokens = blk(tokens)
        if i in wanted:
            outs[i] = tokens[:, npt:]
    return vit.norm(tokens), outs


def scaled_layers(layers: list[int], depth: int, ref_depth: int = 12) -> list[int]:
    """Map block indices chosen for a `ref_depth`-block ViT to a `depth`-block one."""
    return sorted({min(depth - 1, max(0, math.floor((i + 1) * depth / ref_depth) - 1)) for i in layers})
