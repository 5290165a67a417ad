"""Small real folders: a refusal before anything runs or a finished cell, never a crash; no verdict
from fewer test items than stats.MIN_TEST_ITEMS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from format_fixtures import write_300w_pts
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench_tasks import stats
from bench_tasks.heads.dense import mmseg_available
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.plan.validate import check_data
from bench_tasks.protocols.train import MIN_TRAIN_ITEMS, FitConfig, fit
from bench_tasks.registry import load_all

load_all()


def _folder(tmp_path, n_train):
    return write_300w_pts(tmp_path / f"w300_{n_train}", n_train=n_train, n_common=1, n_chall=0)


@pytest.mark.parametrize("n_train", [1, 2, 3, 5])
def test_the_plan_refuses_too_few_training_images_naming_the_minimum(tmp_path, n_train):
    root = _folder(tmp_path, n_train)
    at_one = check_data({"landmarks": ["300w"]}, {"300w": str(root)}, PROFILES["smoke"], fractions=[1.0])
    # 300W holds one training image out for validation: 1 image -> none to train, 2 -> one
    if n_train <= 2:
        assert len(at_one) == 1 and "300w" in at_one[0]
        assert "at least 2" in at_one[0], at_one
    else:
        assert at_one == []
    # the smoke profile's 10 % fraction leaves one image of <= 14: refused, naming the fraction
    small = check_data({"landmarks": ["300w"]}, {"300w": str(root)}, PROFILES["smoke"], fractions=[0.1, 1.0])
    assert len(small) == 1
    if n_train > 2:
        assert "fraction(s) 0.1" in small[0] and f"fewer than {MIN_TRAIN_ITEMS}" in small[0]
        assert "--fractions 1" in small[0]


def test_fit_refuses_one_training_item_before_batchnorm_sees_it():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    one = DataLoader(TensorDataset(torch.randn(1, 3), torch.tensor([0])), batch_size=8)
    cfg = FitConfig(epochs=1, select_metric="acc")
    with pytest.raises(ValueError, match="at least 2"):
        fit(model, one, None, one, nn.functional.cross_entropy, lambda m, loader: {"acc": 0.0}, cfg,
            torch.device("cpu"), progress=False, desc="landmarks/300w")


def test_too_few_test_items_give_no_interval_and_say_so():
    one = stats.ItemScores("mean", {"value": np.array([8.91])})
    assert one.too_few and one.ci() == {}
    assert stats.items_note(one) == {"test_items": 1, "verdict": stats.TOO_FEW_ITEMS}
    enough = stats.ItemScores("mean", {"value": np.arange(stats.MIN_TEST_ITEMS, dtype=float)})
    assert not enough.too_few and set(enough.ci()) == {"value"}
    assert stats.items_note(enough) == {"test_items": stats.MIN_TEST_ITEMS}


@pytest.mark.slow
@pytest.mark.skipif(not mmseg_available(), reason="the landmark head needs mmcv (scripts/ensure_mmcv.py)")
@pytest.mark.parametrize("n_train", [3, 5])
def test_a_tiny_folder_finishes_its_cell_without_a_verdict(tmp_path, n_train):
    """Three or five training images, one test image: the cell finishes; its row says too few test
    items for a verdict, has no interval, and the report gives no verdict against the floor."""
    from bench_tasks import evaluate

    root = _folder(tmp_path, n_train)
    df = evaluate("random:vit_tiny@64/16/d1", tasks="landmarks", datasets="300w", data_root=f"300w={root}",
                  profile="smoke", fractions=[1.0], seeds=[0], results=tmp_path / "r.jsonl",
                  work_dir=tmp_path / "wd", progress=False, log=None, device="cpu")
    assert set(df["status"]) == {"ok"}, df.get("error")
    import json

    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert rows and all(r["config"]["task"]["verdict"] == stats.TOO_FEW_ITEMS for r in rows)
    assert all(not r["ci"] for r in rows)
