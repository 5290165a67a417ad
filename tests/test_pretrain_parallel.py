"""`run --all --pretrain-jobs N --pretrain-only`: the suite's runs pre-trained N at a time in their own
processes, MCF-style's teacher before MCF-style, the same budgets as one after the other; then stop."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pretrain_jobs_parallel_and_pretrain_only(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "bench_tasks", "run", "--all", "--tasks", "attributes", "--no-ablations",
           "--no-progress", "--results", str(tmp_path / "r.jsonl"), "--runs", str(tmp_path / "runs"),
           "--pretrain-override", "train.steps=3", "--pretrain-override", "data.num_images=64",
           "--pretrain-jobs", "3", "--pretrain-only"]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "3 at a time" in res.stdout and "5 run(s) ready, 0 failed" in res.stdout, res.stdout[-3000:]
    assert not (tmp_path / "r.jsonl").exists()  # --pretrain-only: nothing evaluated
    root = tmp_path / "runs" / "smoke"
    plan = json.loads((root / "budget.json").read_text())
    done = {}
    for name in ("paco", "mae", "farl", "mcf_teacher", "mcf"):
        summary = json.loads((root / name / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["steps"] == plan["runs"][name]["steps"], name
        assert summary["method"]["run"] == name  # the identity reached the summary of a parallel run
        assert (root / name / "encoder.safetensors").is_file() and (root / name / "stdout.log").is_file()
        done[name] = (root / name / "encoder.safetensors").stat().st_mtime
    # MCF-style starts after its teacher finished: its first log line is later than the teacher's export
    first_mcf = json.loads((root / "mcf" / "log.jsonl").read_text().splitlines()[0])
    assert os.path.getmtime(root / "mcf" / "config.yaml") >= done["mcf_teacher"], first_mcf
    # the same command again reuses every run (nothing retrained)
    res2 = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res2.returncode == 0, res2.stderr[-3000:]
    for name, mtime in done.items():
        assert (root / name / "encoder.safetensors").stat().st_mtime == mtime, name


def test_pretrain_jobs_and_only_are_checked():
    from types import SimpleNamespace

    from bench_tasks.plan.validate import check_args

    base = dict(tasks=None, datasets=None, protocols=None, seeds=None, fractions=None, device="cpu",
                backbones=None, all=True, pretrain_override=None, profile="smoke")
    assert any("--pretrain-jobs 0" in p for p in check_args(SimpleNamespace(**base, pretrain_jobs=0)))
    probs = check_args(SimpleNamespace(**{**base, "backbones": "random:vit_tiny"}, pretrain_only=True))
    assert any("--pretrain-only needs" in p for p in probs)
