"""The frozen-feature cache (bench_tasks/protocols/features.py) is keyed by what the features are a
function of: a cache entry written for one backbone is never read for a backbone that computes
other features, even when both carry the same weights hash (one weight file read under two timm
model names, or by two schemes)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from bench_tasks.backbones.base import build_backbone
from bench_tasks.contracts import TaskSplit
from bench_tasks.protocols.features import backbone_fingerprint, cached_features, extract

CPU = torch.device("cpu")


class ImageSplit(TaskSplit):
    """A few seeded random images with 2 binary targets."""

    def __init__(self, n: int = 6, size: int = 32):
        super().__init__("fake_images", "val", {}, {})
        g = np.random.default_rng(0)
        self.x = torch.from_numpy(g.random((n, 3, size, size), dtype=np.float32))
        self.y = torch.from_numpy((g.random((n, 2)) > 0.5).astype(np.float32))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _features(bb, split, cache):
    return cached_features(bb, split, [0, 1], 32, 4, CPU, cache, progress=False)


def _tiny_timm_file(tmp_path):
    torch.manual_seed(1)
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return path


def test_one_file_under_two_timm_names_is_two_cache_entries(tmp_path):
    """vit_tiny (mean/std 0.5) and deit_tiny (ImageNet mean/std) read the same file: same weights
    hash, other features. The second must be extracted, not read from the first's entry."""
    path = _tiny_timm_file(tmp_path)
    vit = build_backbone(f"timm:vit_tiny_patch16_224:{path}", 32)
    deit = build_backbone(f"timm:deit_tiny_patch16_224:{path}", 32)
    assert vit.weights_hash == deit.weights_hash  # the file's hash: not enough to key features
    split = ImageSplit()
    f_vit, info_vit = _features(vit, split, tmp_path / "cache")
    f_deit, info_deit = _features(deit, split, tmp_path / "cache")
    assert not info_vit["cache_hit"]
    assert not info_deit["cache_hit"], "deit_tiny read the features cached for vit_tiny"
    fresh = extract(deit, split, [0, 1], 4, CPU, progress=False)
    assert torch.equal(f_deit["layer_feats"], fresh["layer_feats"])
    assert not torch.allclose(f_vit["layer_feats"], f_deit["layer_feats"])


@pytest.mark.parametrize("change", ["mean", "weights", "activation"])
def test_same_weights_hash_other_features_is_a_miss(tmp_path, change):
    """A module that differs in its input mean, in one weight, or in an activation (QuickGELU vs
    GELU: `farl:` vs `open_clip:` of one file) under an unchanged weights hash is a cache miss."""
    base = build_backbone("random:vit_tiny@32/16/d2", 32)
    other = copy.deepcopy(base)
    with torch.no_grad():
        if change == "mean":
            other.vit.mean.fill_(0.25)
        elif change == "weights":
            next(other.vit.parameters()).add_(1.0)
        else:
            block = other.vit.vit.blocks[0].mlp
            block.act = torch.nn.SiLU()
    assert other.weights_hash == base.weights_hash
    split = ImageSplit()
    _, first = _features(base, split, tmp_path / "c")
    f, second = _features(other, split, tmp_path / "c")
    assert not first["cache_hit"] and not second["cache_hit"]
    assert torch.equal(f["layer_feats"], extract(other, split, [0, 1], 4, CPU, progress=False)["layer_feats"])


def test_same_module_hits_and_in_place_change_is_seen(tmp_path):
    """A deep copy of a module (every cell gets one) has its fingerprint; changing a weight in place
    changes it (the memo is not stale)."""
    bb = build_backbone("random:vit_tiny@32/16/d2", 32)
    fp = backbone_fingerprint(bb)
    assert backbone_fingerprint(copy.deepcopy(bb)) == fp
    assert backbone_fingerprint(build_backbone("random:vit_tiny@32/16/d2", 32)) == fp
    split = ImageSplit()
    _, first = _features(bb, split, tmp_path / "c")
    _, again = _features(copy.deepcopy(bb), split, tmp_path / "c")
    assert not first["cache_hit"] and again["cache_hit"]
    with torch.no_grad():
        next(bb.parameters()).mul_(2.0)
    doubled = backbone_fingerprint(bb)
    assert doubled != fp
    bb.to(torch.float64)  # swaps every tensor's storage without bumping its version
    assert backbone_fingerprint(bb) not in (fp, doubled)
