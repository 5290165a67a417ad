"""Backbone families beyond timm ViTs, at toy size: timm CNNs as feature pyramids (ResNet,
ConvNeXt), Hugging Face folders (ViT, ViT-MAE, DINOv2, CLIP vision), an OpenCLIP checkpoint and an
arcface_torch iResNet. Each builds from a file written here (random weights, offline), reads its
own family's file only (a wrong family's file is refused naming the scheme that reads it), tells
its native input size and the architecture of its ceiling, and runs the five SynthFace tasks with
their default protocols (slow). A toy family registered from this file shows what adding one takes."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from one_lr import one_lr_extra

from bench_tasks.backbones.base import Family, build_backbone, describe_folder
from bench_tasks.backbones.native import native_size, resize_effect
from bench_tasks.backbones.pyramid import PyramidEncoder
from bench_tasks.backbones.timm_file import CheckpointError
from bench_tasks.contracts import Cell, CellContext
from bench_tasks.heads.dense import mmseg_available
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.plan.references import ceiling_reason, ceiling_uri
from bench_tasks.registry import BACKBONES, TASKS


def _needs(package: str, extra: str = "backbones"):
    missing = importlib.util.find_spec(package) is None
    return pytest.mark.skipif(missing, reason=f"optional package {package} is not installed (pip install -e .[{extra}])")


needs_transformers = _needs("transformers")
needs_open_clip = _needs("open_clip")


# ----------------------------------------------------------------------------- checkpoints written here


def _timm_file(name: str, d: Path) -> str:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)  # with its classifier: the loader drops it
    path = d / f"{name}.pth"
    torch.save(model.state_dict(), path)
    return f"timm:{name}:{path}"


def _hf_folder(kind: str, d: Path) -> str:
    import transformers as T

    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    if kind == "vit":
        model = T.ViTModel(T.ViTConfig(**small, intermediate_size=64, image_size=32, patch_size=8))
    elif kind == "vit_mae":
        model = T.ViTMAEModel(T.ViTMAEConfig(**small, intermediate_size=64, image_size=32, patch_size=8))
    elif kind == "dinov2":
        model = T.Dinov2Model(T.Dinov2Config(**small, mlp_ratio=2, image_size=28, patch_size=7))
    else:
        model = T.CLIPVisionModel(T.CLIPVisionConfig(**small, intermediate_size=64, image_size=32, patch_size=8))
    path = d / f"hf_{kind}"
    model.save_pretrained(path)
    if kind == "vit":  # a preprocessor config: the input size and mean / std come from it
        (path / "preprocessor_config.json").write_text(json.dumps(
            {"size": {"height": 32, "width": 32}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    return f"hf:{path}"


OPEN_CLIP_TOY = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8,
                                                 "head_width": 16},
                 "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}


def _open_clip_file(d: Path) -> str:
    import open_clip

    cfg_dir = d / "open_clip_configs"
    cfg_dir.mkdir(exist_ok=True)
    (cfg_dir / "toy-ViT-8.json").write_text(json.dumps(OPEN_CLIP_TOY))
    open_clip.add_model_config(cfg_dir)
    torch.manual_seed(0)
    model = open_clip.create_model("toy-ViT-8", pretrained=None)
    path = d / "open_clip_toy.pt"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return f"open_clip:toy-ViT-8:{path}"


def _arcface_file(d: Path) -> str:
    from bench_tasks.backbones.arcface import IResNet

    torch.manual_seed(0)
    model = IResNet((1, 1, 1, 1))
    path = d / "backbone.pth"
    torch.save(model.state_dict(), path)
    return f"arcface:{path}"


# family -> (writer, optional package, native size, ceiling arch or None)
FAMILIES = {
    "timm_resnet": (lambda d: _timm_file("test_resnet", d), None, 160, "supervised:test_resnet@160"),
    "timm_convnext": (lambda d: _timm_file("test_convnext", d), None, 160, "supervised:test_convnext@160"),
    "hf_vit": (lambda d: _hf_folder("vit", d), "transformers", 32, None),
    "hf_vit_mae": (lambda d: _hf_folder("vit_mae", d), "transformers", 32, None),
    "hf_dinov2": (lambda d: _hf_folder("dinov2", d), "transformers", 28, None),
    "hf_clip": (lambda d: _hf_folder("clip", d), "transformers", 32, None),
    "open_clip": (_open_clip_file, "open_clip", 32, None),
    "arcface": (_arcface_file, None, 112, "supervised:iresnet-1-1-1-1@112"),
}


def _params():
    out = []
    for name, (_w, pkg, _n, _c) in FAMILIES.items():
        marks = [_needs(pkg)] if pkg else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("family_checkpoints")


_URIS: dict[str, str] = {}


def uri_of(family: str, d: Path) -> str:
    if family not in _URIS:
        _URIS[family] = FAMILIES[family][0](d)
    return _URIS[family]


# ----------------------------------------------------------------------------- what each family reads


@pytest.mark.parametrize("family", _params())
def test_family_builds_reads_and_tells_its_size(family, ckpt_dir):
    uri = uri_of(family, ckpt_dir)
    bb = build_backbone(uri, 32).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        dense = bb(x, bb.dense_layers())
        probe = bb(x, bb.probe_layers())
    assert dense.cls.shape == (2, bb.embed_dim) and torch.isfinite(dense.cls).all()
    maps = dense.patch_maps()
    assert [m.shape[1] for m in maps] == bb.level_channels(bb.dense_layers())
    if bb.strides is not None:  # a pyramid: one map per stage at its own stride, finest first
        strides = [bb.strides[i] for i in bb.dense_layers()]
        assert [m.shape[-1] for m in maps] == [math.ceil(32 / s) for s in strides]
        assert strides == sorted(strides) and len(maps) == min(4, bb.depth)
    else:  # a ViT: every block at the patch grid
        assert {tuple(m.shape[-2:]) for m in maps} == {(32 // bb.patch_size,) * 2}
    # the probes read one width: the pooled embedding and the probe layers' tokens
    assert {t.shape[-1] for t in probe.patch_tokens} == {bb.embed_dim} == {c.shape[-1] for c in probe.cls_tokens}
    assert native_size(uri) == FAMILIES[family][2]
    want = FAMILIES[family][3]
    assert ceiling_uri(uri) == want, ceiling_reason(uri)
    if want is None:
        assert ceiling_reason(uri)
    assert resize_effect(uri)


def test_input_size_line_says_what_a_resize_changes_for_each_family(ckpt_dir):
    from bench_tasks.session.planning import resolution_lines

    prof = PROFILES["smoke"]  # 64 px
    cells = [Cell(uri_of(f, ckpt_dir), "attributes", "synthface", "linear") for f in ("timm_resnet", "arcface")]
    lines = resolution_lines(cells, prof)
    assert len(lines) == 2 and lines[0].startswith(f"input size: {cells[0].backbone}: 160 -> 64 px, its stages'")
    assert "112 -> 64 px" in lines[1] and "pooled to 7x7" in lines[1]


def test_random_init_and_ceiling_build_the_matching_architecture(ckpt_dir):
    """`random:` / `supervised:` of a pyramid family's reference architecture: the same stages."""
    enc = build_backbone(uri_of("arcface", ckpt_dir), 32)
    ref = build_backbone("random:iresnet-1-1-1-1@112", 32)
    assert ref.level_channels([0, 1, 2, 3]) == enc.level_channels([0, 1, 2, 3]) and ref.strides == enc.strides
    r18 = build_backbone("random:test_resnet@160", 32)
    assert r18.strides == build_backbone(uri_of("timm_resnet", ckpt_dir), 32).strides
    assert build_backbone("random:test_resnet@160", 32).weights_hash == r18.weights_hash  # a fixed seed


