"""MAE baseline (He et al. 2022): random 75% masking, masked tokens dropped from the encoder,
light decoder with mask tokens, pixel loss (norm_pix) on the masked patches."""

from __future__ import annotations

import torch

from paco_fr.losses import pixel_loss
from paco_fr.masking import make_mask, num_to_mask
from paco_fr.models.base import PretrainModel
from paco_fr.models.common import encode_visible
from paco_fr.models.decoder import PixelDecoder
from paco_fr.models.registry import register_objective
from paco_fr.models.settings import DecoderSettings, LossSettings, from_section


def keep_indices(mask: torch.Tensor, n_keep: int | None = None) -> torch.Tensor:
    """(B, N) bool with the same count per row -> (B, n_keep) indices of the unmasked patches.
    Pass `n_keep` when it is known from the mask ratio (`num_to_mask`): counting it on the tensor is
    a host sync and a graph break under torch.compile."""
    if n_keep is None:
        n_keep = int((~mask[0]).sum())
    order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
    return order[:, :n_keep]


@register_objective("mae", section="mae")
class MAEModel(PretrainModel):
    def __init__(self, encoder, *, mask_ratio: float, decoder: DecoderSettings, loss: LossSettings):
        super().__init__(encoder)
        self.mask_ratio = float(mask_ratio)
        self.loss = loss
        self.patch_dim = self.p * self.p * 3
        self.decoder = PixelDecoder(encoder.embed_dim, self.patch_dim, dim=decoder.dim, depth=decoder.depth,
                                    heads=decoder.heads)

    @classmethod
    def from_config(cls, cfg: dict, encoder, steps_per_epoch: int = 1, data=None) -> MAEModel:
        return cls(encoder, mask_ratio=float(cfg["mae"]["mask_ratio"]),
                   decoder=from_section(DecoderSettings, cfg["decoder"], "decoder"),
                   loss=from_section(LossSettings, cfg["loss"], "loss"))

    def sample_mask(self, B, grid, device, ratio=None):
        ratio = float(self.mask_ratio if ratio is None else ratio)
        return make_mask("random", B, grid, ratio, device=device)

    def encode_decode(self, xn: torch.Tensor, mask: torch.Tensor, n_keep: int | None = None):
        grid = self.grid(xn)
        keep = keep_indices(mask, n_keep)
        tokens, _ = encode_visible(self.encoder, xn, keep)
        npt = self.encoder.num_prefix_tokens
        pred = self.decoder(tokens[:, npt:], grid, keep_idx=keep, prefix=tokens[:, :npt] if npt else None)
        return pred, tokens

    def forward(self, batch: dict, step: int = 0) -> dict:
        xn = self.encoder.normalize(batch["image"])
        grid = self.grid(xn)
        mask = self.sample_mask(xn.shape[0], grid, xn.device)
        n = grid[0] * grid[1]
        pred, _ = self.encode_decode(xn, mask, n - num_to_mask(n, self.mask_ratio))
        rec = pixel_loss(pred, self.patchify(xn), mask, norm_pix_loss=self.loss.norm_pix, kind=self.loss.type)
        return {"loss": rec, "terms": {"rec": rec.detach()}}

    @torch.no_grad()
    def reconstruct(self, x01: torch.Tensor, mask: torch.Tensor | None = None, **_) -> dict:
        xn = self.encoder.normalize(x01)
        grid = self.grid(xn)
        if mask is None:
            mask = self.sample_mask(xn.shape[0], grid, xn.device)
        pred, _ = self.encode_decode(xn, mask)
        patches = self.patchify(xn)
        pred = self.pred_to_pixels(pred, patches, self.loss.norm_pix)
        return self.masked_reconstruction(x01, mask, patches, pred, grid)
