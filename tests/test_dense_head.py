"""The dense adapter: ViT tokens -> simple FPN -> mmsegmentation's UPerHead, forward/backward on CPU."""

import os

import pytest
import torch

from bench_tasks.heads.dense import SimpleFPN, mmseg_available, require_mmseg

MMSEG_REASON = ("mmsegmentation's UPerHead needs mmcv==2.1.0 with compiled ops, not importable here: "
                "run `python scripts/ensure_mmcv.py` (builds once per machine)")
needs_mmseg = pytest.mark.skipif(not mmseg_available() and not os.environ.get("CI"), reason=MMSEG_REASON)


def test_simple_fpn_scales():
    fpn = SimpleFPN(8)
    maps = [torch.randn(2, 8, 4, 4) for _ in range(4)]
    outs = fpn(maps)
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert isinstance(fpn.branches[0][1], torch.nn.BatchNorm2d) and isinstance(fpn.branches[0][2], torch.nn.GELU)
    with pytest.raises(ValueError):
        fpn(maps[:3])


@needs_mmseg
def test_uperhead_is_mmseg_and_trains_through_adapter():
    from bench_tasks.backbones.base import build_backbone
    from bench_tasks.heads.dense import build_dense_head
    from bench_tasks.protocols.train import BackboneWithHead

    UPerHead = require_mmseg()
    bb = build_backbone("random:vit_tiny", 32)
    head, layers = build_dense_head(bb, num_classes=5, channels=16)
    assert layers == bb.dense_layers() == [3, 5, 7, 11]
    assert isinstance(head.uper, UPerHead) and type(head.uper).__module__.startswith("mmseg.")
    assert head.uper.psp_modules is not None and len(head.uper.psp_modules) == 4  # pool scales 1, 2, 3, 6
    model = BackboneWithHead(bb, head, layers, frozen=False)
    x = torch.rand(2, 3, 32, 32)
    data = [(x[i], 0) for i in range(2)]
    with pytest.raises(RuntimeError, match="fit_stats"):  # the head reads standardised features only
        model(x)
    model.fit_input_stats(data, 2, "cpu")  # what `fit` does before the first step
    out = model(x)
    assert out.shape == (2, 5, 8, 8)  # x4 of the 2x2 token grid = stride 4
    out.square().mean().backward()
    assert head.uper.conv_seg.weight.grad is not None and head.fpn.branches[0][0].weight.grad is not None
    assert bb.vit.vit.blocks[3].mlp.fc1.weight.grad is not None
    frozen = BackboneWithHead(build_backbone("random:vit_tiny", 32), head, layers, frozen=True)
    frozen.fit_input_stats(data, 2, "cpu")
    frozen.train()
    frozen(x).mean().backward()
    assert all(p.grad is None for p in frozen.backbone.parameters())