def _write_wrong(kind: str, d: Path) -> Path:
    """A file of another family for each file family's loader."""
    import timm

    if kind == "resnet":
        p = d / "wrong_resnet.pth"
        torch.save(timm.create_model("test_resnet").state_dict(), p)
    else:
        from bench_tasks.backbones.arcface import IResNet

        p = d / "wrong_iresnet.pth"
        torch.save(IResNet((1, 1, 1, 1), num_features=8).state_dict(), p)
    return p


@pytest.mark.parametrize("scheme, given, reads", [
    pytest.param("arcface", "resnet", "timm:", id="arcface-given-resnet"),
    pytest.param("timm:test_resnet", "iresnet", "arcface:", id="timm-given-iresnet"),
    pytest.param("open_clip:toy-ViT-8", "resnet", "timm:", marks=needs_open_clip, id="open_clip-given-resnet"),
    pytest.param("hf", "iresnet", "arcface:", marks=needs_transformers, id="hf-given-iresnet"),
])
def test_each_loader_refuses_another_familys_file_naming_it(scheme, given, reads, ckpt_dir):
    if scheme.startswith("open_clip"):
        uri_of("open_clip", ckpt_dir)  # registers the toy config
    path = _write_wrong(given, ckpt_dir)
    with pytest.raises(CheckpointError) as err:
        build_backbone(f"{scheme}:{path}", 32)
    msg = str(err.value)
    assert str(path) in msg and f"`{reads}`" in msg, msg


