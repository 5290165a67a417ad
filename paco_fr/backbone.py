"""ViT backbone on top of timm.

`create_backbone("vit_small", img_size=112, patch_size=16)` builds a timm
`VisionTransformer` (so exported weights keep timm key names) and wraps it in
`ViTBackbone`, whose `forward_features` returns the CLS token and the patch
tokens of any chosen blocks. Any image size works: timm's `dynamic_img_size`
interpolates the position embedding on the fly, and `load_vit_state_dict`
resamples position embeddings / patch kernels of checkpoints trained at
another size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import timm
import torch
from timm.layers import resample_abs_pos_embed, resample_patch_embed
from torch import nn

# arch name -> (timm model name, extra timm kwargs)
ARCHS: dict[str, tuple[str, dict]] = {
    "vit_tiny": ("vit_tiny_patch16_224", {}),
    "vit_small": ("vit_small_patch16_224", {}),
    "vit_base": ("vit_base_patch16_224", {}),
    # CLIP-style ViT-B/16 (pre-norm, QuickGELU): the architecture of FaRL's visual tower
    "vit_base_clip": ("vit_base_patch16_clip_quickgelu_224", {}),
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# what our own pre-training uses (SynthFace / aligned faces): plain 0.5/0.5
FACE_MEAN = (0.5, 0.5, 0.5)
FACE_STD = (0.5, 0.5, 0.5)


@dataclass
class BackboneOutput:
    """cls: (B, D) after the final norm; patch_tokens: one (B, N, D) per requested block
    (block outputs, before the final norm, as FaRL's dense heads use them); cls_tokens: the
    class token at the same blocks; grid: (h, w).

    A feature pyramid (a CNN's or a hierarchical transformer's stages) fills the same fields, one
    entry per requested stage: patch_tokens (B, h_i * w_i, C_i) with each stage's own width and
    `grids` [(h_i, w_i)] (None: every entry has `grid`); `patch_maps()` gives the (B, C_i, h_i, w_i)
    maps either way."""

    cls: torch.Tensor
    patch_tokens: list[torch.Tensor] = field(default_factory=list)
    grid: tuple[int, int] = (0, 0)
    last_tokens: torch.Tensor | None = None  # (B, N, D) after the final norm
    cls_tokens: list[torch.Tensor] = field(default_factory=list)  # (B, D) per requested block
    grids: list[tuple[int, int]] | None = None  # per entry of patch_tokens, for a pyramid

    def patch_maps(self) -> list[torch.Tensor]:
        """Patch tokens as (B, D, h, w) feature maps (a pyramid's at each stage's own grid)."""
        grids = self.grids or [self.grid] * len(self.patch_tokens)
        return [t.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w) for t, (h, w) in zip(self.patch_tokens, grids)]


def default_dense_layers(depth: int) -> list[int]:
    """FaRL uses blocks 3, 5, 7, 11 (0-indexed) of 12; scale for other depths."""
    return sorted({max(0, min(depth - 1, round((i + 1) * depth / 12) - 1)) for i in (3, 5, 7, 11)})


class ViTBackbone(nn.Module):
    def __init__(self, vit: nn.Module, arch: str, mean=FACE_MEAN, std=FACE_STD):
        super().__init__()
        self.vit = vit
        self.arch = arch
        self.embed_dim: int = vit.embed_dim
        self.depth: int = len(vit.blocks)
        self.patch_size: int = vit.patch_embed.patch_size[0]
        self.img_size: int = vit.patch_embed.img_size[0]
        self.num_prefix_tokens: int = vit.num_prefix_tokens
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the backbone's input normalisation."""
        return (x01 - self.mean) / self.std

    def grid_size(self, h: int, w: int) -> tuple[int, int]:
        return h // self.patch_size, w // self.patch_size

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> token sequence (B, prefix + N, D) with position embeddings."""
        vit = self.vit
        x = vit.patch_embed(x)
        x = vit._pos_embed(x)
        x = vit.patch_drop(x)
        return vit.norm_pre(x)

    def forward_features(self, x: torch.Tensor, layers: list[int] | None = None) -> BackboneOutput:
        """x: normalised images (B, 3, H, W). layers: block indices (negative allowed) whose patch
        tokens are returned; None returns none (only CLS and the final tokens)."""
        grid = self.grid_size(x.shape[-2], x.shape[-1])
        wanted = sorted({i % self.depth for i in (layers or [])})
        tokens = self.embed(x)
        outs: dict[int, torch.Tensor] = {}
        cls_outs: dict[int, torch.Tensor] = {}
        for i, blk in enumerate(self.vit.blocks):
            tokens = blk(tokens)
            if i in wanted:
                outs[i] = tokens[:, self.num_prefix_tokens:]
                cls_outs[i] = tokens[:, 0] if self.num_prefix_tokens else outs[i].mean(1)
        tokens = self.vit.norm(tokens)
        cls = tokens[:, 0] if self.num_prefix_tokens else tokens.mean(1)
        return BackboneOutput(
            cls=cls,
            patch_tokens=[outs[i] for i in wanted],
            grid=grid,
            last_tokens=tokens[:, self.num_prefix_tokens:],
            cls_tokens=[cls_outs[i] for i in wanted],
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).cls


def create_vit(arch: str, img_size: int = 224, patch_size: int = 16, **kwargs) -> nn.Module:
    """A bare timm VisionTransformer (no classifier head) for `arch`."""
    if arch not in ARCHS:
        raise ValueError(f"unknown backbone arch {arch!r}; known: {sorted(ARCHS)}")
    name, extra = ARCHS[arch]
    kw = dict(extra)
    kw.update(kwargs)
    return timm.create_model(
        name,
        pretrained=False,
        num_classes=0,
        img_size=img_size,
        patch_size=patch_size,
        dynamic_img_size=True,
        **kw,
    )


def create_backbone(
    arch: str = "vit_tiny", img_size: int = 224, patch_size: int = 16, mean=None, std=None, **kwargs
) -> ViTBackbone:
    vit = create_vit(arch, img_size=img_size, patch_size=patch_size, **kwargs)
    if mean is None:
        mean, std = (CLIP_MEAN, CLIP_STD) if arch.endswith("_clip") else (FACE_MEAN, FACE_STD)
    return ViTBackbone(vit, arch=arch, mean=mean, std=std)


def encoder_from_config(cfg: dict) -> ViTBackbone:
    """The encoder of a pre-training config (its `model` section)."""
    m = cfg["model"]
    kw = {}
    if m.get("depth"):
        kw["depth"] = int(m["depth"])
    if m.get("drop_path"):
        kw["drop_path_rate"] = float(m["drop_path"])
    return create_backbone(m["arch"], img_size=int(m["img_size"]), patch_size=int(m["patch_size"]), **kw)


def _short(names: list[str], n: int = 8) -> str:
    """The first n names and the count of the rest (a wrong file would otherwise print ~150)."""
    if len(names) <= n:
        return repr(names)
    return "[" + ", ".join(repr(x) for x in names[:n]) + f", ... (+{len(names) - n} more, {len(names)} in all)]"


def load_vit_state_dict(vit: nn.Module, state_dict: dict[str, torch.Tensor], strict: bool = True):
    """Load timm-keyed ViT weights, resampling the position embedding and the patch kernel when
    the checkpoint was trained at another image / patch size. Raises KeyError naming missing and
    unexpected keys when `strict` and they differ."""
    sd = dict(state_dict)
    sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    if "patch_embed.proj.weight" in sd:
        w = sd["patch_embed.proj.weight"]
        target = vit.patch_embed.proj.weight.shape[-2:]
        if w.shape[-2:] != target:
            sd["patch_embed.proj.weight"] = resample_patch_embed(w, list(target))
    if "pos_embed" in sd and getattr(vit, "pos_embed", None) is not None and sd["pos_embed"].shape != vit.pos_embed.shape:
        npt = 0 if getattr(vit, "no_embed_class", False) else vit.num_prefix_tokens
        sd["pos_embed"] = resample_abs_pos_embed(
            sd["pos_embed"], new_size=list(vit.patch_embed.grid_size), num_prefix_tokens=npt
        )
    own = set(vit.state_dict().keys())
    missing = sorted(own - set(sd))
    unexpected = sorted(set(sd) - own)
    if strict and (missing or unexpected):
        raise KeyError(f"ViT state dict does not match: missing keys {_short(missing)}, "
                       f"unexpected keys {_short(unexpected)}")
    vit.load_state_dict(sd, strict=False)
    return missing, unexpected
