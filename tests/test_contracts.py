"""Contract tests over the registries, as timm parametrises over `list_models()`: every registered
task, dataset and backbone scheme (plug-ins included once loaded) follows the contracts of
bench_tasks/api.py, and every bundled profile is a valid settings file whose effective values are
pinned (moving them into bench_tasks/configs/ changed no number)."""

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from bench_tasks.contracts import DatasetLayoutError, Task, TaskSplit, split_targets
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.registry import BACKBONES, DATASETS, TASKS
from bench_tasks.store.method import ROLES, derive_from_uri

PKG = Path(__file__).resolve().parents[1] / "bench_tasks"
TINY = dataclasses.replace(PROFILES["smoke"], synthface_train=8, synthface_val=4, synthface_test=4)


def _spec(name):
    spec = DATASETS.get(name)
    return spec() if isinstance(spec, type) else spec


# ----------------------------------------------------------------------------- tasks


@pytest.mark.parametrize("name", TASKS.names())
def test_task_contract(name):
    cls = TASKS.get(name)
    assert issubclass(cls, Task) and cls.name == name
    assert isinstance(cls.headline, str) and cls.headline
    assert isinstance(cls.version, int) and cls.version >= 1
    assert cls.protocols and all(cls.plan_protocol(p) == p for p in cls.protocols)
    for alias, proto in cls.protocol_aliases.items():
        assert cls.plan_protocol(alias) == proto in cls.protocols
    for ds in cls.default_datasets:
        assert ds in DATASETS, f"task {name}: default dataset {ds!r} is not registered"
    for prof in PROFILES.values():
        size = cls().image_size(prof)
        assert isinstance(size, int) and size > 0


# ----------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_contract(name, tmp_path):
    spec = _spec(name)
    assert spec.name == name and spec.tasks
    assert all(t in TASKS for t in spec.tasks), f"dataset {name} serves unregistered tasks {spec.tasks}"
    if not spec.needs_root:
        return
    assert spec.layout.strip(), f"dataset {name} needs a root but shows no layout"
    for root in (None, tmp_path / "empty"):
        if root is not None:
            root.mkdir(exist_ok=True)
        with pytest.raises(DatasetLayoutError) as err:
            spec.load(spec.tasks[0], "test", None if root is None else str(root), TINY, 32)
        assert err.value.dataset in (name, getattr(spec, "folder", name)) or name in str(err.value)


@pytest.mark.parametrize("task", _spec("synthface").tasks)
def test_synthface_splits_follow_the_task_split_contract(task):
    split = _spec("synthface").load(task, "val", None, TINY, 32)
    assert isinstance(split, TaskSplit) and len(split) == 4
    img, target = split[0]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and 0 <= img.min() <= img.max() <= 1
    t = split_targets(split)  # the cheap targets are the items' targets
    assert t is not None and len(t) == len(split)
    assert torch.equal(torch.as_tensor(t[0]), torch.as_tensor(target))
    for mask in split.slices.values():
        assert np.asarray(mask).shape == (len(split),)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("path", sorted((PKG / "datasets").glob("*.py")), ids=lambda p: p.name)
def test_datasets_never_import_tasks(path):
    bad = [m for m in _imports(path) if m.startswith("bench_tasks.tasks")]
    assert not bad, f"{path.name} imports {bad}: reader helpers belong in bench_tasks/datasets/_readers.py"


# ----------------------------------------------------------------------------- backbone schemes


@pytest.mark.parametrize("scheme", BACKBONES.names())
def test_backbone_scheme_contract(scheme, tmp_path):
    build = BACKBONES.get(scheme)
    assert callable(build)
    from bench_tasks.backbones.base import build_backbone, weights_file

    if scheme in ("random", "supervised"):  # no weights file: a seeded architecture
        bb = build_backbone(f"{scheme}:vit_tiny@32/16/d1", 32)
        out = bb(torch.rand(1, 3, 32, 32))
        assert out.cls.shape == (1, bb.embed_dim) and bb.depth == 1
        assert weights_file(f"{scheme}:vit_tiny") is None
    else:  # a weights file that is not there: an error naming it
        missing = tmp_path / "nonexistent_weights.pth"
        named = {"timm": "vit_small_patch16_224", "open_clip": "ViT-B-16"}  # <model name>:<file> schemes
        uri = f"{scheme}:{named[scheme]}:{missing}" if scheme in named else f"{scheme}:{missing}"
        assert weights_file(uri) == missing
        with pytest.raises(Exception, match="nonexistent_weights"):
            build_backbone(uri, 32)
        uri_block = derive_from_uri(uri)
        assert uri_block["role"] in ROLES and uri_block["label"]


