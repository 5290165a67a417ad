"""Patch codebook in (normalised) pixel space.

Design choices (see docs/pretraining.md):
- Entries live directly in the pixel space of a patch (patch_size * patch_size * 3 values of the
  backbone-normalised image), no learned projection: a token *is* a patch that can be pasted into
  the image, and reconstructions of the codebook are directly viewable.
- Updates: EMA k-means (VQ-VAE-2 style: decayed cluster sizes and sums, Laplace smoothing), or
  `update="grad"` where the entries are a Parameter trained by a codebook loss the model adds.
  EMA is the default (no codebook gradient, stable, no commitment-loss tuning).
- Nearest / top-k search is chunked over codes *and* rows (`chunk_size`), so 8192 entries x
  tens of thousands of patches stay in bounded memory.
- Usage statistics (counts since the last `stats()` call -> perplexity, fraction of used codes)
  and dead-code restart: codes whose EMA cluster size fell below `dead_threshold` are replaced by
  random current patches. Under torch.distributed the EMA statistics are all-reduced and restarts
  are broadcast from rank 0, so every rank keeps the same codebook.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from paco_fr.diagnostics import perplexity_and_usage


def _dist_on() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class PatchCodebook(nn.Module):
    def __init__(self, num_tokens: int, dim: int, k: int = 4, update: str = "ema", decay: float = 0.99,
                 eps: float = 1e-5, dead_threshold: float = 0.5, chunk_size: int = 2048):
        super().__init__()
        if update not in ("ema", "grad"):
            raise ValueError(f"codebook update must be ema or grad, got {update!r}")
        self.num_tokens, self.dim, self.k = int(num_tokens), int(dim), int(k)
        self.update, self.decay, self.eps = update, float(decay), float(eps)
        self.dead_threshold, self.chunk_size = float(dead_threshold), int(chunk_size)
        init = torch.randn(num_tokens, dim) * 0.5
        if update == "grad":
            self.embed = nn.Parameter(init)
        else:
            self.register_buffer("embed", init)
        self.register_buffer("cluster_size", torch.zeros(num_tokens))
        self.register_buffer("embed_sum", init.clone())
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("usage", torch.zeros(num_tokens))

    # ------------------------------------------------------------------ search
    @torch.no_grad()
    def topk(self, x: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (M, dim) -> (squared distances (M, k), indices (M, k)), nearest first."""
        k = min(self.k if k is None else k, self.num_tokens)
        x = x.float()
        emb = self.embed.detach().float()
        e2 = (emb * emb).sum(1)
        rows = max(1, (self.chunk_size * 8))
        out_d, out_i = [], []
        for r0 in range(0, x.shape[0], rows):
            xr = x[r0:r0 + rows]
            x2 = (xr * xr).sum(1, keepdim=True)
            best_d = best_i = None
            for c0 in range(0, self.num_tokens, self.chunk_size):
                c = emb[c0:c0 + self.chunk_size]
                d = x2 - 2 * xr @ c.t() + e2[c0:c0 + self.chunk_size][None]
                kk = min(k, d.shape[1])
                dv, di = d.topk(kk, dim=1, largest=False)
                di = di + c0
                if best_d is None:
                    best_d, best_i = dv, di
                else:
                    cat_d, cat_i = torch.cat([best_d, dv], 1), torch.cat([best_i, di], 1)
                    best_d, sel = cat_d.topk(min(k, cat_d.shape[1]), dim=1, largest=False)
                    best_i = cat_i.gather(1, sel)
            out_d.append(best_d.clamp_min(0))
            out_i.append(best_i)
        return torch.cat(out_d), torch.cat(out_i)

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        return self.topk(x, 1)[1][:, 0]

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        emb = self.embed if self.update == "grad" else self.embed.detach()
        return emb[idx]

    # ------------------------------------------------------------------ updates
    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """Initialise the entries from random data patches (once; synchronised across ranks)."""
        if bool(self.initted):
            return
        x = x.detach().float()
        idx = torch.randint(0, x.shape[0], (self.num_tokens,), device=x.device)
        emb = x[idx] + 0.01 * torch.randn(self.num_tokens, self.dim, device=x.device)
        if _dist_on():
            dist.broadcast(emb, 0)
        self.embed.data.copy_(emb)
        self.embed_sum.copy_(emb)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    @torch.no_grad()
    def ema_update(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        x = x.detach().float()
        counts = torch.bincount(idx, minlength=self.num_tokens).float()
        sums = torch.zeros(self.num_tokens, self.dim, device=x.device).index_add_(0, idx, x)
        if _dist_on():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.usage += counts
        if self.update != "ema":
            return
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.num_tokens * self.eps) * n
        self.embed.data.copy_(self.embed_sum / smoothed.clamp_min(self.eps)[:, None])

    @torch.no_grad()
    def restart_dead(self, x: torch.Tensor) -> int:
        """Replace codes whose EMA cluster size < dead_threshold by random current patches."""
        if self.update == "ema":
            dead = self.cluster_size < self.dead_threshold
        else:
            dead = self.usage < 1
        n_dead = int(dead.sum())
        if n_dead == 0 or x.shape[0] == 0:
            return 0
        x = x.detach().float()
        pick = x[torch.randint(0, x.shape[0], (n_dead,), device=x.device)]
        new = self.embed.detach().clone()
        new[dead] = pick
        if _dist_on():
            dist.broadcast(new, 0)
        self.embed.data.copy_(new)
        self.embed_sum[dead] = new[dead] * self.dead_threshold
        self.cluster_size[dead] = self.dead_threshold
        return n_dead

    # ------------------------------------------------------------------ stats
    @torch.no_grad()
    def stats(self, reset: bool = True) -> dict[str, float]:
        """Perplexity and fraction of codes used since the last reset."""
        out = perplexity_and_usage(self.usage)
        if reset:
            self.usage.zero_()
        return out
