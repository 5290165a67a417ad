"""The tuning stage of the study (before stage 1): every trial of every tuned method pre-trained
once at the study's budget and evaluated before the next one starts, on the objective's tasks
(SynthFace, the profile's first protocol, one evaluation seed, full labels) beside the random-init
control (evaluated first), scored on `val`
(bench_tasks.plan.tuning.objective), and the best trial recorded in
`runs/<profile>/tuning/<method>.json`; plan_suite then configures the method's runs from it.
The trials' rows go to their own results file (`<results stem>_tuning.jsonl`), never into the
study's tables. Resumable: a finished trial is reused (on another machine too: a trial whose summary
records its encoder's hash and whose rows are in is not trained again), a method with a record is
not tuned again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from bench_tasks.contracts import Profile
from bench_tasks.errors import cause_line
from bench_tasks.plan.cell_plan import make_plan
from bench_tasks.plan.cells import plan_cells
from bench_tasks.plan.suite import SuiteRun, finished_elsewhere, random_control, suite_runs
from bench_tasks.plan.tuning import (
    PlannedTrial,
    TrialResult,
    objective,
    plan_trials,
    read_record,
    select,
    tuning_section,
    write_record,
)
from bench_tasks.run.loop import run_plan
from bench_tasks.run.pretrain import _pretrain_one
from bench_tasks.run.runner import RunContext
from bench_tasks.store.readers import latest_rows


def tuning_results_path(results: str | Path) -> Path:
    """Where the trials' rows go: results/<stem>_tuning.jsonl beside the study's results."""
    p = Path(results)
    return p.with_name(f"{p.stem}_tuning{p.suffix or '.jsonl'}")


def tuning_cells(profile: Profile, trials: list[PlannedTrial], tasks: list[str], seed: int | None = None,
                 control: bool = True):
    """The evaluation of the trials and (`control`) of the random-init control on the objective's
    tasks: SynthFace, the profile's first protocol, one evaluation seed, fraction 1.0."""
    encoders = [f"paco_fr:{p.encoder}" for p in trials] + ([random_control(profile)] if control else [])
    return plan_cells(encoders, {t: ["synthface"] for t in tasks}, protocols=list(profile.protocols)[:1],
                      seeds=[profile.seeds[0] if seed is None else seed], fractions=[1.0], profile=profile)


def _teachers_first(profile: Profile, runs_root, teachers: list[str], overrides, budget_by, log, progress) -> None:
    """A tuned method with a teacher (MCF-style) needs the teacher's encoder before its trials: the
    suite's own teacher run (seed 0, its planned budget), trained here when it is not there yet;
    stage 1 then reuses it."""
    from bench_tasks.plan.study import plan_suite

    missing = [t for t in dict.fromkeys(teachers)
               if not (Path(runs_root) / profile.name / t / "encoder.safetensors").is_file()]
    if not missing:
        return
    for p in plan_suite(profile, runs_root, False, overrides, budget_by):
        if p.run.name in missing:
            log(f"[tuning] the teacher {p.run.name} first ({p.steps} steps) -> {p.run_dir}")
            _pretrain_one(p.run, dict(p.overrides), str(p.run_dir), profile.name, progress)


