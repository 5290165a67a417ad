"""Layer-wise learning-rate decay of the fine-tune protocol for every ViT family: Hugging Face and
OpenCLIP towers number their blocks as a timm ViT does (embeddings 0, block i -> i + 1, final norm
depth + 1); a pyramid's stages all get the backbone's rate (tests/test_backbone_families.py)."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import torch

from bench_tasks.backbones.base import build_backbone
from bench_tasks.protocols.train import FitConfig, param_groups

CFG = FitConfig(epochs=1, lr_head=1e-3, lr_backbone=1e-4, layer_decay=0.5)


def _lr_of(bb) -> dict[str, float]:
    """{parameter name inside the encoder: learning rate} of the fine-tune optimiser."""
    model = torch.nn.Module()
    model.backbone = bb
    model.head = torch.nn.Linear(bb.embed_dim, 2)
    lr_of_param = {id(p): g["lr"] for g in param_groups(model, CFG, bb.depth) for p in g["params"]}
    assert lr_of_param[id(model.head.weight)] == CFG.lr_head
    return {n: lr_of_param[id(p)] for n, p in bb.vit.named_parameters()}


def _rate(layer: int, depth: int) -> float:
    return CFG.lr_backbone * CFG.layer_decay ** (depth + 1 - layer)


def _check(lrs: dict[str, float], depth: int, block_of, embedding: str, final: str) -> None:
    for name, lr in lrs.items():
        i = block_of(name)
        if i is not None:
            assert lr == pytest.approx(_rate(i + 1, depth)), name
    assert lrs[embedding] == pytest.approx(_rate(0, depth))
    assert lrs[final] == pytest.approx(_rate(depth + 1, depth))
    assert len({round(v, 12) for v in lrs.values()}) == depth + 2  # embeddings, each block, the rest


def _block(pattern: str):
    def of(name: str):
        found = re.search(pattern, name)
        return int(found.group(1)) if found else None
    return of


# blocks of a Hugging Face tower: encoder.layer.<i> / encoder.layers.<i> (transformers 4), layers.<i> (5)
HF_BLOCK = _block(r"(?:^|\.)layers?\.(\d+)\.")


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers not installed")
@pytest.mark.parametrize("kind", ["vit", "clip"])
def test_hf_towers_decay_layer_by_layer(tmp_path, kind):
    import transformers as T

    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, image_size=32,
                 patch_size=8)
    model = T.ViTModel(T.ViTConfig(**small)) if kind == "vit" else T.CLIPVisionModel(T.CLIPVisionConfig(**small))
    model.save_pretrained(tmp_path / kind)
    bb = build_backbone(f"hf:{tmp_path / kind}", 32)
    lrs = _lr_of(bb)
    if kind == "vit":
        _check(lrs, 3, HF_BLOCK, "model.embeddings.cls_token", "model.layernorm.weight")
    else:
        emb = next(n for n in lrs if n.endswith("class_embedding"))
        _check(lrs, 3, HF_BLOCK, emb, next(n for n in lrs if n.endswith("post_layernorm.weight")))
        assert lrs[next(n for n in lrs if n.endswith("pre_layrnorm.weight"))] == pytest.approx(_rate(0, 3))


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="open_clip not installed")
def test_open_clip_tower_decays_layer_by_layer(tmp_path):
    import open_clip

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "patch_size": 8,
                                           "head_width": 16},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "lrd-toy-ViT.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "cfg")
    torch.manual_seed(0)
    path = tmp_path / "toy.pt"
    torch.save(open_clip.create_model("lrd-toy-ViT", pretrained=None).state_dict(), path)
    bb = build_backbone(f"open_clip:lrd-toy-ViT:{path}", 32)
    lrs = _lr_of(bb)
    _check(lrs, 3, _block(r"transformer\.resblocks\.(\d+)\."), "visual.class_embedding", "visual.ln_post.weight")
    for name in ("visual.conv1.weight", "visual.positional_embedding", "visual.ln_pre.weight"):
        assert lrs[name] == pytest.approx(_rate(0, 3)), name


def test_timm_vit_numbering_is_unchanged():
    """The timm / paco_fr ViT rule the other families now match."""
    bb = build_backbone("random:vit_tiny@32/16/d2", 32)
    lrs = _lr_of(bb)
    final_norm = next(n for n in lrs if n.endswith("norm.weight") and "blocks" not in n)
    _check(lrs, 2, _block(r"blocks\.(\d+)\."), next(n for n in lrs if "cls_token" in n), final_norm)
