"""The tuning stage: the same number of trials for every tuned method, PaCo-FR's defaults among its
trials, every trial at the study's FLOP budget, the objective read from `val` only, the best trial
recorded and taken by every run of the method."""

from __future__ import annotations

import json

import pytest
from one_lr import one_lr_extra

from bench_tasks.plan import tuning
from bench_tasks.plan.tuning import TrialResult, TuningError

SECTION = {"objective": "val_gain_in_margins", "tasks": ["attributes", "expression"], "trials": 2,
           "methods": {"paco": {"train.lr": [1.0e-3], "spatial.weight": [0.1, 0.25]},
                       "mae": {"train.lr": [1.0e-3, 2.0e-3], "mae.mask_ratio": [0.75]}}}


def test_the_suite_file_declares_the_same_trials_for_every_compared_method():
    sec = tuning.tuning_section()
    trials = tuning.tuning_trials()
    assert set(trials) == {"paco", "mae", "farl", "mcf"}
    assert {len(t) for t in trials.values()} == {sec["trials"]}
    # the learning rate and each method's main knob
    assert all("train.lr" in t[0].overrides for t in trials.values())
    assert "spatial.weight" in trials["paco"][0].overrides and "mae.mask_ratio" in trials["mae"][0].overrides
    tuning.check_defaults_included("smoke", trials)  # PaCo-FR's defaults are one of its trials


def test_unequal_grids_and_missing_defaults_are_refused():
    bad = json.loads(json.dumps(SECTION))
    bad["methods"]["mae"]["mae.mask_ratio"] = [0.5, 0.75]  # 4 points against trials: 2
    with pytest.raises(TuningError, match=r"methods.mae: its grid has 4 points.*trials: 2"):
        tuning.tuning_section(bad)
    with pytest.raises(TuningError, match="objective"):
        tuning.tuning_section({**SECTION, "objective": "test_accuracy"})
    no_default = {**SECTION, "methods": {"paco": {"train.lr": [1.0e-3], "spatial.weight": [0.1, 0.5]}}}
    with pytest.raises(TuningError, match="not one of its tuning trials"):
        tuning.check_defaults_included("smoke", tuning.tuning_trials(section=no_default))


def test_trials_are_a_fixed_grid_with_names():
    t = tuning.tuning_trials(["mae"], SECTION)["mae"]
    assert [x.name for x in t] == ["tune_mae_0", "tune_mae_1"]
    assert [x.overrides["train.lr"] for x in t] == [1.0e-3, 2.0e-3]
    with pytest.raises(TuningError, match="no search space"):
        tuning.tuning_trials(["dino"], SECTION)


def _row(uri, task, val, test, hib=True, metric="acc"):
    return {"status": "ok", "cell": {"backbone": uri, "task": task}, "headline": metric, "higher_is_better": hib,
            "metrics": {metric: test, "val_score": val}}


def test_objective_reads_val_only_in_margins_of_each_task():
    margins = {"attributes": {"balanced_acc": 1.0}, "landmarks": {"nme": 0.5}}
    rows = [_row("a", "attributes", 60.0, 99.0, metric="balanced_acc"), _row("r", "attributes", 57.0, 10.0, metric="balanced_acc"),
            _row("a", "landmarks", 8.0, 1.0, hib=False, metric="nme"), _row("r", "landmarks", 9.0, 50.0, hib=False, metric="nme")]
    score, per = tuning.objective(rows, "a", "r", ["attributes", "landmarks"], margins)
    assert per == {"attributes": 3.0, "landmarks": 2.0} and score == 2.5  # NME: lower is better
    # the test scores never move it
    for r in rows:
        r["metrics"][r["headline"]] = -1.0
    assert tuning.objective(rows, "a", "r", ["attributes", "landmarks"], margins)[0] == 2.5
    # a task without a val score: no objective
    assert tuning.objective(rows, "a", "r", ["attributes", "expression"], margins)[0] is None


def test_select_records_every_trial_and_the_best_one(tmp_path):
    res = [TrialResult("tune_mae_0", {"train.lr": 1e-3}, 10, 1e12, 0.5, {}),
           TrialResult("tune_mae_1", {"train.lr": 2e-3}, 10, 1e12, 1.5, {}),
           TrialResult("tune_mae_2", {"train.lr": 4e-3}, 10, 1e12, None, {})]  # failed: kept, never chosen
    rec = tuning.select("mae", res, "val_gain_in_margins", ["attributes"])
    assert rec["chosen"] == "tune_mae_1" and rec["split"] == "val" and len(rec["trials"]) == 3
    tuning.write_record(rec, tmp_path, "smoke")
    assert tuning.tuned_overrides(tmp_path, "smoke", ["mae", "paco"]) == {"mae": {"train.lr": 2e-3}}
    with pytest.raises(TuningError, match="no trial"):
        tuning.select("mae", res[2:], "val_gain_in_margins", ["attributes"])
    tuning.record_path(tmp_path, "smoke", "paco").write_text("{broken")
    with pytest.raises(TuningError, match="delete it"):
        tuning.read_record(tmp_path, "smoke", "paco")


