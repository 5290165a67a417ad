"""The session layer: resolve(RunSpec) -> Experiment holds the Profile object and the Plan with its
versions, and trains and writes nothing; a `--set` change reaches the cells through the plan, not a
registry (bench_tasks.session)."""

from __future__ import annotations

import dataclasses

import pytest

from bench_tasks.plan.profiles import PROFILES
from bench_tasks.run.spec import RunSpec
from bench_tasks.session.experiment import resolve


def test_resolving_the_study_trains_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = RunSpec(all=True, tasks=("attributes",), no_ablations=True, no_ceilings=True, runs=str(tmp_path / "runs"),
                   results=str(tmp_path / "r.jsonl"), reports=str(tmp_path / "reports"))
    exp = resolve(spec, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []  # no run folder, no results file, no budget plan
    assert {"paco", "mae", "farl", "mcf"} <= set(exp.study.encoders)
    uris = {c.backbone for c in exp.plan.cells}
    assert f"paco_fr:{exp.study.encoders['paco']}" in uris  # the encoders' cells, planned by name
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.plan = None  # type: ignore[misc]
    assert all(exp.plan.profile_of(c) is exp.profile for c in exp.plan.cells)


def test_a_set_override_reaches_the_plan_not_the_registry(tmp_path):
    bundled = PROFILES["smoke"]
    spec = RunSpec(tasks=("expression",), datasets=("synthface",), backbones=("random:vit_tiny@32/16/d1",),
                   set=("linear.lr_head=0.5",), no_ceilings=True, no_probes=True, results=str(tmp_path / "r.jsonl"))
    exp = resolve(spec, log=lambda m: None)
    assert exp.profile.extra["linear.lr_head"] == 0.5 and exp.profile.name == "smoke"
    assert PROFILES["smoke"] is bundled and "linear.lr_head" not in (bundled.extra or {})  # nothing registered
    cell = next(c for c in exp.plan.cells if c.protocol == "linear")
    assert exp.plan.profile_of(cell) is exp.profile
    plain = resolve(dataclasses.replace(spec, set=()), log=lambda m: None)
    assert plain.plan.versions()[cell].settings != exp.plan.versions()[cell].settings  # the version says so
    assert not (tmp_path / "r.jsonl").exists()
