"""`random:<arch>[@<size>/<patch>]` — random initialisation with a fixed seed (a lower bound).

`random:vit_tiny` builds paco_fr's vit_tiny at the task's image size, patch 16;
`random:vit_small@112/8` fixes size and patch. The weights hash is the hash of the recipe (arch,
size, patch, seed, timm version), so the feature cache and provenance identify it.
"""

from __future__ import annotations

import hashlib
import json

import timm
import torch

from bench_tasks.backbones.base import BenchBackbone
from bench_tasks.registry import BACKBONES
from paco_fr.backbone import create_backbone

INIT_SEED = 0


def parse(rest: str, image_size: int) -> tuple[str, int, int]:
    arch, _, shape = rest.partition("@")
    size, patch = image_size, 16
    if shape:
        s, _, p = shape.partition("/")
        try:
            size = int(s) if s else image_size
            patch = int(p) if p else 16
        except ValueError:
            raise ValueError(f"random:{rest}: expected random:<arch>[@<size>/<patch>]") from None
    return arch, size, patch


@BACKBONES.register("random")
def build(rest: str, image_size: int) -> BenchBackbone:
    arch, size, patch = parse(rest, image_size)
    recipe = {"scheme": "random", "arch": arch, "img_size": size, "patch": patch, "seed": INIT_SEED,
              "timm": timm.__version__}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        bb = create_backbone(arch, img_size=size, patch_size=patch)
    h = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    return BenchBackbone(f"random:{rest}", bb, h, source=None)
