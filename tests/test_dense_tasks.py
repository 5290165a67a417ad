"""Parsing and landmarks tasks end to end on tiny fake splits (CPU, a few seconds each)."""

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bench_tasks.contracts import Cell, CellContext, DatasetSpec, TaskSplit
from bench_tasks.heads.dense import mmseg_available
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.registry import DATASETS, TASKS
from bench_tasks.tasks._dense import resolve_protocol

needs_mmseg = pytest.mark.skipif(
    not mmseg_available() and not os.environ.get("CI"),  # CI's set-up installs mmcv: fail there
    reason="mmsegmentation's UPerHead needs mmcv==2.1.0 with compiled ops: run `python scripts/ensure_mmcv.py`")

S = 32


class _Fake(TaskSplit):
    def __init__(self, task, split, n):
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        self.x = torch.rand(n, 3, S, S, generator=g)
        self.task = task
        if task == "parsing":
            self.y = (self.x[:, 0] > 0.5).long() + (self.x[:, 1] > 0.7).long()
            meta = {"class_names": ["background", "a", "b"]}
        else:
            self.y = torch.rand(n, 68, 2, generator=g) * (S - 1)
            meta = {"num_points": 68}
        sl = {"half": np.arange(n) % 2 == 0}
        super().__init__("fake_dense", split, meta=meta, slices=sl)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class FakeDense(DatasetSpec):
    name = "fake_dense"
    tasks = ("parsing", "landmarks")
    needs_root = False

    def load(self, task, split, root, profile, image_size):
        assert image_size == S
        return _Fake(task, split, {"train": 8, "val": 4, "test": 6}[split])


if "fake_dense" not in DATASETS:
    DATASETS.register("fake_dense")(FakeDense)

PROFILE = dataclasses.replace(PROFILES["smoke"], dense_size=S, batch_size=4, dense_epochs=2,
                              extra={"dense_channels": 16, "dense_ema_decay": 0.5, "dense_lr_head": 5e-3})


def _ctx(task, protocol, tmp_path):
    from bench_tasks.backbones.base import build_backbone

    cell = Cell("random:vit_tiny", task, "fake_dense", protocol, profile="smoke")
    bb = build_backbone(cell.backbone, TASKS.get(task)().image_size(PROFILE))
    return CellContext(cell, bb, PROFILE, None, torch.device("cpu"), Path(tmp_path), progress=False,
                       **({"results_dir": Path(tmp_path)} if "results_dir" in CellContext.__dataclass_fields__ else {}))


@needs_mmseg
@pytest.mark.parametrize("protocol", ["linear", "finetune"])
def test_parsing_task(tmp_path, protocol):
    res = TASKS.get("parsing")().run(_ctx("parsing", protocol, tmp_path))
    m = res.metrics
    assert {"f1_mean", "miou", "f1/a", "f1/b", "selected_epoch"} <= set(m)
    assert 0 <= m["f1_mean"] <= 100
    assert res.metrics_last["epoch"] == 1 and res.metrics_best_test
    assert set(res.slices) == {"half"}
    assert res.protocol_used == resolve_protocol(protocol)
    for name in ("parsing_preview", "confusion"):
        assert (Path(tmp_path) / res.artifacts[name]).exists() or Path(res.artifacts[name]).exists()


@needs_mmseg
def test_landmarks_task(tmp_path):
    res = TASKS.get("landmarks")().run(_ctx("landmarks", "frozen", tmp_path))
    assert res.metrics["nme"] > 0 and "nme/half" in res.metrics
    assert res.slices["half"]["n"] == 3
    art = res.artifacts["landmarks_preview"]
    assert (Path(tmp_path) / art).exists() or Path(art).exists()


def test_protocol_mapping():
    assert resolve_protocol("linear") == "frozen" and resolve_protocol("finetune") == "finetune"
    with pytest.raises(ValueError):
        resolve_protocol("zero_shot")


@needs_mmseg
def test_dense_cell_does_not_depend_on_global_rng_state(tmp_path):
    """The head is initialised from the cell's seed: what ran before (here: other draws from the
    global RNG) must not change the numbers, or a resumed plan would differ from a full one."""
    runs = []
    for i, pre in enumerate((0, 12345)):
        torch.manual_seed(pre)
        torch.rand(1000)
        res = TASKS.get("parsing")().run(_ctx("parsing", "linear", tmp_path / str(i)))
        runs.append(res.metrics["f1_mean"])
    assert runs[0] == runs[1]
