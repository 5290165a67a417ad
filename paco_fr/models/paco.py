"""PaCo-FR: structured masking + patch codebook with k candidates + Belief Predictor + pixel
reconstruction + spatial consistency.

One training step (`forward`):
1. x -> normalised image; with spatial consistency on (or `spatial.keep_views`), two views of
   each face (pairing `split`: the first B/2 images of the batch twice; `repeat`: all B twice).
2. A mask (B, N) from the masking registry (default `region`, ratio 0.5). With
   `mask.regions=landmarks` and landmarks in the batch, every face gets its own region map
   (paco_fr.region_maps); faces without landmarks get the canonical map.
3. Selected patches' pixels + their sin-cos position -> Belief Predictor logits over the codebook;
   k candidates (top-k of the logits, or k nearest) -> replacement token (belief-weighted mix /
   straight-through hard / Gumbel). The nearest code of each selected patch (chunked search)
   is the incubation CE target and feeds the EMA codebook update. `codebook.space=norm_pix`:
   entries are per-patch mean/std-normalised patches (the loss target's space) and a token is
   pasted with the replaced patch's own mean/std; `pixel`: entries are raw (backbone-normalised)
   patches. `belief.detach_weights`: the mixing weights are detached (CE-only control).
4. Selected patches are replaced *in pixel space* by their tokens; the ViT encoder sees the full
   corrupted image (all tokens); the light decoder reconstructs the original pixels of every
   patch; pixel loss on the replaced patches (or all), optionally norm_pix.
   `mask.replace=mask_token` (control): no codebook and no Belief Predictor; the selected
   patches' embeddings are replaced by a learned mask token (SimMIM-style full sequence).
5. Incubation (first `incubation.epochs` epochs or `incubation.steps` steps): CE(logits,
   nearest) with weight ce_weight, and (detach_recon) the tokens are detached so the predictor
   learns only the pixel->codebook map; afterwards the predictor is trained end to end through
   the reconstruction loss (+ after_ce_weight * CE).
6. Spatial consistency (weight > 0): encoder patch tokens of each view (block `spatial.layer`)
   are averaged per facial region (each face's map); `spatial.form=correspondence` (default):
   region features centred over the face's regions and scaled by one RMS per face; cross-view
   relation matrix S = z1 z2^T / T must be the identity under a softmax (cross-entropy over the
   regions, both directions; paco_fr.losses.spatial_correspondence). `gram_mse`: the earlier
   MSE between the two views' cosine relation matrices.
7. Diagnostics (paco_fr.diagnostics): copy baseline, belief top-1, token-to-patch distance and the
   loss terms, averaged per log window; gradient norms of each term w.r.t. the encoder at log steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paco_fr.belief import BeliefPredictor, select_tokens
from paco_fr.codebook import PatchCodebook
from paco_fr.diagnostics import (
    DIAG_KEYS,
    DiagnosticWindow,
    copy_baseline,
    information_free_baseline,
    patch_loss,
    top1_agreement,
)
from paco_fr.losses import (
    norm_pix,
    pixel_loss,
    region_features,
    relation_consistency,
    relation_matrix,
    spatial_correspondence,
)
from paco_fr.masking import REGIONS, make_mask, region_map, region_pool_matrix, region_pool_weights
from paco_fr.models.base import PretrainModel
from paco_fr.models.common import sincos_2d
from paco_fr.models.decoder import PixelDecoder
from paco_fr.models.paco_settings import (
    CODEBOOK_SPACES,
    PAIRINGS,
    REGION_SOURCES,
    REPLACE_MODES,
    SPATIAL_FORMS,
    BeliefSettings,
    CodebookSettings,
    IncubationSettings,
    SpatialSettings,
    views_seen,
)
from paco_fr.models.registry import register_objective
from paco_fr.models.settings import (
    DecoderSettings,
    LossSettings,
    MaskSettings,
    check_choice,
    from_section,
)
from paco_fr.region_maps import region_maps_from_landmarks


def encode_with_mask_token(encoder, xn: torch.Tensor, mask: torch.Tensor, token: torch.Tensor,
                           layers: list[int] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """SimMIM-style encoding: the patch embeddings of the masked patches replaced by `token`, the
    full sequence through the encoder. Returns (final-normed patch tokens (B, N, D), patch tokens
    of the requested blocks)."""
    vit = encoder.vit
    x = vit.patch_embed(xn)
    shape = x.shape  # (B, N, D), or NHWC with dynamic_img_size
    flat = x.reshape(shape[0], -1, shape[-1])
    flat = torch.where(mask[..., None], token.to(flat.dtype).expand_as(flat), flat)
    x = vit.norm_pre(vit.patch_drop(vit._pos_embed(flat.reshape(shape))))
    npt = encoder.num_prefix_tokens
    wanted = sorted({i % encoder.depth for i in (layers or [])})
    outs = []
    for i, blk in enumerate(vit.blocks):
        x = blk(x)
        if i in wanted:
            outs.append(x[:, npt:])
    return vit.norm(x)[:, npt:], outs


@register_objective("paco")
class PaCoModel(PretrainModel):
    def __init__(self, encoder, *, mask: MaskSettings, codebook: CodebookSettings, belief: BeliefSettings,
                 incubation: IncubationSettings, spatial: SpatialSettings, loss: LossSettings,
                 decoder: DecoderSettings, steps_per_epoch: int = 1):
        super().__init__(encoder)
        self._pending_codebook: list[tuple[torch.Tensor, torch.Tensor]] = []  # applied in on_step_end
        self._pending_diag: list[torch.Tensor] = []  # folded into the window in on_step_end
        self._diag = DiagnosticWindow(DIAG_KEYS)
        self._dead_restarted = 0
        self.replace = check_choice(mask.replace, REPLACE_MODES, "mask.replace")
        self.space = check_choice(codebook.space, CODEBOOK_SPACES, "codebook.space")
        check_choice(spatial.form, SPATIAL_FORMS, "spatial.form")
        check_choice(mask.regions, REGION_SOURCES, "mask.regions")
        if spatial.two_views:
            check_choice(spatial.pairing, PAIRINGS, "spatial.pairing")
        self.mask_cfg, self.cb, self.belief_cfg = mask, codebook, belief
        self.inc, self.sp, self.loss = incubation, spatial, loss
        self.patch_dim = self.p * self.p * 3
        if self.replace == "codebook":
            cb = codebook
            self.codebook = PatchCodebook(cb.num_tokens, self.patch_dim, k=cb.k, update=cb.update,
                                          decay=cb.decay, dead_threshold=cb.dead_threshold,
                                          chunk_size=cb.chunk_size)
            self.belief = BeliefPredictor(self.patch_dim, cb.num_tokens, hidden=belief.hidden,
                                          pos_dim=belief.pos_dim)
        else:  # the learned-mask-token control has neither
            self.codebook = None
            self.belief = None
            self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder.embed_dim))
            nn.init.normal_(self.mask_token, std=0.02)
        self.decoder = PixelDecoder(encoder.embed_dim, self.patch_dim, dim=decoder.dim, depth=decoder.depth,
                                    heads=decoder.heads)
        self.incubation_steps = int(incubation.steps) if incubation.steps is not None else int(
            round(float(incubation.epochs) * steps_per_epoch))
        self.last_cb_stats: dict[str, float] = {}

    @classmethod
    def from_config(cls, cfg: dict, encoder, steps_per_epoch: int = 1, data=None) -> PaCoModel:
        return cls(encoder, mask=from_section(MaskSettings, cfg["mask"], "mask"),
                   codebook=from_section(CodebookSettings, cfg["codebook"], "codebook"),
                   belief=from_section(BeliefSettings, cfg["belief"], "belief"),
                   incubation=from_section(IncubationSettings, cfg["incubation"], "incubation"),
                   spatial=from_section(SpatialSettings, cfg["spatial"], "spatial"),
                   loss=from_section(LossSettings, cfg["loss"], "loss"),
                   decoder=from_section(DecoderSettings, cfg["decoder"], "decoder"), steps_per_epoch=steps_per_epoch)

    @classmethod
    def distinct_images(cls, cfg: dict, batch: int) -> int:
        return views_seen(from_section(SpatialSettings, cfg["spatial"], "spatial"), batch)

    def incubating(self, step: int) -> bool:
        return step < self.incubation_steps

    # ------------------------------------------------------------------ views and regions
    def _view_index(self, B: int, device) -> torch.Tensor | None:
        """Batch rows of the two views (view 1 = first half), or None for a single view."""
        if not self.sp.two_views:
            return None
        n = B if self.sp.pairing == "repeat" else max(1, B // 2)
        idx = torch.arange(n, device=device)
        return torch.cat([idx, idx])

    def _views(self, xn: torch.Tensor) -> tuple[torch.Tensor, int]:
        idx = self._view_index(xn.shape[0], xn.device)
        return (xn, 0) if idx is None else (xn[idx], idx.shape[0] // 2)

    def region_maps(self, batch: dict, grid: tuple[int, int]) -> torch.Tensor | None:
        """(B, N) per-face region maps from batch["landmarks"] (unit coords, NaN = unknown), or
        None (the canonical map) with mask.regions=canonical or no landmarks."""
        lm = batch.get("landmarks")
        if lm is None or self.mask_cfg.regions != "landmarks":
            return None
        return region_maps_from_landmarks(lm, grid)

    # ------------------------------------------------------------------ codebook space
    def to_code_space(self, sel: torch.Tensor) -> torch.Tensor:
        return norm_pix(sel.float()) if self.space == "norm_pix" else sel

    def paste(self, tokens: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        """Code-space tokens -> pixels of the replaced patches. norm_pix: the token (a mixture of
        normalised codes has a smaller spread) is normalised again and given the replaced patch's
        own mean and standard deviation."""
        if self.space != "norm_pix":
            return tokens
        sel = sel.float()
        mean = sel.mean(-1, keepdim=True)
        std = (sel.var(-1, keepdim=True) + 1e-6).sqrt()
        return norm_pix(tokens.float()) * std + mean

    def corrupt(self, xn: torch.Tensor, step: int, mask: torch.Tensor | None = None,
                regions: torch.Tensor | None = None):
        """Returns dict(patches, mask, corrupted, logits, nearest, sel, code_sel, pasted, grid);
        with mask.replace=mask_token: corrupted / logits / nearest / pasted are None."""
        cb = self.cb
        grid = self.grid(xn)
        B = xn.shape[0]
        patches = self.patchify(xn)
        if mask is None:
            m = self.mask_cfg
            mask = make_mask(m.strategy, B, grid, m.ratio, device=xn.device, fill=m.fill,
                             region_rule=m.region_rule, regions=regions)
        sel = patches[mask]  # (M, P)
        out = dict(patches=patches, mask=mask, sel=sel, grid=grid, corrupted=None, logits=None, nearest=None,
                   code_sel=None, pasted=None)
        if self.codebook is None:
            return out
        code_sel = self.to_code_space(sel)
        if self.training:
            self.codebook.init_from(code_sel)
        pos = sincos_2d(grid, self.belief.pos_dim, xn.device).to(sel.dtype)
        pos_sel = pos[None].expand(B, -1, -1)[mask]
        logits = self.belief(sel, pos_sel)
        nearest = self.codebook.nearest(code_sel)
        mix_logits = logits.detach() if self.belief_cfg.detach_weights else logits
        tokens, cand, w = select_tokens(mix_logits, code_sel, self.codebook, cb.k, candidates=cb.candidates,
                                        selection=cb.selection, temperature=cb.temperature,
                                        gumbel_hard=cb.gumbel_hard, training=self.training)
        if self.incubating(step) and self.inc.detach_recon:
            tokens = tokens.detach()
        pasted = self.paste(tokens, sel)
        corrupted = patches.masked_scatter(mask[..., None], pasted.to(patches.dtype))
        out.update(corrupted=corrupted, logits=logits, nearest=nearest, code_sel=code_sel, pasted=pasted)
        return out

    def encode(self, xn: torch.Tensor, c: dict, layers: list[int] | None):
        """(final-normed patch tokens (B, N, D), patch tokens of `layers`) of the corrupted input."""
        if self.codebook is None:
            return encode_with_mask_token(self.encoder, xn, c["mask"], self.mask_token, layers)
        out = self.encoder.forward_features(self.unpatchify(c["corrupted"], c["grid"]), layers)
        return out.last_tokens, out.patch_tokens

    # ------------------------------------------------------------------ spatial consistency
    def spatial_term(self, feats: torch.Tensor, regions: torch.Tensor | None, half: int,
                     grid: tuple[int, int]) -> torch.Tensor:
        sp = self.sp
        if sp.form == "gram_mse":
            if regions is None:  # exactly the earlier term (regions present on the canonical grid)
                pool, _ = region_pool_matrix(grid, feats.device)
                rel = relation_matrix(feats, pool)
                return relation_consistency(rel[:half], rel[half:2 * half], stop_grad=sp.stop_grad)
            w, present = region_pool_weights(regions, len(REGIONS))
            f = F.normalize(region_features(feats, w), dim=-1)
            rel = f @ f.transpose(1, 2)
            a, b = rel[:half], rel[half:2 * half]
            if sp.stop_grad:
                b = b.detach()
            pair = present[:half, :, None] & present[:half, None, :]
            pair = pair & ~torch.eye(pair.shape[-1], dtype=torch.bool, device=pair.device)
            return ((a - b) ** 2 * pair).sum() / pair.sum().clamp_min(1)
        rmap = region_map(grid).to(feats.device) if regions is None else regions
        w, present = region_pool_weights(rmap, len(REGIONS))
        f = region_features(feats, w)
        if present.ndim == 1:
            present = present[None].expand(feats.shape[0], -1)
        return spatial_correspondence(f[:half], f[half:2 * half], present[:half], sp.temperature,
                                      center_batch=sp.center_batch, stop_grad=sp.stop_grad)

    # ------------------------------------------------------------------ the step
    def forward(self, batch: dict, step: int = 0) -> dict:
        x01 = batch["image"]
        xn = self.encoder.normalize(x01)
        grid = self.grid(xn)
        regions = self.region_maps(batch, grid)
        idx = self._view_index(xn.shape[0], xn.device)
        half = 0 if idx is None else idx.shape[0] // 2
        xv = xn if idx is None else xn[idx]
        rv = regions if (regions is None or idx is None) else regions[idx]
        c = self.corrupt(xv, step, regions=rv)
        sp = self.sp
        use_layer = half > 0 and sp.layer != -1
        last, layer_tokens = self.encode(xv, c, [sp.layer] if use_layer else None)
        pred = self.decoder(last, grid)
        norm_pix_loss, kind = self.loss.norm_pix, self.loss.type
        rec = pixel_loss(pred, c["patches"], None if self.loss.on == "all" else c["mask"],
                         norm_pix_loss=norm_pix_loss, kind=kind)
        loss = rec
        terms = {"rec": rec.detach()}
        parts = {"rec": rec}
        if self.codebook is not None:
            ce = F.cross_entropy(c["logits"].float(), c["nearest"])
            ce_w = self.inc.ce_weight if self.incubating(step) else self.inc.after_ce_weight
            loss = loss + ce_w * ce
            terms["ce"] = ce.detach()
        sc = None
        if half > 0:
            feats = layer_tokens[0] if use_layer else last
            weight = sp.weight
            if weight > 0:
                sc = self.spatial_term(feats, rv, half, grid)
                loss = loss + weight * sc
                parts["spatial"] = weight * sc
            else:  # keep_views with the term off: its value is still a diagnostic
                with torch.no_grad():
                    sc = self.spatial_term(feats.detach(), rv, half, grid)
            terms["spatial"] = sc.detach()
        if self.codebook is not None and self.codebook.update == "grad":
            commit = F.mse_loss(self.codebook.lookup(c["nearest"]), c["code_sel"].detach().float())
            loss = loss + commit
            terms["codebook"] = commit.detach()
        if self.training:
            # the codebook's EMA update (and dead-code restart) waits for on_step_end, after the
            # backward: updating the table in place inside the forward breaks torch.compile's
            # autograd, which may keep the table for the backward ("modified by an inplace
            # operation", measured on an H200 with torch 2.11); the update uses this step's patches
            # and nearest codes either way, and the next forward sees the updated table either way
            if self.codebook is not None:
                self._pending_codebook.append((c["code_sel"].detach(), c["nearest"].detach()))
            self._pending_diag.append(self._diag_vector(c, pred, rec, sc, norm_pix_loss, kind))
        terms["incubating"] = torch.tensor(float(self.incubating(step)))
        return {"loss": loss, "terms": terms, "parts": parts}

    @torch.no_grad()
    def _diag_vector(self, c: dict, pred: torch.Tensor, rec: torch.Tensor, sc, norm_pix_loss: bool,
                     kind: str) -> torch.Tensor:
        """This step's diagnostics as one vector in DIAG_KEYS order (NaN = not applicable)."""
        sel = c["sel"]
        nan = rec.new_full((), float("nan"), dtype=torch.float32)
        vals = {"rec": patch_loss(pred[c["mask"]], sel, norm_pix_loss, kind), "spatial": sc if sc is not None else nan}
        if self.codebook is None:
            vals.update(copy_baseline=information_free_baseline(sel, norm_pix_loss, kind), belief_top1=nan,
                        token_patch_mse=nan)
        else:
            pasted = c["pasted"].float()
            vals.update(copy_baseline=copy_baseline(pasted, sel, norm_pix_loss, kind),
                        belief_top1=top1_agreement(c["logits"], c["nearest"]),
                        token_patch_mse=(pasted - sel.float()).pow(2).mean() if sel.numel() else nan)
        return torch.stack([vals[k].detach().float().reshape(()) for k in DIAG_KEYS])

    @torch.no_grad()
    def on_step_end(self, step: int) -> None:
        """After the optimizer step: the codebook EMA update with every micro-batch of this step,
        then the dead-code restart every `codebook.restart_every` steps; the step's diagnostics
        join the log window."""
        pending_diag, self._pending_diag = self._pending_diag, []
        for vec in pending_diag:
            self._diag.add(dict(zip(DIAG_KEYS, vec.unbind(0))))
        pending, self._pending_codebook = self._pending_codebook, []
        if self.codebook is None:
            return
        for sel, nearest in pending:
            self.codebook.ema_update(sel, nearest)
        every = self.cb.restart_every
        if pending and every > 0 and step > 0 and step % every == 0:
            self._dead_restarted += self.codebook.restart_dead(pending[-1][0])

    def extra_stats(self) -> dict[str, float]:
        out = {f"diag_{k}": v for k, v in self._diag.mean().items()}
        if self.codebook is None:
            return out
        s = self.codebook.stats(reset=True)
        out.update({"codebook_perplexity": s["perplexity"], "codebook_usage": s["usage"]})
        if self._dead_restarted:
            out["dead_restarted"], self._dead_restarted = float(self._dead_restarted), 0
        return out

    def diagnostics_summary(self, records: list[dict]) -> dict:
        """summary.json's `diagnostics` block: the last log record's window means, and the
        gradient norms / shares averaged over the log steps in `records` (the engine passes its
        last 5; one log step's share is noisy)."""
        if not records:
            return {}
        record = records[-1]
        out: dict = {"window_end_step": record.get("step"),
                     "copy_baseline_of": "information-free prediction (mask token)" if self.codebook is None
                     else "the pasted token"}
        for k in DIAG_KEYS:
            if f"diag_{k}" in record:
                out[k] = record[f"diag_{k}"]
        for k in ("codebook_perplexity", "codebook_usage"):
            if k in record:
                out[k] = record[k]
        measured = [r for r in records if any(k.startswith("gnorm_") for k in r)]
        if measured:
            def mean_of(prefix: str) -> dict[str, float]:
                keys = sorted({k for r in measured for k in r if k.startswith(prefix)})
                return {k[len(prefix):]: sum(r.get(k, 0.0) for r in measured) / len(measured) for k in keys}

            out["grad_norms"], out["grad_shares"] = mean_of("gnorm_"), mean_of("gshare_")
            out["grad_log_steps"] = [r.get("step") for r in measured]
            out["spatial_grad_share"] = out["grad_shares"].get("spatial", 0.0)
        return out

    @torch.no_grad()
    def reconstruct(self, x01: torch.Tensor, step: int | None = None, mask: torch.Tensor | None = None) -> dict:
        xn = self.encoder.normalize(x01)
        c = self.corrupt(xn, step if step is not None else self.incubation_steps, mask=mask)
        grid = c["grid"]
        last, _ = self.encode(xn, c, None)
        pred = self.decoder(last, grid)
        pred = self.pred_to_pixels(pred, c["patches"], self.loss.norm_pix)
        if self.codebook is None:
            return self.masked_reconstruction(x01, c["mask"], c["patches"], pred, grid)
        m = c["mask"][..., None]
        recon = torch.where(m, pred.to(c["patches"].dtype), c["patches"])
        return {
            "original": x01,
            "corrupted": self.to_image01(self.unpatchify(c["corrupted"], grid)),
            "reconstructed": self.to_image01(self.unpatchify(recon, grid)),
            "mask": c["mask"],
        }