def tune_suite(profile: Profile, runs_root: str | Path, methods: list[str], ctx: RunContext,
               log: Callable[[str], None] = print, overrides: dict | None = None, budget_by: str = "flops",
               section: dict | None = None) -> dict[str, dict]:
    """Tune `methods` (suite run names); returns {method: its record}. A method that already has a
    record keeps it (delete runs/<profile>/tuning/<method>.json to tune it again). `ctx`: the
    study's RunContext (its results file names the trials' rows file; its device, data roots and
    progress bars serve the trials' cells; the trials are never forced)."""
    progress = ctx.progress
    sec = tuning_section(section)
    records = {m: read_record(runs_root, profile.name, m) for m in methods}
    todo = [m for m in methods if records[m] is None]
    for m in methods:
        if records[m] is not None:
            log(f"[tuning] {m}: chosen {records[m]['chosen']} (runs/{profile.name}/tuning/{m}.json), kept")
    if not todo:
        return records
    # lazy: the plan checks (the tasks' requirements) only when a method is tuned
    from bench_tasks.plan.validate import PlanInvalid, check_requirements

    missing = check_requirements(sec["tasks"])
    if missing:  # before any trial is pre-trained: a trial scored without a task would be chosen wrongly
        raise PlanInvalid(missing)
    planned = plan_trials(profile, runs_root, todo, overrides, budget_by, section=sec, log=log)
    runs = {r.name: r for r in suite_runs(False, profile)}
    _teachers_first(profile, runs_root, [runs[m].teacher for m in todo if runs[m].teacher], overrides, budget_by,
                    log, progress)
    tasks = list(sec["tasks"])
    rows_path = tuning_results_path(ctx.results)
    tctx = dataclasses.replace(ctx, results=rows_path, force=False, labels={})
    log(f"[tuning: evaluation] the random-init control on {', '.join(tasks)} (val decides) -> {rows_path}")
    run_plan(make_plan(tuning_cells(profile, [], tasks), references=False, profiles=profile), tctx, log=log)
    done: list[PlannedTrial] = []
    for i, p in enumerate(planned, 1):  # each trial evaluated before the next is pre-trained: its rows outlive a stop
        base = runs[p.trial.method]
        run = SuiteRun(p.trial.name, {**base.overrides, **p.trial.overrides}, "main", teacher=base.teacher)
        cells = make_plan(tuning_cells(profile, [p], tasks, control=False), references=False, profiles=profile)
        if finished_elsewhere(p.encoder) and cells.covers(f"paco_fr:{p.encoder}", _latest(rows_path)):
            log(f"[tuning: pre-training {i}/{len(planned)}] {p.trial.name}: kept (finished on another machine: "
                "its summary is here, its encoder is not, and its rows are in)")
            done.append(p)
            continue
        log(f"[tuning: pre-training {i}/{len(planned)}] {p.trial.name} ({p.trial.text()}; {p.steps} steps) "
            f"-> {p.run_dir}")
        try:
            _pretrain_one(run, dict(p.overrides), str(p.run_dir), profile.name, progress)
        except (KeyboardInterrupt, InterruptedError):
            raise
        except Exception as err:  # one failed trial is a trial without a score, not a failed study
            log(f"[tuning] {p.trial.name} FAILED: {cause_line(err)}")
            continue
        log(f"[tuning: evaluation {i}/{len(planned)}] {p.trial.name} on {', '.join(tasks)} -> {rows_path}")
        run_plan(cells, tctx, log=log)
        done.append(p)
    rows = list(latest_rows(rows_path).values()) if rows_path.is_file() else []
    rand = random_control(profile)
    finished = {p.trial.name for p in done}
    for m in todo:
        res = []
        for p in planned:
            if p.trial.method != m:
                continue
            score, per = (objective(rows, f"paco_fr:{p.encoder}", rand, tasks) if p.trial.name in finished
                          else (None, {}))
            res.append(TrialResult(p.trial.name, dict(p.trial.overrides), p.steps, p.flops, score, per,
                                   str(p.encoder)))
        records[m] = select(m, res, sec["objective"], tasks)
        path = write_record(records[m], runs_root, profile.name)
        log(f"[tuning] {m}: " + "; ".join(
            f"{r.name} ({', '.join(f'{k}={v}' for k, v in r.overrides.items())}) "
            + ("no score" if r.objective is None else f"{r.objective:+.3f}") for r in res)
            + f" -> chosen {records[m]['chosen']} ({path})")
    return records


def _latest(rows_path: Path) -> dict[str, dict]:
    return latest_rows(rows_path) if rows_path.is_file() else {}


def tuning_estimate_lines(profile: Profile, runs_root: str | Path, results: str | Path, methods: list[str],
                          overrides: dict | None = None, budget_by: str = "flops", device: str = "cpu") -> list[str]:
    """The tuning stage's estimate (bench_tasks.plan.estimate: its trials' pre-training and their
    evaluation cells), one line per stage, prefixed "tuning"; methods with a record count nothing."""
    from bench_tasks.plan.estimate import estimate_plan

    todo = [m for m in methods if read_record(runs_root, profile.name, m) is None]
    if not todo:
        return [f"estimate: tuning      done for {', '.join(methods)} (runs/{profile.name}/tuning/)"]
    trials = plan_trials(profile, runs_root, todo, overrides, budget_by)
    sec = tuning_section()
    est = estimate_plan(tuning_cells(profile, trials, list(sec["tasks"])), tuning_results_path(results), profile,
                        trials, device=device, study_arch=random_control(profile))
    counts = {m: sum(p.trial.method == m for p in trials) for m in todo}
    return ([f"estimate: tuning stage ({', '.join(f'{m} {n} trials' for m, n in counts.items())}; before stage 1):"]
            + ["  " + line for line in est.lines() if "GFLOP/s" not in line])
