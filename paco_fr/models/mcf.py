"""MCF-style baseline (Wang et al. 2023), following the released code (github.com/nomewang/MCF,
`models_mcf.py`, `models_moco.py`) where it is cheap to:

* one masked view (random 75 %, visible-only encoder, light decoder predicting every patch);
* perceptual loss: the *decoder output for every patch* (the released code feeds `pred` itself,
  not a composite with the visible originals) and the original image go through a frozen teacher
  ViT; at blocks [2, 5, 8, 11] (scaled to the teacher's depth) the raw block outputs, CLS
  included, are L2-normalised over the *token* axis (`F.normalize(feat, dim=1)` on (B, T, D)),
  MSE per block, summed, x 1000 (`perceptual_weight`);
* MoCo v3 term, one direction: query = predictor(projector(CLS of the masked view)), key =
  momentum projector(momentum encoder CLS of an independently masked view of the same image),
  InfoNCE x 2T, T = 0.2; momentum 0.99; 2-layer projector and predictor (as released).

Differences kept, with the reason (docs/pretraining.md, "Baselines"): LayerNorm instead of
BatchNorm in the projector / predictor (small CPU batches, DDP without SyncBN); the teacher is an
MAE pre-trained by the study on a disjoint SynthFace split (`teacher`), not MoCo-v3 on ImageNet;
fixed momentum (the released `adjust_moco_momentum` cosine schedule is defined but, as far as the
released files show, not called); our light decoder.

Teacher (`mcf.teacher`): a path to an exported encoder (safetensors with timm keys, our export) or
a .pth state dict (optionally under `model`). It is required: a missing path is an error naming
the path and what was expected. `random` (a randomly initialised frozen teacher) exists only for
tests and throughput probes, never silently, and is recorded as a warning.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from paco_fr.backbone import ViTBackbone, create_backbone, load_vit_state_dict
from paco_fr.encoder_file import load_encoder
from paco_fr.losses import moco_loss, pixel_loss
from paco_fr.masking import make_mask, num_to_mask
from paco_fr.models.base import PretrainModel
from paco_fr.models.common import encode_visible, mlp, scaled_layers
from paco_fr.models.decoder import PixelDecoder
from paco_fr.models.mae import keep_indices
from paco_fr.models.registry import register_objective
from paco_fr.models.settings import DecoderSettings, ModelSettings, from_section

RANDOM_TEACHER_WARNING = ("MCF TEACHER IS RANDOMLY INITIALISED (mcf.teacher=random): the perceptual loss goes "
                          "through a random ViT; use this only for tests and throughput probes")


class MissingTeacher(FileNotFoundError):
    """mcf.teacher is unset, `auto` (removed) or names a file that does not exist."""


def resolve_teacher(spec) -> Path | None:
    """mcf.teacher -> the checkpoint path (None for the explicit `random`); raises MissingTeacher."""
    expected = ("an exported encoder (encoder.safetensors of an MAE pre-trained on images disjoint from this "
                "run's, e.g. `python -m paco_fr pretrain --config smoke_mae name=teacher data.split=teacher`) or "
                "a .pth state dict with timm ViT keys")
    if spec in (None, ""):
        raise MissingTeacher(f"mcf.teacher is not set: MCF-style needs a frozen teacher, {expected}. "
                             "`python -m bench_tasks run --all` trains one and passes its path")
    if spec == "auto":
        raise MissingTeacher("mcf.teacher=auto (a sibling run of the suite) was removed: the suite's own MAE is "
                             f"an in-domain teacher trained on the same images and budget; give {expected}")
    if spec == "random":
        return None
    path = Path(str(spec)).expanduser()
    if not path.is_file():
        raise MissingTeacher(f"mcf.teacher {str(spec)!r}: no such file; expected {expected}")
    return path


def load_teacher(spec, arch: str, img_size: int, patch_size: int, depth=None):
    """Returns (frozen ViTBackbone in eval mode, description, warning or None)."""
    path = resolve_teacher(spec)
    warn = None
    if path is None:
        kw = {"depth": depth} if depth else {}
        teacher = create_backbone(arch, img_size=img_size, patch_size=patch_size, **kw)
        warn, desc = RANDOM_TEACHER_WARNING, "random"
    elif path.suffix == ".safetensors":
        teacher = load_encoder(path, img_size=img_size)
        desc = str(path)
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
            sd = sd["model"]
        teacher = create_backbone(arch, img_size=img_size, patch_size=patch_size)
        load_vit_state_dict(teacher.vit, sd, strict=False)
        desc = str(path)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval(), desc, warn


def teacher_features(teacher: ViTBackbone, x: torch.Tensor, layers: list[int]) -> list[torch.Tensor]:
    """Raw block outputs (CLS + patch tokens, before the final norm) at `layers`, each L2-normalised
    over the token axis, as MCF's CPLoss.extract_feats does."""
    out = teacher.forward_features(x, layers)
    feats = []
    for cls, patches in zip(out.cls_tokens, out.patch_tokens):
        tokens = torch.cat([cls[:, None], patches], 1) if teacher.num_prefix_tokens else patches
        feats.append(F.normalize(tokens.float(), dim=1))
    return feats


def token_normalised_perceptual_loss(pred_feats: list[torch.Tensor], true_feats: list[torch.Tensor]) -> torch.Tensor:
    """Sum over blocks of MSE(pred, true.detach()) between token-normalised teacher features."""
    total = pred_feats[0].new_zeros(())
    for a, b in zip(pred_feats, true_feats):
        total = total + F.mse_loss(a, b.detach())
    return total


