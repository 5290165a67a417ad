"""The recognition task end to end on small fake splits (CPU, tiny sizes)."""

import dataclasses
import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from bench_tasks.backbones.base import build_backbone
from bench_tasks.contracts import Cell, CellContext, DatasetSpec, TaskSplit
from bench_tasks.heads.margin import ArcFace, CosFace
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.registry import DATASETS, TASKS
from bench_tasks.stats.pairs import make_pair_sets, make_pairs


class FakeFaces(TaskSplit):
    """Identity-coloured blobs plus noise; raw labels like SynthFace's on `.labels`."""

    def __init__(self, split, n_ids=12, per_id=8, size=32):
        super().__init__("fake_faces", split)
        off = {"train": 0, "val": 1000, "test": 2000}[split]
        rng = np.random.default_rng(off)
        self.identity = np.repeat(np.arange(n_ids) + off, per_id)
        n = len(self.identity)
        base = torch.rand(n_ids, 3, 4, 4, generator=torch.Generator().manual_seed(off))
        up = torch.nn.functional.interpolate(base, size=size, mode="bilinear")
        noise = 0.15 * torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(off + 1))
        self.images = (0.8 * up[self.identity - off] + noise).clamp(0, 1)
        self.labels = {"yaw": rng.uniform(-60, 60, n), "expression": rng.integers(0, 7, n),
                       "occluded": rng.random(n) < 0.3, "illum_strength": rng.uniform(0, 1, n)}

    def __len__(self):
        return len(self.identity)

    def __getitem__(self, i):
        return self.images[i], int(self.identity[i])


@DATASETS.register("_fake_faces")
class FakeFacesSpec(DatasetSpec):
    name = "_fake_faces"
    tasks = ("recognition",)
    needs_root = False

    def load(self, task, split, root, profile, image_size):
        n_ids, per_id = profile.extra.get("fake_size", (12, 8))
        return FakeFaces(split, n_ids=n_ids, per_id=per_id, size=image_size)


PROFILE = dataclasses.replace(PROFILES["smoke"], name="test", image_size=16, batch_size=32, linear_epochs=3,
                              recognition_epochs=1, extra={"fake_size": (10, 6),
                                                           "recognition": {"emb_dim": 32, "n_hard_pairs": 100}})


def _ctx(tmp_path, dataset, protocol, root=None, profile=PROFILE):
    torch.manual_seed(0)
    bb = build_backbone("random:vit_tiny", profile.image_size)
    cell = Cell("random:vit_tiny", "recognition", dataset, protocol, profile=profile.name)
    return CellContext(cell, bb, profile, root, torch.device("cpu"), tmp_path, progress=False)


def _check(res):
    for k in ("acc", "tar@far=1e-3", "tar@far=1e-2", "auc", "far_resolution"):
        assert np.isfinite(res.metrics[k]), k
    assert 0 <= res.metrics["acc"] <= 100 and 0 <= res.metrics["auc"] <= 1


def test_linear_protocol_with_hard_slices(tmp_path):
    task = TASKS.get("recognition")()
    res = task.run(_ctx(tmp_path, "_fake_faces", "linear"))
    _check(res)
    assert set(res.slices) == {"pose", "expression", "occlusion", "lighting"}
    for sl in res.slices.values():
        assert {"acc", "tar@far=1e-3", "auc"} <= set(sl)
    assert res.metrics["acc"] > 60  # identity colours are easy even for a random ViT
    assert res.config["n_train_identities"] == 10
    assert "selected_epoch" in res.metrics


@pytest.mark.parametrize("protocol", ["frozen", "finetune"])
def test_backbone_protocols(tmp_path, protocol):
    prof = dataclasses.replace(PROFILE, image_size=16, extra={
        "fake_size": (8, 5), "recognition": {"emb_dim": 16, "n_hard_pairs": 60, "flip": False}})
    res = TASKS.get("recognition")().run(_ctx(tmp_path, "_fake_faces", protocol, profile=prof))
    _check(res)
    assert res.metrics["selected_epoch"] == 0


