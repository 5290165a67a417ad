"""The `supervised:` ceiling scheme (builds like `random:`, trains end to end) and the parameter-free
cosine recognition probe, on tiny fake data."""

import dataclasses

import numpy as np
import pytest
import torch

from bench_tasks.backbones.base import build_backbone
from bench_tasks.contracts import Cell, CellContext, DatasetSpec, TaskSplit
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.registry import DATASETS, TASKS
from bench_tasks.stats.pairs import Pairs
from bench_tasks.tasks.recognition import PairEval, pair_items

SIZE = 32


class ColourFaces(TaskSplit):
    """Images whose colour is set by the label (identity or expression) plus noise."""

    def __init__(self, task, split, n_labels=8, per_label=6):
        super().__init__("_colour_faces", split, meta={"class_names": [f"c{i}" for i in range(n_labels)]})
        off = {"train": 0, "val": 100, "test": 200}[split] if task == "recognition" else 0
        self.y = np.repeat(np.arange(n_labels), per_label) + off
        g = torch.Generator().manual_seed(off + 7 + len(split))
        colours = torch.rand(n_labels + 300, 3, 1, 1, generator=torch.Generator().manual_seed(1))
        self.images = (0.8 * colours[self.y].expand(-1, 3, SIZE, SIZE)
                       + 0.2 * torch.rand(len(self.y), 3, SIZE, SIZE, generator=g)).clamp(0, 1)
        self.labels = {"identity": self.y}

    def __len__(self):
        return len(self.y)

    def targets(self):
        return torch.as_tensor(self.y)

    def __getitem__(self, i):
        return self.images[i], int(self.y[i])


@DATASETS.register("_colour_faces")
class ColourFacesSpec(DatasetSpec):
    name = "_colour_faces"
    tasks = ("expression", "recognition")
    needs_root = False

    def load(self, task, split, root, profile, image_size):
        return ColourFaces(task, split)


PROFILE = dataclasses.replace(PROFILES["smoke"], name="test", image_size=SIZE, batch_size=16, finetune_epochs=2,
                              linear_epochs=2, recognition_epochs=1,
                              extra={"recognition": {"emb_dim": 16, "n_pairs": 200, "n_hard_pairs": 40}})


def _ctx(tmp_path, uri, task, protocol):
    bb = build_backbone(uri, SIZE)
    cell = Cell(uri, task, "_colour_faces", protocol, profile=PROFILE.name)
    return CellContext(cell, bb, PROFILE, None, torch.device("cpu"), tmp_path, progress=False, results_dir=tmp_path)


def test_supervised_scheme_builds_the_random_init_under_its_own_name():
    sup = build_backbone("supervised:vit_tiny@32/16/d2", SIZE)
    rnd = build_backbone("random:vit_tiny@32/16/d2", SIZE)
    assert sup.uri == "supervised:vit_tiny@32/16/d2" and sup.depth == 2 and sup.patch_size == 16
    assert sup.weights_hash != rnd.weights_hash  # its own rows, its own feature cache
    for (n1, p1), (_n2, p2) in zip(sup.state_dict().items(), rnd.state_dict().items()):
        assert torch.equal(p1, p2), n1
    with pytest.raises(ValueError, match="supervised:<arch>"):
        build_backbone("supervised:vit_tiny@32/x", SIZE)


def test_supervised_ceiling_trains_end_to_end(tmp_path):
    ctx = _ctx(tmp_path, "supervised:vit_tiny@32/16/d2", "expression", "finetune")
    before = {k: v.clone() for k, v in ctx.backbone.state_dict().items()}
    res = TASKS.get("expression")().run(ctx)
    changed = [k for k, v in ctx.backbone.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2  # the backbone itself was trained
    assert 0 <= res.metrics["acc"] <= 100 and res.ci["acc"][0] <= res.metrics["acc"] <= res.ci["acc"][1]
    assert (tmp_path / res.artifacts["items"]).is_file()


def test_cosine_probe_toy_pairs():
    # 4 identities, 5 images each; embeddings = identity direction + small noise
    rng = np.random.default_rng(0)
    ident = np.repeat(np.arange(4), 5)
    emb = torch.as_tensor(np.eye(4)[ident] + 0.05 * rng.normal(size=(20, 4)), dtype=torch.float32)
    i1, i2 = np.triu_indices(20, 1)
    pairs = Pairs(i1, i2, ident[i1] == ident[i2])
    ev = PairEval({"all": pairs}, feats=emb, feats_flip=emb, flip=True)
    m = ev.evaluate(torch.nn.Identity())
    assert m["acc"] == pytest.approx(100.0) and m["auc"] == pytest.approx(1.0)
    items = pair_items(ev.embeddings(torch.nn.Identity()), pairs)
    assert items.point()["acc"] == pytest.approx(100.0) and items.ci()["acc"] == [100.0, 100.0]
    # identity-free embeddings: chance, the interval covers 50 %
    noise = torch.as_tensor(rng.normal(size=(20, 4)), dtype=torch.float32)
    lo, hi = pair_items(noise, Pairs(i1, i2, (np.arange(len(i1)) % 2) == 0)).ci()["acc"]
    assert lo < 50 < hi


def test_cosine_protocol_trains_nothing_and_reads_identity(tmp_path):
    ctx = _ctx(tmp_path, "random:vit_tiny@32/16/d2", "recognition", "cosine")
    before = {k: v.clone() for k, v in ctx.backbone.state_dict().items()}
    res = TASKS.get("recognition")().run(ctx)
    assert all(torch.equal(v, before[k]) for k, v in ctx.backbone.state_dict().items())
    assert "selected_epoch" not in res.metrics and res.metrics_last == res.metrics
    assert res.metrics["acc"] > 75  # identities have distinct colours: a frozen random ViT reads them
    lo, hi = res.ci["acc"]
    assert lo <= res.metrics["acc"] + 1 and hi >= res.metrics["acc"] - 1
    assert "cosine" in res.config["probe"] and (tmp_path / res.artifacts["items"]).is_file()


def test_concat_linear_head_is_one_linear_map_of_every_pooled_vector():
    from bench_tasks.heads.attribute_head import AttributeHead, ConcatLinearHead

    torch.manual_seed(0)
    x = torch.randn(5, 2, 3, 4)  # (B, layers, [cls, mean, max], D)
    head = ConcatLinearHead(embed_dim=4, num_layers=2, num_outputs=3)
    assert head.fc.in_features == 2 * 3 * 4
    # hand-worked: logits = sum over the 6 vectors of W_k v_k + b
    w = head.fc.weight.view(3, 6, 4)
    expected = torch.einsum("okd,bkd->bo", w, x.reshape(5, 6, 4)) + head.fc.bias
    assert torch.allclose(head(x), expected, atol=1e-6)
    # FaRL's head averages the vectors first: a feature in one position only, cancelled by its
    # opposite in another, is invisible to it and visible to the concatenation
    v = torch.zeros(1, 2, 3, 4)
    v[0, 0, 0, 0], v[0, 1, 2, 0] = 1.0, -1.0
    farl = AttributeHead(embed_dim=4, num_layers=2, num_outputs=3)
    assert torch.allclose(farl(v), farl(torch.zeros_like(v)))
    assert not torch.allclose(head(v), head(torch.zeros_like(v)))
    with pytest.raises(ValueError, match="built for 2 layers"):
        head(torch.randn(5, 3, 3, 4))
