"""Plain SimMIM-like masked modelling of the same backbone (mask tokens, full sequence, linear
pixel head, L1 on masked patches): the reference step of `bench-throughput`."""

from __future__ import annotations

import torch
from torch import nn

from paco_fr.losses import pixel_loss
from paco_fr.masking import make_mask
from paco_fr.models.base import PretrainModel
from paco_fr.models.farl import encode_with_mask_tokens
from paco_fr.models.registry import register_objective


@register_objective("simmim")
class SimMIMModel(PretrainModel):
    def __init__(self, encoder, *, mask_ratio: float):
        super().__init__(encoder)
        self.mask_ratio = float(mask_ratio)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder.embed_dim))
        self.head = nn.Linear(encoder.embed_dim, self.p * self.p * 3)

    @classmethod
    def from_config(cls, cfg: dict, encoder, steps_per_epoch: int = 1, data=None) -> SimMIMModel:
        return cls(encoder, mask_ratio=float(cfg["mask"]["ratio"]))

    def forward(self, batch: dict, step: int = 0) -> dict:
        xn = self.encoder.normalize(batch["image"])
        mask = make_mask("random", xn.shape[0], self.grid(xn), self.mask_ratio, device=xn.device)
        tokens = encode_with_mask_tokens(self.encoder, xn, mask, self.mask_token)
        pred = self.head(tokens[:, self.encoder.num_prefix_tokens:])
        loss = pixel_loss(pred, self.patchify(xn), mask, norm_pix_loss=False, kind="l1")
        return {"loss": loss, "terms": {"rec": loss.detach()}}
