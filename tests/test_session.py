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


def test_resolving_a_study_with_a_profile_file_registers_nothing(tmp_path, monkeypatch):
    """A study's profile file (its own `study:` and `jobs:` sections) reaches the study's planner and
    the job sizes as the Profile the Experiment holds; PROFILES (the bundled files, read at import)
    is not written."""
    import yaml

    from bench_tasks.plan.profiles import CONFIG_DIR
    from bench_tasks.run.jobs import eval_options, pretrain_options

    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load((CONFIG_DIR / "smoke.yaml").read_text())
    data["study"] = {**data["study"], "ablation_tasks": ["expression"], "ablation_runs": ["abl_k1"]}
    data["jobs"] = {"eval": {"cpus": 3, "time": 7}, "pretrain": {"cpus": 5}}
    path = tmp_path / "my_smoke.yaml"  # `name: smoke`: the study pre-trains with paco_fr's smoke config
    path.write_text(yaml.safe_dump(data))
    before = dict(PROFILES)
    spec = RunSpec(all=True, profile=str(path), tasks=("attributes", "expression"), no_ceilings=True, no_probes=True,
                   runs=str(tmp_path / "runs"), results=str(tmp_path / "r.jsonl"), reports=str(tmp_path / "reports"))
    exp = resolve(spec, log=lambda m: None)
    assert PROFILES == before and all(PROFILES[k] is v for k, v in before.items())  # nothing registered
    assert exp.profile.study["ablation_runs"] == ["abl_k1"] and PROFILES["smoke"].study != exp.profile.study
    ablations = {c.backbone.split("/")[-2]: c for c in exp.plan.cells if "/abl_" in c.backbone}
    assert set(ablations) == {"abl_k1"}  # the file's ablation_runs, not the bundled smoke's (all of them)
    assert {c.task for c in exp.plan.cells if "/abl_" in c.backbone} == {"expression"}  # its ablation_tasks
    assert set(exp.study.encoders) >= {"paco", "abl_k1"} and "abl_no_spatial" not in exp.study.encoders
    # a cluster launch of the same file: its job sizes come from the file, still without registering
    launch = resolve(spec.replace(launch=dataclasses.replace(spec.launch, launcher="submitit-local")), log=lambda m: None)
    assert PROFILES == before
    assert (eval_options(launch.spec, launch.profile).cpus, eval_options(launch.spec, launch.profile).time) == (3, 7)
    assert pretrain_options(launch.spec, launch.profile).cpus == 5
    assert eval_options(launch.spec).cpus == PROFILES["smoke"].jobs["eval"]["cpus"]  # a name: the bundled profile's
