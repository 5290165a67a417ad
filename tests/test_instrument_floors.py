"""Floors (bench_tasks.plan.floors) against hand-worked values, as rows of the results store, and the
reference cells every plan gets (bench_tasks.plan.references)."""

import numpy as np
import pytest
import torch

from bench_tasks.contracts import Cell, DatasetSpec, TaskSplit
from bench_tasks.plan.cell_plan import make_plan
from bench_tasks.plan.cells import plan_cells
from bench_tasks.plan.floors import FLOOR_URI
from bench_tasks.plan.references import ceiling_uri, floor_cell, with_references
from bench_tasks.registry import DATASETS
from bench_tasks.run.loop import run_plan
from bench_tasks.run.runner import RunContext, run_cell
from bench_tasks.store.readers import load_rows
from bench_tasks.store.rows import row_kind

# ----------------------------------------------------------------------------- a hand-made dataset

ATTR_TRAIN = np.array([[1, 0], [1, 0], [1, 1], [0, 0]])  # majority: attr0 = 1, attr1 = 0
ATTR_TEST = np.array([[1, 0], [0, 0], [0, 1], [1, 1], [1, 0]])
EXPR_TRAIN = np.array([2, 2, 2, 0, 1])  # majority class 2
EXPR_TEST = np.array([2, 0, 2, 1, 3, 2, 0, 0, 1, 4])  # 3 of 10 are class 2
# two points, eyes (0, 1): train shapes average to (1, 0), (11, 0)
LM_TRAIN = np.array([[[0, 0], [10, 0]], [[2, 0], [12, 0]]], dtype=np.float32)
LM_TEST = np.array([[[0, 0], [10, 0]], [[1, 0], [11, 0]]], dtype=np.float32)  # errors 1 / 0, IOD 10
# 2 x 2 masks, 3 classes; per-pixel majority of the train masks = [[0, 1], [1, 2]]
PARSE_TRAIN = np.array([[[0, 1], [1, 2]], [[0, 1], [1, 2]], [[1, 1], [2, 2]]])
PARSE_TEST = np.array([[[0, 1], [1, 2]], [[0, 0], [2, 2]]])


class HandSplit(TaskSplit):
    def __init__(self, task, split, y):
        meta = {"class_names": ["a", "b", "c", "d", "e"] if task == "expression" else ["x", "y"]}
        if task == "landmarks":
            meta = {"num_points": 2, "eyes": (0, 1)}
        if task == "parsing":
            meta = {"class_names": ["bg", "one", "two"]}
        slices = {"first": np.arange(len(y)) == 0} if split == "test" else {}
        super().__init__("_hand", split, meta=meta, slices=slices)
        self.task, self.y = task, y

    def __len__(self):
        return len(self.y)

    def targets(self):
        return torch.as_tensor(self.y)

    def __getitem__(self, i):
        return torch.zeros(3, 2, 2), torch.as_tensor(self.y[i])


@DATASETS.register("_hand")
class HandSpec(DatasetSpec):
    name = "_hand"
    tasks = ("attributes", "expression", "landmarks", "parsing")
    needs_root = False
    data = {"attributes": (ATTR_TRAIN, ATTR_TEST), "expression": (EXPR_TRAIN, EXPR_TEST),
            "landmarks": (LM_TRAIN, LM_TEST), "parsing": (PARSE_TRAIN, PARSE_TEST)}

    def load(self, task, split, root, profile, image_size):
        train, test = self.data[task]
        return HandSplit(task, split, train if split in ("train", "val") else test)


def _floor_row(tmp_path, task):
    plan = make_plan([floor_cell(task, "_hand", "smoke")], references=False)
    (cell, version), = plan.items
    row = run_cell(cell, RunContext(tmp_path / "r.jsonl", tmp_path / "w", progress=False), version,
                   plan.profile_of(cell))
    assert row["status"] == "ok", row["error"]
    return row


