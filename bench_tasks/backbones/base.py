"""What every backbone URI resolves to.

URIs are `scheme:rest` (`paco_fr:runs/x/encoder.safetensors`, `timm:vit_small_patch16_224:w.pth`,
`farl:FaRL-Base-Patch16-LAIONFace20M-ep64.pth`, `mcf:mcf.pth`, `mae:mae.pth`, `random:vit_tiny`).
Each scheme is one module in this package registered with `@BACKBONES.register("scheme")` on a
function `build(rest: str, image_size: int) -> BenchBackbone`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from bench_tasks.contracts import BackboneURI
from bench_tasks.registry import BACKBONES
from paco_fr.backbone import BackboneOutput, ViTBackbone, default_dense_layers


class BenchBackbone(nn.Module):
    """A ViT backbone plus what the harness needs to know about it.

    forward(x01, layers) takes images in [0, 1], applies the backbone's own mean/std and returns
    `paco_fr.backbone.BackboneOutput` (CLS, patch tokens of `layers`, grid).
    weights_hash identifies the weights (sha256 of the file, or of the init recipe for random)
    and keys the feature cache and results provenance.
    """

    def __init__(self, uri: str, vit: ViTBackbone, weights_hash: str, source: str | None = None):
        super().__init__()
        self.uri = uri
        self.vit = vit
        self.weights_hash = weights_hash
        self.source = source

    @property
    def embed_dim(self) -> int:
        return self.vit.embed_dim

    @property
    def depth(self) -> int:
        return self.vit.depth

    @property
    def patch_size(self) -> int:
        return self.vit.patch_size

    def dense_layers(self) -> list[int]:
        return default_dense_layers(self.depth)

    def forward(self, x01: torch.Tensor, layers: list[int] | None = None) -> BackboneOutput:
        return self.vit.forward_features(self.vit.normalize(x01), layers)


def weights_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 identifying the weights a file holds.

    For `.safetensors` files the JSON header is hashed in canonical form (sorted keys): the
    safetensors writer emits the `__metadata__` entries in a random order per process, so two
    exports of bit-identical tensors would otherwise get different hashes and every result
    computed from them would look stale. Other files (and unreadable safetensors) are hashed as
    raw bytes.
    """
    path = Path(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if path.suffix == ".safetensors":
            header = _safetensors_header(f)
            if header is not None:
                h.update(b"safetensors-canonical-v1\0")
                h.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
            else:
                f.seek(0)
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _safetensors_header(f) -> dict | None:
    """The parsed header of an open safetensors file (position left at the tensor data), or None."""
    raw = f.read(8)
    if len(raw) != 8:
        return None
    n = int.from_bytes(raw, "little")
    if n <= 0 or n > 100_000_000:
        return None
    try:
        header = json.loads(f.read(n))
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


def build_backbone(uri: str, image_size: int) -> BenchBackbone:
    try:
        parsed = BackboneURI.parse(uri)
    except ValueError:
        raise ValueError(f"backbone URI {uri!r} must look like scheme:spec (schemes: {BACKBONES.names()})") from None
    return BACKBONES.get(parsed.scheme)(parsed.spec, image_size=image_size)


def weights_file(uri: str) -> Path | None:
    """The local weight file a URI reads (None for `random:` and URIs without a file)."""
    try:
        file = BackboneURI.parse(uri).file
    except ValueError:  # no spec: no file
        return None
    return Path(file) if file else None


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
