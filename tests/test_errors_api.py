"""Issue 15: the documented Python API. `bench_tasks.evaluate` accepts an in-memory timm ViT or a
URI, refuses bad input before anything runs, returns a DataFrame; `bench_tasks.load_results`."""

from __future__ import annotations

import pytest
import timm
import torch
from one_lr import one_lr_extra

import bench_tasks
from bench_tasks.plan.validate import PlanInvalid

KW = dict(tasks=["expression"], datasets=["synthface"], fractions=[1.0], seeds=[0], profile="smoke",
          progress=False, log=None)


@pytest.fixture
def few_faces(monkeypatch):
    """The smoke profile on a few SynthFace faces with one head learning rate (tests/one_lr.py), for
    this test only: the API's plumbing, not the numbers."""
    import dataclasses

    from bench_tasks.plan.profiles import PROFILES

    smoke = PROFILES["smoke"]
    monkeypatch.setitem(PROFILES, "smoke", dataclasses.replace(smoke, synthface_train=96, synthface_val=32,
                                                               synthface_test=64, extra=one_lr_extra(smoke.extra)))


def test_evaluate_in_memory_timm_vit_and_load_results(tmp_path, few_faces):
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=1)  # 224, not dynamic
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    res = tmp_path / "r.jsonl"
    df = bench_tasks.evaluate(vit, results=res, work_dir=tmp_path / "w", **KW)
    # the backbone's cell and the references `run` adds: the floor and the concatenated-feature probe
    assert sorted(df["protocol"]) == ["concat", "floor", "linear"]
    assert (df["status"] == "ok").all(), list(df["error"])
    row = df[df["protocol"] == "linear"].iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["task"] == "expression" and row["backbone"].startswith("memory:vit_tiny_patch16_224@")
    assert 0 <= row["headline_value"] <= 100
    assert all(torch.equal(before[k], v) for k, v in vit.state_dict().items())  # the object is untouched
    n_lines = len(res.read_text().splitlines())
    again = bench_tasks.evaluate(vit, results=res, work_dir=tmp_path / "w", **KW)  # done: not recomputed
    assert len(res.read_text().splitlines()) == n_lines
    assert list(again["headline_value"]) == list(df["headline_value"])
    loaded = bench_tasks.load_results(res)
    assert sorted(loaded["key"]) == sorted(df["key"])


def test_evaluate_uri(tmp_path, few_faces):
    df = bench_tasks.evaluate("random:vit_tiny@64/8/d1", results=tmp_path / "r.jsonl", work_dir=tmp_path / "w",
                              ceilings=False, probes=False, **KW)
    assert list(df["status"]) == ["ok", "ok"]
    assert sorted(df["backbone"]) == ["floor:input-free", "random:vit_tiny@64/8/d1"]


def test_evaluate_recomputes_a_cell_whose_settings_changed(tmp_path, few_faces):
    """The skip rule is the plan's: a changed setting between two evaluate() calls on the same
    in-memory model and results file recomputes the cells it changes, and says why."""
    from bench_tasks.store.readers import latest_rows

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=1)
    res, kw = tmp_path / "r.jsonl", dict(KW, probes=False, results=tmp_path / "r.jsonl", work_dir=tmp_path / "w")
    lines = []
    first = bench_tasks.evaluate(vit, **dict(kw, log=lines.append))
    hashes = {k: r["settings_hash"] for k, r in latest_rows(res).items()}
    n_rows = len(res.read_text().splitlines())
    changed = bench_tasks.evaluate(vit, settings={"linear.lr_head": 0.5}, **dict(kw, log=lines.append))
    now = {k: r["settings_hash"] for k, r in latest_rows(res).items()}
    key = first[first["protocol"] == "linear"]["key"].iloc[0]
    assert key in set(changed["key"]) and now[key] != hashes[key]  # the same cell, recomputed
    # every cell whose effective settings changed is recomputed (the floor's task section holds the
    # head's lr too), the others are not, and the log says why
    moved = sum(now[k] != hashes[k] for k in hashes)
    assert len(res.read_text().splitlines()) == n_rows + moved
    assert any(f"{moved} done cell(s) are recomputed: {moved} with other settings" in ln for ln in lines), lines
    before = latest_rows(res)
    same = bench_tasks.evaluate(vit, settings=["linear.lr_head=0.5"], **kw)  # now current: nothing computed
    assert latest_rows(res) == before
    assert list(same["headline_value"]) == list(changed["headline_value"])


def test_evaluate_refuses_bad_input_before_running(tmp_path):
    res = tmp_path / "r.jsonl"
    with pytest.raises(PlanInvalid) as e:
        bench_tasks.evaluate("hf-hub:x", tasks=["expresion"], seeds="abc", results=res, log=None)
    msg = str(e.value)
    assert "unknown scheme 'hf-hub'" in msg and "did you mean 'expression'" in msg and "--seeds" in msg
    assert not res.exists()
    with pytest.raises(PlanInvalid, match="neither a timm ViT-family model"):
        bench_tasks.evaluate(torch.nn.Linear(3, 3), results=res, **KW)
    assert not res.exists()


def test_load_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        bench_tasks.load_results(tmp_path / "nope.jsonl")
    with pytest.raises(AttributeError):
        bench_tasks.nonexistent  # noqa: B018


def test_evaluate_all_tasks_is_not_the_study():
    """tasks=None means every task, not `run --all`'s pre-training study: the paper config's missing
    data.path must not be reported for an evaluate() call."""
    import argparse

    from bench_tasks.plan.validate import check_args

    ns = argparse.Namespace(tasks=None, all=True, datasets=None, protocols=None, seeds=None, fractions=None,
                            device="cpu", backbones=None, profile="paper", pretrain_override=None, study=False)
    assert check_args(ns) == []
    ns.study = None  # the CLI's `run --all --profile paper` without --backbones is the study
    assert any("data.path" in p for p in check_args(ns))


def test_evaluate_in_memory_timm_cnn(tmp_path, few_faces):
    """A timm CNN object is evaluated like its `timm:` URI: read stage by stage, the object untouched."""
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    df = bench_tasks.evaluate(net, results=tmp_path / "r.jsonl", work_dir=tmp_path / "w", ceilings=False,
                              probes=False, **KW)
    row = df[df["protocol"] == "linear"].iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["backbone"].startswith("memory:")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())



def test_an_in_memory_model_fed_another_normalisation_gets_another_key():
    """The same weights with another mean / std in their pretrained config make other features: their
    rows must not be reused (the key holds the normalisation, not only the weights)."""
    from bench_tasks.session.in_memory import wrap_module

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=1)
    a = wrap_module(vit).uri
    assert wrap_module(vit).uri == a  # deterministic
    vit.pretrained_cfg = {**vit.pretrained_cfg, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    assert wrap_module(vit).uri != a