def test_attribute_floor_is_majority_per_attribute(tmp_path):
    row = _floor_row(tmp_path, "attributes")
    m = row["metrics"]
    # attr0 predicted 1: 3/5 right; attr1 predicted 0: 3/5 right -> mAcc 60; balanced accuracy 50
    assert m["mean_acc"] == pytest.approx(60.0) and m["balanced_acc"] == pytest.approx(50.0)
    assert m["acc/x"] == pytest.approx(60.0)
    # five test images: fewer than stats.MIN_TEST_ITEMS, so no interval and no verdict, said in the row
    assert row["headline"] == "balanced_acc" and row["ci"] == {}
    assert row["config"]["task"]["verdict"] == "too few test items for a verdict"
    assert row["config"]["task"]["test_items"] == 5
    assert row["config"]["task"]["majority"] == {"x": 1, "y": 0}
    assert row_kind(row) == "floor" and row["cell"]["protocol"] == "floor"
    assert (tmp_path / row["artifacts"]["items"]).is_file()


def test_expression_floor_is_the_majority_class(tmp_path):
    row = _floor_row(tmp_path, "expression")
    assert row["metrics"]["acc"] == pytest.approx(30.0)
    lo, hi = row["ci"]["acc"]
    assert lo < 30.0 < hi and row["slices"]["first"]["acc"] == 100.0  # test item 0 is class 2


def test_landmark_floor_is_the_mean_training_shape(tmp_path):
    row = _floor_row(tmp_path, "landmarks")
    # image 0: both points off by 1 px, IOD 10 -> 10 %; image 1: exact -> 0 %; mean 5 %
    assert row["metrics"]["nme"] == pytest.approx(5.0)
    assert row["higher_is_better"] is False
    # two test images: no interval (too few for a verdict), the row says so
    assert row["ci"] == {} and row["config"]["task"]["verdict"] == "too few test items for a verdict"


def test_parsing_floor_is_the_per_pixel_majority_class(tmp_path):
    from bench_tasks.metrics.parsing import confusion_matrix, scores_from_confusion

    row = _floor_row(tmp_path, "parsing")
    prior = torch.tensor([[0, 1], [1, 2]])
    cm = sum(confusion_matrix(prior, torch.as_tensor(t), 3) for t in PARSE_TEST)
    want = scores_from_confusion(cm, ["bg", "one", "two"])
    assert row["metrics"]["f1_mean"] == pytest.approx(want["f1_mean"])
    # by hand: class 1 tp 2, #gt 2, #pred 4 -> F1 2/3; class 2 tp 2, #gt 3, #pred 2 -> F1 4/5
    assert want["f1_mean"] == pytest.approx(100 * (2 / 3 + 4 / 5) / 2)


def test_verification_floor_is_chance():
    from bench_tasks.stats.pairs import Pairs
    from bench_tasks.tasks.recognition import pair_items

    n = 200
    pairs = Pairs(np.arange(n) * 2, np.arange(n) * 2 + 1, np.arange(n) % 2 == 0)
    items = pair_items(torch.ones(2 * n, 4), pairs)  # every pair has the same similarity
    assert items.point()["acc"] == pytest.approx(50.0)
    lo, hi = items.ci()["acc"]
    half = 100 * 1.96 * np.sqrt(0.25 / n)
    assert lo == pytest.approx(50 - half, abs=0.25 * half) and hi == pytest.approx(50 + half, abs=0.25 * half)


# ----------------------------------------------------------------------------- planning


