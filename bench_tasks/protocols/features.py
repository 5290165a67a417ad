"""Frozen-feature extraction with an on-disk cache, for linear probes.

Features are extracted once per (backbone weights hash, dataset, split, number of images, image
size, layers) and stored as a torch file (loaded back with `weights_only=True`); re-running a
probe with the same key loads them instead of running the backbone. What is cached per image:
  * `layer_feats` (N, L, 3, D): for each requested block, its CLS token, the mean and the max of
    its patch tokens (the inputs of FaRL/facer's attribute head);
  * `cls` (N, D): the final, normalised CLS token;
  * `targets`: the split's targets, stacked.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

CACHE_VERSION = 2


def cache_key(weights_hash: str, split, image_size: int, layers: list[int],
              key_extra: dict | None = None) -> str:
    # the cached targets are task-specific (the same images serve attributes and expression):
    # the task is part of the key (from key_extra or split.meta["task"])
    blob = json.dumps(
        {"v": CACHE_VERSION, "w": weights_hash, "dataset": split.name, "split": split.split,
         "n": len(split), "size": image_size, "layers": list(layers),
         "transform": split.meta.get("transform", "resize"), "task": split.meta.get("task"),
         "extra": key_extra or {}},
        sort_keys=True, default=str,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


def _stack_targets(targets: list) -> torch.Tensor:
    if isinstance(targets[0], torch.Tensor):
        return torch.stack(targets)
    return torch.as_tensor(targets)


@torch.no_grad()
def extract(backbone, split, layers: list[int], batch_size: int, device: torch.device,
            progress: bool = True) -> dict[str, torch.Tensor]:
    backbone.eval().to(device)
    loader = DataLoader(split, batch_size=batch_size, shuffle=False, num_workers=0)
    layer_feats, cls, targets = [], [], []
    for x, y in tqdm(loader, desc=f"features {split.name}/{split.split}", leave=False, disable=not progress):
        out = backbone(x.to(device), layers)
        per_layer = [
            torch.stack([c, p.mean(1), p.amax(1)], dim=1)  # (B, 3, D)
            for c, p in zip(out.cls_tokens, out.patch_tokens)
        ]
        layer_feats.append(torch.stack(per_layer, dim=1).float().cpu())  # (B, L, 3, D)
        cls.append(out.cls.float().cpu())
        targets.extend(list(y) if isinstance(y, torch.Tensor) else y)
    return {"layer_feats": torch.cat(layer_feats), "cls": torch.cat(cls), "targets": _stack_targets(targets)}


def cached_features(backbone, split, layers: list[int], image_size: int, batch_size: int,
                    device: torch.device, cache_dir: str | Path, progress: bool = True,
                    key_extra: dict | None = None):
    """Returns (features dict, info) where info = {"cache_hit": bool, "seconds": float, "path": str}.
    `key_extra` (e.g. {"task": "attributes"}) is added to the cache key."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{cache_key(backbone.weights_hash, split, image_size, layers, key_extra)}.pt"
    t0 = time.perf_counter()
    if path.exists():
        try:
            feats = torch.load(path, map_location="cpu", weights_only=True)
            return feats, {"cache_hit": True, "seconds": time.perf_counter() - t0, "path": str(path)}
        except Exception as err:  # a truncated/corrupt cache file is re-extracted, not trusted
            print(f"warning: feature cache {path} unreadable ({err}); extracting again")
    feats = extract(backbone, split, layers, batch_size, device, progress)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(feats, tmp)
    os.replace(tmp, path)
    return feats, {"cache_hit": False, "seconds": time.perf_counter() - t0, "path": str(path)}
