"""paco_fr.backbone: CLS and per-layer patch tokens at several image sizes, patch sizes and archs;
position-embedding interpolation; checkpoint resampling; FaRL's dense layers scaled by depth."""

import pytest
import torch

from paco_fr.backbone import create_backbone, default_dense_layers, load_vit_state_dict


@pytest.mark.parametrize("arch,dim,depth", [("vit_tiny", 192, 12), ("vit_small", 384, 12)])
@pytest.mark.parametrize("img_size,patch", [(64, 8), (112, 16), (224, 16)])
def test_feature_shapes(arch, dim, depth, img_size, patch):
    bb = create_backbone(arch, img_size=img_size, patch_size=patch, depth=2)
    out = bb.forward_features(torch.rand(2, 3, img_size, img_size), layers=[0, -1])
    g = img_size // patch
    assert out.cls.shape == (2, dim)
    assert out.grid == (g, g)
    assert [t.shape for t in out.patch_tokens] == [(2, g * g, dim)] * 2
    assert [t.shape for t in out.cls_tokens] == [(2, dim)] * 2
    assert [m.shape for m in out.patch_maps()] == [(2, dim, g, g)] * 2
    assert out.last_tokens.shape == (2, g * g, dim)


def test_any_input_size_interpolates_position_embedding():
    bb = create_backbone("vit_tiny", img_size=64, patch_size=8, depth=1)
    for size in (32, 64, 96, 128):
        out = bb.forward_features(torch.rand(1, 3, size, size), layers=[0])
        assert out.grid == (size // 8, size // 8)
        assert out.patch_tokens[0].shape[1] == (size // 8) ** 2


def test_last_layer_tokens_are_the_final_blocks_output():
    bb = create_backbone("vit_tiny", img_size=32, patch_size=8, depth=2).eval()
    x = torch.rand(2, 3, 32, 32)
    out = bb.forward_features(x, layers=[1])
    ref = bb.vit.forward_features(x)  # timm: blocks then final norm
    assert torch.allclose(bb.vit.norm(torch.cat([out.cls_tokens[0][:, None], out.patch_tokens[0]], 1)), ref,
                          atol=1e-5)
    assert torch.allclose(out.cls, ref[:, 0], atol=1e-5)


def test_load_resamples_other_sizes_and_names_bad_keys():
    src = create_backbone("vit_tiny", img_size=64, patch_size=8, depth=1)
    dst = create_backbone("vit_tiny", img_size=112, patch_size=16, depth=1)
    load_vit_state_dict(dst.vit, src.vit.state_dict())
    assert dst.vit.pos_embed.shape[1] == 1 + 7 * 7
    bad = dict(src.vit.state_dict())
    bad.pop("norm.weight")
    bad["extra.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['norm.weight'\].*unexpected keys \['extra.weight'\]"):
        load_vit_state_dict(dst.vit, bad)


def test_dense_layers_follow_farl():
    assert default_dense_layers(12) == [3, 5, 7, 11]
    assert default_dense_layers(24) == [7, 11, 15, 23]
    assert default_dense_layers(2) == [0, 1]