def test_plans_get_floors_ceilings_and_cosine_probes():
    cells = plan_cells(["random:vit_tiny@32/16/d1"], {"attributes": ["synthface"], "recognition": ["synthface"],
                                                      "landmarks": ["synthface"]},
                       protocols=["linear"], seeds=[0, 1], fractions=[0.1, 1.0], profile="smoke")
    # dense tasks plan `linear` as `frozen`
    assert {c.protocol for c in cells if c.task == "landmarks"} == {"frozen"}
    full = with_references(cells)
    floors = [c for c in full if c.backbone == FLOOR_URI]
    assert {(c.task, c.protocol, c.seed, c.fraction) for c in floors} == {
        ("attributes", "floor", 0, 1.0), ("recognition", "floor", 0, 1.0), ("landmarks", "floor", 0, 1.0)}
    assert full[:3] == floors  # floors first
    ceil = [c for c in full if c.backbone.startswith("supervised:")]
    # built at the size the encoder runs at under the smoke profile (64 px; the spec's 32 is only
    # where its position embedding was made: timm resamples it), not the spec's
    assert {c.backbone for c in ceil} == {"supervised:vit_tiny@64/16/d1"}
    assert {(c.protocol, c.fraction) for c in ceil} == {("finetune", 1.0)} and len(ceil) == 3 * 2
    cos = [c for c in full if c.protocol == "cosine"]
    assert {(c.backbone, c.seed) for c in cos} == {("random:vit_tiny@32/16/d1", 0), ("random:vit_tiny@32/16/d1", 1)}
    # attributes' probe: the concatenated-feature logistic regression, at fraction 1.0, one per seed
    concat = [c for c in full if c.protocol == "concat"]
    assert {(c.task, c.fraction, c.seed) for c in concat} == {("attributes", 1.0, 0), ("attributes", 1.0, 1)}
    assert not any(c.protocol in ("concat", "cosine") for c in with_references(cells, probes=False))
    assert len({c.key() for c in full}) == len(full) == len(with_references(full))  # idempotent
    assert not any(c.backbone.startswith("supervised:") for c in with_references(cells, ceilings=None))
    # a supervised backbone in a plan is always fine-tuned
    sup = plan_cells(["supervised:vit_tiny"], {"expression": ["synthface"]}, protocols=["linear", "frozen"])
    assert {c.protocol for c in sup} == {"finetune"}
    # a timm ViT's architecture and input size come from timm's model definition
    assert ceiling_uri("timm:vit_small_patch16_224") == "supervised:vit_small@224/16/d12"
    assert ceiling_uri("random:vit_small") == "supervised:vit_small"


def test_run_plan_adds_the_floor_rows(tmp_path):
    cells = [Cell("random:vit_tiny", "expression", "_hand", "bogus_protocol", profile="smoke")]
    summary = run_plan(make_plan(cells), RunContext(tmp_path / "r.jsonl", tmp_path / "w", progress=False),
                       log=lambda m: None)
    rows = load_rows(tmp_path / "r.jsonl")
    assert summary.total == 2 and [r["cell"]["backbone"] for r in rows] == [FLOOR_URI, "random:vit_tiny"]
    assert rows[0]["status"] == "ok" and rows[0]["provenance"]["backbone_hash"] is None
    assert rows[0]["provenance"]["git_commit"] is not None


def test_ceiling_arch_of_an_exported_encoder(tmp_path):
    from safetensors.torch import save_file

    f = tmp_path / "encoder.safetensors"
    save_file({"blocks.0.norm1.weight": torch.ones(4), "blocks.1.norm1.weight": torch.ones(4),
               "cls_token": torch.zeros(1, 1, 4)}, str(f), metadata={"arch": "vit_tiny", "img_size": "64",
                                                                    "patch_size": "8"})
    assert ceiling_uri(f"paco_fr:{f}") == "supervised:vit_tiny@64/8/d2"
    save_file({"x": torch.ones(1)}, str(tmp_path / "bare.safetensors"))
    assert ceiling_uri(f"paco_fr:{tmp_path / 'bare.safetensors'}") is None
    assert ceiling_uri(f"paco_fr:{tmp_path / 'missing.safetensors'}") is None


# ----------------------------------------------------------------------------- the hook


def test_a_floor_is_the_tasks_floor_method(tmp_path):
    from bench_tasks.contracts import Task
    from bench_tasks.plan.floors import compute_floor, has_floor, is_floor
    from bench_tasks.registry import TASKS

    builtin = ("attributes", "expression", "landmarks", "parsing", "recognition")
    assert all(has_floor(t) and TASKS.get(t).has_floor() for t in builtin)
    assert not has_floor("no_such_task") and not Task.has_floor()

    class NoFloor(Task):
        name = "no_floor"

    assert not NoFloor.has_floor()
    with pytest.raises(NotImplementedError, match="task 'no_floor' has no floor.*attributes"):
        compute_floor(NoFloor(), None)
    assert is_floor(FLOOR_URI) and is_floor("floor:") and not is_floor("supervised:vit_tiny") and not is_floor("")
