"""The head's learning rate is chosen on val: every grid value trains without the test split, whose
items raise when read before the choice; the row records the grid, each value's val score and
the choice; the test split is then scored once, for the chosen value."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from bench_tasks.contracts import Cell, CellContext, DatasetSpec, TaskSplit
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.protocols import selection
from bench_tasks.registry import DATASETS, TASKS, load_all

load_all()
S = 32
STATE = {"chosen": False, "test_reads_before": 0, "test_reads_after": 0}


class _Split(TaskSplit):
    def __init__(self, split, n):
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        self.x = torch.rand(n, 3, S, S, generator=g)
        self.y = (self.x[:, 0].mean((1, 2)) > 0.5).long() + 2 * (self.x[:, 1].mean((1, 2)) > 0.5).long()
        super().__init__("guarded_test", split, meta={"class_names": ["a", "b", "c", "d"]})

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if self.split == "test":
            if not STATE["chosen"]:
                STATE["test_reads_before"] += 1
                raise AssertionError("the test split was read before the learning rate was chosen on val")
            STATE["test_reads_after"] += 1
        return self.x[i], self.y[i]


class GuardedTest(DatasetSpec):
    name = "guarded_test"
    tasks = ("expression",)
    needs_root = False

    def load(self, task, split, root, profile, image_size):
        return _Split(split, {"train": 24, "val": 12, "test": 12}[split])


if "guarded_test" not in DATASETS:
    DATASETS.register("guarded_test")(GuardedTest)

PROFILE = dataclasses.replace(PROFILES["smoke"], image_size=S, batch_size=8, linear_epochs=2, finetune_epochs=1,
                              extra={"linear.epochs": 3, "frozen.lr_grid": [1e-3, 1e-2, 1e-1]})


@pytest.mark.parametrize("protocol", ["linear", "frozen"])
def test_selection_never_reads_test(protocol, tmp_path, monkeypatch):
    STATE.update(chosen=False, test_reads_before=0, test_reads_after=0)
    seen = []

    def mark(sel):
        seen.append(sel)
        STATE["chosen"] = True

    monkeypatch.setattr(selection, "chosen", mark)
    from bench_tasks.backbones.base import build_backbone

    cell = Cell("random:vit_tiny@32/8/d2", "expression", "guarded_test", protocol, profile="smoke")
    ctx = CellContext(cell, build_backbone(cell.backbone, S), PROFILE, None, torch.device("cpu"), Path(tmp_path),
                      progress=False, results_dir=Path(tmp_path))
    res = TASKS.get("expression")().run(ctx)
    sel = res.config["selection"]
    assert len(seen) == 1 and STATE["test_reads_before"] == 0
    # the test split is read for the chosen value only: its items, a bounded number of times
    assert 12 <= STATE["test_reads_after"] <= 12 * (PROFILE.extra.get("linear.epochs", 3) + 4)
    assert len(sel["grid"]) == 3 and set(sel["val"]) == {repr(v) for v in sel["grid"]}
    best = max(sel["val"].values())
    assert sel["val"][repr(sel["chosen"])] == best
    assert res.config["lr_head"] == sel["chosen"]
    assert res.metrics["val_score"] == pytest.approx(best)  # the chosen value's run, retrained identically


def test_choose_takes_the_best_val_score_and_the_first_of_equals():
    assert selection.choose({1e-3: 50.0, 1e-2: 60.0, 1e-1: 55.0}, True) == 1e-2
    assert selection.choose({1e-3: 5.0, 1e-2: 4.0, 1e-1: 4.0}, False) == 1e-2
    assert selection.grid_of(None, 0.01) == [0.01] and selection.grid_of([], 0.01) == [0.01]
    with pytest.raises(ValueError):
        selection.grid_of([0.0, 1.0], 0.01)


def test_the_tests_one_lr_settings_turn_selection_off_for_every_protocol():
    """tests/one_lr.py (the tests of plumbing train one head lr) does what it says, through a profile's
    `extra` and through `--set`; the bundled smoke profile keeps its grids."""
    from one_lr import one_lr_extra, one_lr_profile

    from bench_tasks.tasks._classification import DEFAULTS as CLS_PROTOCOLS
    from bench_tasks.tasks._classification import settings as cls_settings
    from bench_tasks.tasks._dense import dense_grid, dense_settings
    from bench_tasks.tasks.recognition import settings_for

    def grids(profile) -> dict[str, list[float]]:
        out = {p: selection.grid_of((s := cls_settings(profile, p)).get("lr_grid"), s["lr_head"])
               for p in CLS_PROTOCOLS}
        rec = settings_for(profile)
        out["recognition"] = selection.grid_of(rec.get("lr_grid"), rec["lr_head"])
        out["dense"] = dense_grid(dense_settings(profile))
        return out

    smoke = PROFILES["smoke"]
    assert all(len(g) > 1 for g in grids(smoke).values()), grids(smoke)
    for profile in (dataclasses.replace(smoke, extra=one_lr_extra(smoke.extra)), one_lr_profile()):
        assert all(len(g) == 1 for g in grids(profile).values()), grids(profile)
        assert settings_for(profile)["emb_dim"] == settings_for(smoke)["emb_dim"]  # the rest of the section kept
