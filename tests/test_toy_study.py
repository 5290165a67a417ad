"""One toy study end to end, its outputs shared by two sets of checks: the study as `run --all` runs it,
and the device study's one-call script (scripts/device_study.py --tiny: the GPU call's code path at CPU
size). The study is pre-trained once, evaluated once and reported by each entry point once, in three
steps (the module's fixture), each with its own process as a user would run it:

1. `run --all --pretrain-only --pretrain-jobs 3`: stage 1 alone (methods only), its runs in their own
   processes 3 at a time, at the device study's toy sizes and step count (6);
2. `scripts/device_study.py --tiny` on the same runs and results folders: throughput, calibration, data,
   the pre-training suite (reused: the step count it calibrated must be the one the runs were made
   with, or their config conflicts and the runs fail), the evaluation of the four encoders, the
   random-init control, the floors and the ceilings on attributes and expression, the report, OUT;
3. the `run --all` command of step 1 without `--pretrain-only`: the pre-training reused (nothing
   retrained), every cell already done (the study resumes), the report.

The test of the README's walk (tests/test_readme_walk.py) evaluates the user's own backbones and data;
the pieces of the device study are tested against hand-worked values in tests/test_device_study.py."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = 6  # the device study's tiny maximum: what its calibration gives (it is capped there)
METHODS = ("paco", "mae", "farl", "mcf")  # the compared methods' runs (and MCF-style's teacher)
TASKS = ("attributes", "expression")
HEADLINE = {"attributes": "balanced_acc", "expression": "acc"}

# a module fixture: `tox -e test` (pytest-xdist `--dist loadscope`) runs the module on one worker, the study once
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _device_spec(tmp: Path):
    """The RunSpec the device study's `study` stage gives `run --all` (its own helper, so the
    command of steps 1 and 3 makes the runs and cells the device study makes)."""
    sys.path.insert(0, str(REPO / "scripts"))
    from device_study import study_settings, study_spec

    a = argparse.Namespace(steps=STEPS, tiny=True, runs=tmp / "runs", results=tmp / "results" / "smoke.jsonl",
                           work_dir=tmp / "work", device="auto", threads=None)
    return study_spec(a, study_settings("gpu", tiny=True))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toy_study")
    spec = _device_spec(tmp)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "bench_tasks", "run", "--all", "--profile", spec.profile, "--no-ablations",
           "--tasks", ",".join(spec.tasks), "--datasets", ",".join(spec.datasets),
           "--fractions", ",".join(spec.fractions), "--seeds", ",".join(spec.seeds), "--no-progress",
           "--results", str(tmp / "results" / "smoke.jsonl"), "--runs", str(tmp / "runs"),
           "--work-dir", str(tmp / "work"), "--reports", str(tmp / "reports"),
           *[a for ov in spec.pretrain_override for a in ("--pretrain-override", ov)],
           *[a for s in spec.set for a in ("--set", s)]]
    assert f"train.steps={STEPS}" in spec.pretrain_override and "linear.lr_grid=[]" in spec.set  # toy sizes

    def run(args, **kw):
        return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500, **kw)

    def mtimes():
        return {n: p.stat().st_mtime for n in (*METHODS, "mcf_teacher")
                if (p := tmp / "runs" / "smoke" / n / "encoder.safetensors").exists()}

    out = SimpleNamespace(tmp=tmp, cmd=cmd)
    # 1. stage 1 alone, its runs in their own processes 3 at a time (`--pretrain-only`: nothing evaluated)
    out.stage1 = run([*cmd, "--pretrain-jobs", "3", "--pretrain-only"])
    out.results_after_stage1 = (tmp / "results" / "smoke.jsonl").exists()
    out.exported = mtimes()
    # 2. the device study's one call on the same folders (compile left out: minutes of CPU compile)
    dev = [sys.executable, str(REPO / "scripts" / "device_study.py"), "--tiny", "--out", str(tmp / "out"),
           "--scratch", str(tmp / "scratch"), "--runs", str(tmp / "runs"), "--reports", str(tmp / "reports"),
           "--results", str(tmp / "results" / "smoke.jsonl"), "--work-dir", str(tmp / "work"),
           "--time-limit", "1500", "--no-compile", "--workers", "1", "--objectives", "simmim,paco,infer"]
    out.device = run(dev)
    log = tmp / "scratch" / "device_study.log"
    out.device_log = log.read_text() if log.exists() else out.device.stdout
    out.after_device = mtimes()
    # 3. the whole study with the command of step 1: pre-training reused, every cell already done, the report
    out.stage3 = run(cmd)
    out.after_stage3 = mtimes()
    return out


def _rows(study) -> list[dict]:
    return [json.loads(line) for line in (study.tmp / "results" / "smoke.jsonl").read_text().splitlines()
            if line.strip()]


def test_pretrain_only_stage_runs_the_suite_in_parallel(study):
    res = study.stage1
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "3 at a time" in res.stdout and "5 run(s) ready, 0 failed" in res.stdout, res.stdout[-3000:]
    assert not study.results_after_stage1
    # the four objectives and MCF-style's teacher, matched by FLOPs to PaCo-FR's steps
    root = study.tmp / "runs" / "smoke"
    plan = json.loads((root / "budget.json").read_text())
    assert plan["budget_by"] == "flops" and plan["runs"]["paco"]["steps"] == STEPS
    for name in (*METHODS, "mcf_teacher"):
        summary = json.loads((root / name / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["steps"] == plan["runs"][name]["steps"], (name, summary)
        assert summary["compute"]["steps"] == summary["steps"]
        assert summary["method"]["run"] == name  # the identity reached the summary of a parallel run
        assert (root / name / "encoder.safetensors").is_file() and (root / name / "stdout.log").is_file()
    assert set(study.exported) == {*METHODS, "mcf_teacher"}
    assert plan["runs"]["mae"]["steps"] > STEPS  # MAE's step is cheaper: more steps for the same FLOPs
    # MCF-style starts after its teacher finished: its config is written after the teacher's export
    assert os.path.getmtime(root / "mcf" / "config.yaml") >= study.exported["mcf_teacher"]


def test_device_study_one_call(study):
    """The whole one-call script at CPU size: throughput (eager), calibration, data, pre-training suite,
    evaluation, report, packing into OUT. Compile is left out here (minutes of CPU compile);
    everything else is the GPU call's code path."""
    p, log, tmp = study.device, study.device_log, study.tmp
    out = tmp / "out"
    assert p.returncode == 0, log[-3000:] + p.stderr[-3000:]
    names = sorted(x.name for x in out.iterdir())
    assert names == sorted(["env.json", "throughput.json", "throughput.md", "smoke.jsonl", "reports_smoke.tar.gz",
                            "device_study.log"]), names
    assert len(names) <= 8  # what the device tool brings back
    thr = json.loads((out / "throughput.json").read_text())
    assert {(r["objective"], r["status"]) for r in thr["rows"]} == {("simmim", "ok"), ("paco", "ok"), ("infer", "ok")}
    assert thr["pretrain_steps"] == STEPS and thr["calibration"]["rows"]
    # its pre-training stage took the runs of step 1 as they were: the calibrated count is the one they
    # were made with (another count is a config conflict, and a run that fails is left out of the rows)
    assert "pre-training suite: 5 runs in" in log and "FAILED" not in log, log[-3000:]
    assert study.after_device == study.exported
    rows = [json.loads(x) for x in (out / "smoke.jsonl").read_text().splitlines() if x.strip()]
    ok = {(r["cell"]["backbone"].split("/")[-2] if r["cell"]["backbone"].startswith("paco_fr:")
           else r["cell"]["backbone"].split(":")[0], r["cell"]["task"]) for r in rows if r["status"] == "ok"}
    for method in (*METHODS, "random"):
        for task in TASKS:
            assert (method, task) in ok, (method, task, sorted(ok))
    with tarfile.open(out / "reports_smoke.tar.gz") as tar:
        members = tar.getnames()
    assert "reports/smoke/SUMMARY.md" in members
    assert any(m.endswith("paco/summary.json") for m in members)
    summary = json.loads((tmp / "runs" / "smoke" / "paco" / "summary.json").read_text())
    assert summary["steps"] == STEPS  # the calibrated count (capped at the tiny maximum) reached every run


