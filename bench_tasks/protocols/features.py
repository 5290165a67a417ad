"""Frozen-feature extraction with an on-disk cache, for linear probes.

Features are extracted once per (backbone, dataset, split, number of images, image size, layers)
and stored as a torch file (loaded back with `weights_only=True`); re-running a probe with the same
key loads them instead of running the backbone. The backbone's part of the key is what its
features are a function of (`backbone_fingerprint`): every parameter and buffer of the module as
loaded (the input normalisation's mean / std included) and its architecture as printed
(activation, norm eps, ...), next to its weights hash. The weights hash alone names a FILE: one
file read under two timm model names (other mean / std) or by two schemes (`farl:` QuickGELU,
`open_clip:` GELU) gives two sets of features. What is cached per image:
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
import re
import time
import weakref
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from bench_tasks import contracts

# 4: the backbone's fingerprint (parameters, buffers, architecture) joined the key
CACHE_VERSION = 4

# {module: (state token, fingerprint)}: one hash per module and state (a cell reads three splits)
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")


def _named_tensors(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Parameters and every buffer (non-persistent ones too: a ViT's input mean / std)."""
    return [*module.named_parameters(), *module.named_buffers()]


def backbone_fingerprint(module: torch.nn.Module) -> str:
    """A hash of what a module's features are a function of, besides its input: the bytes, shape
    and dtype of every parameter and buffer, and the module printed (its architecture: layer types,
    activations, eps; memory addresses removed). Memoised per module; recomputed when a tensor
    changes (an in-place update, a new storage or dtype)."""
    tensors = _named_tensors(module)
    # a tensor changed in place bumps its version; `module.to(...)` swaps its storage (data_ptr, dtype)
    token = tuple((n, id(t), t._version, t.data_ptr(), t.dtype, tuple(t.shape)) for n, t in tensors)
    got = _FINGERPRINTS.get(module)
    if got is not None and got[0] == token:
        return got[1]
    h = hashlib.sha1(b"backbone-fingerprint-v1\0")
    h.update(_ADDRESS.sub("0x", repr(module)).encode())
    for name, t in tensors:
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}\0".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    digest = h.hexdigest()
    _FINGERPRINTS[module] = (token, digest)
    return digest


def image_fingerprint(split) -> str:
    """A cheap check that two splits with the same name hold the same images: the hash of three
    of their images (first, middle, last)."""
    h = hashlib.sha1()
    n = len(split)
    for i in sorted({0, n // 2, n - 1}):
        h.update(split[i][0].numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(weights_hash: str, split, image_size: int, layers: list[int],
              key_extra: dict | None = None, fingerprint: str = "") -> str:
    """`fingerprint`: `backbone_fingerprint` of the module (`weights_hash` alone names a file)."""
    # the images, not the task, define the features: no task in the key (targets are not cached)
    blob = json.dumps(
        {"v": CACHE_VERSION, "w": weights_hash, "module": fingerprint, "dataset": split.name, "split": split.split,
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
    key = cache_key(backbone.weights_hash, split, image_size, layers, key_extra, backbone_fingerprint(backbone))
    path = cache_dir / f"{key}.pt"
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
