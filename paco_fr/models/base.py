"""Base class of the pre-training models: one `forward(batch, step) -> {"loss", "terms"}` per
objective, sharing the ViT encoder (`.encoder`, a paco_fr.backbone.ViTBackbone)."""

from __future__ import annotations

import torch
from torch import nn

from paco_fr.backbone import ViTBackbone
from paco_fr.losses import norm_pix
from paco_fr.models.common import patchify, unpatchify


class PretrainModel(nn.Module):
    objective = "base"
    encoder: ViTBackbone

    def __init__(self, cfg: dict, encoder: ViTBackbone):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.p = encoder.patch_size
        self.warnings: list[str] = []

    def grid(self, x: torch.Tensor) -> tuple[int, int]:
        return x.shape[-2] // self.p, x.shape[-1] // self.p

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        return patchify(x, self.p)

    def unpatchify(self, x: torch.Tensor, grid) -> torch.Tensor:
        return unpatchify(x, self.p, grid)

    def to_image01(self, xn: torch.Tensor) -> torch.Tensor:
        return (xn * self.encoder.std + self.encoder.mean).clamp(0, 1)

    def masked_reconstruction(self, x01: torch.Tensor, mask: torch.Tensor, patches: torch.Tensor,
                              pred: torch.Tensor, grid) -> dict:
        """reconstruct()'s output for masked-token objectives: masked patches shown as the
        normalised zero (mean colour) in `corrupted`, filled with the prediction in `reconstructed`."""
        m = mask[..., None]
        return {
            "original": x01,
            "corrupted": self.to_image01(self.unpatchify(torch.where(m, torch.zeros_like(patches), patches), grid)),
            "reconstructed": self.to_image01(self.unpatchify(torch.where(m, pred.to(patches.dtype), patches), grid)),
            "mask": mask,
        }

    def pred_to_pixels(self, pred: torch.Tensor, target: torch.Tensor, normed: bool) -> torch.Tensor:
        """Undo the per-patch normalisation of norm_pix predictions using the target's statistics."""
        if not normed:
            return pred
        mean = target.mean(-1, keepdim=True)
        std = (target.var(-1, keepdim=True) + 1e-6).sqrt()
        return pred * std + mean

    def on_step_end(self, step: int) -> None:
        """Called after every optimizer step (momentum encoders etc.)."""

    def extra_stats(self) -> dict[str, float]:
        """Values added to every log record (averaged since the previous record where it applies)."""
        return {}

    def gradient_diagnostics(self, out: dict) -> dict[str, float]:
        """Gradient norm of each weighted loss term in `out["parts"]` w.r.t. the encoder's parameters
        (paco_fr.diagnostics.gradient_norms); {} for objectives that return no parts. Called by the
        engine at log steps, before the training backward (the graph is kept)."""
        parts = out.get("parts")
        if not parts:
            return {}
        from paco_fr.diagnostics import gradient_norms

        return gradient_norms(parts, list(self.encoder.parameters()))

    def diagnostics_summary(self, records: list[dict]) -> dict:
        """summary.json's `diagnostics` block from the last log records, oldest first ({} = none)."""
        return {}

    @torch.no_grad()
    def reconstruct(self, x01: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


__all__ = ["PretrainModel", "norm_pix"]
