"""`mcf:<file>` — an MCF checkpoint (MAE/timm-style ViT keys under `model`), ImageNet mean/std.

Keys of the pre-training-only parts (MAE decoder, mask token, heads, momentum / teacher copies)
are dropped; everything else must match a timm ViT whose shape is inferred from the file.
"""

from __future__ import annotations

from bench_tasks.backbones.base import BenchBackbone
from bench_tasks.backbones.timm_file import build_vit_from_sd, read_weights, strip_prefix, unwrap
from bench_tasks.registry import BACKBONES
from paco_fr.backbone import IMAGENET_MEAN, IMAGENET_STD

DROP_PREFIXES = ("decoder", "mask_token", "head.", "teacher", "momentum", "predictor", "projector")


def load_mae_style(scheme: str, rest: str, image_size: int) -> BenchBackbone:
    sd = strip_prefix(unwrap(read_weights(rest)))
    sd = {k: v for k, v in sd.items() if not k.startswith(DROP_PREFIXES)}
    return build_vit_from_sd(f"{scheme}:{rest}", rest, sd, image_size, IMAGENET_MEAN, IMAGENET_STD)


@BACKBONES.register("mcf")
def build(rest: str, image_size: int) -> BenchBackbone:
    return load_mae_style("mcf", rest, image_size)
