"""`mae:<file>` — an MAE checkpoint (timm-style ViT keys under `model`), ImageNet mean/std."""

from __future__ import annotations

from bench_tasks.backbones.base import BenchBackbone
from bench_tasks.backbones.mcf import load_mae_style
from bench_tasks.registry import BACKBONES


@BACKBONES.register("mae")
def build(rest: str, image_size: int) -> BenchBackbone:
    return load_mae_style("mae", rest, image_size)
