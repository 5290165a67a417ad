"""A backbone's own shape and input size, read without building it: width, depth, patch and the
input size it was made for (its *native* size: a weight file's position-embedding grid x patch,
timm's pretrained input size, a `random:` / `supervised:` spec's `@<size>`).

The plan says when a backbone runs at another size than its own (its position embedding is then
resampled: bench_tasks.cli), the estimate counts its FLOPs (bench_tasks.plan.estimate) and the
ceiling of the same architecture and size is found from it (bench_tasks.plan.references)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import timm
import torch

from bench_tasks.backbones.base import family_of, weights_file
from bench_tasks.backbones.random_init import parse
from bench_tasks.backbones.timm_file import unwrap
from bench_tasks.contracts import BackboneURI

# width, depth of the named architectures (paco_fr.backbone.ARCHS: timm's ViT-Ti/S/B/L, CLIP's ViT-B)
ARCH_SHAPES = {"vit_tiny": (192, 12), "vit_small": (384, 12), "vit_base": (768, 12), "vit_large": (1024, 24),
               "vit_base_clip": (768, 12)}
_PATCH_KEYS = ("patch_embed.proj.weight", "conv1.weight")
_POS_KEYS = ("pos_embed", "positional_embedding")
_BLOCK = re.compile(r"(?:^|\.)(?:blocks|resblocks)\.(\d+)\.")


def _spec(rest: str) -> tuple[int, int, int, int | None] | None:
    arch, size, patch, depth = parse(rest, 0)
    base = ARCH_SHAPES.get(arch)
    if base is None:
        return None
    return base[0], depth or base[1], patch, (size or None)


def _header_shapes(path: Path) -> dict[str, list[int]]:
    """{key: shape} of a .safetensors file (header only) or a torch state dict (mapped, tensors only)."""
    if path.suffix == ".safetensors":
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        return {k: v["shape"] for k, v in header.items() if isinstance(v, dict) and "shape" in v}
    obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    sd = unwrap(obj, ("model", "state_dict", "module", "encoder")) if isinstance(obj, dict) else {}
    return {k: list(v.shape) for k, v in sd.items() if hasattr(v, "shape")}


def shape_from_tensors(shapes: dict[str, list[int]]) -> tuple[int, int, int, int | None] | None:
    """(width, depth, patch, native size) of a ViT state dict's shapes (timm or CLIP keys, any prefix;
    a CLIP file's text tower is not counted)."""
    vis = {k: v for k, v in shapes.items() if not k.startswith("transformer.")}  # CLIP's text tower
    patch_w = next((v for k, v in vis.items() if k.endswith(_PATCH_KEYS)), None)
    if not patch_w or len(patch_w) != 4:
        return None
    dim, patch = int(patch_w[0]), int(patch_w[-1])
    blocks = {m.group(1) for k in vis for m in [_BLOCK.search(k)] if m}
    pos = next((v for k, v in vis.items() if k.endswith(_POS_KEYS)), None)
    native = None
    if pos:
        n = int(pos[-2])
        grid = int(round(math.sqrt(n - 1))) if round(math.sqrt(n - 1)) ** 2 == n - 1 else int(round(math.sqrt(n)))
        native = grid * patch
    return dim, len(blocks), patch, native


def _timm_model(name: str) -> tuple[int, int, int, int | None] | None:
    if not timm.is_model(name):
        return None
    with torch.device("meta"):
        m = timm.create_model(name, pretrained=False, num_classes=0)
    if getattr(m, "patch_embed", None) is None or not hasattr(m, "blocks"):
        return None  # not a ViT: no width / depth / patch in this sense (a pyramid)
    w = m.patch_embed.proj.weight
    cfg = getattr(m, "pretrained_cfg", None) or {}
    size = (cfg.get("input_size") or [None])[-1]
    return int(w.shape[0]), len(m.blocks), int(w.shape[-1]), (int(size) if size else None)


def vit_shape(uri: str) -> tuple[int, int, int, int | None] | None:
    """(width, depth, patch, native input size or None) of backbone `uri`, or None when it cannot be
    told without building it (a missing file, an architecture not known here)."""
    try:
        parsed = BackboneURI.parse(uri)
    except ValueError:  # no spec: nothing to tell
        return None
    if parsed.scheme in ("random", "supervised"):
        return _spec(parsed.spec)
    if parsed.scheme in ("arcface", "hf", "open_clip"):
        return None  # not timm-keyed files: their family tells the size (native_size)
    path = weights_file(uri)
    if path is not None and path.is_file():
        got = shape_from_tensors(_header_shapes(path))
        if got is not None:
            return got
    if parsed.scheme == "timm":
        return _timm_model(parsed.name)
    return None


def native_size(uri: str) -> int | None:
    """The input size backbone `uri` was made for (None: not known, or any size, e.g. `random:vit_tiny`):
    the family's own answer (`Family.native_size`: timm's pretrained input size, a Hugging Face
    folder's preprocessor config, arcface's 112 px) where it has one, else the ViT shape's."""
    try:
        parsed = BackboneURI.parse(uri)
    except ValueError:
        return None
    if parsed.scheme not in ("random", "supervised"):
        got = vit_shape(uri)
        if got and got[3]:
            return got[3]
        own = family_of(parsed.scheme).native_size
        return own(parsed.spec) if own else None
    got = vit_shape(uri)
    if got and got[3]:
        return got[3]
    arch, size, _patch, _depth = parse(parsed.spec, 0)
    return size or None


def resize_effect(uri: str) -> str:
    """What running backbone `uri` at another input size than its own changes, for the plan's
    input-size line (`Family.resized`; a ViT's position embedding is resampled)."""
    try:
        parsed = BackboneURI.parse(uri)
    except ValueError:
        return "position embedding resampled"
    own = family_of(parsed.scheme).resized
    try:
        said = own(parsed.spec) if own else None
    except Exception:  # noqa: BLE001 - a plan line
        said = None
    return said or "position embedding resampled"
