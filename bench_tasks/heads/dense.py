"""The shared dense adapter of face parsing and landmarks (FaRL's dense protocol).

ViT patch tokens of a few blocks (default `backbone.dense_layers()`, FaRL's 3, 5, 7, 11 of 12
scaled to the depth) -> a simple FPN that rescales the four token maps to x4, x2, x1 and x1/2 of
the token grid (x4: ConvTranspose2d(k=2, s=2) -> BN -> GELU -> ConvTranspose2d(k=2, s=2);
x2: one ConvTranspose2d; x1: identity; x1/2: max-pool) -> **mmsegmentation's `UPerHead`**
(pool scales 1, 2, 3, 6; `channels` 768 in FaRL) whose `forward` we call directly on the FPN
outputs (the task computes its own loss). The output has `num_classes` channels at x4 of the
token grid, i.e. stride 4 of the input for patch size 16.

With `coords=True` a learned 1x1 projection of each token's normalised (x, y) position is added
to every token map before the FPN (CoordConv, Liu et al. 2018). A ViT's own position embedding
is a small part of its tokens (random init: std 0.02 against ~0.3 for the content), and the
FPN + UPerHead are translation-equivariant convolutions, so without it the head can hardly
express "point k sits near (x, y)" -- not even the constant mean shape (docs/dense.md, "Why the
heads did not learn").

A feature pyramid (a CNN's or hierarchical transformer's stages, `backbone.strides`, e.g. 4, 8,
16, 32) is UPerHead's natural input: its maps go to UPerHead as they are (no FPN rescaling, one
width per stage, `in_channels`), and the output is at the finest stage's stride.

`DenseHead.forward` takes the `paco_fr.backbone.BackboneOutput` of the requested layers, so it
plugs into `bench_tasks.protocols.train.BackboneWithHead` as the head.

mmsegmentation needs mmcv with compiled ops (`scripts/ensure_mmcv.py`); it is imported lazily
so that the registries load without it, and `require_mmseg()` raises a clear error.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from bench_tasks.registry import HEADS

FARL_SCALES = (4.0, 2.0, 1.0, 0.5)


def require_mmseg():
    """Import and return mmseg's UPerHead, or raise ImportError saying how to get mmcv."""
    try:
        # lazy: mmseg (and mmcv) only when a dense head is built; a clear error when mmcv is missing
        from mmseg.models.decode_heads import UPerHead
    except Exception as e:  # ImportError, or mmseg's own mmcv version assertion
        raise ImportError(
            "the dense tasks use mmsegmentation's UPerHead, which needs mmcv==2.1.0 with compiled "
            "ops; run `python scripts/ensure_mmcv.py` (builds once per machine, ~20-30 min on 2 "
            f"cores, then cached). Import error: {type(e).__name__}: {e}"
        ) from e
    return UPerHead


def mmseg_available() -> bool:
    try:
        require_mmseg()
    except ImportError:
        return False
    return True


def _rescale(dim: int, scale: float) -> nn.Module:
    """One FPN branch of FaRL's simple FPN."""
    if scale == 4:
        return nn.Sequential(
            nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2),
            nn.BatchNorm2d(dim),
            nn.GELU(),
            nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2),
        )
    if scale == 2:
        return nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2)
    if scale == 1:
        return nn.Identity()
    if scale == 0.5:
        return nn.MaxPool2d(kernel_size=2, stride=2)
    raise ValueError(f"FPN scale must be one of 4, 2, 1, 0.5, got {scale}")


class SimpleFPN(nn.Module):
    """Token maps (B, D, h, w) of len(scales) layers -> maps at scales (x4, x2, x1, x1/2). `dim`: one
    width for all maps, or one per map (a pyramid's stages, at scale 1)."""

    def __init__(self, dim: int | Sequence[int], scales: Sequence[float] = FARL_SCALES):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        dims = [int(dim)] * len(self.scales) if isinstance(dim, int) else [int(d) for d in dim]
        self.branches = nn.ModuleList(_rescale(d, s) for d, s in zip(dims, self.scales))

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(maps) != len(self.branches):
            raise ValueError(f"SimpleFPN got {len(maps)} token maps for {len(self.branches)} scales")
        return [b(m) for b, m in zip(self.branches, maps)]


def uperhead_config(in_dim: int, num_levels: int, channels: int, num_classes: int,
                    dropout: float = 0.1, pool_scales=(1, 2, 3, 6)):
    """FaRL's UPerHead settings as an mmengine ConfigDict (mmseg code reads attributes)."""
    # lazy: mmengine only when a dense head is built
    from mmengine.config import ConfigDict

    return ConfigDict(
        type="UPerHead",
        in_channels=[in_dim] * num_levels,
        in_index=list(range(num_levels)),
        pool_scales=tuple(pool_scales),
        channels=channels,
        dropout_ratio=dropout,
        num_classes=num_classes,
        norm_cfg=ConfigDict(type="BN", requires_grad=True),
        align_corners=False,
        # built by BaseDecodeHead but unused: the task computes its own loss
        loss_decode=ConfigDict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0,
                               avg_non_ignore=True),
    )