# ----------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_bundled_profile_files_are_valid(name):
    from bench_tasks.plan.profiles import CONFIG_DIR, read_profile_file

    assert read_profile_file(CONFIG_DIR / f"{name}.yaml") == PROFILES[name]  # settings keys checked too


# the values before the profiles moved into YAML files (bench_tasks/api.py PROFILES, the dense
# tables DENSE_CHANNELS / DENSE_EMA / DENSE_LR_HEAD, recognition's smoke emb_dim, FaRL's CPU overrides)
PINNED = {
    #        dense: channels, ema, lr_head, batch, min_steps, evals; cls frozen epochs; emb_dim; farl input
    "smoke": (32, 0.9, 5e-3, 8, 111, 3, 8, 128, 64),
    "cpu": (32, 0.99, 5e-3, 8, 600, 3, 50, 512, 64),
    "small": (256, 0.998, 1e-3, 256, 0, 0, 30, 512, 448),
    "gpu": (128, 0.99, 5e-3, 32, 800, 2, 30, 512, 448),
    "paper": (768, 0.999, 1e-3, 64, 0, 0, 50, 512, 448),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_effective_settings_are_todays(name):
    from bench_tasks.plan.profiles import effective_settings

    s = effective_settings(PROFILES[name])
    d, cls = s["dense (parsing, landmarks)"], s["classification (attributes, expression)"]
    got = (d["channels"], d["ema_decay"], d["lr_head"], d["batch_size"], d["min_steps"], d["evals"],
           cls["frozen"]["epochs"], s["recognition"]["emb_dim"], s["farl (lapa, farl-refine)"]["input_size"])
    assert got == PINNED[name]
    assert cls["linear"]["epochs"] == 50 and cls["finetune"]["lr_backbone"] == 1e-4
    assert s["farl (lapa, farl-refine)"]["farl_exact"] == (name not in ("smoke", "cpu"))
    assert d["train_images"] == {"smoke": 600, "cpu": 1500}.get(name)


def test_set_overrides_and_user_profile_files(tmp_path):
    from bench_tasks.plan.profiles import ProfileError, effective_settings, load_profile, parse_assignments

    assert parse_assignments(["a.b=1", "c=[0, 1]", "d=x"]) == {"a.b": 1, "c": [0, 1], "d": "x"}
    p = load_profile("smoke", ["batch_size=32", "dense_channels=64", "linear.lr_head=0.02",
                               "recognition.emb_dim=64", "seeds=[0,1]"], register=False)
    s = effective_settings(p)
    assert p.batch_size == 32 and p.seeds == (0, 1)
    assert s["dense (parsing, landmarks)"]["channels"] == 64
    assert s["classification (attributes, expression)"]["linear"]["lr_head"] == 0.02
    assert s["recognition"]["emb_dim"] == 64 and PROFILES["smoke"].batch_size == 64  # the bundled one unchanged
    with pytest.raises(ProfileError, match="unknown key 'dense_chanels'.*dense_channels"):
        load_profile("smoke", ["dense_chanels=64"], register=False)
    f = tmp_path / "mine.yaml"
    f.write_text((Path(PKG) / "configs" / "smoke.yaml").read_text().replace("name: smoke", "name: mine"))
    mine = load_profile(str(f), register=False)
    assert mine.name == "mine" and dataclasses.replace(mine, name="smoke") == PROFILES["smoke"]
    f.write_text("name: bad\nimage_size: 64\nextra: {dense_chanels: 3}\n")
    with pytest.raises(ProfileError, match="mine.yaml"):
        load_profile(str(f), register=False)


def test_a_flat_recognition_key_in_a_profile_file_is_refused(tmp_path):
    """Recognition reads its settings from the nested `recognition:` mapping; a flat `recognition.<key>`
    under a file's `extra:` would be accepted and never read, so the file is refused, naming the key."""
    import yaml

    from bench_tasks.plan.profiles import ProfileError, effective_settings, load_profile

    data = yaml.safe_load((Path(PKG) / "configs" / "smoke.yaml").read_text())
    data["name"] = "mine"
    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump({**data, "extra": {**data["extra"], "recognition.lr_grid": [0.01]}}))
    with pytest.raises(ProfileError, match=r"mine.yaml: setting 'recognition.lr_grid' is read from the nested"):
        load_profile(str(f), register=False)
    nested = {**(data["extra"].get("recognition") or {}), "lr_grid": [0.01]}
    f.write_text(yaml.safe_dump({**data, "extra": {**data["extra"], "recognition": nested}}))
    assert effective_settings(load_profile(str(f), register=False))["recognition"]["lr_grid"] == [0.01]
