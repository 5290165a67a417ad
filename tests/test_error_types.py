"""One error hierarchy: every error the harness raises for bad input or a failed stage is a
bench_tasks.errors.BenchError, and the CLI's exit code comes from its type."""

from __future__ import annotations

import pickle

from bench_tasks import errors


def test_every_harness_error_has_one_base_and_its_exit_code():
    from bench_tasks.backbones.timm_file import CheckpointError
    from bench_tasks.contracts import DatasetLayoutError
    from bench_tasks.datasets._readers import CorruptImageError
    from bench_tasks.datasets.verification_bin import UnsafePickleError
    from bench_tasks.plan.budget import BudgetError
    from bench_tasks.plan.profiles import ProfileError
    from bench_tasks.plan.validate import PlanInvalid
    from bench_tasks.run.spec import SpecError
    from bench_tasks.session.planning import StageFailed

    kinds = {PlanInvalid: errors.PlanError, ProfileError: errors.PlanError, BudgetError: errors.PlanError,
             SpecError: errors.PlanError, errors.UnknownName: errors.PlanError,
             DatasetLayoutError: errors.DataError, CorruptImageError: errors.DataError,
             UnsafePickleError: errors.DataError, CheckpointError: errors.BackboneError,
             StageFailed: errors.RunError}
    for cls, kind in kinds.items():
        assert issubclass(cls, kind) and issubclass(cls, errors.BenchError), cls
    assert not issubclass(errors.PlanError, SystemExit)  # a library error never exits the caller's process
    assert errors.exit_code(ProfileError("x")) == 2 and errors.exit_code(StageFailed("x")) == 1
    assert errors.exit_code(RuntimeError("x")) == 1
    # the standard bases stay, for callers that catch them
    assert issubclass(DatasetLayoutError, FileNotFoundError) and issubclass(CheckpointError, KeyError)
    assert issubclass(UnsafePickleError, pickle.UnpicklingError) and issubclass(PlanInvalid, ValueError)


def test_cli_exit_code_comes_from_the_type(capsys, monkeypatch):
    from bench_tasks.cli import app

    def fails(kind):
        def cmd(args):
            raise kind("the stage failed, said in words that match no prefix")
        return cmd

    for kind, code in ((errors.RunError, 1), (errors.DataError, 2), (errors.PlanError, 2)):
        parser = app.make_parser()
        monkeypatch.setattr(app, "make_parser", lambda p=parser: p)
        parser._subparsers._group_actions[0].choices["status"].set_defaults(func=fails(kind))
        assert app.main(["status", "--results", "x.jsonl"]) == code
        assert "error: the stage failed" in capsys.readouterr().err


def test_unknown_task_listed_once(capsys):
    from bench_tasks.cli.app import main

    assert main(["run", "--tasks", "attributez", "--backbones", "random:vit_tiny", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("unknown task") + err.count("did you mean") >= 1
    assert err.count("'attributez'") == 1, err
