"""RunSpec: one `run` as a frozen value, from the command line, a YAML file or Python, with its
defaults in one place; the stages read it, never the parsed arguments."""

import dataclasses

import pytest

from bench_tasks.cli import app
from bench_tasks.run.spec import LaunchOptions, RunSpec, SpecError


def _spec(*argv, base=None):
    return RunSpec.from_args(app.make_parser().parse_args(["run", *argv]), base)


def test_flags_not_given_keep_the_specs_defaults():
    assert _spec() == RunSpec()
    s = _spec("--all", "--profile", "cpu", "--pretrain-seeds", "paco_fr=0,1,2", "--launcher", "slurm", "--time", "90",
              "--tasks", "attributes,expression", "--no-ablations")
    assert (s.all, s.profile, s.pretrain_seeds, s.tasks, s.no_ablations) == (
        True, "cpu", ("paco_fr=0,1,2",), ("attributes", "expression"), True)
    assert s.launch == LaunchOptions(launcher="slurm", time=90)
    assert s.is_study and s.stage == "name" and s.work_dir == RunSpec().work_dir
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.profile = "smoke"


@pytest.mark.parametrize("kw,stage", [(dict(dry_run=True), "name"), (dict(status=True), "name"),
                                      (dict(launch=LaunchOptions("slurm")), "name"),
                                      (dict(eval_only=True), "eval_only"), ({}, "pretrain")])
def test_stage(kw, stage):
    assert RunSpec(all=True, **kw).stage == stage


def test_yaml_file_then_flags_over_it(tmp_path):
    f = tmp_path / "study.yaml"
    f.write_text("profile: cpu\nall: true\npretrain-seeds: [\"paco_fr=0,1,2\", \"mae=0,1,2\"]\nseeds: 0,1\n"
                 "launch:\n  launcher: submitit-local\n  gpus: 2\n")
    base = RunSpec.from_yaml(f)
    assert base.pretrain_seeds == ("paco_fr=0,1,2", "mae=0,1,2") and base.seeds == ("0", "1")
    assert base.launch.gpus == 2 and base.launch.launcher == "submitit-local"
    s = _spec("--profile", "smoke", "--gpus", "1", base=base)
    assert s.profile == "smoke" and s.launch.gpus == 1 and s.all and s.launch.launcher == "submitit-local"
    assert RunSpec.from_dict(s.to_dict()) == s  # what a spec file holds round-trips


def test_spec_file_errors_name_the_file_and_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("profile: cpu\nseeeds: 0,1\nlaunch: {partiton: gpu}\n")
    with pytest.raises(SpecError, match=r"bad\.yaml.*'seeeds'.*launch\.partiton"):
        RunSpec.from_yaml(f)
    f.write_text("all: yes please\n")
    with pytest.raises(SpecError, match="all must be true or false"):
        RunSpec.from_yaml(f)
    with pytest.raises(SpecError, match="not found"):
        RunSpec.from_yaml(tmp_path / "missing.yaml")


def test_the_bundled_study_specs_load():
    from pathlib import Path

    import bench_tasks

    specs = sorted((Path(bench_tasks.__file__).parent / "configs" / "studies").glob("*.yaml"))
    assert specs, "no bundled study spec"
    for p in specs:
        s = RunSpec.from_yaml(p)
        assert s.is_study, p


