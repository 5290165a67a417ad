"""The study's plan (floors, ceilings, cosine probes) and `run --all --status`. The study end to end
(`run --all --pretrain-only --pretrain-jobs 3`, then the evaluation and the report on the same runs,
every cell already done when run again) is tests/test_toy_study.py: one toy study shared with the
device study's one-call script."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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