def test_the_suite_runs_take_the_chosen_configuration(tmp_path):
    from bench_tasks.plan.study import plan_suite
    from bench_tasks.plan.suite import suite_runs, write_run_identity

    rec = tuning.select("paco", [TrialResult("tune_paco_0", {"spatial.weight": 0.1}, 64, 1e12, 2.0, {"x": 2.0})],
                        "val_gain_in_margins", ["attributes"])
    tuning.write_record(rec, tmp_path, "smoke")
    plan = {p.run.name: p for p in plan_suite("smoke", tmp_path, include_ablations=True,
                                              pretrain_seeds={"default": (0, 1)})}
    assert plan["paco"].overrides["spatial.weight"] == 0.1 and plan["paco_seed1"].overrides["spatial.weight"] == 0.1
    assert "spatial.weight" not in plan["mae"].overrides
    assert plan["abl_mask_random"].overrides["spatial.weight"] == 0.1  # the ablations ablate the tuned model
    assert plan["abl_no_spatial"].overrides["spatial.weight"] == 0  # ... their own setting wins
    paco = {r.name: r for r in suite_runs(False, "smoke")}["paco"]
    ident = write_run_identity(paco, tmp_path / "smoke" / "paco", "smoke")
    assert ident["tuning"]["chosen"] == "tune_paco_0" and ident["tuning"]["trials"][0]["objective"] == 2.0


def test_every_trial_spends_the_study_budget(tmp_path):
    plan = tuning.plan_trials("smoke", tmp_path, ["paco", "mae"], section=SECTION)
    assert [p.trial.name for p in plan] == ["tune_paco_0", "tune_paco_1", "tune_mae_0", "tune_mae_1"]
    flops = [p.flops for p in plan]
    assert max(flops) / min(flops) < 1.02  # matched FLOPs, whatever a step costs
    mae = [p for p in plan if p.trial.method == "mae"]
    assert mae[0].steps > plan[0].steps  # an MAE step is cheaper: more of them
    assert all(p.run_dir.parent.name == "tuning" for p in plan)


@pytest.mark.slow
def test_tuning_stage_end_to_end_at_toy_size(tmp_path, monkeypatch):
    """Pre-train two trials of two methods (a few steps), evaluate them beside random init on one
    cheap task, score on val, record the choice: the stage that runs before the study's stage 1.
    The stage's steps are checked, not its scores: the smoke profile at the README walk's sizes
    with one head learning rate (the cells look the profile up by name)."""
    import dataclasses

    from bench_tasks.plan.profiles import PROFILES, get_profile
    from bench_tasks.run.runner import RunContext
    from bench_tasks.run.tuning import tune_suite, tuning_results_path

    smoke = PROFILES["smoke"]
    monkeypatch.setitem(PROFILES, "smoke", dataclasses.replace(
        smoke, synthface_train=200, synthface_val=60, synthface_test=60, linear_epochs=2,
        extra=one_lr_extra(smoke.extra)))
    section = {**SECTION, "tasks": ["expression"]}
    logs = []
    ctx = RunContext(tmp_path / "results" / "smoke.jsonl", tmp_path / "wd", device="cpu", progress=False)
    recs = tune_suite(get_profile("smoke"), tmp_path / "runs", ["paco", "mae"], ctx,
                      log=logs.append, overrides={"train.steps": 4, "data.num_images": 64}, section=section)
    assert set(recs) == {"paco", "mae"}
    for m, rec in recs.items():
        assert len(rec["trials"]) == 2 and all(t["objective"] is not None for t in rec["trials"])
        assert rec["chosen"] in {t["name"] for t in rec["trials"]}
        assert (tmp_path / "runs" / "smoke" / "tuning" / f"{m}.json").is_file()
    rows = tuning_results_path(tmp_path / "results" / "smoke.jsonl")
    assert rows.name == "smoke_tuning.jsonl" and len(rows.read_text().splitlines()) == 5  # 4 trials + random init
    # a second call keeps the records (resumable, no re-tuning)
    again = tune_suite(get_profile("smoke"), tmp_path / "runs", ["paco", "mae"],
                       RunContext(tmp_path / "results" / "smoke.jsonl"), log=logs.append, section=section)
    assert again == recs
    # on another machine: the runs' small files and the rows are kept, the encoders and the records
    # are not; no trial is trained again (each summary records its encoder's hash) and the choice holds
    from bench_tasks.run import tuning as rt

    for f in (tmp_path / "runs" / "smoke" / "tuning").glob("*/encoder.safetensors"):
        f.unlink()
    for m in recs:
        (tmp_path / "runs" / "smoke" / "tuning" / f"{m}.json").unlink()

    def no_training(*a, **k):
        raise AssertionError("a trial whose rows are in was trained again")

    monkeypatch.setattr(rt, "_pretrain_one", no_training)
    kept = tune_suite(get_profile("smoke"), tmp_path / "runs", ["paco", "mae"], ctx, log=logs.append, section=section,
                      overrides={"train.steps": 4, "data.num_images": 64})
    assert {m: r["chosen"] for m, r in kept.items()} == {m: r["chosen"] for m, r in recs.items()}
    assert sum("kept (finished on another machine" in line for line in logs) == 4


