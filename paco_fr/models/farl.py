"""FaRL-style baseline: image-text contrastive (CLIP InfoNCE between the encoder CLS of the clean
image and a from-scratch text encoder over SynthFace captions) + masked image modelling
(SimMIM-like: mask tokens in the full sequence, light decoder, pixel loss on masked patches)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from paco_fr.losses import clip_loss, pixel_loss
from paco_fr.masking import make_mask
from paco_fr.models.base import ObjectiveData, PretrainModel
from paco_fr.models.decoder import PixelDecoder
from paco_fr.models.registry import register_objective
from paco_fr.models.settings import DecoderSettings, LossSettings, MaskSettings, from_section
from paco_fr.models.text import TextEncoder, WordTokenizer


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


@dataclass(frozen=True)
class FaRLSettings:
    """`farl:` masked-image-modelling ratio, the two loss weights, the text tower, the captions."""

    mask_ratio: float
    mim_weight: float
    itc_weight: float
    embed_dim: int
    text_width: int
    text_depth: int
    text_heads: int
    max_len: int
    captions: dict  # noise / mode of SynthFace's captions (paco_fr.data.captions)


ORACLE_WARNING = ("FaRL-style with ORACLE captions (farl.captions.mode=oracle): every caption states the "
                  "true labels, so this is supervised pre-training, an upper bound, not FaRL-style")
PROBE_VOCAB = 64  # the probe tokenizer's size (FLOP counts, throughput): the count does not depend on it


class CaptionTokens(ObjectiveData):
    """FaRL's data: the word tokenizer of the dataset's captions and every caption's token ids."""

    def __init__(self, vocab_size: int, max_len: int, tokenizer: WordTokenizer | None = None,
                 text_ids: torch.Tensor | None = None):
        self.vocab_size, self.max_len = int(vocab_size), int(max_len)
        self.tokenizer, self.text_ids = tokenizer, text_ids

    def batch_fields(self, index, device) -> dict:
        return {} if self.text_ids is None else {"text": self.text_ids[index].to(device)}

    def synthetic_fields(self, batch: int, generator: torch.Generator) -> dict:
        return {"text": torch.randint(4, self.vocab_size, (batch, self.max_len), generator=generator)}

    def checkpoint_state(self) -> dict:
        return {"vocab": self.tokenizer.vocab if self.tokenizer is not None else None}


@register_objective("farl", section="farl")
class FaRLModel(PretrainModel):
    def __init__(self, encoder, *, farl: FaRLSettings, mask: MaskSettings, decoder: DecoderSettings,
                 loss: LossSettings, vocab_size: int = 8):
        super().__init__(encoder)
        self.settings, self.loss = farl, loss
        # FaRL/BEiT: blockwise where PaCo-FR's default is region
        self.mask_strategy = mask.strategy if mask.strategy != "region" else "block"
        self.mask_fill = mask.fill
        self.patch_dim = self.p * self.p * 3
        self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder.embed_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder = PixelDecoder(encoder.embed_dim, self.patch_dim, dim=decoder.dim, depth=decoder.depth,
                                    heads=decoder.heads)
        self.img_proj = nn.Linear(encoder.embed_dim, farl.embed_dim, bias=False)
        self.text = TextEncoder(vocab_size, width=farl.text_width, depth=farl.text_depth, heads=farl.text_heads,
                                max_len=farl.max_len, out_dim=farl.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if farl.captions.get("mode") == "oracle":
            self.warnings.append(ORACLE_WARNING)

    @classmethod
    def from_config(cls, cfg: dict, encoder, steps_per_epoch: int = 1, data=None) -> FaRLModel:
        vocab = data.vocab_size if isinstance(data, CaptionTokens) else 8
        return cls(encoder, farl=from_section(FaRLSettings, cfg["farl"], "farl"),
                   mask=from_section(MaskSettings, cfg["mask"], "mask"),
                   decoder=from_section(DecoderSettings, cfg["decoder"], "decoder"),
                   loss=from_section(LossSettings, cfg["loss"], "loss"), vocab_size=vocab)

    @classmethod
    def dataset_options(cls, cfg: dict) -> dict:
        return {"captions": cfg["farl"]["captions"]}

    @classmethod
    def prepare_data(cls, cfg: dict, dataset, checkpoint: dict | None) -> CaptionTokens:
        """The tokenizer of the dataset's captions, or the one a checkpoint saved (resume; with
        dataset=None, only the tokenizer: paco_fr.engine.load_run_model)."""
        if dataset is not None and not dataset.captions:
            raise ValueError("objective farl needs captions; data source has none")
        max_len = int(cfg["farl"]["max_len"])
        if checkpoint is not None and checkpoint.get("vocab"):
            tok = WordTokenizer(list(checkpoint["vocab"]))
        elif dataset is not None:
            tok = WordTokenizer.build(dataset.captions)
        else:
            raise ValueError("objective farl: no captions to build a tokenizer from and no saved vocabulary")
        return CaptionTokens(len(tok), max_len, tok,
                             tok.encode(dataset.captions, max_len) if dataset is not None else None)

    @classmethod
    def synthetic_data(cls, cfg: dict, vocab_size: int = PROBE_VOCAB) -> CaptionTokens:
        return CaptionTokens(vocab_size, int(cfg["farl"]["max_len"]))

    def _mask(self, xn):
        return make_mask(self.mask_strategy, xn.shape[0], self.grid(xn), self.settings.mask_ratio,
                         device=xn.device, fill=self.mask_fill)

    def forward(self, batch: dict, step: int = 0) -> dict:
        if "text" not in batch:
            raise ValueError("objective farl needs captions: the data source gave none (use data.source=synthface)")
        f = self.settings
        xn = self.encoder.normalize(batch["image"])
        cls = self.encoder.forward_features(xn).cls
        itc = clip_loss(self.img_proj(cls), self.text(batch["text"]), self.logit_scale)
        mask = self._mask(xn)
        npt = self.encoder.num_prefix_tokens
        tokens = encode_with_mask_tokens(self.encoder, xn, mask, self.mask_token)
        pred = self.decoder(tokens[:, npt:], self.grid(xn))
        mim = pixel_loss(pred, self.patchify(xn), mask, norm_pix_loss=self.loss.norm_pix, kind=self.loss.type)
        loss = f.itc_weight * itc + f.mim_weight * mim
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
        pred = self.pred_to_pixels(pred, patches, self.loss.norm_pix)
        return self.masked_reconstruction(x01, mask, patches, pred, grid)
