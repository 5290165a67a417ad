"""Several workers on one plan, as real processes: through submitit's local executor
(`run --launcher submitit-local`), as `--num-shards 3` processes started together, and as three
`run` processes on the same plan. Every planned cell ends with exactly one ok row over the union
of the row files, no cell is computed twice, the union regenerates the tables of a one-process
run, and a worker killed mid-cell leaves a stale claim that another worker takes over.

The plan: 3 random-init tiny ViTs x (attributes, expression) x 2 seeds on `cluster_cls`
(tests/cluster_plugin.py: 48 training images of 32 px), 12 cells of about a second each, and the two
tasks' floors (`--no-ceilings`: no supervised ceilings); most of
a test's time is the workers' Python start-up (importing torch and timm).
"""

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from one_lr import one_lr_profile, one_lr_set

from bench_tasks.contracts import Cell
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.store.rowfiles import union_files, union_latest, worker_dir

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
BBS = ["random:vit_tiny@32/8/d2", "random:vit_tiny@32/16/d2", "random:vit_tiny@32/8/d3"]
# --no-ceilings: the supervised ceilings would triple the plan's compute; the floors stay (2 cells);
# one head learning rate (tests/one_lr.py): the workers are tested, not the choice on val
ONE_LR_KEYS = ("linear.lr_grid", "concat.lr_grid")
PLAN = ["--tasks", "attributes,expression", "--datasets", "cluster_cls", "--backbones", ",".join(BBS),
        "--fractions", "1", "--seeds", "0,1", "--no-progress", "--no-ceilings", *one_lr_set(ONE_LR_KEYS)]


def plan_cells():
    """What `run` plans for PLAN: the 12 encoder cells and each task's floor (bench_tasks.plan.references)."""
    from bench_tasks.plan.cells import plan_cells as plan
    from bench_tasks.plan.references import with_references

    return with_references(plan(BBS, {"attributes": ["cluster_cls"], "expression": ["cluster_cls"]}, seeds=[0, 1],
                                fractions=[1.0], profile="smoke"), ceilings=None)


@pytest.fixture(scope="module")
def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO), e.get("PYTHONPATH", "")])
    e["BENCH_TASKS_PLUGINS"] = "cluster_plugin"
    e["OMP_NUM_THREADS"] = "1"
    return e


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same plan in one process: its report tables are what the workers' union must give."""
    import cluster_plugin  # noqa: F401  (registers cluster_cls here)

    from bench_tasks.plan.cell_plan import make_plan
    from bench_tasks.registry import load_all
    from bench_tasks.run.loop import run_plan
    from bench_tasks.run.runner import RunContext
    from bench_tasks.run.worker import SharedWriter

    load_all()
    d = tmp_path_factory.mktemp("reference")
    res = d / "results" / "smoke.jsonl"
    ctx = RunContext(res, d / "wd", device="cpu", progress=False)
    with pytest.MonkeyPatch.context() as mp:  # the smoke profile with PLAN's --set, in this process only
        mp.setitem(PROFILES, "smoke", one_lr_profile(keys=ONE_LR_KEYS))
        s = run_plan(make_plan(plan_cells(), references=False), ctx, SharedWriter(), log=lambda m: None)
    assert (s.ok, s.failed) == (26, 0)  # 12 encoder cells, their 12 concatenated-feature probes, 2 floors
    assert all(r["config"]["task"]["selection"]["grid"] == [r["config"]["task"]["lr_head"]]
               for r in all_rows(res) if r["cell"]["protocol"] != "floor")  # one lr, as the workers'
    return tables(res, d / "report")


def tables(res: Path, out: Path) -> dict[str, str]:
    """{relative path: text} of the CSV tables `report` writes from a results file (and its union)."""
    from bench_tasks.report.build import build_report

    build_report([res], out, None, "smoke", command="test", reconstruct=False)
    found = {p.relative_to(out).as_posix(): p.read_text() for p in sorted(out.rglob("*.csv"))}
    assert found, f"the report wrote no CSV table under {out}"
    return found


def all_rows(res: Path) -> list[dict]:
    rows = []
    for f in union_files(res):
        if f.exists():
            rows += [json.loads(ln) for ln in f.read_text().splitlines() if ln.strip()]
    return rows


def check_union(res: Path, reference: dict, out: Path) -> list[dict]:
    """Exactly one row per planned cell over every file, all ok; same tables as one process."""
    keys = {c.key() for c in plan_cells()}
    rows = all_rows(res)
    per_key = collections.Counter(r["key"] for r in rows)
    assert set(per_key) == keys, f"missing {keys - set(per_key)}, unplanned {set(per_key) - keys}"
    dupes = {k: n for k, n in per_key.items() if n > 1}
    assert not dupes, f"cells computed more than once: {dupes}"
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["status"] != "ok"]
    assert tables(res, out) == reference
    return rows


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def started_pids(slow: Path) -> set[int]:
    return {int(p.name.split("-")[1]) for p in slow.glob("started-*")}