def test_report_tuning_section_lists_trials_and_says_who_was_not_tuned():
    from bench_tasks.report.tuning import tuning_markdown

    def rec(method, objs):
        res = [TrialResult(f"tune_{method}_{i}", {"train.lr": 1e-3 * (i + 1)}, 100 + i, 3.04e13, o, {"attributes": o})
               for i, o in enumerate(objs)]
        return tuning.method_block_tuning(tuning.select(method, res, "val_gain_in_margins", ["attributes"]))

    def row(method, label, t=None):
        block = {"method": method, "role": "main", "label": label, **({"tuning": t} if t else {})}
        return {"status": "ok", "cell": {"backbone": f"paco_fr:runs/x/{method}/encoder.safetensors"}, "method": block}

    rows = [row("paco", "PaCo-FR (ours)", rec("paco", [0.5, 1.5])), row("mae", "MAE", rec("mae", [2.0, None])),
            row("farl", "FaRL-style")]
    md = tuning_markdown(rows)
    assert "## Tuning" in md and "Every tuned method had 2 trials." in md
    assert "Not tuned (their configuration is the suite's default): FaRL-style." in md
    assert "| tune_paco_1 | `train.lr=0.002` | 101 | 30.40 | +1.500 | +1.50 | ✓ |" in md
    assert "| tune_mae_1 | `train.lr=0.002` | 101 | 30.40 | failed / no score | — |  |" in md
    rows[1]["method"]["tuning"] = rec("mae", [2.0])
    assert "**Unequal tuning:** PaCo-FR (ours): 2 trials, MAE: 1 trials." in tuning_markdown(rows)
    assert tuning_markdown(rows[2:]) is None


def test_the_paper_cpu_study_is_declared():
    from bench_tasks.plan.profiles import get_profile, parse_pretrain_seeds
    from bench_tasks.plan.suite import expand_seeds, study_setting, suite_runs
    from bench_tasks.run.spec import RunSpec

    spec = RunSpec.from_yaml("bench_tasks/configs/studies/paper_cpu.yaml")
    assert spec.profile == "paper_cpu" and spec.all and spec.results == "results/paper_cpu.jsonl"
    prof = get_profile("paper_cpu")
    tuned = study_setting("paper_cpu", "tune")
    assert set(tuned) <= set(tuning.tuning_trials()) and {"paco", "mae"} <= set(tuned)
    runs = expand_seeds(suite_runs(True, "paper_cpu"), parse_pretrain_seeds(prof.pretrain_seeds))
    per = {}
    for r in runs:
        per[r.base_name] = per.get(r.base_name, 0) + 1
    ablations = [r.name for r in suite_runs(True, "paper_cpu") if r.role == "ablation"]
    assert len(ablations) == 12 and all(per[a] == 3 for a in ablations)  # every ablation at 3 runs
    assert per["paco"] == per["mae"] >= 3 and per["farl"] == per["mcf"] == 3
    assert study_setting("paper_cpu", "ablation_seeds") == 1


def test_a_method_with_a_teacher_gets_the_teacher_first(tmp_path, monkeypatch):
    """MCF-style's trials need the suite's teacher encoder: it is trained before them (once)."""
    from bench_tasks.plan.profiles import get_profile
    from bench_tasks.run import tuning as rt

    trained = []
    monkeypatch.setattr(rt, "_pretrain_one", lambda run, ov, rd, prof, progress=True: trained.append(run.name))
    rt._teachers_first(get_profile("smoke"), tmp_path, ["mcf_teacher"], None, "flops", lambda m: None, False)
    assert trained == ["mcf_teacher"]
    (tmp_path / "smoke" / "mcf_teacher").mkdir(parents=True)
    (tmp_path / "smoke" / "mcf_teacher" / "encoder.safetensors").write_bytes(b"x")
    rt._teachers_first(get_profile("smoke"), tmp_path, ["mcf_teacher"], None, "flops", lambda m: None, False)
    assert trained == ["mcf_teacher"]  # there: not again