@needs_transformers
def test_a_folder_given_as_a_weight_file_says_what_it_holds_and_which_scheme_reads_it(ckpt_dir):
    folder = uri_of("hf_vit", ckpt_dir).removeprefix("hf:")
    for uri in (f"timm:test_resnet:{folder}", f"arcface:{folder}"):
        with pytest.raises(CheckpointError) as err:
            build_backbone(uri, 32)
        msg = str(err.value)
        assert "is a folder" in msg and "config.json" in msg and f"`hf:{folder}`" in msg, msg
    empty = ckpt_dir / "empty_folder"
    empty.mkdir(exist_ok=True)
    assert "no scheme reads it" in describe_folder(empty)


@needs_transformers
def test_hf_folder_whose_weights_do_not_fit_its_config_is_refused(ckpt_dir):
    folder = Path(uri_of("hf_vit", ckpt_dir).removeprefix("hf:"))
    other = ckpt_dir / "hf_vit_wrong_weights"
    other.mkdir(exist_ok=True)
    (other / "config.json").write_text((folder / "config.json").read_text())
    dino = Path(uri_of("hf_dinov2", ckpt_dir).removeprefix("hf:"))
    (other / "model.safetensors").write_bytes((dino / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="hf_vit_wrong_weights"):
        build_backbone(f"hf:{other}", 32)


@needs_transformers
def test_hf_clip_model_folder_reads_its_vision_tower(tmp_path):
    """A whole CLIPModel folder (text tower too): the vision tower's pooled output, at 48 px
    (position embedding interpolated) as at its own 32 px."""
    import transformers as T

    torch.manual_seed(0)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                  patch_size=8)
    text = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=64,
                bos_token_id=0, eos_token_id=1, pad_token_id=1)
    model = T.CLIPModel(T.CLIPConfig(vision_config=vision, text_config=text, projection_dim=16)).eval()
    model.save_pretrained(tmp_path / "clip")
    bb = build_backbone(f"hf:{tmp_path / 'clip'}", 32).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = model.vision_model(pixel_values=bb.vit.normalize(x)).pooler_output
        torch.testing.assert_close(bb(x).cls, want)
        assert bb(torch.rand(2, 3, 48, 48), [0, 1]).patch_maps()[0].shape == (2, 32, 6, 6)
    assert native_size(f"hf:{tmp_path / 'clip'}") == 32


