"""PaCo-FR training diagnostics: what the pasted token already gives away, how
the Belief Predictor and the codebook behave, and how much each loss term pushes the encoder.

Per step (no gradient, a few reductions over the replaced patches; `PaCoModel.forward`):
- `copy_baseline`: the reconstruction loss obtained by pasting the token itself as the prediction
  of every replaced patch, in the loss's own space (norm_pix: the token normalised per patch like
  the target; L1 / MSE as the loss). For the learned-mask-token control, whose token carries no
  information about the patch, it is the loss of the information-free prediction (zeros in
  norm_pix space, i.e. the patch mean). A reconstruction loss near the copy baseline means the
  decoder mostly copies the token.
- `belief_top1`: fraction of replaced patches whose highest belief logit is their nearest code.
- `token_patch_mse`: mean squared difference per value between the pasted token and the patch it
  replaces, in the encoder's input space (backbone-normalised pixels).
- `rec`, `spatial`: the loss terms, averaged over the same window.
Per log window (the codebook's usage counts): `codebook_perplexity` (exp of the entropy of the
code frequencies) and `codebook_usage` (fraction of codes used at least once).
Per log step (one extra backward per term, `gradient_norms`): the norm of each weighted loss
term's gradient w.r.t. the encoder's parameters and its share sum-normalised over the terms.
"""

from __future__ import annotations

import torch

from paco_fr.losses import norm_pix

DIAG_KEYS = ("rec", "copy_baseline", "belief_top1", "token_patch_mse", "spatial")


def patch_loss(pred: torch.Tensor, target: torch.Tensor, norm_pix_loss: bool, kind: str) -> torch.Tensor:
    """Mean over rows of the per-patch loss between (M, P) predictions and (M, P) target patches,
    with the reconstruction loss's conventions (paco_fr.losses.pixel_loss on the masked patches)."""
    pred, target = pred.float(), target.float()
    if norm_pix_loss:
        target = norm_pix(target)
    diff = pred - target
    per = diff.pow(2).mean(-1) if kind == "mse" else diff.abs().mean(-1)
    return per.mean() if per.numel() else per.new_zeros(())


@torch.no_grad()
def copy_baseline(pasted: torch.Tensor, target: torch.Tensor, norm_pix_loss: bool, kind: str) -> torch.Tensor:
    """Loss of predicting each replaced patch by the token pasted there (both (M, P), pixel space)."""
    pred = norm_pix(pasted.float()) if norm_pix_loss else pasted
    return patch_loss(pred, target, norm_pix_loss, kind)


@torch.no_grad()
def information_free_baseline(target: torch.Tensor, norm_pix_loss: bool, kind: str) -> torch.Tensor:
    """Loss of a prediction that knows nothing of the patch: zeros in norm_pix space (the patch's
    own mean), else the mean of the replaced patches."""
    t = target.float()
    pred = torch.zeros_like(t) if norm_pix_loss else t.mean(0, keepdim=True).expand_as(t)
    return patch_loss(pred, t, norm_pix_loss, kind)


@torch.no_grad()
def top1_agreement(logits: torch.Tensor, nearest: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose argmax logit is the nearest code."""
    if logits.shape[0] == 0:
        return logits.new_zeros(())
    return (logits.argmax(1) == nearest).float().mean()


def perplexity_and_usage(counts: torch.Tensor) -> dict[str, float]:
    """Code counts (K,) -> {"perplexity": exp(entropy of the frequencies), "usage": fraction of
    codes with a count > 0}; zeros when nothing was counted."""
    counts = counts.float()
    total = counts.sum()
    if total <= 0:
        return {"perplexity": 0.0, "usage": 0.0}
    p = counts / total
    ent = -(p * (p + 1e-12).log()).sum()
    return {"perplexity": float(ent.exp()), "usage": float((counts > 0).float().mean())}


def gradient_norms(parts: dict[str, torch.Tensor], params: list[torch.nn.Parameter]) -> dict[str, float]:
    """{term: weighted loss tensor} -> {"gnorm_<term>": ||d term / d params||, "gshare_<term>": its
    share of the sum of the norms}. Terms that do not reach `params` get 0. The graph is kept (the
    training backward follows)."""
    params = [p for p in params if p.requires_grad]
    norms: dict[str, float] = {}
    for name, part in parts.items():
        if not (torch.is_tensor(part) and part.requires_grad):
            norms[name] = 0.0
            continue
        grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
        sq = [g.float().pow(2).sum() for g in grads if g is not None]
        norms[name] = float(torch.stack(sq).sum().sqrt()) if sq else 0.0
    total = sum(norms.values())
    out = {f"gnorm_{k}": v for k, v in norms.items()}
    out.update({f"gshare_{k}": (v / total if total > 0 else 0.0) for k, v in norms.items()})
    return out


class DiagnosticWindow:
    """Sums per-step diagnostic vectors on the device (no host sync per step); `mean()` returns the
    averages since the last call and starts a new window."""

    def __init__(self, keys=DIAG_KEYS):
        self.keys = tuple(keys)
        self._sum: torch.Tensor | None = None
        self._n = 0

    def add(self, values: dict[str, torch.Tensor]) -> None:
        dev = next(iter(values.values())).device
        vec = torch.stack([values[k].detach().float().reshape(()) if k in values else
                           torch.full((), float("nan"), device=dev) for k in self.keys])
        self._sum = vec if self._sum is None else self._sum + vec.to(self._sum.device)
        self._n += 1

    def mean(self) -> dict[str, float]:
        if self._sum is None or self._n == 0:
            return {}
        vals = (self._sum / self._n).tolist()
        self._sum, self._n = None, 0
        return {k: v for k, v in zip(self.keys, vals) if v == v}  # drop NaN (term absent)
