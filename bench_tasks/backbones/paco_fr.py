"""`paco_fr:<file.safetensors>` — an encoder exported by `python -m paco_fr export`.

The safetensors header metadata carries `arch`, `img_size`, `patch_size`, `mean`, `std` (JSON
lists or comma-separated numbers); tensors use timm ViT key names (an optional `vit.` prefix is
stripped). Depth / width / heads are inferred from the tensors so custom sizes load too. When the
file has no `arch` metadata, `paco_fr.export.load_encoder` (if installed) is used instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from bench_tasks.backbones.base import BenchBackbone, weights_sha256
from bench_tasks.backbones.timm_file import (
    CheckpointError,
    infer_vit_kwargs,
    load_into,
    read_safetensors,
    strip_prefix,
)
from bench_tasks.registry import BACKBONES
from paco_fr.backbone import ARCHS, FACE_MEAN, FACE_STD, ViTBackbone, create_vit


def read_metadata(path: str | Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # SafetensorError on a garbage / truncated file
        first = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(f"paco_fr encoder {path} is not a readable .safetensors file "
                              f"({type(err).__name__}: {first}); expected the output of "
                              "`python -m paco_fr export <ckpt> <out>.safetensors`") from err


def _floats(s: str | None, default):
    if s is None:
        return tuple(default)
    try:
        v = json.loads(s)
    except json.JSONDecodeError:
        v = [float(x) for x in s.replace("[", "").replace("]", "").split(",") if x.strip()]
    if isinstance(v, (int, float)):
        v = [v] * 3
    return tuple(float(x) for x in v)


@BACKBONES.register("paco_fr")
def build(rest: str, image_size: int) -> BenchBackbone:
    path = Path(rest).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"paco_fr encoder file not found: {path}")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"paco_fr:{rest}: expected an exported .safetensors encoder "
                              f"(`python -m paco_fr export`), got a {path.suffix or 'suffix-less'} file; "
                              "for other ViT checkpoints use timm:<model>:<file>, mae:, mcf: or farl:")
    meta = read_metadata(path)
    if "arch" not in meta:
        try:
            # lazy: keeps paco_fr's export stack (config, objectives) out of --help/list/status
            from paco_fr.export import load_encoder
        except ImportError:
            raise CheckpointError(f"{path}: no 'arch' in the safetensors metadata "
                                  f"(metadata keys: {sorted(meta)})") from None
        vit_bb = load_encoder(str(path))
        if not isinstance(vit_bb, ViTBackbone):
            raise CheckpointError(f"{path}: paco_fr.export.load_encoder returned {type(vit_bb).__name__}")
        return BenchBackbone(f"paco_fr:{rest}", vit_bb, weights_sha256(path), source=str(path))
    sd = strip_prefix(read_safetensors(path))
    arch = meta["arch"]
    if arch not in ARCHS:
        raise CheckpointError(f"{path}: unknown arch {arch!r} in metadata; known: {sorted(ARCHS)}")
    kw = infer_vit_kwargs(sd, path)
    kw.pop("ckpt_img_size")
    patch = int(meta.get("patch_size", kw.pop("patch_size")))
    kw.pop("patch_size", None)
    if "num_heads" in meta:
        kw["num_heads"] = int(meta["num_heads"])
    vit = create_vit(arch, img_size=image_size, patch_size=patch, **kw)
    load_into(vit, sd, path)
    mean = _floats(meta.get("mean"), FACE_MEAN)
    std = _floats(meta.get("std"), FACE_STD)
    bb = ViTBackbone(vit, arch=arch, mean=mean, std=std)
    return BenchBackbone(f"paco_fr:{rest}", bb, weights_sha256(path), source=str(path))
