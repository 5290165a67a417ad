"""`farl:<file>` — the official FaRL checkpoint (FaRL-Base-Patch16-LAIONFace20M-ep{16,64}.pth).

The file is a CLIP state dict under `state_dict`; its visual tower (keys `visual.*`) is mapped
exactly onto paco_fr's `vit_base_clip` arch (timm `vit_base_patch16_clip_quickgelu_224`: pre-norm
`ln_pre`, QuickGELU, no patch-embed bias), mirroring timm's `_convert_openai_clip`:

    visual.conv1.weight                      -> patch_embed.proj.weight
    visual.class_embedding (D,)              -> cls_token (1, 1, D)
    visual.positional_embedding (N+1, D)     -> pos_embed (1, N+1, D)
    visual.ln_pre.*                          -> norm_pre.*
    visual.transformer.resblocks.i.ln_1.*    -> blocks.i.norm1.*
    visual.transformer.resblocks.i.attn.in_proj_{weight,bias} -> blocks.i.attn.qkv.{weight,bias}
    visual.transformer.resblocks.i.attn.out_proj.*            -> blocks.i.attn.proj.*
    visual.transformer.resblocks.i.ln_2.*    -> blocks.i.norm2.*
    visual.transformer.resblocks.i.mlp.c_fc.*   -> blocks.i.mlp.fc1.*
    visual.transformer.resblocks.i.mlp.c_proj.* -> blocks.i.mlp.fc2.*
    visual.ln_post.*                         -> norm.*
    visual.proj (D, E)                       -> dropped (the harness uses the D-dim CLS after ln_post)

Width, depth, heads (width // 64, as CLIP) and patch size are inferred from the tensors, so a
smaller CLIP-style tower loads too. CLIP mean/std.

The activation is QuickGELU, FaRL's (OpenAI CLIP's ViT-B/16), and no weight tells it: the same
keys hold an OpenCLIP ViT-B-16, trained with GELU. So `farl:` reads FaRL's release layout only,
the CLIP state dict under `state_dict`, and refuses the two layouts OpenCLIP writes, naming
`open_clip:<arch>:<file>` (whose arch sets the activation: `ViT-B-16` GELU, `ViT-B-16-quickgelu`
QuickGELU): a training checkpoint of OpenCLIP's `main` (top-level `epoch` and `name`), and a
bare state dict (`visual.*` at the top level: OpenCLIP's released `open_clip_pytorch_model.bin`). The backbone is built at the task's input size
(224 for classification, 448 for dense tasks); the position embedding is interpolated.
"""

from __future__ import annotations

from bench_tasks.backbones.base import BenchBackbone, weights_sha256
from bench_tasks.backbones.timm_file import CheckpointError, load_into, read_weights
from bench_tasks.registry import BACKBONES
from paco_fr.backbone import CLIP_MEAN, CLIP_STD, ViTBackbone, create_vit

SWAPS = [
    ("conv1", "patch_embed.proj"),
    ("positional_embedding", "pos_embed"),
    ("transformer.resblocks.", "blocks."),
    ("ln_pre", "norm_pre"),
    ("ln_post", "norm"),
    ("ln_", "norm"),
    ("in_proj_", "qkv."),
    ("out_proj", "proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
]


def not_farl_layout(obj: dict) -> str | None:
    """Why a CLIP-style file is not FaRL's release (whose activation, QuickGELU, `farl:` assumes):
    an OpenCLIP training checkpoint or a bare state dict; None for FaRL's layout."""
    if "epoch" in obj and isinstance(obj.get("name"), str):
        return (f"an OpenCLIP training checkpoint (top-level keys {sorted(obj)[:6]}, run name "
                f"{obj['name']!r})")
    if not isinstance(obj.get("state_dict"), dict) and any(str(k).startswith("visual.") for k in obj):
        return ("a bare CLIP state dict (keys visual.* at the top level, as OpenCLIP's released "
                "open_clip_pytorch_model.bin files; FaRL's release holds them under 'state_dict')")
    return None


def find_visual(obj: dict, path) -> tuple[dict, str]:
    sd = obj.get("state_dict", obj) if isinstance(obj.get("state_dict", None), dict) else obj
    for prefix in ("visual.", "module.visual.", "clip.visual.", "model.visual."):
        if any(k.startswith(prefix) for k in sd):
            return sd, prefix
    raise CheckpointError(f"{path}: no CLIP visual tower (keys 'visual.*') in the file; "
                          f"first keys: {sorted(sd)[:12]}")


def convert_clip_visual(sd: dict, prefix: str = "visual.") -> dict:
    """CLIP visual-tower keys -> timm ViT keys (the projection `proj` is dropped)."""
    out = {}
    for k, v in sd.items():
        if not k.startswith(prefix):
            continue
        k = k[len(prefix):]
        if k == "proj":
            continue
        for a, b in SWAPS:
            k = k.replace(a, b)
        if k == "class_embedding":
            k, v = "cls_token", v.reshape(1, 1, -1)
        elif k == "pos_embed":
            v = v.unsqueeze(0)
        out[k] = v
    return out


def infer_clip_shape(sd: dict, prefix: str, path) -> dict:
    need = [f"{prefix}conv1.weight", f"{prefix}positional_embedding"]
    missing = [k for k in need if k not in sd]
    if missing:
        raise CheckpointError(f"{path}: CLIP visual tower incomplete: missing keys {missing}")
    w = sd[f"{prefix}conv1.weight"]
    width, patch = int(w.shape[0]), int(w.shape[-1])
    blocks = [int(k[len(prefix):].split(".")[2]) for k in sd if k.startswith(f"{prefix}transformer.resblocks.")]
    if not blocks:
        raise CheckpointError(f"{path}: CLIP visual tower has no transformer.resblocks.* keys")
    fc = sd.get(f"{prefix}transformer.resblocks.0.mlp.c_fc.weight")
    mlp_ratio = fc.shape[0] / width if fc is not None else 4.0
    return {"embed_dim": width, "depth": max(blocks) + 1, "num_heads": max(1, width // 64),
            "mlp_ratio": mlp_ratio, "patch_size": patch}


@BACKBONES.register("farl")
def build(rest: str, image_size: int) -> BenchBackbone:
    obj = read_weights(rest)
    other = not_farl_layout(obj)
    if other:
        raise CheckpointError(
            f"{rest} is {other}, not FaRL's release: `farl:` builds FaRL's tower with QuickGELU and the "
            "weights do not say which activation they were trained with (OpenCLIP's ViT-B-16 uses GELU); "
            f"read it with open_clip:<the arch it was trained as>:{rest} (e.g. ViT-B-16 for GELU, "
            "ViT-B-16-quickgelu for QuickGELU). FaRL's own state dict saved on its own: "
            "torch.save({'state_dict': sd}, path) makes it FaRL's layout")
    sd, prefix = find_visual(obj, rest)
    shape = infer_clip_shape(sd, prefix, rest)
    patch = shape.pop("patch_size")
    vit = create_vit("vit_base_clip", img_size=image_size, patch_size=patch, **shape)
    load_into(vit, convert_clip_visual(sd, prefix), rest)
    bb = ViTBackbone(vit, arch="vit_base_clip", mean=CLIP_MEAN, std=CLIP_STD)
    return BenchBackbone(f"farl:{rest}", bb, weights_sha256(rest), source=str(rest))
