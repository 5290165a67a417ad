"""PaCo-FR: structured masking + patch codebook with k candidates + Belief Predictor + pixel
reconstruction + spatial consistency.

One training step (`forward`):
1. x -> normalised image; with spatial consistency on, two views of each face (pairing `split`:
   the first B/2 images of the batch twice; `repeat`: all B images twice).
2. A mask (B, N) from the masking registry (default `region`, ratio 0.5).
3. Selected patches' pixels + their sin-cos position -> Belief Predictor logits over the codebook;
   k candidates (top-k of the logits, or k nearest) -> replacement token (belief-weighted mix /
   straight-through hard / Gumbel). The nearest code of each selected patch (chunked search)
   is the incubation CE target and feeds the EMA codebook update.
4. Selected patches are replaced *in pixel space* by their tokens; the ViT encoder sees the full
   corrupted image (all tokens); the light decoder reconstructs the original pixels of every
   patch; pixel loss on the replaced patches (or all), optionally norm_pix.
5. Incubation (first `incubation.epochs` epochs or `incubation.steps` steps): CE(logits,
   nearest) with weight ce_weight, and (detach_recon) the tokens are detached so the predictor
   learns only the pixel->codebook map; afterwards the predictor is trained end to end through
   the reconstruction loss (+ after_ce_weight * CE).
6. Spatial consistency (weight > 0): encoder patch tokens of each view (block `spatial.layer`)
   are average-pooled per facial region of the canonical grid (paco_fr.masking.region_map); the
   cosine-similarity matrix between region features (R x R) of view 1 and view 2 must agree:
   loss = mean over off-diagonal entries of (G1 - G2)^2 (G2 stop-grad if spatial.stop_grad).
   The two views differ in their masks and in their replacement tokens, so the constraint asks
   the geometric/semantic relations between facial components to be invariant to which parts
   were corrupted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from paco_fr.belief import BeliefPredictor, select_tokens
from paco_fr.codebook import PatchCodebook
from paco_fr.losses import pixel_loss, relation_consistency, relation_matrix
from paco_fr.masking import make_mask, region_pool_matrix
from paco_fr.models.base import PretrainModel
from paco_fr.models.common import sincos_2d
from paco_fr.models.decoder import PixelDecoder


class PaCoModel(PretrainModel):
    objective = "paco"

    def __init__(self, cfg: dict, encoder, steps_per_epoch: int = 1):
        super().__init__(cfg, encoder)
        self._pending_codebook: list[tuple[torch.Tensor, torch.Tensor]] = []  # applied in on_step_end
        self._dead_restarted = 0
        cb, bel, dec = cfg["codebook"], cfg["belief"], cfg["decoder"]
        self.patch_dim = self.p * self.p * 3
        self.codebook = PatchCodebook(cb["num_tokens"], self.patch_dim, k=cb["k"], update=cb["update"],
                                      decay=cb["decay"], dead_threshold=cb["dead_threshold"],
                                      chunk_size=cb["chunk_size"])
        self.belief = BeliefPredictor(self.patch_dim, cb["num_tokens"], hidden=bel["hidden"], pos_dim=bel["pos_dim"])
        self.decoder = PixelDecoder(encoder.embed_dim, self.patch_dim, dim=dec["dim"], depth=dec["depth"],
                                    heads=dec["heads"])
        inc = cfg["incubation"]
        self.incubation_steps = int(inc["steps"]) if inc["steps"] is not None else int(
            round(float(inc["epochs"]) * steps_per_epoch))
        self.last_cb_stats: dict[str, float] = {}

    def incubating(self, step: int) -> bool:
        return step < self.incubation_steps

    def _views(self, xn: torch.Tensor) -> tuple[torch.Tensor, int]:
        sp = self.cfg["spatial"]
        if float(sp["weight"]) <= 0:
            return xn, 0
        if sp["pairing"] == "repeat":
            return torch.cat([xn, xn], 0), xn.shape[0]
        if sp["pairing"] == "split":
            h = max(1, xn.shape[0] // 2)
            return torch.cat([xn[:h], xn[:h]], 0), h
        raise ValueError(f"unknown spatial.pairing {sp['pairing']!r}")

    def corrupt(self, xn: torch.Tensor, step: int, mask: torch.Tensor | None = None):
        """Returns dict(patches, mask, corrupted_patches, logits, nearest, sel)."""
        cb = self.cfg["codebook"]
        grid = self.grid(xn)
        B = xn.shape[0]
        patches = self.patchify(xn)
        if mask is None:
            m = self.cfg["mask"]
            mask = make_mask(m["strategy"], B, grid, float(m["ratio"]), device=xn.device, fill=m["fill"],
                             region_rule=m["region_rule"])
        sel = patches[mask]  # (M, P)
        if self.training:
            self.codebook.init_from(sel)
        pos = sincos_2d(grid, self.belief.pos_dim, xn.device).to(sel.dtype)
        pos_sel = pos[None].expand(B, -1, -1)[mask]
        logits = self.belief(sel, pos_sel)
        nearest = self.codebook.nearest(sel)
        tokens, cand, w = select_tokens(logits, sel, self.codebook, cb["k"], candidates=cb["candidates"],
                                        selection=cb["selection"], temperature=float(cb["temperature"]),
                                        gumbel_hard=bool(cb["gumbel_hard"]), training=self.training)
        if self.incubating(step) and self.cfg["incubation"]["detach_recon"]:
            tokens = tokens.detach()
        corrupted = patches.masked_scatter(mask[..., None], tokens.to(patches.dtype))
        return dict(patches=patches, mask=mask, corrupted=corrupted, logits=logits, nearest=nearest, sel=sel,
                    grid=grid)

    def forward(self, batch: dict, step: int = 0) -> dict:
        x01 = batch["image"]
        xn = self.encoder.normalize(x01)
        xv, half = self._views(xn)
        c = self.corrupt(xv, step)
        grid = c["grid"]
        img_c = self.unpatchify(c["corrupted"], grid)
        sp = self.cfg["spatial"]
        layer = int(sp["layer"])
        use_layer = half > 0 and layer != -1
        out = self.encoder.forward_features(img_c, [layer] if use_layer else None)
        pred = self.decoder(out.last_tokens, grid)
        lc = self.cfg["loss"]
        rec = pixel_loss(pred, c["patches"], None if lc["on"] == "all" else c["mask"],
                         norm_pix_loss=bool(lc["norm_pix"]), kind=lc["type"])
        ce = F.cross_entropy(c["logits"].float(), c["nearest"])
        inc = self.cfg["incubation"]
        ce_w = float(inc["ce_weight"]) if self.incubating(step) else float(inc["after_ce_weight"])
        loss = rec + ce_w * ce
        terms = {"rec": rec.detach(), "ce": ce.detach()}
        if half > 0:
            feats = out.patch_tokens[0] if use_layer else out.last_tokens
            pool, _ = region_pool_matrix(grid, feats.device)
            rel = relation_matrix(feats, pool)
            sc = relation_consistency(rel[:half], rel[half:2 * half], stop_grad=bool(sp["stop_grad"]))
            loss = loss + float(sp["weight"]) * sc
            terms["spatial"] = sc.detach()
        if self.codebook.update == "grad":
            commit = F.mse_loss(self.codebook.lookup(c["nearest"]), c["sel"].detach().float())
            loss = loss + commit
            terms["codebook"] = commit.detach()
        if self.training:
            # the codebook's EMA update (and dead-code restart) waits for on_step_end, after the
            # backward: updating the table in place inside the forward breaks torch.compile's
            # autograd, which may keep the table for the backward ("modified by an inplace
            # operation", measured on an H200 with torch 2.11); the update uses this step's patches
            # and nearest codes either way, and the next forward sees the updated table either way
            self._pending_codebook.append((c["sel"].detach(), c["nearest"].detach()))
        terms["incubating"] = torch.tensor(float(self.incubating(step)))
        return {"loss": loss, "terms": terms}

    @torch.no_grad()
    def on_step_end(self, step: int) -> None:
        """After the optimizer step: the codebook EMA update with every micro-batch of this step,
        then the dead-code restart every `codebook.restart_every` steps."""
        pending, self._pending_codebook = self._pending_codebook, []
        for sel, nearest in pending:
            self.codebook.ema_update(sel, nearest)
        every = int(self.cfg["codebook"]["restart_every"])
        if pending and every > 0 and step > 0 and step % every == 0:
            self._dead_restarted += self.codebook.restart_dead(pending[-1][0])

    def extra_stats(self) -> dict[str, float]:
        s = self.codebook.stats(reset=True)
        out = {"codebook_perplexity": s["perplexity"], "codebook_usage": s["usage"]}
        if self._dead_restarted:
            out["dead_restarted"], self._dead_restarted = float(self._dead_restarted), 0
        return out

    @torch.no_grad()
    def reconstruct(self, x01: torch.Tensor, step: int | None = None, mask: torch.Tensor | None = None) -> dict:
        xn = self.encoder.normalize(x01)
        c = self.corrupt(xn, step if step is not None else self.incubation_steps, mask=mask)
        grid = c["grid"]
        out = self.encoder.forward_features(self.unpatchify(c["corrupted"], grid))
        pred = self.decoder(out.last_tokens, grid)
        pred = self.pred_to_pixels(pred, c["patches"], bool(self.cfg["loss"]["norm_pix"]))
        m = c["mask"][..., None]
        recon = torch.where(m, pred.to(c["patches"].dtype), c["patches"])
        return {
            "original": x01,
            "corrupted": self.to_image01(self.unpatchify(c["corrupted"], grid)),
            "reconstructed": self.to_image01(self.unpatchify(recon, grid)),
            "mask": c["mask"],
        }