def claim_files(res: Path) -> dict[str, list[dict]]:
    out = collections.defaultdict(list)
    for p in sorted((worker_dir(res) / "claims").glob("*.claim")):
        key, gen, _ = p.name.split(".")
        out[key].append((int(gen), json.loads(p.read_text())))
    return {k: [info for _, info in sorted(v)] for k, v in out.items()}


@pytest.mark.slow  # worker processes: each imports torch, runs cells, may be killed
def test_submitit_local_three_jobs_kill_one_relaunch_takes_over(tmp_path, env, reference, monkeypatch):
    """4 jobs (one per backbone, one for the floors) at once via submitit's LocalExecutor; a backbone's
    job is SIGKILLed mid-cell:
    its claim goes stale (`status` says so); a second launch submits a job for the cells left
    only, which takes the stale claim over."""
    from bench_tasks import cli
    from bench_tasks.run.status import collect_status

    for k in ("PYTHONPATH", "BENCH_TASKS_PLUGINS", "OMP_NUM_THREADS"):
        monkeypatch.setenv(k, env[k])
    # a launch registers its profile (PLAN's --set applied) under its name: the bundled one back afterwards
    monkeypatch.setitem(PROFILES, "smoke", PROFILES["smoke"])
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "slow").write_text("")
    monkeypatch.setenv("CLUSTER_SLOW_DIR", str(slow))
    res = tmp_path / "results" / "smoke.jsonl"
    argv = ["run", *PLAN, "--results", str(res), "--work-dir", str(tmp_path / "wd"), "--device", "cpu",
            "--launcher", "submitit-local", "--time", "10", "--array-parallelism", "4"]
    floor_keys = {c.key() for c in plan_cells() if c.backbone.startswith("floor:")}
    codes = []
    launcher = threading.Thread(target=lambda: codes.append(cli.main(argv)))
    launcher.start()
    try:
        # 4 jobs: one per backbone and the floors' job (it reads the train split too)
        wait_for(lambda: len(started_pids(slow)) == 4, 240, "4 jobs in their first cell at once")
        claims = claim_files(res)
        victim = min(pid for pid in started_pids(slow)
                     if any(g[-1]["pid"] == pid and k not in floor_keys for k, g in claims.items()))
        os.kill(victim, signal.SIGKILL)
    finally:
        (slow / "slow").unlink()
    launcher.join(300)
    assert codes == [1]  # the killed job is reported
    jobs = [json.loads(p.read_text()) for p in (worker_dir(res) / "launches").glob("*.json")]
    assert len(jobs) == 1 and len(jobs[0]["jobs"]) == 4
    assert {j["backbone"] for j in jobs[0]["jobs"]} == {*BBS, "floor:input-free"}
    claims = claim_files(res)
    held = [k for k, gens in claims.items() if gens[-1]["pid"] == victim]
    assert len(held) == 1 and claims[held[0]][-1]["state"] == "running"
    st = collect_status(res, plan_cells())
    assert st["cells"][held[0]] == "stale"
    assert sum(v == "done" for v in st["cells"].values()) == 2 * 8 + 2  # two backbones (4 cells + 4 probes each), floors

    assert cli.main(argv) == 0  # relaunch: one job, for the killed job's backbone
    launches = sorted((worker_dir(res) / "launches").glob("*.json"))
    assert len(launches) == 2 and len(json.loads(launches[-1].read_text())["jobs"]) == 1
    gens = claim_files(res)[held[0]]
    assert len(gens) == 2 and gens[1]["state"] == "done" and gens[1]["took_over"]["pid"] == victim
    rows = check_union(res, reference, tmp_path / "report")
    assert not Path(res).exists()  # jobs write only their own files
    assert len({r["provenance"]["worker"]["worker"] for r in rows}) == 4
    assert collect_status(res, plan_cells())["cells"] == {c.key(): "done" for c in plan_cells()}


