"""Memoised frozen backbone for the dense `frozen` protocol.

With a frozen backbone (eval mode, no gradients, no augmentation) every epoch recomputes exactly
the same token maps for the same images. `FrozenFeatureCache` wraps a `BenchBackbone`, keys
each image by a hash of its bytes and returns the stored `BackboneOutput` parts for the images
it has seen, running the backbone only on the others. The outputs are bit-identical to the
backbone's (they are the backbone's, stored in float32); an image that differs in any byte
(augmentation) is a miss and is computed. Copies of the module (the EMA copy that `fit` makes)
share one store. Storage stops growing at `max_mb`; beyond it the backbone simply runs.

Measured on the smoke dense cells (ViT-Ti/8, 2 blocks, 64 px): the backbone's forward is about
a third of a frozen training step, so the cache saves about that on every epoch after the first;
with a deeper backbone it saves most of the step (docs/dense.md).
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from paco_fr.backbone import BackboneOutput


class _Store:
    """{key: (cls (D,), [tokens (N, D) per layer])}; shared by deep copies."""

    def __init__(self, max_bytes: int):
        self.items: dict[bytes, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        self.max_bytes = max_bytes
        self.nbytes = 0
        # (input shape, layers) -> (grid, grids) of the outputs stored (a pyramid's grid per stage)
        self.grids: dict[tuple, tuple] = {}
        self.hits = 0
        self.misses = 0

    def __deepcopy__(self, memo):
        return self


def image_key(x: torch.Tensor, layers: tuple[int, ...]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((tuple(x.shape), str(x.dtype), layers)).encode())
    h.update(x.detach().contiguous().cpu().numpy().tobytes())
    return h.digest()


class FrozenFeatureCache(nn.Module):
    """forward(x01, layers) like the wrapped backbone, memoised per image. Only for a backbone
    that is frozen (no gradients), in eval mode, and deterministic."""

    def __init__(self, backbone: nn.Module, max_mb: float = 2048):
        super().__init__()
        self.backbone = backbone
        self.store = _Store(int(max_mb * 2**20))

    def forward(self, x01: torch.Tensor, layers: list[int] | None = None) -> BackboneOutput:
        if torch.is_grad_enabled() or self.backbone.training:
            raise RuntimeError("FrozenFeatureCache serves a frozen backbone: call it in eval mode under no_grad")
        return self._forward(x01, layers)

    def _forward(self, x01: torch.Tensor, layers: list[int] | None) -> BackboneOutput:
        lay = tuple(layers or ())
        keys = [image_key(x01[i], lay) for i in range(len(x01))]
        st = self.store
        miss = [i for i, k in enumerate(keys) if k not in st.items]
        st.hits += len(keys) - len(miss)
        st.misses += len(miss)
        computed: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        grid = grids = None
        shape_key = (tuple(x01.shape[1:]), lay)
        if miss:
            out = self.backbone(x01[miss], list(layers) if layers is not None else None)
            grid, grids = out.grid, out.grids
            st.grids[shape_key] = (grid, grids)
            for j, i in enumerate(miss):
                item = (out.cls[j].clone(), [t[j].clone() for t in out.patch_tokens])
                computed[i] = item
                size = sum(t.numel() * t.element_size() for t in (item[0], *item[1]))
                if st.nbytes + size <= st.max_bytes:
                    st.items[keys[i]] = item
                    st.nbytes += size
        items = [computed.get(i) or st.items[k] for i, k in enumerate(keys)]
        if grid is None:
            grid, grids = st.grids.get(shape_key) or (self.backbone.vit.grid_size(x01.shape[-2], x01.shape[-1]), None)
        cls = torch.stack([c for c, _ in items]).to(x01.device)
        n_layers = len(items[0][1])
        tokens = [torch.stack([toks[li] for _, toks in items]).to(x01.device) for li in range(n_layers)]
        return BackboneOutput(cls=cls, patch_tokens=tokens, grid=grid, grids=grids)
