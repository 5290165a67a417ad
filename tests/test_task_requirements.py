"""A task's missing requirement (the dense tasks: mmsegmentation with mmcv's compiled ops) is a plan
problem, found before anything is pre-trained, trained or written: never a failed row per cell, never
a tuning trial scored without the task."""

from __future__ import annotations

import pytest

import bench_tasks
from bench_tasks.heads import dense
from bench_tasks.plan.validate import PlanInvalid, check_requirements


@pytest.fixture
def no_mmseg(monkeypatch):
    def missing():
        raise ImportError("the dense tasks use mmsegmentation's UPerHead, which needs mmcv==2.1.0 with compiled "
                          "ops; run `python scripts/ensure_mmcv.py` (test double)")

    monkeypatch.setattr(dense, "require_mmseg", missing)


def test_dense_tasks_name_what_is_missing(no_mmseg):
    problems = check_requirements(["attributes", "parsing", "landmarks", "parsing"])
    assert [p.split(":")[0] for p in problems] == ["parsing", "landmarks"]
    assert all("ensure_mmcv.py" in p for p in problems)
    assert check_requirements(["attributes", "expression", "recognition"]) == []


def test_a_plan_with_a_dense_task_is_refused_before_anything_runs(tmp_path, no_mmseg):
    res = tmp_path / "r.jsonl"
    with pytest.raises(PlanInvalid, match="parsing: .*ensure_mmcv"):
        bench_tasks.evaluate("random:vit_tiny@64/8/d1", tasks=["parsing"], datasets=["synthface"], seeds=[0],
                             profile="smoke", results=res, work_dir=tmp_path / "w", progress=False, log=None)
    assert not res.exists()


def test_the_tuning_stage_checks_its_tasks_before_pre_training(tmp_path, no_mmseg, monkeypatch):
    from bench_tasks.plan.profiles import PROFILES
    from bench_tasks.run import tuning
    from bench_tasks.run.runner import RunContext

    def never(*a, **k):
        raise AssertionError("a trial was pre-trained although a tuning task cannot run here")

    monkeypatch.setattr(tuning, "_pretrain_one", never)
    with pytest.raises(PlanInvalid, match="parsing: "):
        tuning.tune_suite(PROFILES["smoke"], tmp_path / "runs", ["paco"], RunContext(results=tmp_path / "r.jsonl"),
                          log=lambda s: None, section={"objective": "val_gain_in_margins", "tasks": ["attributes", "parsing"],
                                   "trials": 2, "methods": {"paco": {"train.lr": [1.0e-3, 2.0e-3]}}})