def test_cli_run_with_a_spec_file_plans_what_the_flags_plan(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text("tasks: [attributes]\nbackbones: [random:vit_tiny@32/8/d2]\nfractions: [1]\nno_probes: true\n"
                 f"results: {tmp_path / 'r.jsonl'}\n")
    assert app.main(["run", "--spec", str(f), "--dry-run", "--no-ceilings"]) == 0
    by_spec = capsys.readouterr().out
    assert app.main(["run", "--tasks", "attributes", "--backbones", "random:vit_tiny@32/8/d2", "--fractions", "1",
                     "--no-probes", "--no-ceilings", "--results", str(tmp_path / "r.jsonl"), "--dry-run"]) == 0
    by_flags = capsys.readouterr().out
    assert by_spec == by_flags and "2 cells in the plan" in by_spec


def test_a_bad_spec_file_is_exit_2(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text("taskz: attributes\n")
    assert app.main(["run", "--spec", str(f), "--dry-run"]) == 2
    assert "unknown key(s) ['taskz']" in capsys.readouterr().err


def test_a_bundled_spec_by_name():
    s = RunSpec.from_yaml("cpu_reference")
    assert (s.profile, s.all, s.threads, s.no_ceilings, s.results) == (
        "cpu_reference", True, 1, True, "results/cpu_reference.jsonl")


def test_api_run_is_the_cli(tmp_path, capsys):
    from bench_tasks import api

    spec = RunSpec(tasks=("attributes",), backbones=("random:vit_tiny@32/8/d2",), fractions=("1",), no_probes=True,
                   no_ceilings=True, results=str(tmp_path / "r.jsonl"), dry_run=True)
    assert api.run(spec) == 0
    by_api = capsys.readouterr().out
    assert app.main(["run", "--tasks", "attributes", "--backbones", "random:vit_tiny@32/8/d2", "--fractions", "1",
                     "--no-probes", "--no-ceilings", "--results", str(tmp_path / "r.jsonl"), "--dry-run"]) == 0
    assert capsys.readouterr().out == by_api
    assert api.run("smoke", dry_run=True, no_ablations=True, tasks=("attributes",), results=str(tmp_path / "s.jsonl"),
                   work_dir=str(tmp_path / "w"), runs=str(tmp_path / "runs")) == 0
    assert "stage 1 (pre-training, smoke config) would run or reuse" in capsys.readouterr().out


def test_profile_study_and_jobs_sections_are_read_and_checked(tmp_path):
    from bench_tasks.plan.profiles import ProfileError, get_profile, load_profile
    from bench_tasks.plan.suite import ablation_runs, ablation_tasks, study_overrides
    from bench_tasks.run.jobs import EVAL_JOB, job_defaults

    assert study_overrides("smoke")["train.steps"] == 64 and ablation_tasks("smoke") == (
        "attributes", "expression", "recognition")
    assert ablation_runs("cpu_reference")[0] == "abl_regions_gt" and ablation_runs("cpu") is None
    assert job_defaults("paper", "eval")["group_size"] == 24 and job_defaults("gpu", "eval") == EVAL_JOB
    base = (tmp_path / "p.yaml")
    text = get_profile("smoke")
    base.write_text("name: mine\nimage_size: 32\ndense_size: 32\nsynthface_train: 10\nsynthface_val: 5\n"
                    "synthface_test: 5\nbatch_size: 4\nlinear_epochs: 1\nfinetune_epochs: 1\ndense_epochs: 1\n"
                    "recognition_epochs: 1\njobs:\n  eval: {gpus: 2, time: 30}\n")
    mine = load_profile(base, register=False)
    assert mine.jobs == {"eval": {"gpus": 2, "time": 30}} and text.name == "smoke"
    base.write_text(base.read_text() + "study: {ablation_task: [attributes]}\n")
    with pytest.raises(ProfileError, match=r"p\.yaml.*study\.ablation_task"):
        load_profile(base, register=False)


def test_the_suite_file_defines_the_runs():
    from bench_tasks.plan.suite import SUITE_FILE, suite_runs

    runs = {r.name: r for r in suite_runs(True, "smoke")}
    assert SUITE_FILE.is_file() and list(runs)[:5] == ["paco", "mae", "farl", "mcf_teacher", "mcf"]
    assert runs["mcf"].teacher == "mcf_teacher" and runs["mcf_teacher"].role == "teacher"
    sizes = sorted(r.overrides["codebook.num_tokens"] for r in runs.values() if r.component == "codebook")
    assert sizes == [64, 512, 2048, 8192]  # smoke's own size (256) is the main run
    assert all(isinstance(n, int) for n in sizes)


def test_a_plugin_task_declares_its_settings_keys(monkeypatch, tmp_path):
    """`--set` / a profile's `extra` accept the keys the registered tasks declare (Task.setting_keys),
    a plug-in task's too; a key no task declares is an error naming it."""
    from bench_tasks.contracts import Task
    from bench_tasks.plan.profiles import ProfileError, load_profile, setting_keys
    from bench_tasks.registry import TASKS

    class Counting(Task):
        name = "counting"

        @classmethod
        def setting_keys(cls):
            return ("counting.max_count",)

    assert "counting.max_count" not in setting_keys()
    monkeypatch.setitem(TASKS._items, "counting", Counting)
    assert "counting.max_count" in setting_keys() and "dense_channels" in setting_keys()
    p = load_profile("smoke", ["counting.max_count=9"], register=False)
    assert p.extra["counting.max_count"] == 9
    with pytest.raises(ProfileError, match="counting.max_cnt"):
        load_profile("smoke", ["counting.max_cnt=9"], register=False)
