"""FaRL's networks and losses: `FarlNet` (backbone + dense head at FaRL's input size), the
backbone layers it reads (`farl_layers`), `parsing_loss` and `landmark_loss`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench_tasks.protocols.farl import transforms as T
from bench_tasks.protocols.farl.settings import FARL_COMMON
from bench_tasks.protocols.train import BackboneWithHead


class FarlNet(BackboneWithHead):
    """FaRL's FaceParsingTransformer / FaceAlignmentTransformer: the warped input is resized
    (bilinear, align_corners False) to `input_size` inside the network, as FaRLVisualFeatures does.
    The head reads the raw tapped tokens, as FaRL's does (no standardisation: `normalize=False`;
    docs/farl_protocol.md, "Feature scale")."""

    def __init__(self, backbone, head, layers, frozen: bool, input_size: int):
        super().__init__(backbone, head, layers, frozen, normalize=False)
        self.input_size = int(input_size)

    def forward(self, x01):
        if x01.shape[-1] != self.input_size or x01.shape[-2] != self.input_size:
            x01 = F.interpolate(x01, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return super().forward(x01)


def farl_layers(backbone) -> list[int]:
    """FaRL's output_indices [3, 5, 7, 11] for a 12-block ViT; other depths: the backbone's scaled
    dense layers (recorded)."""
    if backbone.depth == 12:
        return list(FARL_COMMON["layers"])
    return list(backbone.dense_layers())


def parsing_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """FaRL FaceParsing: logits upsampled (bilinear) to the warped label size, cross-entropy per
    pixel, mean over pixels then batch (no ignore index: outside the image is background)."""
    logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, labels.long(), reduction="none").mean((1, 2)).mean()


def landmark_loss(logits: torch.Tensor, pts: torch.Tensor, st: dict) -> torch.Tensor:
    """FaRL FaceAlignment: coord_l1_loss = mean over points of the Euclidean distance in [0, 1]
    units (pred = heatmap2points(sigmoid)) + heatmap_ce_loss = BCE-with-logits of the heatmap
    logits resized to heatmap_size against gaussian_awing targets of heatmap_radius."""
    s = st["warped_size"]
    gt = T.normalize_points(pts.float(), s, s)
    pred = T.heatmap_to_points(torch.sigmoid(logits.float()))
    coord = (gt - pred).norm(dim=-1).mean(1)
    hs = int(st["heatmap_size"])
    hm = F.interpolate(logits.float(), (hs, hs), mode="bilinear", align_corners=False)
    with torch.no_grad():
        tgt = T.awing_heatmaps(gt, hs, float(st["heatmap_radius"]))
    ce = F.binary_cross_entropy_with_logits(hm, tgt, reduction="none").mean((1, 2, 3))
    w = st["loss_weights"]
    return (w["coord_l1_loss"] * coord + w["heatmap_ce_loss"] * ce).mean()
