"""Every bad input of `run` is refused before any work starts, all together, exit 2, with the key
or the file named: spec value types, the shard, the results and work paths, an unknown profile
next to other mistakes."""

from __future__ import annotations

import os

import pytest

from bench_tasks.cli.app import main
from bench_tasks.run.spec import RunSpec, SpecError
from bench_tasks.store.paths import writable_file_problems, writable_folder_problems

TINY = ["--tasks", "expression", "--datasets", "synthface", "--backbones", "random:vit_tiny@64/8/d1",
        "--no-ceilings", "--no-probes", "--dry-run"]


@pytest.mark.parametrize("text,named", [
    ('threads: "abc"\n', "threads: expected a whole number"),
    ("launch: {num_shards: abc}\n", "launch.num_shards: expected a whole number"),
    ("launch: 5\n", "launch: expected a mapping"),
    ("pretrain_jobs: many\n", "pretrain_jobs: expected a whole number"),
    ("", "is empty"),
    ("- a\n- b\n", "got a list"),
    ("launch: {num_shards: 4, shard_index: 7}\n", "shard_index (--shard-index) 7 is not a shard"),
    ("tasks: [{a: 1}]\n", "tasks: expected a list"),
    ("results: [a, b]\n", "results: expected a text value"),
])
def test_bad_spec_values_exit_2_naming_file_and_key(tmp_path, capsys, text, named):
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    assert main(["run", "--spec", str(spec), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert named in err and str(spec) in err


def test_every_spec_problem_together(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text('threads: "abc"\npretrain_jobs: many\nlaunch: {num_shards: 4, shard_index: 7, gpus: -1}\n'
                    'bogus: 1\n')
    with pytest.raises(SpecError) as err:
        RunSpec.from_yaml(spec)
    text = str(err.value)
    assert "5 problems" in text
    for key in ("threads", "pretrain_jobs", "launch.shard_index", "launch.gpus", "'bogus'"):
        assert key in text


def test_numbers_written_as_text_and_good_values_pass():
    spec = RunSpec.from_dict({"threads": "2", "launch": {"num_shards": 4, "shard_index": 3}})
    assert spec.threads == 2 and spec.launch.shard_index == 3


def test_shard_index_out_of_range_on_the_command_line(capsys):
    assert main(["run", *TINY, "--num-shards", "4", "--shard-index", "7"]) == 2
    assert "--shard-index" in capsys.readouterr().err


def test_unknown_profile_reported_with_the_other_problems(capsys):
    assert main(["run", "--profile", "smok", "--tasks", "atributes", "--seeds", "x", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "3 problems" in err and "unknown profile 'smok'" in err and "'atributes'" in err and "--seeds" in err


def test_results_and_work_paths_checked_in_dry_run(tmp_path, capsys):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    a_dir = tmp_path / "adir"
    a_dir.mkdir()
    assert main(["run", *TINY, "--results", str(a_file / "r.jsonl"), "--work-dir", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert "--results" in err and "is a file, not a folder" in err and "--work-dir" in err
    assert main(["run", *TINY, "--results", str(a_dir)]) == 2
    assert "is a folder; expected a .jsonl file" in capsys.readouterr().err
    assert main(["status", "--results", str(a_dir)]) == 2


def test_path_checks(tmp_path):
    assert writable_file_problems(tmp_path / "new" / "deeper" / "r.jsonl") == []  # created on demand
    assert writable_folder_problems(tmp_path / "w") == []
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            assert "not writable" in writable_file_problems(ro / "r.jsonl")[0]
        finally:
            ro.chmod(0o700)
