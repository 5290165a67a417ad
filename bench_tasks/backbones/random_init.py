"""`random:<arch>[@<size>/<patch>[/d<depth>]]` — random initialisation with a fixed seed (a lower bound).

`random:vit_tiny` builds paco_fr's vit_tiny at the task's image size, patch 16; any other
architecture name is any timm model (`random:resnet18`, `random:convnext_atto@224`) or one a
backbone family defines (`random:iresnet50`, bench_tasks.backbones.base.Family.random_arch);
`random:vit_small@112/8` fixes size and patch; `random:vit_tiny@64/8/d2` also the depth (the
random-init control of the smoke study has its encoders' 2 blocks). The weights hash is the hash of the recipe (arch,
size, patch, seed, timm version), so the feature cache and provenance identify it.
"""

from __future__ import annotations

import hashlib
import json

import timm
import torch

from bench_tasks.backbones.base import BenchBackbone, Family
from bench_tasks.backbones.timm_file import is_timm_vit
from bench_tasks.registry import BACKBONES
from paco_fr.backbone import ARCHS, create_backbone

INIT_SEED = 0


def parse(rest: str, image_size: int) -> tuple[str, int, int, int | None]:
    arch, _, shape = rest.partition("@")
    size, patch, depth = image_size, 16, None
    if shape:
        parts = shape.split("/")
        try:
            size = int(parts[0]) if parts[0] else image_size
            patch = int(parts[1]) if len(parts) > 1 and parts[1] else 16
            if len(parts) > 2:
                if not parts[2].startswith("d") or len(parts) > 3:
                    raise ValueError
                depth = int(parts[2][1:])
        except ValueError:
            raise ValueError(f"random:{rest}: expected random:<arch>[@<size>/<patch>[/d<depth>]]") from None
    return arch, size, patch, depth


def seeded_backbone(scheme: str, rest: str, image_size: int) -> BenchBackbone:
    """The fixed-seed random initialisation of `<scheme>:<arch spec>`; its weights hash is the hash
    of the recipe (scheme included, so `random:` and `supervised:` rows never share a hash)."""
    arch, size, patch, depth = parse(rest, image_size)
    recipe = {"scheme": scheme, "arch": arch, "img_size": size, "patch": patch, "seed": INIT_SEED,
              "timm": timm.__version__}
    if depth is not None:
        recipe["depth"] = depth
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        if arch in ARCHS:
            bb = create_backbone(arch, img_size=size, patch_size=patch, **({"depth": depth} if depth else {}))
        else:
            bb = family_arch(arch, size, f"{scheme}:{rest}")
    h = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    return BenchBackbone(f"{scheme}:{rest}", bb, h, source=None)


def family_arch(arch: str, size: int, uri: str):
    """The encoder of an architecture another family defines (`random:resnet18`, `random:iresnet50`:
    the `random_arch` of the backbone families, bench_tasks.backbones.base.Family)."""
    for _scheme, fn in BACKBONES.items():
        make = getattr(getattr(fn, "family", None), "random_arch", None)
        enc = make(arch, size) if make else None
        if enc is not None:
            return enc
    raise ValueError(f"{uri}: unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}, any timm model "
                     "name (resnet50, convnext_tiny, ...) and the families' own (iresnet50, iresnet100)")


def arch_resized(rest: str) -> str:
    """The input-size line of `random:` / `supervised:` (bench_tasks.backbones.base.Family.resized)."""
    arch = rest.partition("@")[0]
    if arch in ARCHS or (timm.is_model(arch) and is_timm_vit(arch)):
        return "position embedding resampled"
    return "its stages' feature maps scale with the input (no position embedding)"


@BACKBONES.register("random")
def build(rest: str, image_size: int) -> BenchBackbone:
    return seeded_backbone("random", rest, image_size)


build.family = Family(resized=arch_resized)