@pytest.mark.slow  # worker processes: each imports torch, runs cells, may be killed
def test_num_shards_three_processes_together(tmp_path, env, reference):
    res = tmp_path / "results" / "smoke.jsonl"
    base = [sys.executable, "-m", "bench_tasks", "run", *PLAN, "--results", str(res), "--work-dir",
            str(tmp_path / "wd"), "--device", "cpu", "--num-shards", "3"]
    procs = [subprocess.Popen(base + ["--shard-index", str(i)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(3)]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(o[-2000:] for o in outs)
    rows = check_union(res, reference, tmp_path / "report")
    from bench_tasks.plan.cell_plan import shard

    by_worker = collections.defaultdict(set)
    for r in rows:
        by_worker[r["provenance"]["worker"]["pid"]].add(r["key"])
    shards = [{c.key() for c in shard(plan_cells(), 3, i)} for i in range(3)]
    assert sorted(map(sorted, by_worker.values())) == sorted(map(sorted, shards))
    assert [len(s) for s in shards] == [8, 9, 9]  # 26 cells (12 + their 12 probes + 2 floors) in contiguous blocks
    assert len(list(worker_dir(res).glob("*.jsonl"))) == 3 and not res.exists()


@pytest.mark.slow  # worker processes: each imports torch, runs cells, may be killed
def test_three_processes_same_plan_kill_one_survivor_takes_over(tmp_path, env, reference):
    """Three `run` processes on the SAME plan (no sharding): all three are mid-cell at once, each
    on the cell it claimed; one is SIGKILLed; the other two finish the plan and one of them takes
    the dead worker's claim over at the end of its pass (dead pid on this host)."""
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "slow").write_text("")
    e = dict(env, CLUSTER_SLOW_DIR=str(slow))
    res = tmp_path / "results" / "smoke.jsonl"
    cmd = [sys.executable, "-m", "bench_tasks", "run", *PLAN, "--results", str(res), "--work-dir",
           str(tmp_path / "wd"), "--device", "cpu", "--worker-files"]
    procs = {}
    try:
        for _ in range(3):
            p = subprocess.Popen(cmd, env=e, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs[p.pid] = p
        wait_for(lambda: len(started_pids(slow)) == 3, 240, "3 workers in their first cell at once")
        assert started_pids(slow) == set(procs)
        claims = claim_files(res)
        assert len(claims) == 3 and {g[-1]["pid"] for g in claims.values()} == set(procs)  # 3 different cells
        victim = min(procs)
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait()
    finally:
        (slow / "slow").unlink()
    outs = {pid: p.communicate(timeout=400)[0] for pid, p in procs.items() if pid != victim}
    assert all(procs[pid].returncode == 0 for pid in outs), "\n".join(o[-2000:] for o in outs.values())
    assert sum("takeover" in o for o in outs.values()) == 1, "\n".join(o[-2000:] for o in outs.values())
    rows = check_union(res, reference, tmp_path / "report")
    taken = [k for k, g in claim_files(res).items() if len(g) > 1]
    assert len(taken) == 1
    gens = claim_files(res)[taken[0]]
    assert gens[0]["pid"] == victim and gens[0]["state"] == "running"
    assert gens[1]["state"] == "done" and gens[1]["took_over"]["pid"] == victim and gens[1]["pid"] in outs
    assert {r["provenance"]["worker"]["pid"] for r in rows} <= set(outs)


def test_print_sbatch_paper_profile(tmp_path, capsys, monkeypatch):
    """The sbatch script submitit would submit for the `paper` evaluation array (docs/cluster.md);
    in this process (nothing runs: a subprocess would spend its time importing torch)."""
    import cluster_plugin  # noqa: F401  (registers cluster_cls here)

    from bench_tasks.cli.app import main

    monkeypatch.setenv("BENCH_TASKS_PLUGINS", "cluster_plugin")
    monkeypatch.chdir(tmp_path)
    rc = main(["run", "--tasks", "attributes,expression", "--datasets", "cluster_cls", "--backbones", ",".join(BBS),
               "--profile", "paper", "--results", str(tmp_path / "paper.jsonl"), "--launcher", "slurm",
               "--partition", "gpu", "--account", "faces", "--print-sbatch"])
    out = capsys.readouterr()
    assert rc == 0, out.err[-3000:]
    s = out.out
    from bench_tasks.plan.cells import plan_cells as plan
    from bench_tasks.plan.references import with_references
    from bench_tasks.run.jobs import group_cells

    # paper: 3 backbones x 2 tasks x 3 protocols x 3 fractions x 3 seeds = 162 cells; 54 per backbone in jobs
    # of 24 (9 jobs); with `run`'s references: 2 floors (1 job) and the 3 archs' supervised ceilings
    # (2 tasks x 3 seeds each, 3 jobs); the concatenated-feature probes (18) join their backbone's jobs
    enc = plan(BBS, {"attributes": ["cluster_cls"], "expression": ["cluster_cls"]}, profile="paper")
    cells = with_references(enc)
    n_jobs = len(group_cells(cells, 24))
    assert (len(enc), len(cells), n_jobs) == (162, 162 + 2 + 18 + 18, 13)
    for line in ["#SBATCH --partition=gpu", "#SBATCH --account=faces", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --time=1440", "#SBATCH --mem=128GB", "#SBATCH --cpus-per-task=16",
                 f"#SBATCH --array=0-{n_jobs - 1}%{min(64, n_jobs)}", "submitit.core._submit"]:
        assert line in s, f"{line!r} not in\n{s}"
    assert not (tmp_path / "paper.d" / "jobs").exists()  # nothing submitted


def test_cell_keys_are_stable():
    c = Cell("random:vit_tiny@32/8/d2", "attributes", "cluster_cls", "linear", 1.0, 0, "smoke")
    assert c.key() == Cell(**json.loads(json.dumps(c.__dict__))).key()
    assert union_latest(Path("/nonexistent/x.jsonl")) == {}
