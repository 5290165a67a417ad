"""Belief Predictor: from a patch's pixels and its position to logits over the codebook, and the
selection of a replacement token among k candidates.

Candidates (`candidates=`): `belief` = the k codes with the highest predicted logits (default),
`nearest` = the k codes nearest in pixel space. Selection (`selection=`) among the candidates:
- `mix` (default): belief-weighted mixture sum_i softmax(l_i / T) c_i (differentiable w.r.t.
  the logits, so the reconstruction loss trains the predictor end to end);
- `hard`: straight-through hard choice (forward: argmax token, backward: softmax gradient);
- `gumbel`: Gumbel-softmax over the candidate logits (`gumbel_hard` for the ST variant); at eval
  it is the argmax token.
Codebook entries are not differentiated through (EMA codebook); with `update=grad` they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from paco_fr.codebook import PatchCodebook


class BeliefPredictor(nn.Module):
    def __init__(self, patch_dim: int, num_tokens: int, hidden: int = 256, pos_dim: int = 32):
        super().__init__()
        self.pos_dim = pos_dim
        self.inp = nn.Linear(patch_dim, hidden)
        self.pos = nn.Linear(pos_dim, hidden)
        self.body = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden))
        self.head = nn.Linear(hidden, num_tokens)

    def forward(self, patches: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """patches: (M, patch_dim) pixels; pos: (M, pos_dim) position embedding -> logits (M, K)."""
        return self.head(self.body(self.inp(patches) + self.pos(pos)))


def select_tokens(logits: torch.Tensor, patches: torch.Tensor, codebook: PatchCodebook, k: int,
                  candidates: str = "belief", selection: str = "mix", temperature: float = 1.0,
                  gumbel_hard: bool = False, training: bool = True):
    """Returns (tokens (M, dim), candidate indices (M, k), weights (M, k))."""
    k = min(k, codebook.num_tokens)
    if candidates == "belief":
        cand = logits.detach().topk(k, dim=1).indices
    elif candidates == "nearest":
        cand = codebook.topk(patches, k)[1]
    else:
        raise ValueError(f"unknown candidates rule {candidates!r}")
    cl = logits.gather(1, cand).float() / temperature
    if selection == "mix":
        w = cl.softmax(1)
    elif selection == "hard":
        soft = cl.softmax(1)
        hard = F.one_hot(soft.argmax(1), k).to(soft.dtype)
        w = hard - soft.detach() + soft
    elif selection == "gumbel":
        if training:
            w = F.gumbel_softmax(cl, tau=1.0, hard=gumbel_hard, dim=1)
        else:
            w = F.one_hot(cl.argmax(1), k).to(cl.dtype)
    else:
        raise ValueError(f"unknown selection {selection!r}")
    vecs = codebook.lookup(cand)  # (M, k, dim)
    tokens = (w.unsqueeze(-1) * vecs.to(w.dtype)).sum(1)
    return tokens, cand, w
