"""`run --all` end to end on a minimal plan: pre-training suite (methods only, 3 steps) three runs at a
time with `--pretrain-jobs 3 --pretrain-only`, then the same command without `--pretrain-only`
(pre-training reused; evaluation of the suite's encoders and the random-init control on one task;
the report), then once more (every cell already done). One pre-training serves both stages' checks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from one_lr import one_lr_set

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_run_all_minimal_study(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "bench_tasks", "run", "--all", "--tasks", "attributes", "--no-ablations",
           "--fractions", "1", "--no-progress", "--results", str(tmp_path / "r.jsonl"),
           "--runs", str(tmp_path / "runs"),
           "--work-dir", str(tmp_path / "wd"), "--reports", str(tmp_path / "reports"),
           "--pretrain-override", "train.steps=3", "--pretrain-override", "data.num_images=64",
           "--no-ceilings",  # the ceiling fine-tunes a ViT for minutes: study_cells' planning of it is tested apart
           *one_lr_set(("linear.lr_grid", "concat.lr_grid")),  # the stages are tested here, not the choice on val
           # nor the scores: the README walk's sizes (tests/test_readme_walk.py)
           "--set", "synthface_train=200", "--set", "synthface_val=60", "--set", "synthface_test=60",
           "--set", "linear_epochs=2"]
    # stage 1 alone, its runs in their own processes 3 at a time (`--pretrain-only`: nothing evaluated)
    res = subprocess.run([*cmd, "--pretrain-jobs", "3", "--pretrain-only"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "3 at a time" in res.stdout and "5 run(s) ready, 0 failed" in res.stdout, res.stdout[-3000:]
    assert not (tmp_path / "r.jsonl").exists()
    # the four objectives and MCF-style's teacher, matched by FLOPs to PaCo-FR's 3 steps
    root = tmp_path / "runs" / "smoke"
    plan = json.loads((root / "budget.json").read_text())
    assert plan["budget_by"] == "flops" and plan["runs"]["paco"]["steps"] == 3
    exported = {}
    for name in ("paco", "mae", "farl", "mcf_teacher", "mcf"):
        summary = json.loads((root / name / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["steps"] == plan["runs"][name]["steps"], (name, summary)
        assert summary["compute"]["steps"] == summary["steps"]
        assert summary["method"]["run"] == name  # the identity reached the summary of a parallel run
        assert (root / name / "encoder.safetensors").is_file() and (root / name / "stdout.log").is_file()
        exported[name] = (root / name / "encoder.safetensors").stat().st_mtime
    assert plan["runs"]["mae"]["steps"] > 3  # MAE's step is cheaper: more steps for the same FLOPs
    # MCF-style starts after its teacher finished: its config is written after the teacher's export
    assert os.path.getmtime(root / "mcf" / "config.yaml") >= exported["mcf_teacher"]
    # the whole study: the pre-training is reused (nothing retrained), then stages 2 and 3
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for name, mtime in exported.items():
        assert (root / name / "encoder.safetensors").stat().st_mtime == mtime, name
    # stage 2: two ok rows per backbone (4 encoders + the random control) on attributes, FaRL's head
    # (`linear`) and the concatenated-feature probe (`concat`), plus the task's floor
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(rows) == 11 and all(r["status"] == "ok" for r in rows)
    assert sorted(r["cell"]["protocol"] for r in rows) == ["concat"] * 5 + ["floor"] + ["linear"] * 5
    backbones = {r["cell"]["backbone"] for r in rows}
    assert any(b.startswith("random:") for b in backbones)
    assert "floor:input-free" in backbones
    assert all(r["cell"]["task"] == "attributes" and "balanced_acc" in r["ci"] for r in rows), [
        (r["cell"], r["ci"]) for r in rows]
    # stage 3: the report, from results only
    summary_md = (tmp_path / "reports" / "smoke" / "SUMMARY.md").read_text()
    assert "smoke" in summary_md.lower()
    for method in ("PaCo-FR", "MAE", "FaRL", "MCF", "Random", "Floor (input-free)"):
        assert method in summary_md, method
    assert (tmp_path / "reports" / "smoke" / "main_table.csv").is_file()
    # every row says what it is: the study's identity reached the run, the encoder and the row
    from paco_fr.export import read_metadata

    labels = {r["method"]["label"]: r for r in rows}
    assert {"PaCo-FR (ours)", "MAE", "FaRL-style", "MCF-style", "Floor (input-free)"} <= set(labels)
    assert labels["PaCo-FR (ours)"]["method"]["run"] == "paco"
    assert {r["method"]["role"] for r in rows} == {"main", "control", "floor"}
    assert all(r["task_version"] == 2 for r in rows)
    assert {(r["cell"]["protocol"], r["protocol_used"], r["head"]) for r in rows if r["method"]["role"] != "floor"} == {
        ("linear", "linear", "attribute"), ("concat", "concat", "concat_linear")}
    paco_dir = tmp_path / "runs" / "smoke" / "paco"
    assert json.loads((paco_dir / "summary.json").read_text())["method"]["label"] == "PaCo-FR (ours)"
    assert json.loads(read_metadata(paco_dir / "encoder.safetensors")["method"])["run"] == "paco"
    # the report from the rows alone: runs/ deleted, the same tables
    import shutil

    from bench_tasks.report.build import build_report

    shutil.rmtree(tmp_path / "runs_copy", ignore_errors=True)
    shutil.copytree(tmp_path / "runs", tmp_path / "runs_copy")
    shutil.rmtree(tmp_path / "runs")
    build_report([tmp_path / "r.jsonl"], tmp_path / "rep_rows_only", tmp_path / "runs" / "smoke", "smoke")
    for f in ("main_table.md", "protocols.md", "ablations.md"):
        assert (tmp_path / "rep_rows_only" / f).read_text() == (tmp_path / "reports" / "smoke" / f).read_text(), f
    shutil.move(tmp_path / "runs_copy", tmp_path / "runs")
    # a second run resumes: pre-training reused, every cell skipped
    res2 = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res2.returncode == 0, res2.stderr[-3000:]
    assert "11 already done" in res2.stdout, res2.stdout[-2000:]


def test_study_plan_has_floors_ceilings_and_cosine_probes():
    from bench_tasks.plan.profiles import get_profile
    from bench_tasks.plan.study import study_cells
    from bench_tasks.plan.suite import random_control

    prof = get_profile("smoke")
    enc = {"paco": Path("runs/smoke/paco/encoder.safetensors"), "abl_k1": Path("runs/smoke/abl_k1/encoder.safetensors")}
    cells = study_cells(prof, enc, {"attributes": ["synthface"], "recognition": ["synthface"]})
    ceiling = "supervised:" + random_control("smoke").partition(":")[2]
    assert {(c.task, c.protocol) for c in cells if c.backbone == "floor:input-free"} == {
        ("attributes", "floor"), ("recognition", "floor")}
    assert {(c.task, c.protocol, c.fraction) for c in cells if c.backbone == ceiling} == {
        ("attributes", "finetune", 1.0), ("recognition", "finetune", 1.0)}
    cos = {c.backbone for c in cells if c.protocol == "cosine"}
    assert cos == {f"paco_fr:{enc['paco']}", random_control("smoke"), f"paco_fr:{enc['abl_k1']}"}
    no_ceiling = study_cells(prof, enc, {"attributes": ["synthface"]}, ceilings=False)
    assert not any(c.backbone.startswith("supervised:") for c in no_ceiling)


def test_status_of_a_study_only_reads(tmp_path, capsys):
    """`run --all --status` plans like a dry run: it never starts pre-training (it once did)."""
    from bench_tasks import cli

    code = cli.main(["run", "--all", "--profile", "smoke", "--runs", str(tmp_path / "runs"), "--results",
                     str(tmp_path / "r.jsonl"), "--tasks", "attributes", "--no-ablations", "--status",
                     "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    assert "would run or reuse" in out.out + out.err
    assert not list((tmp_path / "runs").rglob("*.safetensors")) and not list((tmp_path / "runs").rglob("log.jsonl"))
