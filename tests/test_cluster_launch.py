"""Launch wiring without a cluster: the study's pre-training jobs and the evaluation arrays that
depend on them (a recording stand-in for submitit's SlurmExecutor), job grouping, per-profile
options, and `status` / `run --status` output. In-process and fast."""

import contextlib
import json
import time
from pathlib import Path

import pytest

from bench_tasks import cli
from bench_tasks.contracts import Cell
from bench_tasks.run import launch
from bench_tasks.run.claims import ClaimBook, Identity
from bench_tasks.run.spec import RunSpec
from bench_tasks.store.rowfiles import worker_dir


class FakeJob:
    def __init__(self, job_id):
        self.job_id = job_id


class FakeExecutor:
    """Records what launch.launch submits, as submitit's executors would receive it."""

    submitted: list = []
    counter = [1000]

    def __init__(self, kind, folder, opts, dependency):
        self.kind, self.folder, self.opts, self.dependency, self.params = kind, folder, opts, dependency, {}

    def update_parameters(self, **kw):
        self.params.update(kw)

    @contextlib.contextmanager
    def batch(self):
        yield

    def submit(self, fn):
        self.counter[0] += 1
        job = FakeJob(str(self.counter[0]))
        FakeExecutor.submitted.append((self, fn, job))
        return job


@pytest.fixture
def fake_slurm(monkeypatch):
    FakeExecutor.submitted = []
    monkeypatch.setattr(launch.shutil, "which", lambda name: f"/usr/bin/{name}")  # as on a login node
    monkeypatch.setattr(launch, "make_executor", lambda kind, folder, opts, dependency=None:
                        FakeExecutor(kind, folder, opts, dependency))
    return FakeExecutor


