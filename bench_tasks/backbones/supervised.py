"""`supervised:<arch>[@<size>/<patch>[/d<depth>]]` — the ceiling: the architecture of `random:` (same
spec syntax, same initial weights) trained end to end with the task's labels. The runner gives
these cells the `finetune` protocol at fraction 1.0 (bench_tasks.references), so the row is "what
this architecture reaches with full supervision at the profile's fine-tune budget". The weights
hash is the hash of the recipe (scheme, arch, size, patch, depth, seed, timm version).
"""

from __future__ import annotations

import hashlib
import json

import timm
import torch

from bench_tasks.backbones.base import BenchBackbone
from bench_tasks.backbones.random_init import INIT_SEED, parse
from bench_tasks.registry import BACKBONES
from paco_fr.backbone import create_backbone


@BACKBONES.register("supervised")
def build(rest: str, image_size: int) -> BenchBackbone:
    try:
        arch, size, patch, depth = parse(rest, image_size)
    except ValueError:
        raise ValueError(f"supervised:{rest}: expected supervised:<arch>[@<size>/<patch>[/d<depth>]]") from None
    recipe = {"scheme": "supervised", "arch": arch, "img_size": size, "patch": patch, "seed": INIT_SEED,
              "timm": timm.__version__}
    if depth is not None:
        recipe["depth"] = depth
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        bb = create_backbone(arch, img_size=size, patch_size=patch, **({"depth": depth} if depth else {}))
    h = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    return BenchBackbone(f"supervised:{rest}", bb, h, source=None)
