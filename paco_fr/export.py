"""Export a pre-training checkpoint's encoder as timm-keyed safetensors, and load it back.

`export_checkpoint(ckpt, out)` writes the `.vit` state dict of the ViTBackbone (timm
VisionTransformer key names: patch_embed.proj.weight, cls_token, pos_embed, blocks.N.*, norm.*)
with string metadata: arch, timm_name, img_size, patch_size, depth, embed_dim, mean, std (JSON
lists), objective, step, timm_kwargs (JSON of the kwargs timm.create_model needs), and `method`
(the text of a `method.json` in the output folder, when one is there: what the run is, written by
bench_tasks.study before pre-training; bench_tasks.method reads it back).

Load into timm (offline):
    timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=0, img_size=64,
                      patch_size=8, pretrained_cfg_overlay=dict(file=path))
plus `depth=<depth>` when the run overrode the arch's depth (metadata `timm_kwargs` lists it).
Or `load_encoder(path) -> ViTBackbone` (our wrapper, mean/std from the metadata).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from paco_fr.backbone import ARCHS, ViTBackbone, create_backbone, encoder_from_config, load_vit_state_dict


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
    tmp = out.with_name(out.name + ".tmp")
    save_file(sd, str(tmp), metadata=meta)
    tmp.replace(out)
    return out


def export_checkpoint(ckpt_path, out, use_ema: bool = True) -> Path:
    """Checkpoint (ckpt/last.pt of a run, its config.yaml beside ckpt/) -> encoder safetensors."""
    from paco_fr.config import load_config

    ckpt_path = Path(ckpt_path)
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    cfg_path = ckpt_path.parent.parent / "config.yaml"
    cfg = load_config(cfg_path)
    encoder = encoder_from_config(cfg)
    if use_ema and ckpt.get("ema"):
        enc_sd = ckpt["ema"]
    else:
        enc_sd = {k[len("encoder."):]: v for k, v in ckpt["model"].items() if k.startswith("encoder.")}
    vit_sd = {k[len("vit."):]: v for k, v in enc_sd.items() if k.startswith("vit.")}
    return export_encoder(encoder, cfg, out, step=int(ckpt.get("step", -1)), vit_state=vit_sd)


def read_metadata(path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_encoder(path, img_size: int | None = None, device="cpu") -> ViTBackbone:
    """An exported encoder as a ViTBackbone (strict key check; resampled to img_size if given)."""
    from safetensors.torch import load_file

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


RECON_NAME = "recon.safetensors"


def export_recon(ckpt_path, out) -> Path:
    """The weights besides the encoder that reconstructions need (PaCo-FR: codebook, Belief
    Predictor, decoder; MAE: decoder, ...): every `model` entry of the checkpoint not under
    `encoder.`, float32, no optimizer or RNG state. With the run's encoder.safetensors and
    config.yaml, `load_recon_model(run_dir)` rebuilds the model for the codebook figure. Metadata:
    objective, step, and the checkpoint's saved vocabulary (FaRL-style) as JSON."""
    ckpt_path = Path(ckpt_path)
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    sd = {k: v.detach().float().contiguous().cpu() if v.is_floating_point() else v.contiguous().cpu()
          for k, v in ckpt["model"].items() if not k.startswith("encoder.")}
    meta = {"format": "pt", "step": str(int(ckpt.get("step", -1))), "objective": str(ckpt.get("objective", ""))}
    if ckpt.get("vocab"):
        meta["vocab"] = json.dumps(list(ckpt["vocab"]))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file(sd, str(tmp), metadata=meta)
    tmp.replace(out)
    return out


def load_recon_model(run_dir, device="cpu"):
    """A finished run's model rebuilt from config.yaml, encoder.safetensors (the exported encoder:
    the EMA weights where the run kept an EMA) and recon.safetensors, in eval mode: what
    paco_fr.engine.reconstruct needs when ckpt/last.pt is gone. Raises FileNotFoundError naming
    the missing file."""
    import warnings

    from safetensors.torch import load_file

    from paco_fr.config import load_config
    from paco_fr.models import build_model, objective_model

    run_dir = Path(run_dir)
    for name in ("config.yaml", "encoder.safetensors", RECON_NAME):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name}: not found (a finished run keeps config.yaml, "
                                    f"encoder.safetensors and {RECON_NAME})")
    cfg = load_config(run_dir / "config.yaml")
    meta = read_metadata(run_dir / RECON_NAME)
    saved = {"vocab": json.loads(meta["vocab"])} if meta.get("vocab") else None
    data = objective_model(cfg).prepare_data(cfg, None, saved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, data=data)
    rest = load_file(str(run_dir / RECON_NAME))
    enc = {f"encoder.vit.{k}": v for k, v in load_file(str(run_dir / "encoder.safetensors")).items()}
    own = model.state_dict()
    state = {**{k: v for k, v in own.items() if k.startswith("encoder.")}, **enc, **rest}
    missing = sorted(k for k in own if k not in state)
    if missing:
        raise KeyError(f"{run_dir / RECON_NAME}: {len(missing)} weight(s) missing, e.g. {missing[:3]}")
    model.load_state_dict({k: state[k].to(own[k].dtype) for k in own})
    return model.to(device).eval()
