"""FaRL-style baseline: image-text contrastive (CLIP InfoNCE between the encoder CLS of the clean
image and a from-scratch text encoder over SynthFace captions) + masked image modelling
(SimMIM-like: mask tokens in the full sequence, light decoder, pixel loss on masked patches)."""

from __future__ import annotations

import math

import torch
from torch import nn

from paco_fr.losses import clip_loss, pixel_loss
from paco_fr.masking import make_mask
from paco_fr.models.base import PretrainModel
from paco_fr.models.decoder import PixelDecoder
from paco_fr.models.text import TextEncoder


def encode_with_mask_tokens(encoder, xn: torch.Tensor, mask: torch.Tensor, mask_token: torch.Tensor):
    """SimMIM encoding: patch embeddings of masked patches replaced by a learned mask token, full
    sequence through the encoder. Returns the final-normed tokens (B, prefix + N, D)."""
    vit = encoder.vit
    x = vit.patch_embed(xn)
    if x.ndim == 4:  # dynamic_img_size keeps NHWC
        B, h, w, D = x.shape
        x = x.reshape(B, h * w, D)
        m = mask.view(B, h * w, 1)
        x = torch.where(m, mask_token.to(x.dtype).expand_as(x), x).reshape(B, h, w, D)
    else:
        x = torch.where(mask[..., None], mask_token.to(x.dtype).expand_as(x), x)
    x = vit._pos_embed(x)
    x = vit.norm_pre(vit.patch_drop(x))
    for blk in vit.blocks:
        x = blk(x)
    return vit.norm(x)


class FaRLModel(PretrainModel):
    objective = "farl"

    def __init__(self, cfg: dict, encoder, steps_per_epoch: int = 1, vocab_size: int = 8):
        super().__init__(cfg, encoder)
        f, dec = cfg["farl"], cfg["decoder"]
        self.patch_dim = self.p * self.p * 3
        self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder.embed_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder = PixelDecoder(encoder.embed_dim, self.patch_dim, dim=dec["dim"], depth=dec["depth"],
                                    heads=dec["heads"])
        self.img_proj = nn.Linear(encoder.embed_dim, f["embed_dim"], bias=False)
        self.text = TextEncoder(vocab_size, width=f["text_width"], depth=f["text_depth"], heads=f["text_heads"],
                                max_len=f["max_len"], out_dim=f["embed_dim"])
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def _mask(self, xn):
        m = self.cfg["mask"]
        strategy = m["strategy"] if m["strategy"] != "region" else "block"  # FaRL/BEiT: blockwise
        return make_mask(strategy, xn.shape[0], self.grid(xn), float(self.cfg["farl"]["mask_ratio"]),
                         device=xn.device, fill=m["fill"])

    def forward(self, batch: dict, step: int = 0) -> dict:
        if "text" not in batch:
            raise ValueError("objective farl needs captions: the data source gave none (use data.source=synthface)")
        f = self.cfg["farl"]
        xn = self.encoder.normalize(batch["image"])
        cls = self.encoder.forward_features(xn).cls
        itc = clip_loss(self.img_proj(cls), self.text(batch["text"]), self.logit_scale)
        mask = self._mask(xn)
        npt = self.encoder.num_prefix_tokens
        tokens = encode_with_mask_tokens(self.encoder, xn, mask, self.mask_token)
        pred = self.decoder(tokens[:, npt:], self.grid(xn))
        lc = self.cfg["loss"]
        mim = pixel_loss(pred, self.patchify(xn), mask, norm_pix_loss=bool(lc["norm_pix"]), kind=lc["type"])
        loss = float(f["itc_weight"]) * itc + float(f["mim_weight"]) * mim
        return {"loss": loss, "terms": {"itc": itc.detach(), "mim": mim.detach(),
                                        "logit_scale": self.logit_scale.detach().exp()}}

    @torch.no_grad()
    def reconstruct(self, x01: torch.Tensor, mask: torch.Tensor | None = None, **_) -> dict:
        xn = self.encoder.normalize(x01)
        grid = self.grid(xn)
        mask = self._mask(xn) if mask is None else mask
        tokens = encode_with_mask_tokens(self.encoder, xn, mask, self.mask_token)
        pred = self.decoder(tokens[:, self.encoder.num_prefix_tokens:], grid)
        patches = self.patchify(xn)
        pred = self.pred_to_pixels(pred, patches, bool(self.cfg["loss"]["norm_pix"]))
        return self.masked_reconstruction(x01, mask, patches, pred, grid)