@needs_open_clip
def test_open_clip_tower_matches_open_clips_own_image_encoder(ckpt_dir):
    import open_clip

    uri = uri_of("open_clip", ckpt_dir)
    bb = build_backbone(uri, 32).eval()
    ref = open_clip.create_model("toy-ViT-8", pretrained=None)
    sd = torch.load(uri.split(":", 2)[2], weights_only=True)["state_dict"]
    ref.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = ref.eval().encode_image(bb.vit.normalize(x))
        got = bb(x).cls @ ref.visual.proj
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_iresnet_embedding_is_arcface_torchs_forward(ckpt_dir):
    from bench_tasks.backbones.arcface import IResNet

    uri = uri_of("arcface", ckpt_dir)
    bb = build_backbone(uri, 112).eval()
    ref = IResNet((1, 1, 1, 1))
    ref.load_state_dict(torch.load(uri.removeprefix("arcface:"), weights_only=True))
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        out = bb(x, [0, 1, 2, 3])
        torch.testing.assert_close(out.cls, ref.eval()((x - 0.5) / 0.5), rtol=1e-4, atol=1e-5)
    assert out.grids == [(56, 56), (28, 28), (14, 14), (7, 7)] and bb.strides == [2, 4, 8, 16]


@pytest.mark.skipif(not mmseg_available(), reason="the dense head needs mmcv (scripts/ensure_mmcv.py)")
def test_dense_head_takes_a_pyramids_stages_as_they_are(ckpt_dir):
    from bench_tasks.heads.dense import build_dense_head

    bb = build_backbone(uri_of("timm_convnext", ckpt_dir), 64).eval()
    head, layers = build_dense_head(bb, 5, 16, coords=True)
    with torch.no_grad():
        logits = head(bb(torch.rand(2, 3, 64, 64), layers))
    assert layers == [0, 1, 2, 3] and logits.shape == (2, 5, 16, 16)  # the finest stage: stride 4


def test_frozen_cache_and_fine_tuning_read_a_pyramid(ckpt_dir):
    """The dense frozen protocol's memo keeps each stage's grid; fine-tuning gives every stage the
    backbone's learning rate (a ConvNeXt's `stages.i.blocks.j` is no ViT depth)."""
    from bench_tasks.protocols.frozen_cache import FrozenFeatureCache
    from bench_tasks.protocols.train import FitConfig, param_groups

    bb = build_backbone(uri_of("timm_convnext", ckpt_dir), 32).eval()
    cache = FrozenFeatureCache(bb)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        first, again = cache(x, bb.dense_layers()), cache(x, bb.dense_layers())
    assert cache.store.hits == 2 and again.grids == first.grids == [(8, 8), (4, 4), (2, 2), (1, 1)]
    assert all(torch.equal(a, b) for a, b in zip(again.patch_maps(), first.patch_maps()))
    model = torch.nn.Module()
    model.backbone = bb
    cfg = FitConfig(epochs=1, lr_head=1e-3, lr_backbone=1e-4, layer_decay=0.5)
    assert {g["lr"] for g in param_groups(model, cfg, bb.depth)} == {1e-4}


# ----------------------------------------------------------------------------- a family added from here