@dataclass(frozen=True)
class MCFSettings:
    """`mcf:` the frozen teacher (path, arch, blocks), the masking, the three loss weights and the
    momentum-contrast head."""

    teacher: str | None
    teacher_arch: str | None
    teacher_layers: list | None
    mask_ratio: float
    perceptual_weight: float
    pixel_weight: float
    contrastive_weight: float
    momentum: float
    temperature: float
    proj_dim: int
    proj_hidden: int


@register_objective("mcf", section="mcf")
class MCFModel(PretrainModel):
    def __init__(self, encoder, *, mcf: MCFSettings, decoder: DecoderSettings, model: ModelSettings):
        super().__init__(encoder)
        m = self.settings = mcf
        self.patch_dim = self.p * self.p * 3
        self.decoder = PixelDecoder(encoder.embed_dim, self.patch_dim, dim=decoder.dim, depth=decoder.depth,
                                    heads=decoder.heads)
        D = encoder.embed_dim
        self.projector = mlp(D, m.proj_hidden, m.proj_dim, layers=2, bn=True)
        self.predictor = mlp(m.proj_dim, m.proj_hidden, m.proj_dim, layers=2, bn=True)
        self.m_encoder = copy.deepcopy(encoder)
        self.m_projector = copy.deepcopy(self.projector)
        for p in list(self.m_encoder.parameters()) + list(self.m_projector.parameters()):
            p.requires_grad_(False)
        teacher, desc, warn = load_teacher(m.teacher, m.teacher_arch or model.arch, model.img_size,
                                           model.patch_size, depth=model.depth)
        self.teacher: ViTBackbone = teacher
        self.teacher_desc = desc
        if warn:
            warnings.warn(warn, stacklevel=2)
            self.warnings.append(warn)
        self.teacher_layers = m.teacher_layers or scaled_layers([2, 5, 8, 11], teacher.depth)

    @classmethod
    def from_config(cls, cfg: dict, encoder, steps_per_epoch: int = 1, data=None) -> MCFModel:
        return cls(encoder, mcf=from_section(MCFSettings, cfg["mcf"], "mcf"),
                   decoder=from_section(DecoderSettings, cfg["decoder"], "decoder"),
                   model=from_section(ModelSettings, cfg["model"], "model"))

    @classmethod
    def with_upstream(cls, cfg: dict, spec: str) -> dict:
        """cfg with mcf.teacher = `spec` (probes: `random`, same architecture, same FLOPs)."""
        cfg = copy.deepcopy(cfg)
        cfg.setdefault("mcf", {})["teacher"] = spec
        return cfg

    def start_events(self) -> list[dict]:
        return [*super().start_events(), {"event": "teacher", "teacher": self.teacher_desc}]

    def upstream_encoder(self) -> str | None:
        t = self.settings.teacher
        return None if t == "random" else t

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def _keep(self, xn):
        grid, ratio = self.grid(xn), self.settings.mask_ratio
        mask = make_mask("random", xn.shape[0], grid, ratio, device=xn.device)
        n = grid[0] * grid[1]
        return mask, keep_indices(mask, n - num_to_mask(n, ratio))

    def _masked_view(self, xn):
        """(mask, CLS of the online encoder, decoder prediction of every patch)."""
        mask, keep = self._keep(xn)
        tokens, _ = encode_visible(self.encoder, xn, keep)
        npt = self.encoder.num_prefix_tokens
        pred = self.decoder(tokens[:, npt:], self.grid(xn), keep_idx=keep, prefix=tokens[:, :npt] if npt else None)
        return mask, tokens[:, 0], pred

    def forward(self, batch: dict, step: int = 0) -> dict:
        m = self.settings
        xn = self.encoder.normalize(batch["image"])
        grid = self.grid(xn)
        mask, cls, pred = self._masked_view(xn)
        # perceptual loss: the decoder output (every patch) vs the original, through the frozen teacher
        with torch.no_grad():
            t_true = teacher_features(self.teacher, self._teacher_in(xn), self.teacher_layers)
        t_pred = teacher_features(self.teacher, self._teacher_in(self.unpatchify(pred.to(xn.dtype), grid)),
                                  self.teacher_layers)
        perc = token_normalised_perceptual_loss(t_pred, t_true)
        # MoCo v3, one direction: the masked view's query vs the momentum encoder's key of another mask
        q = self.predictor(self.projector(cls))
        with torch.no_grad():
            _, keep2 = self._keep(xn)
            tok2, _ = encode_visible(self.m_encoder, xn, keep2)
            k = self.m_projector(tok2[:, 0])
        con = moco_loss(q, k, m.temperature)
        loss = m.perceptual_weight * perc + m.contrastive_weight * con
        terms = {"perceptual": perc.detach(), "contrastive": con.detach()}
        if m.pixel_weight > 0:
            pix = pixel_loss(pred, self.patchify(xn), mask, norm_pix_loss=False)
            loss = loss + m.pixel_weight * pix
            terms["pix"] = pix.detach()
        return {"loss": loss, "terms": terms}

    def _teacher_in(self, xn):
        """Our normalised image -> the teacher's normalisation."""
        x01 = xn * self.encoder.std + self.encoder.mean
        return self.teacher.normalize(x01)

    @torch.no_grad()
    def on_step_end(self, step: int) -> None:
        mom = self.settings.momentum
        for src, dst in ((self.encoder, self.m_encoder), (self.projector, self.m_projector)):
            for ps, pd in zip(src.parameters(), dst.parameters()):
                pd.mul_(mom).add_(ps.detach(), alpha=1 - mom)

    @torch.no_grad()
    def reconstruct(self, x01: torch.Tensor, **_) -> dict:
        xn = self.encoder.normalize(x01)
        grid = self.grid(xn)
        mask, _, pred = self._masked_view(xn)
        patches = self.patchify(xn)
        return self.masked_reconstruction(x01, mask, patches, pred, grid)
