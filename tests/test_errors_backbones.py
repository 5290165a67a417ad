"""Issue 15, backbone rows: every bad weight file gets one clear sentence naming the file; timm
ViT-family models load as timm users expect; 1-block backbones work on the pooled-layer heads."""

from __future__ import annotations

import pickle

import pytest
import torch

from bench_tasks.backbones.base import build_backbone
from bench_tasks.backbones.timm_file import CheckpointError
from bench_tasks.errors import cause_line, short_list
from bench_tasks.registry import load_all

load_all()


def test_garbage_pth_names_file_without_torch_docs(tmp_path):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"this is not a checkpoint\n" * 10)
    with pytest.raises(CheckpointError) as e:
        build_backbone(f"timm:vit_tiny_patch16_224:{bad}", 32)
    msg = str(e.value)
    assert "garbage.pth" in msg and "not a readable PyTorch checkpoint" in msg
    assert "weights_only` set to `False`" not in msg and "weights_only=False" not in msg
    for scheme in ("mae", "mcf", "farl"):
        with pytest.raises(CheckpointError, match="garbage.pth"):
            build_backbone(f"{scheme}:{bad}", 32)


def test_pickle_with_objects_is_refused_with_a_fix(tmp_path):
    import argparse

    p = tmp_path / "objects.pth"
    torch.save({"args": argparse.Namespace(x=1), "model": {}}, p)
    with pytest.raises(CheckpointError) as e:
        build_backbone(f"mae:{p}", 32)
    assert "objects.pth" in str(e.value) and "argparse.Namespace" in str(e.value)
    assert "state_dict()" in str(e.value)


@pytest.mark.parametrize("scheme", ["paco_fr", "timm:vit_tiny_patch16_224"])
def test_garbage_safetensors_is_a_checkpoint_error(tmp_path, scheme):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"\x00\x01garbage" * 40)
    with pytest.raises(CheckpointError) as e:
        build_backbone(f"{scheme}:{bad}", 32)
    assert "garbage.safetensors" in str(e.value) and "not a readable .safetensors file" in str(e.value)
    assert cause_line(e.value).startswith("CheckpointError: ")


def test_wrong_keys_are_shortened_with_a_count(tmp_path):
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
    sd = {f"model.layer{i}.weight": v for i, v in enumerate(vit.state_dict().values())}
    p = tmp_path / "wrong_keys.pth"
    torch.save(sd, p)
    with pytest.raises(CheckpointError) as e:
        build_backbone(f"mcf:{p}", 32)  # no timm ViT keys at all
    assert "wrong_keys.pth" in str(e.value)
    sd = dict(vit.state_dict())
    sd.update({f"extra.{i}": torch.zeros(1) for i in range(40)})
    sd = {k: v for k, v in sd.items() if not k.startswith("blocks.3.")}
    torch.save(sd, p)
    with pytest.raises(CheckpointError) as e:
        build_backbone(f"timm:vit_tiny_patch16_224:{p}", 32)
    msg = str(e.value)
    assert "wrong_keys.pth" in msg and "more" in msg and "40 in all" in msg
    assert msg.count("extra.") <= 8 and len(msg) < 1500


def test_short_list():
    assert short_list(["a", "b"]) == "['a', 'b']"
    s = short_list([str(i) for i in range(150)], n=3)
    assert s.startswith("['0', '1', '2', ...") and "+147 more, 150 in all" in s


def test_timm_without_file_uses_timm_pretrained_or_says_what_to_do(tmp_path, monkeypatch):
    # offline, with an empty cache: timm cannot fetch weights, the error says how to pass a file.
    # huggingface_hub reads HF_HUB_OFFLINE and HF_HOME once, at import (timm imported it already):
    # set its constants too, else the download waits for the network's timeout (~47 s here)
    import huggingface_hub.constants as hf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(CheckpointError) as e:
        build_backbone("timm:vit_tiny_patch16_224", 32)
    assert "timm:vit_tiny_patch16_224:<weights" in str(e.value)


def test_timm_unknown_models_named_and_cnns_read_their_file():
    with pytest.raises(ValueError, match="did you mean 'vit_tiny_patch16_224'"):
        build_backbone("timm:vit_tiny_patch16_22:x.pth", 32)
    with pytest.raises(FileNotFoundError, match="x.pth"):  # a CNN is built, then its file is read
        build_backbone("timm:resnet18:x.pth", 32)


def test_eva02_loads_and_runs_at_any_size(tmp_path):
    """eva02 (rotary embeddings, patch 14) built then crashed at forward (`patch_drop`); now its
    tokens come from timm's forward_intermediates, at 64 px (padded to 5x5 patches of 14)."""
    import timm

    torch.manual_seed(0)
    ref = timm.create_model("eva02_tiny_patch14_224", pretrained=False, num_classes=0).eval()
    p = tmp_path / "eva.pth"
    torch.save(ref.state_dict(), p)
    bb = build_backbone(f"timm:eva02_tiny_patch14_224:{p}", 64).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = bb(x, bb.dense_layers())
    assert out.cls.shape == (2, 192) and out.grid == (5, 5)
    assert [t.shape for t in out.patch_tokens] == [(2, 25, 192)] * len(bb.dense_layers())
    assert len(out.cls_tokens) == len(out.patch_tokens)
    # the same weights at timm's own input size give timm's own pooled features
    bb224 = build_backbone(f"timm:eva02_tiny_patch14_224:{p}", 224).eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(bb224(x).cls, ref.forward_head(ref.forward_features(bb224.vit.normalize(x)),
                                                                   pre_logits=True))


def test_one_block_backbone_serves_the_attribute_head():
    from bench_tasks.heads.attribute_head import AttributeHead, pooled_layer_feats
    from paco_fr.backbone import default_dense_layers

    assert default_dense_layers(1) == [0]
    bb = build_backbone("random:vit_tiny@64/8/d1", 64).eval()
    layers = bb.dense_layers()
    with torch.no_grad():
        out = bb(torch.rand(2, 3, 64, 64), layers)
    head = AttributeHead(bb.embed_dim, len(layers), 5)
    assert head(pooled_layer_feats(out)).shape == (2, 5)


def test_bin_codecs_misuse_names_the_file(tmp_path):
    from bench_tasks.datasets.verification_bin import UnsafePickleError, read_bin

    p = tmp_path / "lfw.bin"
    # protocol-2 pickle calling _codecs.encode('abc', 'utf-8'): not the latin-1 use of real .bin files
    p.write_bytes(b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcX\x05\x00\x00\x00utf-8\x86R.")
    with pytest.raises(UnsafePickleError) as e:
        read_bin(p)
    assert str(p) in str(e.value) and "_codecs.encode" in str(e.value)
    # a pickle of the legitimate form still loads
    q = tmp_path / "ok.bin"
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 8
    q.write_bytes(pickle.dumps(([png, png], [True]), protocol=2))
    bins, same = read_bin(q)
    assert len(bins) == 2 and same.tolist() == [True]