def test_run_all_reuses_the_runs_resumes_and_reports(study):
    res, tmp = study.stage3, study.tmp
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert study.after_stage3 == study.exported  # nothing retrained
    # the study resumes: every cell of the plan has its row (written by the device study's call)
    rows = _rows(study)
    assert f"{len(rows)} already done" in res.stdout and len(rows) == 24, res.stdout[-2000:]
    # per task: FaRL's head (`linear`) and the concatenated-feature probe (`concat`) of each backbone
    # (4 encoders + the random control), the task's floor and its supervised ceiling, all ok
    assert all(r["status"] == "ok" for r in rows)
    for task in TASKS:
        assert sorted(r["cell"]["protocol"] for r in rows if r["cell"]["task"] == task) == (
            ["concat"] * 5 + ["finetune"] + ["floor"] + ["linear"] * 5), task
    backbones = {r["cell"]["backbone"] for r in rows}
    assert any(b.startswith("random:") for b in backbones)
    assert "floor:input-free" in backbones
    assert all(r["cell"]["task"] in TASKS and HEADLINE[r["cell"]["task"]] in r["ci"] for r in rows), [
        (r["cell"], r["ci"]) for r in rows]
    # stage 3: the report, from results only
    summary_md = (tmp / "reports" / "smoke" / "SUMMARY.md").read_text()
    assert "smoke" in summary_md.lower()
    for method in ("PaCo-FR", "MAE", "FaRL", "MCF", "Random", "Floor (input-free)"):
        assert method in summary_md, method
    assert (tmp / "reports" / "smoke" / "main_table.csv").is_file()
    assert "[stage 3: report]" in res.stdout and str(tmp / "reports" / "smoke") in res.stdout
    # every row says what it is: the study's identity reached the run, the encoder and the row
    from paco_fr.export import read_metadata

    labels = {r["method"]["label"]: r for r in rows}
    assert {"PaCo-FR (ours)", "MAE", "FaRL-style", "MCF-style", "Floor (input-free)"} <= set(labels)
    assert labels["PaCo-FR (ours)"]["method"]["run"] == "paco"
    assert {r["method"]["role"] for r in rows} == {"main", "control", "floor", "ceiling"}
    assert all(r["task_version"] == 2 for r in rows)
    assert {(r["cell"]["protocol"], r["protocol_used"], r["head"]) for r in rows
            if r["method"]["role"] in ("main", "control")} == {
        ("linear", "linear", "attribute"), ("concat", "concat", "concat_linear")}
    paco_dir = tmp / "runs" / "smoke" / "paco"
    assert json.loads((paco_dir / "summary.json").read_text())["method"]["label"] == "PaCo-FR (ours)"
    assert json.loads(read_metadata(paco_dir / "encoder.safetensors")["method"])["run"] == "paco"
    # the report from the rows alone (runs/ absent): the same tables
    from bench_tasks.report.build import build_report

    shutil.move(tmp / "runs", tmp / "runs_away")
    try:
        build_report([tmp / "results" / "smoke.jsonl"], tmp / "rep_rows_only", tmp / "runs" / "smoke", "smoke")
    finally:
        shutil.rmtree(tmp / "runs", ignore_errors=True)
        shutil.move(tmp / "runs_away", tmp / "runs")
    for f in ("main_table.md", "protocols.md", "ablations.md"):
        assert (tmp / "rep_rows_only" / f).read_text() == (tmp / "reports" / "smoke" / f).read_text(), f
