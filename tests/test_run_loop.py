"""The one loop over a plan's cells (bench_tasks.run.loop.run_plan): one skip rule (the plan's
SkipRule) whichever writer keeps the rows; the SoleWriter takes no claims, the SharedWriter claims
each cell and, under --force, leaves the rows that its launch already wrote."""

from datetime import datetime, timedelta, timezone

from bench_tasks.contracts import Cell, CellResult, Task
from bench_tasks.plan.cell_plan import SkipRule, make_plan
from bench_tasks.registry import TASKS
from bench_tasks.run.loop import run_plan
from bench_tasks.run.runner import BackboneCache, RunContext
from bench_tasks.run.worker import Claims, SharedWriter
from bench_tasks.store.readers import load_rows
from bench_tasks.store.rowfiles import union_latest, worker_dir

BB = "random:vit_tiny@32/16/d1"

if "loop_probe" not in TASKS:
    @TASKS.register("loop_probe")
    class _LoopProbe(Task):
        """A cell's score is its seed; seed 2 raises."""

        name = "loop_probe"
        default_datasets = ("synthface",)
        headline = "score"

        def run(self, ctx):
            if ctx.cell.seed == 2:
                raise RuntimeError("seed 2 always fails")
            return CellResult(metrics={"score": float(ctx.cell.seed)})


class _Stub:
    weights_hash, source = None, "stub"


class StubBackbones(BackboneCache):
    """The probe reads no backbone: none is built."""

    def get(self, uri, size):
        return _Stub()


def plan():
    return make_plan([Cell(BB, "loop_probe", "synthface", "linear", seed=s, profile="smoke") for s in range(3)],
                     references=False)


def loop(res, tmp_path, writer=None, force=False):
    ctx = RunContext(res, tmp_path / "wd", device="cpu", progress=False, force=force)
    return run_plan(plan(), ctx, writer, backbones=StubBackbones(), log=lambda m: None)


def _row(status, finished):
    return {"status": status, "provenance": {"finished": finished.isoformat()}}


def test_skip_rule_one_answer_per_row():
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    before, after = t - timedelta(seconds=5), t + timedelta(seconds=5)
    rule = SkipRule(redo={"b": "settings"})
    assert rule.state("a", _row("ok", before)) == "done"
    assert rule.state("b", _row("ok", before)) is None  # stale: recomputed
    assert rule.state("a", _row("failed", before)) is None  # a failure is retried
    assert rule.state("a", None) is None
    assert SkipRule(force=True).state("a", _row("ok", after)) is None
    launch = SkipRule(redo={"b": "settings"}, force=True, since=t.timestamp())  # a launch of several workers
    assert launch.state("a", _row("ok", after)) == "done"  # another worker of this launch wrote it
    assert launch.state("b", _row("ok", after)) == "done"
    assert launch.state("a", _row("ok", before)) is None  # forced: older rows are recomputed
    assert launch.state("a", _row("failed", after)) == "failed"  # not retried twice in one launch
    assert launch.state("a", _row("failed", before)) is None


def test_sole_and_shared_writers_give_the_same_rows(tmp_path):
    sole, shared = tmp_path / "sole" / "r.jsonl", tmp_path / "shared" / "r.jsonl"
    s1 = loop(sole, tmp_path)
    s2 = loop(shared, tmp_path, SharedWriter(Claims(rows_to="worker", worker="w1")))
    assert (s1.total, s1.ok, s1.failed, s1.skipped) == (s2.total, s2.ok, s2.failed, s2.skipped) == (3, 2, 1, 0)
    assert s2.worker == "w1" and s1.worker == ""

    def seen(res):
        return {k: (r["status"], r["metrics"].get("score")) for k, r in union_latest(res).items()}

    assert seen(sole) == seen(shared) and len(seen(sole)) == 3
    assert not (worker_dir(sole) / "claims").exists()  # this process alone: no claims
    assert len(list((worker_dir(shared) / "claims").glob("*.claim"))) == 3
    assert not shared.exists() and (worker_dir(shared) / "w1.jsonl").is_file()  # rows in the worker's own file
    assert all(r["provenance"]["worker"]["worker"] == "w1" for r in load_rows(worker_dir(shared) / "w1.jsonl"))
    # again: the two ok cells are skipped by the same rule, the failed one is retried
    a, b = loop(sole, tmp_path), loop(shared, tmp_path, SharedWriter(Claims(rows_to="worker", worker="w1")))
    assert (a.skipped, a.ok, a.failed) == (b.skipped, b.ok, b.failed) == (2, 0, 1)


def test_forced_launch_leaves_the_rows_its_other_workers_wrote(tmp_path):
    res = tmp_path / "r.jsonl"
    t0 = datetime.now(timezone.utc).timestamp() - 1
    first = loop(res, tmp_path, SharedWriter(Claims(rows_to="worker", worker="w1", since=t0)), force=True)
    assert (first.ok, first.failed) == (2, 1)
    other = loop(res, tmp_path, SharedWriter(Claims(rows_to="worker", worker="w2", since=t0)), force=True)
    assert (other.skipped, other.failed_elsewhere, other.ok, other.failed) == (2, 1, 0, 0)
    relaunch = loop(res, tmp_path, SharedWriter(Claims(rows_to="worker", worker="w2")), force=True)
    assert (relaunch.skipped, relaunch.ok, relaunch.failed) == (0, 2, 1)  # a new launch: --force recomputes


def test_should_start_leaves_cells_out_and_on_row_sees_each_row(tmp_path):
    seen = []
    ctx = RunContext(tmp_path / "r.jsonl", tmp_path / "wd", device="cpu", progress=False)
    s = run_plan(plan(), ctx, backbones=StubBackbones(), log=lambda m: None, on_row=seen.append,
                 should_start=lambda cell: cell.seed != 1)  # e.g. a deadline
    assert (s.ok, s.failed, s.skipped) == (1, 1, 0)
    assert [r["cell"]["seed"] for r in seen] == [0, 2]
    assert sorted(r["cell"]["seed"] for r in load_rows(tmp_path / "r.jsonl")) == [0, 2]
