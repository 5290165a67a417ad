"""Loss terms shared by the pre-training objectives."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def norm_pix(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MAE norm_pix_loss target: every patch normalised to zero mean / unit variance."""
    mean = target.mean(-1, keepdim=True)
    var = target.var(-1, keepdim=True)
    return (target - mean) / (var + eps).sqrt()


def pixel_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
               norm_pix_loss: bool = True, kind: str = "mse") -> torch.Tensor:
    """pred/target: (B, N, P) patches; mask: (B, N) bool (loss on True patches) or None (all)."""
    pred = pred.float()
    target = target.float()
    if norm_pix_loss:
        target = norm_pix(target)
    if kind == "mse":
        per = ((pred - target) ** 2).mean(-1)
    elif kind == "l1":
        per = (pred - target).abs().mean(-1)
    else:
        raise ValueError(f"unknown pixel loss {kind!r}")
    if mask is None:
        return per.mean()
    m = mask.float()
    return (per * m).sum() / m.sum().clamp_min(1.0)


def _gather_all(x: torch.Tensor) -> torch.Tensor:
    """all_gather with gradient for the local shard (CLIP-style)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return x
    parts = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach())
    parts[dist.get_rank()] = x
    return torch.cat(parts, 0)


def clip_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between L2-normalised image and text embeddings (CLIP)."""
    img = F.normalize(img.float(), dim=-1)
    txt = F.normalize(txt.float(), dim=-1)
    all_img, all_txt = _gather_all(img), _gather_all(txt)
    rank = dist.get_rank() if (dist.is_available() and dist.is_initialized()) else 0
    labels = torch.arange(img.shape[0], device=img.device) + rank * img.shape[0]
    scale = logit_scale.exp().clamp(max=100)
    li = scale * img @ all_txt.t()
    lt = scale * txt @ all_img.t()
    return (F.cross_entropy(li, labels) + F.cross_entropy(lt, labels)) / 2


def moco_loss(q: torch.Tensor, k: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """MoCo v3 InfoNCE: queries q vs momentum keys k (positives on the diagonal), x 2T."""
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    all_k = _gather_all(k.detach())
    rank = dist.get_rank() if (dist.is_available() and dist.is_initialized()) else 0
    labels = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
    logits = q @ all_k.t() / temperature
    return F.cross_entropy(logits, labels) * (2 * temperature)


def relation_matrix(tokens: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """tokens (B, N, D), pool (N, R) averaging matrix -> cosine relations between regions (B, R, R)."""
    feats = torch.einsum("bnd,nr->brd", tokens.float(), pool.float())
    feats = F.normalize(feats, dim=-1)
    return feats @ feats.transpose(1, 2)


def relation_consistency(rel_a: torch.Tensor, rel_b: torch.Tensor, stop_grad: bool = False) -> torch.Tensor:
    """MSE between two views' region relation matrices over off-diagonal entries."""
    if stop_grad:
        rel_b = rel_b.detach()
    R = rel_a.shape[-1]
    off = ~torch.eye(R, dtype=torch.bool, device=rel_a.device)
    return ((rel_a - rel_b) ** 2)[:, off].mean()


def region_features(tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """tokens (B, N, D), weights (B, N, R) or (N, R) averaging columns -> region features (B, R, D)."""
    if weights.ndim == 2:
        return torch.einsum("bnd,nr->brd", tokens.float(), weights.float())
    return torch.einsum("bnd,bnr->brd", tokens.float(), weights.float())


def _standardise_regions(f: torch.Tensor, present: torch.Tensor, center_batch: bool) -> torch.Tensor:
    """Centre region features over the present regions of each image (and, with center_batch, over
    the images per region), then divide by the image's RMS feature norm (one scale per image,
    not one per region: a per-region L2 norm would make parallel features a zero-gradient point)."""
    w = present.float()[..., None]  # (B, R, 1)
    mu = (f * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)
    fc = (f - mu) * w
    if center_batch and f.shape[0] > 1:
        mb = fc.sum(0, keepdim=True) / w.sum(0, keepdim=True).clamp_min(1.0)
        fc = (fc - mb) * w
    rms = (fc.pow(2).sum((1, 2), keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)).add(1e-12).sqrt()
    return fc / rms.clamp_min(1e-6)


def spatial_correspondence(f1: torch.Tensor, f2: torch.Tensor, present: torch.Tensor, temperature: float = 0.2,
                           center_batch: bool = False, stop_grad: bool = False) -> torch.Tensor:
    """The spatial-consistency term: each facial component's feature in one view
    must be closer to the same component in the other view than to the other components.

    f1, f2: (B, R, D) region features of two views of the same faces; present: (B, R) regions
    present on each face. Features are standardised (`_standardise_regions`), the cross-view
    relation matrix S = z1 z2^T / temperature (B, R, R) is compared with the identity by a
    cross-entropy over the present regions, both directions. Equal (collapsed) features give
    log R (never 0), parallel ones a non-zero loss with a non-zero gradient, and the term is of the
    order of the reconstruction loss at start (log 10 = 2.3 for the 10 regions)."""
    if stop_grad:
        f2 = f2.detach()
    z1 = _standardise_regions(f1, present, center_batch)
    z2 = _standardise_regions(f2, present, center_batch)
    logits = z1 @ z2.transpose(1, 2) / temperature  # (B, R, R)
    col_ok = present[:, None, :]
    neg = torch.finfo(logits.dtype).min / 4
    R = logits.shape[-1]
    target = torch.arange(R, device=logits.device).expand(logits.shape[0], R)
    rows = present & (present.sum(1, keepdim=True) >= 2)  # an image with < 2 regions has no relation
    l12 = F.cross_entropy(logits.masked_fill(~col_ok, neg).transpose(1, 2), target, reduction="none")
    l21 = F.cross_entropy(logits.transpose(1, 2).masked_fill(~col_ok, neg).transpose(1, 2), target,
                          reduction="none")
    w = rows.float()
    return ((l12 + l21) * w).sum() / (2 * w.sum().clamp_min(1.0))


def perceptual_loss(feats_pred: list[torch.Tensor], feats_true: list[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the MSE between L2-normalised tokens (MCF)."""
    total = feats_pred[0].new_zeros((), dtype=torch.float32)
    for a, b in zip(feats_pred, feats_true):
        a = F.normalize(a.float(), dim=-1)
        b = F.normalize(b.float(), dim=-1)
        total = total + ((a - b) ** 2).mean()
    return total
