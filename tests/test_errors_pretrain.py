"""Issue 15, pre-training rows: config mistakes are one-line errors (exit 2, nothing written); a run
directory refuses a silent config change (config hash, --fresh, explicit --extend); --resume means
something; `run --all` exits non-zero when pre-training fails."""

from __future__ import annotations

import json

import pytest

from paco_fr.cli import main
from paco_fr.config import load_config
from paco_fr.rundir import RunDirConflict, config_hash

TINY = [
    "model.img_size=32", "model.patch_size=8", "model.depth=1", "decoder.dim=32", "decoder.depth=1",
    "codebook.num_tokens=64", "belief.hidden=32", "data.source=random", "data.num_images=64",
    "train.batch_size=8", "train.log_every=1", "train.snapshot_every=0", "train.ckpt_every=0",
    "train.progress=false", "train.warmup_steps=2", "train.threads=1", "objective=mae",
]


def pretrain(capsys, run, *args):
    rc = main(["pretrain", "--config", "smoke", "--run-dir", str(run), *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.parametrize("argv,expect", [
    (["--config", "smok"], "did you mean 'smoke'?"),
    (["codebook.num_tokenz=5"], "unknown config key 'codebook.num_tokenz' (did you mean 'codebook.num_tokens'?)"),
    (["train.steps"], "'train.steps' is not key=value"),
    (["--config", "paper"], "data.source=tar needs data.path"),
    (["data.source=folder"], "data.source=folder needs data.path"),
])
def test_config_mistakes_are_one_line_errors(tmp_path, capsys, argv, expect):
    run = tmp_path / "run"
    rc = main(["pretrain", "--run-dir", str(run), *argv])
    text = capsys.readouterr().err
    assert rc == 2
    assert expect in text and "Traceback" not in text
    assert not run.exists()  # nothing written


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("pre") / "run"
    assert main(["pretrain", "--config", "smoke", "--run-dir", str(run), *TINY, "train.steps=2"]) == 0
    return run


def _snapshot(run):
    return {p.name: p.read_bytes() for p in (run / "config.yaml", run / "encoder.safetensors", run / "summary.json",
                                             run / "config.sha256")}


def test_run_stores_its_config_hash(finished):
    cfg = load_config("smoke", [*TINY, "train.steps=2"])
    assert (finished / "config.sha256").read_text().strip() == config_hash(cfg)
    # keys that do not change what is trained do not change the hash
    assert config_hash(load_config("smoke", [*TINY, "train.steps=2", "train.log_every=5"])) == config_hash(cfg)
    assert config_hash(load_config("smoke", [*TINY, "train.steps=2", "codebook.k=2"])) != config_hash(cfg)


def test_same_config_is_done_and_rewrites_nothing(finished, capsys):
    before = _snapshot(finished)
    rc, text = pretrain(capsys, finished, *TINY, "train.steps=2")
    assert rc == 0 and "already complete" in text
    assert _snapshot(finished) == before


def test_changed_config_is_refused(finished, capsys):
    before = _snapshot(finished)
    rc, text = pretrain(capsys, finished, *TINY, "train.steps=2", "mae.mask_ratio=0.5")
    assert rc == 2
    assert "another config" in text and "mae.mask_ratio: 0.75 -> 0.5" in text and "--fresh" in text
    assert _snapshot(finished) == before


def test_longer_run_needs_extend(finished, capsys, tmp_path):
    import shutil

    before = _snapshot(finished)
    rc, text = pretrain(capsys, finished, *TINY, "train.steps=3")
    assert rc == 2 and "train.steps 2 -> 3" in text and "--extend" in text
    assert _snapshot(finished) == before
    rc, text = pretrain(capsys, finished, *TINY, "train.steps=1")
    assert rc == 2 and "cannot be shortened" in text
    run = tmp_path / "copy"
    shutil.copytree(finished, run)
    rc, text = pretrain(capsys, run, *TINY, "train.steps=3", "--extend")
    assert rc == 0, text
    summ = json.loads((run / "summary.json").read_text())
    assert summ["steps"] == 3
    assert [json.loads(ln).get("step") for ln in (run / "log.jsonl").read_text().splitlines()
            if "loss" in json.loads(ln)] == [1, 2, 3]


def test_fresh_starts_over_with_the_new_config(finished, capsys, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished, run)
    rc, text = pretrain(capsys, run, *TINY, "train.steps=2", "mae.mask_ratio=0.5", "--fresh")
    assert rc == 0, text
    assert load_config(run / "config.yaml")["mae"]["mask_ratio"] == 0.5
    assert json.loads((run / "summary.json").read_text())["config"]["mae"]["mask_ratio"] == 0.5


def test_resume_requires_a_checkpoint(tmp_path, capsys):
    rc, text = pretrain(capsys, tmp_path / "empty", *TINY, "train.steps=2", "--resume")
    assert rc == 2 and "no checkpoint" in text
    assert not (tmp_path / "empty").exists()
    with pytest.raises(SystemExit):  # argparse: --resume and --fresh exclude each other
        main(["pretrain", "--resume", "--fresh"])


def test_python_pretrain_refuses_a_changed_config(finished):
    from paco_fr.engine import pretrain as py_pretrain

    assert py_pretrain("smoke", [*TINY, "train.steps=2"], run_dir=finished) == finished / "encoder.safetensors"
    with pytest.raises(RunDirConflict, match="codebook.k"):
        py_pretrain("smoke", [*TINY, "train.steps=2", "codebook.k=2"], run_dir=finished)


def test_study_exits_nonzero_when_every_pretraining_run_fails(tmp_path, capsys):
    from bench_tasks.cli.app import main as bench

    empty = tmp_path / "no_images"
    empty.mkdir()
    res = tmp_path / "r.jsonl"
    rc = bench(["run", "--all", "--tasks", "expression", "--no-ablations", "--no-progress", "--runs", str(tmp_path / "runs"),
                "--results", str(res), "--reports", str(tmp_path / "reports"),
                "--pretrain-override", "data.source=folder", "--pretrain-override", f"data.path={empty}"])
    out = capsys.readouterr()
    assert rc == 1
    assert "every pre-training run failed" in out.err and "paco:" in out.err and "mae:" in out.err
    assert not res.exists() and not (tmp_path / "reports").exists()


def test_study_overrides_checked_at_plan_time(tmp_path, capsys):
    from bench_tasks.cli.app import main as bench

    rc = bench(["run", "--all", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "r.jsonl"),
                "--pretrain-override", "train.stepz=3", "--pretrain-override", "oops"])
    err = capsys.readouterr().err
    assert rc == 2 and "'oops' is not KEY=VALUE" in err
    rc = bench(["run", "--all", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "r.jsonl"),
                "--pretrain-override", "train.stepz=3"])
    err = capsys.readouterr().err
    assert rc == 2 and "did you mean 'train.steps'" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r.jsonl").exists()


def test_overrides_on_either_side_of_the_options(monkeypatch):
    """`pretrain --run-dir R a=1 --fresh b=2`: every key=value is an override; anything else is refused."""
    import paco_fr.cli as cli

    seen = {}
    monkeypatch.setitem(cli.COMMANDS, "pretrain", lambda a: seen.update(vars(a)) or 0)
    assert main(["pretrain", "--run-dir", "R", "train.steps=2", "--fresh", "train.lr=0.1"]) == 0
    assert seen["overrides"] == ["train.steps=2", "train.lr=0.1"] and seen["fresh"] and seen["run_dir"] == "R"
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--run-dir", "R", "train.steps=2", "--fresh", "stray"])
    assert e.value.code == 2