def _quiet_init(module) -> None:
    """module.init_weights() without mmengine's per-parameter INFO log."""
    # lazy: mmengine only when a dense head is built
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        module.init_weights()
    finally:
        logger.setLevel(old)


@HEADS.register("dense")
class DenseHead(nn.Module):
    """BackboneOutput -> [+ coordinate projection] -> simple FPN -> mmseg UPerHead ->
    (B, num_classes, 4h, 4w) logits."""

    def __init__(self, embed_dim: int, num_classes: int, channels: int = 768,
                 num_levels: int = 4, scales: Sequence[float] | None = None,
                 pool_scales=(1, 2, 3, 6), dropout: float = 0.1, coords: bool = False,
                 in_channels: Sequence[int] | None = None):
        super().__init__()
        UPerHead = require_mmseg()
        if in_channels is not None:  # a pyramid: its stages as they are, one width each
            in_channels = [int(c) for c in in_channels]
            if len(in_channels) != num_levels:
                raise ValueError(f"need one width per stage: {num_levels} stages, widths {in_channels}")
            scales = (1.0,) * num_levels
            # CoordConv per stage: (x, y) in [-1, 1] of each cell -> the stage's width
            self.coord_proj = nn.ModuleList(nn.Conv2d(2, c, kernel_size=1) for c in in_channels) if coords else None
        else:
            # CoordConv: (x, y) in [-1, 1] of each token -> embed_dim, added to every token map
            self.coord_proj = nn.Conv2d(2, embed_dim, kernel_size=1) if coords else None
        scales = tuple(scales) if scales is not None else FARL_SCALES[:num_levels]
        if len(scales) != num_levels:
            raise ValueError(f"need one FPN scale per layer: {num_levels} layers, scales {scales}")
        self.fpn = SimpleFPN(in_channels or embed_dim, scales)
        cfg = uperhead_config(embed_dim, num_levels, channels, num_classes, dropout, pool_scales)
        if in_channels is not None:
            cfg.in_channels = list(in_channels)
        cfg.pop("type")
        with warnings.catch_warnings():  # mmseg's build_loss deprecation notice (loss unused)
            warnings.simplefilter("ignore", UserWarning)
            self.uper = UPerHead(**cfg)
        _quiet_init(self.uper)  # mmseg's init: conv_seg ~ N(0, 0.01)
        del self.uper.loss_decode  # unused; keeps state dicts free of loss modules
        self.num_classes = num_classes
        self.out_stride_tokens = max(scales)  # output = token grid * 4

    def forward(self, feats) -> torch.Tensor:
        maps = feats.patch_maps() if hasattr(feats, "patch_maps") else list(feats)
        if isinstance(self.coord_proj, nn.ModuleList):
            maps = [m + proj(coord_grid(m)) for m, proj in zip(maps, self.coord_proj)]
        elif self.coord_proj is not None:
            maps = [m + self.coord_proj(coord_grid(m)) for m in maps]
        return self.uper(self.fpn(maps))


def coord_grid(m: torch.Tensor) -> torch.Tensor:
    """(1, 2, h, w): x and y of each cell centre of m's (h, w) grid, in [-1, 1]."""
    h, w = m.shape[-2:]
    ys = (torch.arange(h, device=m.device, dtype=m.dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=m.device, dtype=m.dtype) + 0.5) / w * 2 - 1
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"))[None]


# the head name rows record (CellResult.head) for every cell trained with this head
DENSE_HEAD = "fpn_uperhead"


def build_dense_head(backbone, num_classes: int, channels: int,
                     layers: list[int] | None = None, coords: bool = False) -> tuple[DenseHead, list[int]]:
    """The dense head for `backbone` (a BenchBackbone) and the layers it reads.

    FaRL's FPN reads 4 blocks (x4, x2, x1, x1/2). A backbone with fewer than 4 blocks (the CPU smoke
    encoders have 2) gives one level per block, finest scales first: 2 blocks -> (x4, x2). A pyramid
    backbone (`backbone.strides` not None) gives its stages to UPerHead as they are."""
    layers = list(layers) if layers is not None else list(backbone.dense_layers())
    if not 1 <= len(layers) <= 4 or len(set(layers)) != len(layers):
        raise ValueError(f"the simple FPN takes 1 to 4 distinct layers (FaRL: 4 for x4, x2, x1, x1/2), got {layers}")
    pyramid = getattr(backbone, "strides", None) is not None
    return DenseHead(backbone.embed_dim, num_classes, channels=channels, num_levels=len(layers), coords=coords,
                     in_channels=backbone.level_channels(layers) if pyramid else None), layers
