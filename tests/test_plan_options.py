"""PlanOptions: the CLI's `run` flags and evaluate()'s arguments as one frozen value."""

import argparse
import dataclasses

import pytest

from bench_tasks.plan.options import PlanOptions


def test_from_args_reads_the_flags_and_keeps_defaults_for_missing_ones():
    ns = argparse.Namespace(profile="cpu", tasks="attributes", all=False, datasets=None, protocols="linear",
                            seeds="0,1", fractions=None, device="cpu", backbones="random:vit_tiny",
                            pretrain_override=["train.steps=3"], threads=2)
    opts = PlanOptions.from_args(ns)
    assert (opts.profile, opts.tasks, opts.protocols, opts.seeds, opts.backbones) == (
        "cpu", "attributes", "linear", "0,1", "random:vit_tiny")
    assert opts.pretrain_override == ("train.steps=3",) and opts.eval_only is False
    assert PlanOptions.from_args(opts) is opts
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.tasks = "parsing"


@pytest.mark.parametrize("all_,backbones,study,expected", [
    (True, None, None, True),  # `run --all` without --backbones: the study
    (True, "random:vit_tiny", None, False),
    (False, None, None, False),
    (True, None, False, False),  # evaluate(tasks=None): every task, never the study
])
def test_is_study(all_, backbones, study, expected):
    assert PlanOptions(all=all_, backbones=backbones, study=study).is_study is expected
