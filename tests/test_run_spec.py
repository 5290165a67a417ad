"""RunSpec: `run --all`'s study as one frozen value built from the profile and the CLI's options."""

import argparse
import dataclasses

import pytest

from bench_tasks.plan.profiles import get_profile
from bench_tasks.plan.run_spec import build_run_spec
from bench_tasks.plan.suite import expand_seeds, study_seeds, suite_runs


def _args(**kw):
    base = dict(runs="runs", no_ablations=False, pretrain_seeds=None, pretrain_override=None, launcher="local",
                pretrain_jobs=None, budget_by="flops", no_progress=True, dry_run=False, status=False,
                eval_only=False, pretrain_only=False, no_ceilings=False, no_probes=True)
    return argparse.Namespace(**{**base, **kw})


def test_spec_holds_what_the_stages_read():
    prof = get_profile("smoke")
    spec = build_run_spec(_args(pretrain_override=["train.steps=3"]), prof, {"attributes": ["synthface"]},
                          seeds=[0, 1])
    assert spec.profile is prof and spec.runs_root == "runs" and spec.seeds == (0, 1) and spec.protocols is None
    assert spec.pretrain_seeds == study_seeds(_args(), prof)
    assert [r.name for r in spec.suite] == [r.name for r in expand_seeds(suite_runs(True, "smoke"),
                                                                         spec.pretrain_seeds)]
    assert spec.overrides == {"train.steps": 3}
    assert (spec.launcher.pretrain_jobs, spec.launcher.progress, spec.ceilings, spec.probes) == (1, False, True, False)
    assert spec.stage == "pretrain"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seeds = (2,)


@pytest.mark.parametrize("kw,stage", [(dict(dry_run=True), "name"), (dict(status=True), "name"),
                                      (dict(launcher="slurm"), "name"), (dict(eval_only=True), "eval_only")])
def test_stage(kw, stage):
    assert build_run_spec(_args(**kw), get_profile("smoke"), {}).stage == stage


def test_no_ablations_leaves_the_grid_out():
    full = build_run_spec(_args(), get_profile("smoke"), {})
    main = build_run_spec(_args(no_ablations=True), get_profile("smoke"), {})
    assert not main.ablations and len(main.suite) < len(full.suite)


def test_bad_pretrain_seeds_raise_value_error():
    with pytest.raises(ValueError):
        build_run_spec(_args(pretrain_seeds=["nosuchrun=0,1"]), get_profile("smoke"), {})
