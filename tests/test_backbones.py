"""Backbone URI schemes: FaRL key mapping against a reference CLIP visual forward, wrong files,
paco_fr / timm / mcf / random round trips."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from bench_tasks.backbones.base import build_backbone
from bench_tasks.backbones.timm_file import CheckpointError
from paco_fr.backbone import CLIP_MEAN, CLIP_STD, create_backbone, create_vit


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class RefBlock(nn.Module):  # CLIP's ResidualAttentionBlock
    def __init__(self, d, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads)
        self.ln_1 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(d, 4 * d), gelu=QuickGELU(), c_proj=nn.Linear(4 * d, d)))
        self.ln_2 = nn.LayerNorm(d)

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class RefTransformer(nn.Module):
    def __init__(self, d, depth, heads):
        super().__init__()
        self.resblocks = nn.Sequential(*[RefBlock(d, heads) for _ in range(depth)])

    def forward(self, x):
        return self.resblocks(x)


class RefVisual(nn.Module):  # CLIP's VisionTransformer (visual tower)
    def __init__(self, size=32, patch=16, width=64, depth=2, heads=1, out=32):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * 0.5)
        self.positional_embedding = nn.Parameter(torch.randn((size // patch) ** 2 + 1, width) * 0.5)
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = RefTransformer(width, depth, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, out))
        for m in self.modules():  # non-trivial norms so a swapped key would show
            if isinstance(m, nn.LayerNorm):
                nn.init.normal_(m.weight, 1.0, 0.2)
                nn.init.normal_(m.bias, 0.0, 0.2)

    def forward(self, x):
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], 1) + self.positional_embedding
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0])


def _save_farl(path, visual, drop=None):
    sd = {f"visual.{k}": v for k, v in visual.state_dict().items()}
    sd.update({"token_embedding.weight": torch.randn(10, 8), "logit_scale": torch.tensor(4.6),
               "transformer.resblocks.0.ln_1.weight": torch.ones(8)})  # text tower keys are ignored
    if drop:
        sd.pop(drop)
    torch.save({"state_dict": sd}, path)


def test_farl_mapping_matches_reference_clip(tmp_path):
    torch.manual_seed(0)
    ref = RefVisual().eval()
    path = tmp_path / "FaRL-tiny.pth"
    _save_farl(path, ref)
    bb = build_backbone(f"farl:{path}", image_size=32).eval()
    assert bb.vit.arch == "vit_base_clip" and bb.depth == 2 and bb.embed_dim == 64
    assert bb.vit.vit.patch_embed.proj.bias is None  # CLIP: no patch-embed bias
    x = torch.rand(3, 3, 32, 32)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        want = ref((x - mean) / std)
        got = bb(x).cls
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # dense input size: the position embedding is interpolated
    bb64 = build_backbone(f"farl:{path}", image_size=64)
    assert bb64(torch.rand(1, 3, 64, 64), [1]).patch_tokens[0].shape == (1, 16, 64)


def test_farl_wrong_file_names_keys(tmp_path):
    ref = RefVisual()
    path = tmp_path / "broken.pth"
    _save_farl(path, ref, drop="visual.transformer.resblocks.1.mlp.c_fc.weight")
    with pytest.raises(CheckpointError) as e:
        build_backbone(f"farl:{path}", image_size=32)
    assert "broken.pth" in str(e.value) and "blocks.1.mlp.fc1.weight" in str(e.value)
    other = tmp_path / "not_clip.pth"
    torch.save({"state_dict": {"foo.weight": torch.ones(2)}}, other)
    with pytest.raises(CheckpointError, match="not_clip.pth"):
        build_backbone(f"farl:{other}", image_size=32)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_backbone(f"farl:{tmp_path / 'nope.pth'}", image_size=32)


def test_farl_runs_quickgelu_and_refuses_the_layouts_openclip_writes(tmp_path):
    """FaRL's tower runs QuickGELU, which no weight tells: the same keys hold an OpenCLIP ViT-B-16
    (GELU). FaRL's layout ({'state_dict': CLIP state dict}) reads as QuickGELU; OpenCLIP's training
    checkpoint and a bare state dict (its released files) are refused, naming `open_clip:`."""
    import copy

    torch.manual_seed(0)
    ref = RefVisual().eval()
    gelu = copy.deepcopy(ref)
    for blk in gelu.transformer.resblocks:
        blk.mlp.gelu = nn.GELU()
    path = tmp_path / "FaRL-tiny.pth"
    _save_farl(path, ref)
    bb = build_backbone(f"farl:{path}", image_size=32).eval()
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        got, quick, plain = bb(x).cls, ref((x - mean) / std), gelu((x - mean) / std)
    torch.testing.assert_close(got, quick, atol=1e-5, rtol=1e-4)
    assert (got - plain).abs().max() > 1e-3  # the activation shows in the features

    sd = {f"visual.{k}": v for k, v in ref.state_dict().items()}
    sd.update({"token_embedding.weight": torch.randn(10, 8), "logit_scale": torch.tensor(4.6)})
    train_ckpt = tmp_path / "epoch_32.pt"  # OpenCLIP's main: epoch, run name, state dict, optimizer
    torch.save({"epoch": 32, "name": "2024_01_01-model_ViT-B-16-lr_0.0005",
                "state_dict": {f"module.{k}": v for k, v in sd.items()}, "optimizer": {}}, train_ckpt)
    bare = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(sd, bare)
    for file, what in ((train_ckpt, "OpenCLIP training checkpoint"), (bare, "bare CLIP state dict")):
        with pytest.raises(CheckpointError) as e:
            build_backbone(f"farl:{file}", image_size=32)
        msg = str(e.value)
        assert what in msg and file.name in msg and f"open_clip:<the arch it was trained as>:{file}" in msg, msg
        assert "QuickGELU" in msg and "GELU" in msg


def _same_cls(a, b, x):
    with torch.no_grad():
        torch.testing.assert_close(a(x).cls, b(x).cls)


def test_paco_fr_round_trip(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    src = create_backbone("vit_tiny", img_size=32, patch_size=16).eval()
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in src.vit.state_dict().items()}, str(path),
              metadata={"arch": "vit_tiny", "img_size": "32", "patch_size": "16",
                        "mean": "[0.5, 0.5, 0.5]", "std": "[0.5, 0.5, 0.5]"})
    bb = build_backbone(f"paco_fr:{path}", image_size=32).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(bb(x).cls, src.forward_features(src.normalize(x)).cls)
    assert len(bb.weights_hash) == 64


def test_timm_and_mcf_round_trip(tmp_path):
    import timm

    torch.manual_seed(2)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32).eval()
    p = tmp_path / "tiny.pth"
    torch.save(vit.state_dict(), p)
    bb = build_backbone(f"timm:vit_tiny_patch16_224:{p}", image_size=32).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(bb(x).cls, vit.forward_features(bb.vit.normalize(x))[:, 0])

    enc = create_vit("vit_base", img_size=32, patch_size=16, embed_dim=64, depth=2, num_heads=1).eval()
    ckpt = {"model": {**enc.state_dict(), "mask_token": torch.zeros(1, 1, 32),
                      "decoder_embed.weight": torch.zeros(32, 64)}, "epoch": 15}
    p2 = tmp_path / "mcf.pth"
    torch.save(ckpt, p2)
    for scheme in ("mcf", "mae"):
        bb2 = build_backbone(f"{scheme}:{p2}", image_size=32).eval()
        assert bb2.depth == 2 and bb2.embed_dim == 64
        assert torch.allclose(bb2.vit.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
        with torch.no_grad():
            torch.testing.assert_close(bb2(x).cls, enc.forward_features(bb2.vit.normalize(x))[:, 0])
    ckpt["model"]["blocks.0.extra.weight"] = torch.zeros(1)
    torch.save(ckpt, p2)
    with pytest.raises(CheckpointError, match="blocks.0.extra.weight"):
        build_backbone(f"mcf:{p2}", image_size=32)


def test_random_is_deterministic():
    a = build_backbone("random:vit_tiny@32/16", image_size=64)
    b = build_backbone("random:vit_tiny@32/16", image_size=64)
    c = build_backbone("random:vit_tiny", image_size=64)
    assert a.weights_hash == b.weights_hash != c.weights_hash
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k


def _write_safetensors(path, tensors: dict, metadata: dict):
    """A safetensors file written by hand, with the metadata entries in the order given."""
    import json as _json
    import struct

    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        data = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = _json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def test_weights_hash_ignores_safetensors_metadata_order(tmp_path):
    from safetensors.torch import load_file

    from bench_tasks.backbones.base import weights_sha256

    t = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4)}
    a, b, c = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c.safetensors"
    _write_safetensors(a, t, {"arch": "vit_tiny", "step": "64"})
    _write_safetensors(b, t, {"step": "64", "arch": "vit_tiny"})
    assert a.read_bytes() != b.read_bytes() and torch.equal(load_file(a)["a"], load_file(b)["a"])
    assert weights_sha256(a) == weights_sha256(b)
    _write_safetensors(c, {"a": t["a"] + 1, "b": t["b"]}, {"arch": "vit_tiny", "step": "64"})
    assert weights_sha256(c) != weights_sha256(a)
    # other files (and broken safetensors) are hashed byte for byte
    (tmp_path / "w.pth").write_bytes(b"xyz")
    (tmp_path / "bad.safetensors").write_bytes(b"xyz")
    assert weights_sha256(tmp_path / "w.pth") == weights_sha256(tmp_path / "bad.safetensors")