def test_test_only_bin_with_face_folder_training(tmp_path):
    rng = np.random.default_rng(0)
    train = tmp_path / "train_faces"
    for k in range(8):
        (train / f"id{k}").mkdir(parents=True)
        colour = rng.integers(0, 255, 3)
        for j in range(4):
            arr = np.clip(colour + rng.normal(0, 20, (20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(train / f"id{k}" / f"{j}.png")
    bins, issame = [], []
    for i in range(20):
        for _ in range(2):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(buf, format="JPEG")
            bins.append(buf.getvalue())
        issame.append(i % 2 == 0)
    (tmp_path / "cfp").mkdir()
    with open(tmp_path / "cfp" / "cfp_fp.bin", "wb") as f:
        pickle.dump((bins, issame), f)
    # <parent of the dataset root>/train_faces is picked up as the training set
    res = TASKS.get("recognition")().run(_ctx(tmp_path, "cfp_fp", "linear", root=str(tmp_path / "cfp")))
    _check(res)
    assert res.config["train_source"].startswith("face_folder:")
    assert res.config["pairs"]["test/all"] == 20 and res.slices == {}


def test_pairs_balanced_seeded_and_conditioned():
    ident = np.repeat(np.arange(30), 6)
    p = make_pairs(ident, 400, seed=3)
    assert p.issame.sum() == (~p.issame).sum() == 200
    assert (ident[p.idx1] == ident[p.idx2]).tolist() == p.issame.tolist()
    q = make_pairs(ident, 400, seed=3)
    assert np.array_equal(p.idx1, q.idx1) and np.array_equal(p.idx2, q.idx2)
    # every contiguous tenth holds 20 genuine then 20 impostor pairs
    assert p.issame[:40].tolist() == [True] * 20 + [False] * 20
    yaw = np.random.default_rng(0).uniform(-60, 60, len(ident))
    sets = make_pair_sets(ident, {"yaw": yaw, "occluded": np.arange(len(ident)) % 3 == 0}, 400, 100, seed=0)
    t = sets["pose"].info["yaw_diff_min_deg"]
    assert (np.abs(yaw[sets["pose"].idx1] - yaw[sets["pose"].idx2]) >= t).all()
    occ = np.arange(len(ident)) % 3 == 0
    assert (occ[sets["occlusion"].idx1] != occ[sets["occlusion"].idx2]).all()
    for s in sets.values():
        assert s.issame.sum() == (~s.issame).sum() > 0


def test_margins_hand_computed():
    emb = torch.tensor([[1.0, 0.0]])
    arc = ArcFace(2, 2, s=2.0, m=0.5)
    arc.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = arc(emb, torch.tensor([0]))
    assert torch.allclose(out, torch.tensor([[2 * np.cos(0.5), 0.0]], dtype=torch.float32), atol=1e-6)
    # theta = pi - 0.1 > pi - m: insightface's fallback cos - m sin(m)
    arc.weight.data = torch.tensor([[np.cos(np.pi - 0.1), np.sin(np.pi - 0.1)], [0.0, 1.0]], dtype=torch.float32)
    out = arc(emb, torch.tensor([0]))
    assert out[0, 0].item() == pytest.approx(2 * (np.cos(np.pi - 0.1) - 0.5 * np.sin(0.5)), abs=1e-5)
    easy = ArcFace(2, 2, s=2.0, m=0.5, easy_margin=True)
    easy.weight.data = arc.weight.data.clone()
    assert easy(emb, torch.tensor([0]))[0, 0].item() == pytest.approx(2 * np.cos(np.pi - 0.1), abs=1e-5)
    cos = CosFace(2, 2, s=2.0, m=0.35)
    cos.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(cos(emb, torch.tensor([1])), torch.tensor([[2.0, -0.7]]))
