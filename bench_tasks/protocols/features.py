"""Frozen-feature extraction with an on-disk cache, for linear probes.

Features are extracted once per (backbone weights hash, dataset, split, number of images, image
size, layers) and stored as a torch file (loaded back with `weights_only=True`); re-running a
probe with the same key loads them instead of running the backbone. What is cached per image:
  * `layer_feats` (N, L, 3, D): for each requested block, its CLS token, the mean and the max of
    its patch tokens (the inputs of FaRL/facer's attribute head);
  * `cls` (N, D): the final, normalised CLS token;
The targets are not cached: they come from the split each time (`split.targets` when the
split offers it, else by iterating it), so the same cached features serve every task that reads
the same images (attributes and expression on SynthFace, say) without mixing their labels.
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

from bench_tasks import contracts

CACHE_VERSION = 3


def image_fingerprint(split) -> str:
    """A cheap check that two splits with the same name hold the same images: the hash of three
    of their images (first, middle, last)."""
    h = hashlib.sha1()
    n = len(split)
    for i in sorted({0, n // 2, n - 1}):
        h.update(split[i][0].numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(weights_hash: str, split, image_size: int, layers: list[int],
              key_extra: dict | None = None) -> str:
    # the images, not the task, define the features: no task in the key (targets are not cached)
    blob = json.dumps(
        {"v": CACHE_VERSION, "w": weights_hash, "dataset": split.name, "split": split.split,
         "n": len(split), "size": image_size, "layers": list(layers),
         "transform": split.meta.get("transform", "resize"), "images": image_fingerprint(split),
         "extra": key_extra or {}},
        sort_keys=True, default=str,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


def _stack_targets(targets: list) -> torch.Tensor:
    if isinstance(targets[0], torch.Tensor):
        return torch.stack(targets)
    return torch.as_tensor(targets)


def split_targets(split) -> torch.Tensor:
    """All targets of a split, stacked: `split.targets` when the split has them (no image decoding,
    bench_tasks.contracts.split_targets), else from its items."""
    t = contracts.split_targets(split)
    if t is not None:
        return torch.as_tensor(t)
    return _stack_targets([split[i][1] for i in range(len(split))])


@torch.no_grad()
def extract(backbone, split, layers: list[int], batch_size: int, device: torch.device,
            progress: bool = True) -> dict[str, torch.Tensor]:
    backbone.eval().to(device)
    # a private generator: iterating a DataLoader draws its base seed from the global RNG, which
    # would make a cache miss (extraction) and a hit (no extraction) leave different RNG states
    loader = DataLoader(split, batch_size=batch_size, shuffle=False, num_workers=0,
                        generator=torch.Generator())
    layer_feats, cls = [], []
    for x, _y in tqdm(loader, desc=f"features {split.name}/{split.split}", leave=False, disable=not progress):
        out = backbone(x.to(device), layers)
        per_layer = [
            torch.stack([c, p.mean(1), p.amax(1)], dim=1)  # (B, 3, D)
            for c, p in zip(out.cls_tokens, out.patch_tokens)
        ]
        layer_feats.append(torch.stack(per_layer, dim=1).float().cpu())  # (B, L, 3, D)
        cls.append(out.cls.float().cpu())
    return {"layer_feats": torch.cat(layer_feats), "cls": torch.cat(cls)}


def cached_features(backbone, split, layers: list[int], image_size: int, batch_size: int,
                    device: torch.device, cache_dir: str | Path, progress: bool = True,
                    key_extra: dict | None = None):
    """Returns (features dict, info) where info = {"cache_hit": bool, "seconds": float, "path": str}.
    The dict holds `layer_feats`, `cls` (cached) and `targets` (from the split, never cached).
    `key_extra` is added to the cache key (e.g. a non-default transform)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{cache_key(backbone.weights_hash, split, image_size, layers, key_extra)}.pt"
    t0 = time.perf_counter()
    if path.exists():
        try:
            feats = torch.load(path, map_location="cpu", weights_only=True)
            feats["targets"] = split_targets(split)
            return feats, {"cache_hit": True, "seconds": time.perf_counter() - t0, "path": str(path)}
        except Exception as err:  # a truncated/corrupt cache file is re-extracted, not trusted
            print(f"warning: feature cache {path} unreadable ({err}); extracting again")
    feats = extract(backbone, split, layers, batch_size, device, progress)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(feats, tmp)
    os.replace(tmp, path)
    feats["targets"] = split_targets(split)
    return feats, {"cache_hit": False, "seconds": time.perf_counter() - t0, "path": str(path)}