def test_study_pretraining_jobs_then_dependent_evaluation_arrays(tmp_path, fake_slurm, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    done = runs / "smoke" / "farl"  # a run finished earlier gets no job
    done.mkdir(parents=True)
    (done / "encoder.safetensors").write_bytes(b"x")
    (done / "summary.json").write_text(json.dumps({"status": "complete"}))
    res = tmp_path / "results" / "smoke.jsonl"
    code = cli.main(["run", "--all", "--no-ablations", "--tasks", "attributes,expression", "--fractions", "1",
                     "--results", str(res), "--runs", str(runs), "--launcher", "slurm", "--partition", "gpu",
                     "--account", "faces", "--pretrain-gpus", "4", "--pretrain-override", "train.steps=7"])
    assert code == 0
    pre = [(ex, fn, job) for ex, fn, job in fake_slurm.submitted if isinstance(fn, launch.PretrainJob)]
    ev = [(ex, fn, job) for ex, fn, job in fake_slurm.submitted if isinstance(fn, launch.EvalJob)]
    assert [fn.run_name for _, fn, _ in pre] == ["paco", "mae", "mcf_teacher", "mcf"]
    ids = {fn.run_name: job.job_id for _, fn, job in pre}
    by_name = {fn.run_name: (ex, fn) for ex, fn, _ in pre}
    # MCF-style's teacher: an MAE on the disjoint split, passed by path, trained first
    assert by_name["mcf"][0].dependency == f"afterok:{ids['mcf_teacher']}"
    assert by_name["mcf"][1].overrides["mcf.teacher"] == str(runs / "smoke" / "mcf_teacher" / "encoder.safetensors")
    assert by_name["mcf_teacher"][1].overrides["data.split"] == "teacher"
    assert by_name["paco"][0].dependency is None
    ex, fn = by_name["paco"]
    assert (ex.opts.gpus, ex.opts.tasks_per_node, ex.opts.partition, ex.opts.account) == (4, 4, "gpu", "faces")
    assert fn.overrides["train.steps"] == 7 and fn.overrides["objective"] == "paco"
    assert Path(fn.run_dir) == runs / "smoke" / "paco"
    # evaluation: one job per backbone (smoke: whole backbone), after its encoder's pre-training job
    deps = {}
    for ex, fn, _ in ev:
        bbs = {c["backbone"] for c in fn.spec.cells}
        assert len(bbs) == 1
        deps[bbs.pop()] = ex.dependency
        # 2 tasks (the floors' and the ceiling's jobs), or 2 tasks x (FaRL's head + the concat probe)
        assert len(fn.spec.cells) == (2 if fn.spec.cells[0]["backbone"].startswith(("floor:", "supervised:")) else 4)
        assert fn.spec.rows_to == "worker"
        assert Path(fn.spec.results) == res.resolve()
    enc = {n: f"paco_fr:{runs / 'smoke' / n / 'encoder.safetensors'}" for n in ("paco", "mae", "farl", "mcf")}
    assert deps[enc["paco"]] == f"afterok:{ids['paco']}"
    assert deps[enc["mcf"]] == f"afterok:{ids['mcf']}"
    assert deps[enc["farl"]] is None  # finished earlier
    control = [bb for bb in deps if bb.startswith("random:")]
    assert len(control) == 1 and deps[control[0]] is None
    # the references every plan gets (bench_tasks.plan.references): floors and the supervised ceiling
    refs = [bb for bb in deps if bb.startswith(("floor:", "supervised:"))]
    assert sorted(b.partition(":")[0] for b in refs) == ["floor", "supervised"] and all(deps[b] is None for b in refs)
    assert len({fn.spec.since for _, fn, _ in ev}) == 1  # one launch time for all workers
    rec = json.loads(next((worker_dir(res) / "launches").glob("*.json")).read_text())
    assert len(rec["jobs"]) == len(ev) == 7  # the teacher is not evaluated
    assert [j["run"] for j in rec["pretrain_jobs"]] == ["paco", "mae", "mcf_teacher", "mcf"]
    assert not runs.joinpath("smoke", "paco").exists()  # nothing was trained in the launching process


def test_group_cells_by_backbone_and_profile_defaults():
    cells = [Cell(bb, "attributes", "d", "linear", 1.0, s) for bb in ("a", "b") for s in range(5)]
    groups = launch.group_cells(cells + cells[:2], 2)  # duplicates are dropped
    assert [[c.backbone for c in g] for g in groups] == [["a", "a"], ["a", "a"], ["a"], ["b", "b"], ["b", "b"], ["b"]]
    assert [len(g) for g in launch.group_cells(cells, 0)] == [5, 5]
    args = cli.make_parser().parse_args(["run", "--tasks", "attributes", "--profile", "paper", "--launcher", "slurm",
                                         "--time", "90"])
    spec = RunSpec.from_args(args)
    opts = launch.eval_options(spec)
    assert (opts.gpus, opts.cpus, opts.time, opts.mem) == (1, 16, 90, 128)
    assert launch.group_size(spec) == 24
    s = opts.slurm()
    assert s["gpus_per_node"] == 1 and s["mem"] == "128GB" and "partition" not in s
    smoke = launch.eval_options(RunSpec.from_args(cli.make_parser().parse_args(["run", "--tasks", "attributes"])))
    assert smoke.gpus == 0 and "gpus_per_node" not in smoke.slurm()
    from bench_tasks.plan.cell_plan import shard

    assert [len(shard(cells, 3, i)) for i in range(3)] == [3, 3, 4]
    assert sum((shard(cells, 3, i) for i in range(3)), []) == cells
    with pytest.raises(ValueError, match="shard-index"):
        shard(cells, 3, 3)


def _row(cell, status, wall):
    from bench_tasks.registry import TASKS
    from bench_tasks.store.rows import make_row

    r = make_row(cell, status, headline="acc", provenance={"started": "2026-01-01T00:00:00+00:00",
                                                           "wall_time_s": wall},
                 task_version=TASKS.get(cell.task).version)
    r["metrics"] = {"acc": 50.0}
    return r


def test_status_counts_workers_and_eta(tmp_path, capsys):
    from bench_tasks.run.status import collect_status
    from bench_tasks.store.results import ResultsStore

    res = tmp_path / "results" / "smoke.jsonl"
    cells = [Cell(bb, t, "d", "linear", 1.0, s) for bb in ("bb1", "bb2") for t in ("attributes", "expression")
             for s in range(3)]
    store = ResultsStore(res)
    for c in cells[:4]:  # bb1: 3 attributes + 1 expression done
        store.append(_row(c, "ok", 10.0 if c.task == "attributes" else 30.0))
    store.append(_row(cells[4], "failed", 1.0))
    live = ClaimBook.for_results(res, timeout_s=60, heartbeat_s=1, me=Identity("node-a", 11, "55_2", "w-a"))
    live.acquire(cells[5].key(), cells[5].label())
    dead = ClaimBook.for_results(res, timeout_s=60, heartbeat_s=1, me=Identity("node-b", 12, None, "w-b"))
    c6 = dead.acquire(cells[6].key(), cells[6].label()).claim
    c6.info["heartbeat"] = time.time() - 3600
    c6._write()
    st = collect_status(res, cells)
    t = st["table"]
    assert t[("bb1", "attributes")] == {"done": 3, "running": 0, "stale": 0, "failed": 0, "todo": 0}
    assert t[("bb1", "expression")] == {"done": 1, "running": 1, "stale": 0, "failed": 1, "todo": 0}
    assert t[("bb2", "attributes")] == {"done": 0, "running": 0, "stale": 1, "failed": 0, "todo": 2}
    assert t[("bb2", "expression")] == {"done": 0, "running": 0, "stale": 0, "failed": 0, "todo": 3}
    assert [w["worker"] for w in st["workers"]] == ["w-a"] and st["workers"][0]["job_id"] == "55_2"
    # left: 1 failed + 1 running (expression, 30 s each) + 1 stale + 2 todo (attributes, 10 s) + 3 expression
    assert st["remaining_s"] == pytest.approx(30 + 30 + 10 + 2 * 10 + 3 * 30, abs=1.0)
    assert st["eta_s"] == pytest.approx(st["remaining_s"])  # one worker in flight
    assert cli.main(["status", "--results", str(res)]) == 0  # the plan = rows + claims here
    out = capsys.readouterr().out
    assert collect_status(res)["cells"] == {k: v for k, v in st["cells"].items()
                                             if k in {c.key() for c in cells[:7]}}
    assert "workers in flight" in out and "w-a" in out and "55_2" in out and "cell(s) left" in out


def test_run_status_and_dry_run_read_the_union(tmp_path, capsys, monkeypatch):
    import cluster_plugin  # noqa: F401

    monkeypatch.setenv("BENCH_TASKS_PLUGINS", "cluster_plugin")
    res = tmp_path / "results" / "smoke.jsonl"
    plan = ["run", "--tasks", "attributes", "--datasets", "cluster_cls", "--backbones", "random:vit_tiny@32/8/d2",
            "--seeds", "0,1", "--fractions", "1", "--results", str(res), "--no-ceilings",
            "--no-probes"]  # + the task's floor
    from bench_tasks.store.results import ResultsStore
    from bench_tasks.store.rowfiles import worker_file

    cell = Cell("random:vit_tiny@32/8/d2", "attributes", "cluster_cls", "linear", 1.0, 1, "smoke")
    ResultsStore(worker_file(res, "node-a-1")).append(_row(cell, "ok", 2.0))  # only in a worker file
    assert cli.main(plan + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1 already done" in out and "2 to do" in out
    assert cli.main(plan + ["--status"]) == 0
    out = capsys.readouterr().out
    assert "random:vit_tiny@32/8/d2" in out and "2 cell(s) left" in out
    assert cli.main(plan + ["--num-shards", "2", "--shard-index", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    # shards are contiguous blocks of the plan [floor, seed 0, seed 1]: shard 1 holds both encoder cells
    assert "2 cells in the plan" in out and "1 already done" in out and "1 to do" in out


def test_slurm_without_sbatch_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import shutil

    import cluster_plugin  # noqa: F401

    if shutil.which("sbatch"):
        pytest.skip("this machine has SLURM")
    monkeypatch.setenv("BENCH_TASKS_PLUGINS", "cluster_plugin")
    code = cli.main(["run", "--tasks", "attributes", "--datasets", "cluster_cls", "--backbones",
                     "random:vit_tiny@32/8/d2", "--results", str(tmp_path / "r.jsonl"), "--launcher", "slurm"])
    assert code == 2 and "needs SLURM's sbatch" in capsys.readouterr().err
    assert not (tmp_path / "r.d").exists()


def test_jobs_get_the_launchers_effective_profile():
    """A user's --set (or YAML profile) reaches a cluster job: the spec carries the plan's profile
    and the job's plan holds it (pickled as submitit would); no process registers it."""
    import pickle

    from bench_tasks import api
    from bench_tasks.contracts import Cell
    from bench_tasks.plan.cell_plan import make_plan
    from bench_tasks.plan.profiles import load_profile
    from bench_tasks.run.jobs import job_plan

    bundled = api.PROFILES["cpu"]
    mine = load_profile("cpu", ["recognition.margin=arcface", "ceiling_lr=0.003"])
    assert api.PROFILES["cpu"] is bundled  # loading a profile registers nothing
    cell = Cell("random:vit_tiny", "attributes", "synthface", "linear", profile="cpu")
    plan = make_plan([cell], references=False, profiles=mine)
    ws = pickle.loads(pickle.dumps(worker_spec_of(plan)))  # pickled as submitit would
    got = job_plan(ws).profile_of(cell)
    assert api.PROFILES["cpu"] is bundled
    assert got.extra["recognition"]["margin"] == "arcface" and got.extra["ceiling_lr"] == 0.003
    assert got.seeds == bundled.seeds and got.image_size == bundled.image_size


def worker_spec_of(plan):
    from dataclasses import asdict

    from bench_tasks.run.jobs import WorkerSpec, effective_profiles

    return WorkerSpec(cells=[asdict(c) for c in plan.cells], results="r.jsonl", work_dir="w", cwd=".",
                      profiles=effective_profiles(plan.cells, plan.profiles))


def test_study_pretraining_jobs_per_pretrain_seed(tmp_path, fake_slurm, monkeypatch):
    """--pretrain-seeds: one pre-training job per (run, seed); MCF-style's seed k waits for its
    teacher's seed k; each seed's encoder gets its own evaluation job."""
    monkeypatch.chdir(tmp_path)
    runs, res = tmp_path / "runs", tmp_path / "results" / "smoke.jsonl"
    code = cli.main(["run", "--all", "--no-ablations", "--tasks", "attributes", "--fractions", "1", "--no-ceilings",
                     "--no-probes", "--results", str(res), "--runs", str(runs), "--launcher", "slurm",
                     "--partition", "gpu", "--pretrain-override", "train.steps=7", "--pretrain-seeds", "0,1",
                     "--pretrain-seeds", "farl=0"])
    assert code == 0
    pre = {fn.run_name: (ex, fn, job) for ex, fn, job in fake_slurm.submitted if isinstance(fn, launch.PretrainJob)}
    assert set(pre) == {"paco", "mae", "farl", "mcf_teacher", "mcf", "paco_seed1", "mae_seed1",
                        "mcf_teacher_seed1", "mcf_seed1"}
    assert pre["mcf_seed1"][0].dependency == f"afterok:{pre['mcf_teacher_seed1'][2].job_id}"
    assert pre["mcf_seed1"][1].overrides["mcf.teacher"] == str(runs / "smoke" / "mcf_teacher_seed1" /
                                                               "encoder.safetensors")
    assert pre["paco_seed1"][1].overrides["seed"] == 1 and "seed" not in pre["paco"][1].overrides
    assert pre["paco_seed1"][1].overrides["train.steps"] == pre["paco"][1].overrides["train.steps"] == 7
    evals = {c["backbone"] for ex, fn, _ in fake_slurm.submitted if isinstance(fn, launch.EvalJob)
             for c in fn.spec.cells}
    assert f"paco_fr:{runs / 'smoke' / 'paco_seed1' / 'encoder.safetensors'}" in evals
    assert f"paco_fr:{runs / 'smoke' / 'paco' / 'encoder.safetensors'}" in evals
