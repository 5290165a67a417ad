"""`supervised:<arch>[@<size>/<patch>[/d<depth>]]` — the ceiling: the architecture of `random:` (same
spec syntax, same initial weights) trained end to end with the task's labels. The runner gives
these cells the `finetune` protocol at fraction 1.0 (bench_tasks.plan.references), so the row is "what
this architecture reaches with full supervision at the profile's fine-tune budget". The weights
hash is the hash of the recipe (scheme, arch, size, patch, depth, seed, timm version).
"""

from __future__ import annotations

from bench_tasks.backbones.base import BenchBackbone, Family
from bench_tasks.backbones.random_init import arch_resized, parse, seeded_backbone
from bench_tasks.registry import BACKBONES


@BACKBONES.register("supervised")
def build(rest: str, image_size: int) -> BenchBackbone:
    try:
        parse(rest, image_size)
    except ValueError:
        raise ValueError(f"supervised:{rest}: expected supervised:<arch>[@<size>/<patch>[/d<depth>]]") from None
    return seeded_backbone("supervised", rest, image_size)


build.family = Family(resized=arch_resized)
