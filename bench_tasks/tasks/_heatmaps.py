"""Landmark heatmap losses the dense landmarks task can train with.

`ce` (default): each point's heatmap is read as a distribution over its pixels (softmax), trained
with the cross-entropy against the Gaussian target normalised to sum 1 (sigma in heatmap pixels),
plus `l1_weight` * the L1 distance of the soft-argmax coordinates (unit crop coordinates, [0, 1]).
The distribution that is trained is exactly the one `soft_argmax` reads at evaluation.

`farl`: FaRL's pair, L1 on the soft-argmax coordinates + BCE-with-logits of every heatmap pixel
against the Gaussian (peak 1). BCE trains each pixel's sigmoid independently: most of its
gradient lowers all logits together, which the soft-argmax's softmax ignores, so the softmax
stays nearly flat for many steps and its expectation sits near the crop centre (measured in
docs/dense.md, "Why the heads did not learn, and the fix").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ce", "farl")


def soft_argmax(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) heatmap logits -> (B, K, 2) unit coordinates (x, y) in [0, 1] of the crop:
    softmax over each heatmap's pixels, expectation of the pixel-centre coordinates."""
    b, k, h, w = logits.shape
    p = logits.float().flatten(2).softmax(-1).view(b, k, h, w)
    xs = (torch.arange(w, device=logits.device, dtype=torch.float32) + 0.5) / w
    ys = (torch.arange(h, device=logits.device, dtype=torch.float32) + 0.5) / h
    x = (p.sum(2) * xs).sum(-1)
    y = (p.sum(3) * ys).sum(-1)
    return torch.stack([x, y], -1)


def gaussian_targets(unit: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    """(B, K, 2) unit coords -> (B, K, h, w) Gaussians (peak 1 at the point, sigma in heatmap px)."""
    px = unit[..., 0:1] * w - 0.5  # heatmap pixel coords
    py = unit[..., 1:2] * h - 0.5
    xs = torch.arange(w, device=unit.device, dtype=unit.dtype)
    ys = torch.arange(h, device=unit.device, dtype=unit.dtype)
    gx = torch.exp(-((xs - px) ** 2) / (2 * sigma**2))  # (B, K, w)
    gy = torch.exp(-((ys - py) ** 2) / (2 * sigma**2))  # (B, K, h)
    return gy[..., :, None] * gx[..., None, :]


def heatmap_ce(logits: torch.Tensor, gt_unit: torch.Tensor, sigma: float) -> torch.Tensor:
    """Mean over points of the cross-entropy between softmax(heatmap) and the normalised Gaussian."""
    h, w = logits.shape[-2:]
    t = gaussian_targets(gt_unit, h, w, sigma).flatten(2)
    t = t / t.sum(-1, keepdim=True).clamp_min(1e-12)
    return -(t * logits.float().flatten(2).log_softmax(-1)).sum(-1).mean()


def landmark_loss(logits: torch.Tensor, pts_px: torch.Tensor, size: int, kind: str = "ce",
                  sigma: float = 1.0, l1_weight: float = 1.0, bce_weight: float = 1.0) -> torch.Tensor:
    """Loss of (B, K, h, w) heatmap logits against (B, K, 2) points in pixels of a `size` crop."""
    gt_unit = (pts_px.float() + 0.5) / size
    l1 = (soft_argmax(logits) - gt_unit).abs().mean()
    if kind == "ce":
        return heatmap_ce(logits, gt_unit, sigma) + l1_weight * l1
    if kind == "farl":
        tgt = gaussian_targets(gt_unit, logits.shape[-2], logits.shape[-1], sigma)
        return l1 + bce_weight * F.binary_cross_entropy_with_logits(logits.float(), tgt)
    raise ValueError(f"unknown landmark loss {kind!r}; choose from {LOSSES}")
