"""The exported encoder file: timm-keyed safetensors of a ViTBackbone's `.vit` with string
metadata (`export_encoder`), read back as metadata (`read_metadata`) or as a ViTBackbone
(`load_encoder`). paco_fr.export makes these files from a run's checkpoint; MCF's teacher
(paco_fr.models.mcf) loads one."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

from paco_fr.atomic import save_safetensors_atomic
from paco_fr.backbone import ARCHS, ViTBackbone, create_backbone, load_vit_state_dict


def _meta_for(cfg: dict, vit_sd: dict, mean, std, step: int | None) -> dict[str, str]:
    m = cfg["model"]
    depth = 1 + max(int(k.split(".")[1]) for k in vit_sd if k.startswith("blocks."))
    embed_dim = int(vit_sd["cls_token"].shape[-1]) if "cls_token" in vit_sd else int(vit_sd["pos_embed"].shape[-1])
    timm_kwargs = {"img_size": int(m["img_size"]), "patch_size": int(m["patch_size"]), "num_classes": 0}
    if m.get("depth"):
        timm_kwargs["depth"] = int(m["depth"])
    return {
        "format": "pt",
        "arch": m["arch"],
        "timm_name": ARCHS[m["arch"]][0],
        "img_size": str(m["img_size"]),
        "patch_size": str(m["patch_size"]),
        "depth": str(depth),
        "embed_dim": str(embed_dim),
        "mean": json.dumps([float(v) for v in mean]),
        "std": json.dumps([float(v) for v in std]),
        "objective": cfg["objective"],
        "step": str(step if step is not None else -1),
        "timm_kwargs": json.dumps(timm_kwargs),
    }


def export_encoder(encoder: ViTBackbone, cfg: dict, out, step: int | None = None,
                   vit_state: dict | None = None) -> Path:
    sd = vit_state if vit_state is not None else encoder.vit.state_dict()
    sd = {k: v.detach().float().contiguous().cpu() for k, v in sd.items()}
    meta = _meta_for(cfg, sd, encoder.mean.flatten().tolist(), encoder.std.flatten().tolist(), step)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    identity = out.parent / "method.json"
    if identity.is_file():
        meta["method"] = identity.read_text().strip()
    return save_safetensors_atomic(sd, out, meta)


def read_metadata(path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_encoder(path, img_size: int | None = None, device="cpu") -> ViTBackbone:
    """An exported encoder as a ViTBackbone (strict key check; resampled to img_size if given)."""
    meta = read_metadata(path)
    arch = meta.get("arch", "vit_base")
    kw = {}
    if "depth" in meta:
        kw["depth"] = int(meta["depth"])
    mean = json.loads(meta["mean"]) if "mean" in meta else None
    std = json.loads(meta["std"]) if "std" in meta else None
    enc = create_backbone(arch, img_size=int(img_size or meta.get("img_size", 224)),
                          patch_size=int(meta.get("patch_size", 16)), mean=mean, std=std, **kw)
    load_vit_state_dict(enc.vit, load_file(str(path)), strict=True)
    return enc.to(device).eval()
