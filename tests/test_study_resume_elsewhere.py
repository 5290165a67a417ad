"""A study resumed on another machine: its runs' small files (summary.json with the encoder's
recorded hash, method.json, config, log) are kept, their encoders are not. Rows computed from the
recorded weights still count; rows from other weights do not; a finished run whose cells all have
rows is not trained again; `--by-run` evaluates each run before the next is pre-trained."""

from __future__ import annotations

import json
from pathlib import Path

from bench_tasks.backbones.base import recorded_sha256
from bench_tasks.contracts import Cell
from bench_tasks.plan.cell_plan import make_plan
from bench_tasks.plan.suite import finished_elsewhere


def _finished_run(run_dir: Path, digest: str | None, status: str = "complete") -> Path:
    run_dir.mkdir(parents=True)
    summary = {"status": status, "encoder": "encoder.safetensors"}
    if digest is not None:
        summary["encoder_sha256"] = digest
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir / "encoder.safetensors"


def _row(cell: Cell, version, digest: str) -> dict:
    return {"key": cell.key(), "status": "ok", "cell": {"seed": cell.seed}, **version.row_fields(),
            "provenance": {"backbone_hash": digest}}


def test_the_recorded_hash_stands_for_an_encoder_that_is_not_here(tmp_path):
    enc = _finished_run(tmp_path / "runs" / "a", "h1")
    assert recorded_sha256(enc) == "h1" and finished_elsewhere(enc)
    assert recorded_sha256(_finished_run(tmp_path / "runs" / "b", None)) is None  # nothing recorded
    unfinished = _finished_run(tmp_path / "runs" / "c", "h3", status="interrupted")
    assert recorded_sha256(unfinished) is None and not finished_elsewhere(unfinished)
    enc.write_bytes(b"weights")  # the encoder is here: it answers for itself
    assert not finished_elsewhere(enc)


def test_rows_from_the_recorded_weights_count_rows_from_others_do_not(tmp_path):
    enc = _finished_run(tmp_path / "runs" / "a", "h1")
    uri = f"paco_fr:{enc}"
    cells = [Cell(uri, "attributes", "synthface", "linear", seed=s) for s in (0, 1)]
    plan = make_plan(cells, references=False)
    v = plan.versions()[cells[0]]
    same = {c.key(): _row(c, v, "h1") for c in cells}
    assert plan.stale_reasons(same, same) == {} and plan.covers(uri, same)
    other = {**same, cells[1].key(): _row(cells[1], v, "h0")}  # computed from an earlier training
    assert plan.stale_reasons(other, other) == {cells[1].key(): "weights"}
    assert not plan.covers(uri, other)
    assert not plan.covers(uri, {cells[0].key(): same[cells[0].key()]})  # a cell without a row
    assert not plan.covers("paco_fr:elsewhere/encoder.safetensors", same)  # no cell of it in the plan


def test_pretrain_suite_keeps_runs_and_evaluates_each_before_the_next(tmp_path, monkeypatch):
    from bench_tasks.plan.profiles import get_profile
    from bench_tasks.plan.study import PlannedRun
    from bench_tasks.plan.suite import SuiteRun
    from bench_tasks.run import pretrain as rp

    events: list[str] = []

    def fake_one(run, overrides, run_dir, profile_name, progress=True, threads=0):
        events.append(f"train {run.name}")
        if run.name == "broken":
            raise RuntimeError("diverged")
        return Path(run_dir) / "encoder.safetensors"

    monkeypatch.setattr(rp, "_pretrain_one", fake_one)
    plan = [PlannedRun(SuiteRun(n), {}, tmp_path / n, 10, {"flops_per_step": 1.0}) for n in ("a", "b", "broken", "c")]
    failed: list = []
    out = rp.pretrain_suite(get_profile("smoke"), plan, tmp_path, log=lambda m: None, failed=failed,
                            jobs=2, keep=lambda p: p.run.name == "b",
                            after=lambda p, enc: events.append(f"evaluate {p.run.name}"))
    assert events == ["train a", "evaluate a", "train broken", "train c", "evaluate c"]
    assert set(out) == {"a", "c"} and [n for n, _ in failed] == ["broken"]
    assert json.loads((tmp_path / "smoke" / "budget.json").read_text())["runs"].keys() == {"a", "b", "broken", "c"}


def test_processes_sharing_a_study_each_pretrain_other_runs(tmp_path, monkeypatch):
    """Two processes on one study (`--worker-files`): a run the other live process holds is left to
    it, with the run it teaches; the runs this one trained are marked done, so the other reuses
    them (and shares their cells) instead of training them again; a stale claim is taken over."""
    import os

    from bench_tasks.plan.profiles import get_profile
    from bench_tasks.plan.study import PlannedRun
    from bench_tasks.plan.suite import SuiteRun
    from bench_tasks.run import pretrain as rp
    from bench_tasks.run.claims import ClaimBook, Identity, identity

    trained: list[str] = []

    def fake_one(run, overrides, run_dir, profile_name, progress=True, threads=0):
        trained.append(run.name)
        return Path(run_dir) / "encoder.safetensors"

    monkeypatch.setattr(rp, "_pretrain_one", fake_one)
    runs = [SuiteRun("a"), SuiteRun("teacher", role="teacher"), SuiteRun("student", teacher="teacher"),
            SuiteRun("d"), SuiteRun("e")]
    plan = [PlannedRun(r, {}, tmp_path / r.name, 10, {"flops_per_step": 1.0}) for r in runs]
    folder = tmp_path / "claims"
    host = identity().host
    other = ClaimBook(folder, me=Identity(host=host, pid=os.getppid(), job_id=None, worker="other"))  # alive
    assert other.acquire("pretrain-teacher", "teacher").claim is not None
    dead = ClaimBook(folder, me=Identity(host=host, pid=2 ** 22 + 7, job_id=None, worker="dead"))  # no such pid
    assert dead.acquire("pretrain-e", "e").claim is not None

    logs: list[str] = []
    out = rp.pretrain_suite(get_profile("smoke"), plan, tmp_path, log=logs.append,
                            claims=rp.RunClaims(ClaimBook(folder), since=0.0))
    assert trained == ["a", "d", "e"] and set(out) == {"a", "d", "e"}
    assert any("teacher: being pre-trained by another process" in m for m in logs)
    assert any("student: left to the process that trains its teacher" in m for m in logs)
    book = ClaimBook(folder)
    assert {k: book.head(f"pretrain-{k}")[1]["state"] for k in ("a", "d", "e", "teacher")} == \
        {"a": "done", "d": "done", "e": "done", "teacher": "running"}
