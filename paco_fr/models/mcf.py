"""MCF-style baseline (Wang et al. 2023): MAE (random 75% masking, visible-only encoder, light
decoder) whose reconstruction loss is perceptual through a frozen teacher ViT (MSE of
L2-normalised tokens at a few blocks between the reconstruction and the original), plus a
MoCo-v3 contrastive term between the CLS of two differently masked views (momentum encoder and
projector, predictor on the query side).

Teacher resolution (`mcf.teacher`): a path (safetensors with timm keys / our export, or a .pth
state dict, optionally under a `model` key) loaded with paco_fr.backbone.load_vit_state_dict;
`auto` = the exported encoder of a sibling run in the same suite directory (prefers a name with
"mae", then "paco"); `random` or nothing found = a randomly initialised frozen teacher, with a
loud warning (warnings.warn + a `warning` event in log.jsonl).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch

from paco_fr.backbone import ViTBackbone, create_backbone, load_vit_state_dict
from paco_fr.losses import moco_loss, perceptual_loss, pixel_loss
from paco_fr.masking import make_mask, num_to_mask
from paco_fr.models.base import PretrainModel
from paco_fr.models.common import encode_visible, mlp, scaled_layers
from paco_fr.models.decoder import PixelDecoder
from paco_fr.models.mae import keep_indices


def find_sibling_teacher(run_dir: Path | None) -> Path | None:
    if run_dir is None:
        return None
    run_dir = Path(run_dir).resolve()
    cands = [p for p in sorted(run_dir.parent.glob("*/encoder.safetensors")) if p.parent != run_dir]
    for key in ("mae", "paco"):
        for p in cands:
            if key in p.parent.name.lower():
                return p
    return cands[0] if cands else None


def load_teacher(spec, arch: str, img_size: int, patch_size: int, run_dir=None, depth=None):
    """Returns (frozen ViTBackbone, description, warning or None)."""
    path = None
    if spec in (None, "", "random"):
        path = None
    elif spec == "auto":
        path = find_sibling_teacher(run_dir)
    else:
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"mcf.teacher {spec!r} does not exist")
    warn = None
    if path is None:
        kw = {"depth": depth} if depth else {}
        teacher = create_backbone(arch, img_size=img_size, patch_size=patch_size, **kw)
        warn = ("MCF TEACHER IS RANDOMLY INITIALISED: no teacher checkpoint was given (mcf.teacher) and no "
                "sibling run's encoder.safetensors was found; the perceptual loss is through a random ViT.")
        desc = "random"
    elif str(path).endswith(".safetensors"):
        from paco_fr.export import load_encoder

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


class MCFModel(PretrainModel):
    objective = "mcf"

    def __init__(self, cfg: dict, encoder, steps_per_epoch: int = 1, run_dir=None):
        super().__init__(cfg, encoder)
        m, dec = cfg["mcf"], cfg["decoder"]
        self.patch_dim = self.p * self.p * 3
        self.decoder = PixelDecoder(encoder.embed_dim, self.patch_dim, dim=dec["dim"], depth=dec["depth"],
                                    heads=dec["heads"])
        D = encoder.embed_dim
        self.projector = mlp(D, m["proj_hidden"], m["proj_dim"], layers=3, bn=True)
        self.predictor = mlp(m["proj_dim"], m["proj_hidden"], m["proj_dim"], layers=2, bn=True)
        self.m_encoder = copy.deepcopy(encoder)
        self.m_projector = copy.deepcopy(self.projector)
        for p in list(self.m_encoder.parameters()) + list(self.m_projector.parameters()):
            p.requires_grad_(False)
        mc = cfg["model"]
        teacher, desc, warn = load_teacher(m["teacher"], m["teacher_arch"] or mc["arch"], mc["img_size"],
                                           mc["patch_size"], run_dir=run_dir, depth=mc["depth"])
        self.teacher: ViTBackbone = teacher
        self.teacher_desc = desc
        if warn:
            warnings.warn(warn, stacklevel=2)
            self.warnings.append(warn)
        self.teacher_layers = m["teacher_layers"] or scaled_layers([2, 5, 8, 11], teacher.depth)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def _view(self, xn):
        grid, ratio = self.grid(xn), float(self.cfg["mcf"]["mask_ratio"])
        mask = make_mask("random", xn.shape[0], grid, ratio, device=xn.device)
        n = grid[0] * grid[1]
        keep = keep_indices(mask, n - num_to_mask(n, ratio))
        tokens, _ = encode_visible(self.encoder, xn, keep)
        npt = self.encoder.num_prefix_tokens
        pred = self.decoder(tokens[:, npt:], self.grid(xn), keep_idx=keep, prefix=tokens[:, :npt] if npt else None)
        return mask, keep, tokens[:, 0], pred

    def forward(self, batch: dict, step: int = 0) -> dict:
        m = self.cfg["mcf"]
        xn = self.encoder.normalize(batch["image"])
        grid = self.grid(xn)
        patches = self.patchify(xn)
        views = [self._view(xn) for _ in range(2)]
        # perceptual reconstruction loss through the frozen teacher (teacher sees its own normalisation)
        with torch.no_grad():
            t_true = self.teacher.forward_features(self._teacher_in(xn), self.teacher_layers).patch_tokens
        perc = 0.0
        pix = 0.0
        for mask, _, _, pred in views:
            recon = torch.where(mask[..., None], pred.to(patches.dtype), patches)
            t_pred = self.teacher.forward_features(self._teacher_in(self.unpatchify(recon, grid)),
                                                   self.teacher_layers).patch_tokens
            perc = perc + perceptual_loss(t_pred, t_true) / 2
            if float(m["pixel_weight"]) > 0:
                pix = pix + pixel_loss(pred, patches, mask, norm_pix_loss=False) / 2
        # MoCo v3 between the CLS of the two masked views
        q = [self.predictor(self.projector(v[2])) for v in views]
        with torch.no_grad():
            k = []
            for _m, keep, _, _ in views:
                tok, _ = encode_visible(self.m_encoder, xn, keep)
                k.append(self.m_projector(tok[:, 0]))
        con = moco_loss(q[0], k[1], m["temperature"]) + moco_loss(q[1], k[0], m["temperature"])
        loss = float(m["perceptual_weight"]) * perc + float(m["contrastive_weight"]) * con
        terms = {"perceptual": perc.detach(), "contrastive": con.detach()}
        if float(m["pixel_weight"]) > 0:
            loss = loss + float(m["pixel_weight"]) * pix
            terms["pix"] = pix.detach()
        return {"loss": loss, "terms": terms}

    def _teacher_in(self, xn):
        """Our normalised image -> the teacher's normalisation."""
        x01 = xn * self.encoder.std + self.encoder.mean
        return self.teacher.normalize(x01)

    @torch.no_grad()
    def on_step_end(self, step: int) -> None:
        mom = float(self.cfg["mcf"]["momentum"])
        for src, dst in ((self.encoder, self.m_encoder), (self.projector, self.m_projector)):
            for ps, pd in zip(src.parameters(), dst.parameters()):
                pd.mul_(mom).add_(ps.detach(), alpha=1 - mom)

    @torch.no_grad()
    def reconstruct(self, x01: torch.Tensor, **_) -> dict:
        xn = self.encoder.normalize(x01)
        grid = self.grid(xn)
        mask, _, _, pred = self._view(xn)
        patches = self.patchify(xn)
        return self.masked_reconstruction(x01, mask, patches, pred, grid)