class ToyPyramid(PyramidEncoder):
    """Two stages: a stride-2 and a stride-4 convolution; the pooled embedding is the last one's mean."""

    def __init__(self):
        super().__init__("toy2", [4, 8], [2, 4], (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        self.c1 = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.c2 = torch.nn.Conv2d(4, 8, 3, stride=2, padding=1)

    def stage_maps(self, x, wanted):
        a = self.c1(x)
        b = self.c2(a)
        return {0: a, 1: b}, b, b.mean((2, 3))


@pytest.fixture
def toy_family():
    from bench_tasks.backbones.base import BenchBackbone

    def build(rest: str, image_size: int):
        torch.manual_seed(0)
        return BenchBackbone(f"toyfam:{rest}", ToyPyramid(), "toy-hash", source=rest)

    build.family = Family(native_size=lambda rest: 48, reference=lambda rest: "toy2@48",
                          random_arch=lambda arch, size: ToyPyramid() if arch == "toy2" else None,
                          claims_folder=lambda p: "a toy family's folder" if (p / "toy.json").is_file() else None)
    BACKBONES.register("toyfam")(build)
    yield build
    BACKBONES._items.pop("toyfam", None)


def test_a_family_registered_from_a_test_file_joins_every_lookup(toy_family, tmp_path):
    bb = build_backbone("toyfam:anything", 32)
    out = bb(torch.rand(1, 3, 32, 32), bb.dense_layers())
    assert [tuple(m.shape[1:]) for m in out.patch_maps()] == [(4, 16, 16), (8, 8, 8)]
    assert native_size("toyfam:anything") == 48
    assert ceiling_uri("toyfam:anything") == "supervised:toy2@48"
    assert build_backbone("supervised:toy2@48", 32).level_channels([0, 1]) == [4, 8]
    (tmp_path / "toy.json").write_text("{}")
    assert f"`toyfam:{tmp_path}`" in describe_folder(tmp_path)


# ----------------------------------------------------------------------------- the five SynthFace tasks

TOY = dataclasses.replace(
    PROFILES["smoke"], image_size=32, dense_size=32, synthface_train=48, synthface_val=16, synthface_test=16,
    batch_size=16, linear_epochs=1, finetune_epochs=1, dense_epochs=1, recognition_epochs=1,
    # the families are read and run; the choice on val is tested apart (tests/one_lr.py)
    extra=one_lr_extra({**PROFILES["smoke"].extra, "linear.epochs": 2, "dense_train_images": 16,
                        "dense_batch_size": 8, "dense_min_steps": 2, "dense_evals": 1, "dense_channels": 8,
                        "recognition": {"emb_dim": 16}}))
CLASSIFICATION = ("attributes", "expression", "recognition")
DENSE = ("parsing", "landmarks")


def _run_task(uri: str, task: str, tmp_path: Path):
    t = TASKS.get(task)()
    protocol = t.plan_protocol(TOY.protocols[0])  # the profile's default protocol, as the task runs it
    cell = Cell(uri, task, "synthface", protocol, profile=TOY.name)
    bb = build_backbone(uri, t.image_size(TOY))
    ctx = CellContext(cell, bb, TOY, None, torch.device("cpu"), tmp_path / "work", progress=False,
                      results_dir=tmp_path / "results")
    res = t.run(ctx)
    assert math.isfinite(res.metrics[t.headline]), (task, res.metrics)
    return res


@pytest.mark.slow
@pytest.mark.parametrize("family", _params())
def test_family_runs_the_five_synthface_tasks(family, ckpt_dir, tmp_path):
    uri = uri_of(family, ckpt_dir)
    for task in CLASSIFICATION:
        _run_task(uri, task, tmp_path)
    if not mmseg_available():
        pytest.skip("parsing and landmarks need mmcv (scripts/ensure_mmcv.py); the other three tasks ran")
    for task in DENSE:
        res = _run_task(uri, task, tmp_path)
        assert res.head == "fpn_uperhead" and res.protocol_used == "frozen"


@needs_open_clip
def test_open_clip_gelu_arch_refuses_a_file_in_farls_quickgelu_layout(tmp_path):
    """FaRL's release (a CLIP state dict alone under `state_dict`) was trained with QuickGELU: a GELU
    arch would load it without error and compute other features, so it is refused, naming `farl:`
    and the `-quickgelu` arch; the `-quickgelu` arch reads it."""
    import open_clip

    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "toyq-ViT-8.json").write_text(json.dumps(OPEN_CLIP_TOY))
    (cfg_dir / "toyq-ViT-8-quickgelu.json").write_text(json.dumps({**OPEN_CLIP_TOY, "quick_gelu": True}))
    open_clip.add_model_config(cfg_dir)
    torch.manual_seed(0)
    path = tmp_path / "farl_layout.pth"
    torch.save({"state_dict": open_clip.create_model("toyq-ViT-8-quickgelu", pretrained=None).state_dict()}, path)
    with pytest.raises(CheckpointError) as err:
        build_backbone(f"open_clip:toyq-ViT-8:{path}", 32)
    msg = str(err.value)
    assert str(path) in msg and f"farl:{path}" in msg and f"open_clip:toyq-ViT-8-quickgelu:{path}" in msg, msg
    bb = build_backbone(f"open_clip:toyq-ViT-8-quickgelu:{path}", 32)
    assert bb.uri.startswith("open_clip:toyq-ViT-8-quickgelu:")
