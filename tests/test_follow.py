"""`run --all --eval-only --follow`: the evaluation worker that keeps up with a pre-training process.
It passes again while runs are still training (each pass without the report), stops after a pass
that began with every run finished (the report then), and refuses to run without --eval-only."""

from __future__ import annotations

import pytest

from bench_tasks.run.spec import RunSpec, SpecError
from bench_tasks.session import run as session_run


class _Exp:
    def __init__(self, spec, n=3):
        self.spec, self.plan = spec, list(range(n))


def test_follow_passes_until_every_run_has_finished_and_reports_once(monkeypatch):
    waiting = [["paco_seed1", "mae_seed1"], ["mae_seed1"], []]
    passes, slept = [], []
    monkeypatch.setattr(session_run, "runs_still_training", lambda spec: waiting.pop(0))
    monkeypatch.setattr(session_run, "runs_failed", lambda spec: {})
    monkeypatch.setattr(session_run, "resolve", lambda spec, log=print: _Exp(spec))
    monkeypatch.setattr(session_run, "execute", lambda exp: passes.append(exp.spec.no_report) or 0)
    spec = RunSpec(all=True, eval_only=True, follow=True, profile="smoke")
    assert session_run.follow(spec, sleep=slept.append) == 0
    assert passes == [True, True, False]  # the report only after the last pass
    assert len(slept) == 2 and all(0 <= s <= session_run.FOLLOW_EVERY_S for s in slept)


def test_follow_waits_when_no_run_has_finished_yet_and_keeps_the_worst_exit_code(monkeypatch):
    from bench_tasks.session.planning import StageFailed

    waiting = [["paco"], ["paco"], []]
    calls = []

    def resolve(spec, log=print):
        calls.append(spec.no_report)
        if len(calls) == 1:
            raise StageFailed("--eval-only: no finished pre-training run under runs/smoke")
        return _Exp(spec)

    codes = [1, 0]
    monkeypatch.setattr(session_run, "runs_still_training", lambda spec: waiting.pop(0))
    monkeypatch.setattr(session_run, "runs_failed", lambda spec: {})
    monkeypatch.setattr(session_run, "resolve", resolve)
    monkeypatch.setattr(session_run, "execute", lambda exp: codes.pop(0))
    spec = RunSpec(all=True, eval_only=True, follow=True, profile="smoke", no_report=True)
    assert session_run.follow(spec, sleep=lambda s: None) == 1  # a pass with a failed cell
    assert calls == [True, True, True]  # --no-report holds on the last pass too


def test_follow_needs_eval_only():
    with pytest.raises(SpecError, match="follow"):
        RunSpec.from_dict({"all": True, "follow": True})
    assert RunSpec.from_dict({"all": True, "eval_only": True, "follow": True}).follow


def test_runs_still_training_names_the_suites_unfinished_runs(tmp_path):
    spec = RunSpec(all=True, eval_only=True, follow=True, profile="smoke", runs=str(tmp_path), no_ablations=True)
    left = session_run.runs_still_training(spec)
    assert left and "paco" in left and not any(n.startswith("abl_") for n in left)


def test_eval_only_processes_claim_their_cells():
    """Several --eval-only processes on one study share its cells (claims; rows to the results file);
    with --worker-files each writes its own file; a lone run claims nothing."""
    from bench_tasks.run.spec import LaunchOptions
    from bench_tasks.session.execute import InProcess, SharedResults, executor_for

    ex = executor_for(RunSpec(all=True, eval_only=True))
    assert isinstance(ex, SharedResults) and ex.rows_to == "main"
    ex = executor_for(RunSpec(all=True, eval_only=True, launch=LaunchOptions(worker_files=True)))
    assert isinstance(ex, SharedResults) and ex.rows_to == "worker"
    assert type(executor_for(RunSpec(all=True))) is InProcess


def test_follow_stops_waiting_for_a_run_whose_pretraining_failed(monkeypatch, tmp_path):
    """A failed run never finishes: --follow ends (exit 1) once only failed runs are left, naming
    them; the process that failed the run wrote failed.json into its run directory."""
    from bench_tasks.run import pretrain as stage1

    spec = RunSpec(all=True, eval_only=True, follow=True, profile="smoke", runs=str(tmp_path), no_ablations=True)
    left = session_run.runs_still_training(spec)
    logged, failed = [], []
    stage1._run_failed("mae", "RuntimeError: loss is nan", logged.append, failed, run_dir=tmp_path / "smoke" / "mae")
    assert failed == [("mae", "RuntimeError: loss is nan")] and "FAILED" in logged[0]
    assert session_run.runs_still_training(spec) == [n for n in left if n != "mae"]
    assert "loss is nan" in session_run.runs_failed(spec)["mae"]

    monkeypatch.setattr(session_run, "runs_still_training", lambda spec: [])
    monkeypatch.setattr(session_run, "resolve", lambda spec, log=print: _Exp(spec))
    monkeypatch.setattr(session_run, "execute", lambda exp: 0)
    assert session_run.follow(spec, sleep=lambda s: None) == 1

    # tried again: the file goes when the run starts, so the run is waited for again
    from bench_tasks.plan.suite import FAILED_NAME

    def retry(profile_name, ov, run_dir):
        assert not (tmp_path / "smoke" / "mae" / FAILED_NAME).exists()
        raise InterruptedError("stopped")

    monkeypatch.setattr(stage1, "pretrain", retry)
    monkeypatch.setattr(stage1, "write_run_identity", lambda *a, **k: None)
    with pytest.raises(InterruptedError):
        stage1._pretrain_one(None, {}, str(tmp_path / "smoke" / "mae"), "smoke")
    assert session_run.runs_failed(spec) == {}

