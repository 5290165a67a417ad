"""`timm:<model>[:<file>]` — any timm ViT with a local weight file, plus the loading helpers the
other file-based schemes (paco_fr, mcf, mae) share.

Untrusted files are read with `safetensors` or `torch.load(weights_only=True)` only. A file whose
keys do not fit the model raises an error naming the file and the missing / unexpected keys.
"""

from __future__ import annotations

import math
from pathlib import Path

import timm
import torch

from bench_tasks.backbones.base import BenchBackbone, weights_sha256
from bench_tasks.registry import BACKBONES
from paco_fr.backbone import IMAGENET_MEAN, IMAGENET_STD, ViTBackbone, load_vit_state_dict


class CheckpointError(KeyError):
    """A weight file that does not fit the backbone (message names the file and keys)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def read_weights(path: str | Path) -> dict:
    """Load a .safetensors file or a torch pickle with weights_only=True (never arbitrary code)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"backbone weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read weight file {path}: {type(err).__name__}: {err}") from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"weight file {path} holds a {type(obj).__name__}, not a state dict")
    return obj


def unwrap(obj: dict, keys=("model", "state_dict", "module", "encoder")) -> dict[str, torch.Tensor]:
    """The tensor dict inside a training checkpoint ({'model': sd}, {'state_dict': sd}, ...)."""
    for k in keys:
        if k in obj and isinstance(obj[k], dict):
            return unwrap(obj[k], keys)
    return obj


def strip_prefix(sd: dict, prefixes=("module.", "encoder.", "backbone.", "vit.")) -> dict:
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if sd and all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


def infer_vit_kwargs(sd: dict[str, torch.Tensor], path) -> dict:
    """embed_dim, depth, num_heads (dim // 64, the ViT convention), mlp_ratio, patch_size and
    the checkpoint's image size from a timm-keyed ViT state dict."""
    needed = ("patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight")
    missing = [k for k in needed if k not in sd]
    if missing:
        raise CheckpointError(
            f"{path}: not a timm-style ViT state dict: missing keys {missing}; "
            f"first keys present: {sorted(sd)[:12]}")
    w = sd["patch_embed.proj.weight"]
    dim, patch = int(w.shape[0]), int(w.shape[-1])
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    n_tokens = sd["pos_embed"].shape[1] - (1 if "cls_token" in sd else 0)
    grid = int(round(math.sqrt(n_tokens)))
    return {"embed_dim": dim, "depth": depth, "num_heads": max(1, dim // 64),
            "mlp_ratio": sd["blocks.0.mlp.fc1.weight"].shape[0] / dim, "patch_size": patch,
            "ckpt_img_size": grid * patch}


def load_into(vit: torch.nn.Module, sd: dict, path) -> None:
    try:
        load_vit_state_dict(vit, sd, strict=True)
    except KeyError as err:
        msg = err.args[0] if err.args else str(err)
        raise CheckpointError(f"weight file {path} does not fit the backbone: {msg}") from None
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"weight file {path} does not fit the backbone: {err}") from None


def build_vit_from_sd(uri: str, path, sd: dict, image_size: int, mean, std,
                      arch_name: str = "vit_base", weights_hash: str | None = None) -> BenchBackbone:
    """A timm-keyed ViT (MAE/MCF/timm style) with its shape inferred from the state dict."""
    from paco_fr.backbone import create_vit

    kw = infer_vit_kwargs(sd, path)
    kw.pop("ckpt_img_size")
    patch = kw.pop("patch_size")
    vit = create_vit(arch_name, img_size=image_size, patch_size=patch, **kw)
    load_into(vit, sd, path)
    bb = ViTBackbone(vit, arch=arch_name, mean=mean, std=std)
    return BenchBackbone(uri, bb, weights_hash or weights_sha256(path), source=str(path))


def _mean_std(model) -> tuple:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


@BACKBONES.register("timm")
def build(rest: str, image_size: int) -> BenchBackbone:
    """rest = '<timm model name>:<weight file>' (the file is required: no downloads)."""
    model_name, _, file = rest.partition(":")
    if not file:
        raise ValueError(f"timm:{rest}: give a local weight file, timm:<model>:<file> "
                         "(for random weights use random:<arch>)")
    sd = strip_prefix(unwrap(read_weights(file)))
    try:
        vit = timm.create_model(model_name, pretrained=False, num_classes=0, img_size=image_size,
                                dynamic_img_size=True)
    except TypeError:  # models without img_size / dynamic size arguments
        vit = timm.create_model(model_name, pretrained=False, num_classes=0)
    if not hasattr(vit, "blocks") or not hasattr(vit, "patch_embed"):
        raise ValueError(f"timm model {model_name!r} is not a ViT (no blocks / patch_embed)")
    load_into(vit, sd, file)
    mean, std = _mean_std(vit)
    bb = ViTBackbone(vit, arch=model_name, mean=mean, std=std)
    return BenchBackbone(f"timm:{rest}", bb, weights_sha256(file), source=str(file))
