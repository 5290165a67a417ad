"""Face-recognition heads: an embedding projection and margin-softmax classifiers.

* `EmbeddingHead(in_dim, emb_dim=512)`: BatchNorm1d -> Linear (no bias) -> BatchNorm1d, the
  "E" output block of insightface's backbones (without dropout). Its input is the backbone
  feature `recognition_features(out)` = [final normalised CLS ; mean of the last block's patch
  tokens] (2 * D), the same vector the linear protocol caches.
* `ArcFace(emb_dim, n_classes, s=64, m=0.5, easy_margin=False)`: logits
  s * cos(theta_y + m) for the target class and s * cos(theta_j) otherwise, as insightface's
  ArcFace: with `easy_margin` the margin is applied only where cos(theta) > 0; otherwise where
  cos(theta) <= cos(pi - m) (theta + m would pass pi and cos would no longer decrease) the target
  logit is s * (cos(theta) - m * sin(m)) (insightface's `cos - mm`).
* `CosFace(emb_dim, n_classes, s=64, m=0.35)`: s * (cos(theta_y) - m).

`RecognitionHead` bundles both: forward(features) -> embeddings (what evaluation uses);
`.loss(embeddings, labels)` -> cross-entropy of the margin logits (what training uses).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench_tasks.registry import HEADS


def recognition_features(out) -> torch.Tensor:
    """[final CLS ; mean of the last requested block's patch tokens] from a BackboneOutput
    (the recognition task requests layers=[depth - 1])."""
    mean = out.patch_tokens[-1].mean(1) if out.patch_tokens else out.last_tokens.mean(1)
    return torch.cat([out.cls, mean], dim=-1)


class EmbeddingHead(nn.Module):
    def __init__(self, in_dim: int, emb_dim: int = 512):
        super().__init__()
        self.bn_in = nn.BatchNorm1d(in_dim)
        self.fc = nn.Linear(in_dim, emb_dim, bias=False)
        self.bn_out = nn.BatchNorm1d(emb_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_out(self.fc(self.bn_in(x)))


class _NormLinear(nn.Module):
    def __init__(self, emb_dim: int, n_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, emb_dim))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, emb: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(emb.float(), dim=-1), F.normalize(self.weight.float(), dim=-1))


class ArcFace(_NormLinear):
    def __init__(self, emb_dim: int, n_classes: int, s: float = 64.0, m: float = 0.5, easy_margin: bool = False):
        super().__init__(emb_dim, n_classes)
        self.s, self.m, self.easy_margin = s, m, easy_margin
        self.cos_m, self.sin_m = math.cos(m), math.sin(m)
        self.th = math.cos(math.pi - m)
        self.mm = math.sin(math.pi - m) * m

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosine(emb).clamp(-1.0, 1.0)
        target = cos.gather(1, labels.view(-1, 1))
        sin = torch.sqrt((1.0 - target * target).clamp_min(0.0))
        phi = target * self.cos_m - sin * self.sin_m  # cos(theta + m)
        if self.easy_margin:
            phi = torch.where(target > 0, phi, target)
        else:
            phi = torch.where(target > self.th, phi, target - self.mm)
        return self.s * cos.scatter(1, labels.view(-1, 1), phi)


class CosFace(_NormLinear):
    def __init__(self, emb_dim: int, n_classes: int, s: float = 64.0, m: float = 0.35):
        super().__init__(emb_dim, n_classes)
        self.s, self.m = s, m

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosine(emb)
        target = cos.gather(1, labels.view(-1, 1)) - self.m
        return self.s * cos.scatter(1, labels.view(-1, 1), target)


MARGINS = {"arcface": ArcFace, "cosface": CosFace}


def make_margin(kind: str, emb_dim: int, n_classes: int, **kw) -> nn.Module:
    if kind not in MARGINS:
        raise ValueError(f"unknown margin {kind!r}; choose from {sorted(MARGINS)}")
    return MARGINS[kind](emb_dim, n_classes, **kw)


@HEADS.register("margin")
class RecognitionHead(nn.Module):
    """Embedding projection + margin classifier. `from_backbone=True`: the input is a
    BackboneOutput (frozen / finetune protocols); otherwise a feature vector (linear protocol)."""

    def __init__(self, in_dim: int, n_classes: int, emb_dim: int = 512, margin: str = "arcface",
                 from_backbone: bool = False, **margin_kw):
        super().__init__()
        self.embed = EmbeddingHead(in_dim, emb_dim)
        self.margin = make_margin(margin, emb_dim, n_classes, **margin_kw)
        self.from_backbone = from_backbone

    def forward(self, x) -> torch.Tensor:
        if self.from_backbone:
            x = recognition_features(x)
        return self.embed(x)

    def loss(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.margin(emb, labels), labels)
