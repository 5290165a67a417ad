"""The tuning stage of the study, as data: each compared method's search space and trials
(bench_tasks/configs/suite/default.yaml `tuning:`), the FLOP-matched length of every trial, the
objective that scores a trial on `val`, the choice of the best trial, and the record of it
(`runs/<profile>/tuning/<method>.json`) that every later run of the method is configured from.

    trials = tuning_trials("cpu_reference")          # {method: [Trial, ...]}, the same count each
    plan = plan_trials("cpu_reference", "runs")     # [PlannedTrial] with matched steps
    score = objective(rows, trial_uri, random_uri)  # val only
    record = select(method, scored_trials)          # the best trial, written by write_record
    tuned_overrides("runs", "cpu_reference")        # {method: the chosen trial's overrides}

Running the trials (pre-training, evaluation) is bench_tasks.run.tuning.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench_tasks.contracts import Profile
from bench_tasks.plan.budget import match_steps
from bench_tasks.plan.profiles import profile_name as name_of
from bench_tasks.plan.suite import REFERENCE_RUN, study_overrides, suite_definition, suite_runs
from bench_tasks.stats.margins import margin_for
from bench_tasks.store.method import dotted_value
from paco_fr.atomic import write_text_atomic

TUNING_DIR = "tuning"  # runs/<profile>/tuning/: the trials' run folders and the records
OBJECTIVES = ("val_gain_in_margins",)


class TuningError(ValueError):
    """A tuning section that cannot be run (names the key and what was expected)."""


@dataclass(frozen=True)
class Trial:
    method: str  # the suite's run name of the method (paco, mae, farl, mcf)
    index: int
    overrides: dict = field(hash=False, compare=False)  # dotted config keys of the search space

    @property
    def name(self) -> str:
        return f"tune_{self.method}_{self.index}"

    def text(self) -> str:
        return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.overrides.items())


@dataclass
class PlannedTrial:
    trial: Trial
    overrides: dict  # every pre-training override: the method's, the study's, the trial's, train.steps
    run_dir: Path
    steps: int
    flops: float  # model FLOPs the trial spends (steps x FLOPs per step)
    cost: dict = field(default_factory=dict)  # paco_fr.flops.step_cost (for the estimate, like PlannedRun.cost)

    @property
    def encoder(self) -> Path:
        return self.run_dir / "encoder.safetensors"

    @property
    def run(self) -> Trial:  # the estimate names a planned run by `.run.name`
        return self.trial


def tuning_section(section: dict | None = None) -> dict:
    """The suite file's `tuning:` section, checked: `trials` (one number for every method),
    `methods` ({method: {dotted key: [values]}}, a full grid of exactly `trials` points each),
    `tasks` and `objective` (one of OBJECTIVES)."""
    sec = suite_definition().get("tuning") if section is None else section
    where = "bench_tasks/configs/suite/default.yaml `tuning`"
    if not isinstance(sec, dict):
        raise TuningError(f"{where}: expected a mapping with trials, methods, tasks and objective")
    if sec.get("objective") not in OBJECTIVES:
        raise TuningError(f"{where}.objective: expected one of {', '.join(OBJECTIVES)}, got {sec.get('objective')!r}")
    tasks = sec.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise TuningError(f"{where}.tasks: expected a non-empty list of task names, got {tasks!r}")
    n = sec.get("trials")
    if not isinstance(n, int) or n < 1:
        raise TuningError(f"{where}.trials: expected a positive integer (the same for every method), got {n!r}")
    methods = sec.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise TuningError(f"{where}.methods: expected {{method: {{config key: [values]}}}}")
    for m, space in methods.items():
        if not isinstance(space, dict) or not space or any(not isinstance(v, list) or not v for v in space.values()):
            raise TuningError(f"{where}.methods.{m}: expected {{config key: [values, ...]}}, got {space!r}")
        size = math.prod(len(v) for v in space.values())
        if size != n:
            raise TuningError(f"{where}.methods.{m}: its grid has {size} points, but every method gets "
                              f"`trials: {n}` (the same number of trials for every tuned method)")
    return sec


def tuning_trials(methods: list[str] | None = None, section: dict | None = None) -> dict[str, list[Trial]]:
    """{method: its trials}, the grid of its search space in a fixed order (the first key varies
    slowest); `methods` picks some (default: every method of the section)."""
    sec = tuning_section(section)
    space = sec["methods"]
    unknown = [m for m in (methods or []) if m not in space]
    if unknown:
        raise TuningError(f"no search space for {unknown} in the suite's `tuning.methods` ({', '.join(space)})")
    out = {}
    for m in methods or list(space):
        keys = list(space[m])
        out[m] = [Trial(m, i, dict(zip(keys, vals))) for i, vals in
                  enumerate(itertools.product(*(space[m][k] for k in keys)))]
    return out


def check_defaults_included(profile: Profile | str, trials: dict[str, list[Trial]]) -> None:
    """PaCo-FR's own configuration (the profile's, with the study's overrides) must be one of its
    trials: its defaults compete, they do not get a free pass. `profile`: the Profile, or a bundled
    profile's name."""
    from paco_fr.config import load_config  # lazy: keeps paco_fr out of --help

    if REFERENCE_RUN not in trials:
        return
    profile_name = name_of(profile)
    run = {r.name: r for r in suite_runs(False, profile)}[REFERENCE_RUN]
    cfg = load_config(profile_name, {**study_overrides(profile), **run.overrides})
    default = {k: dotted_value(cfg, k) for k in trials[REFERENCE_RUN][0].overrides}
    if not any(all(_same(t.overrides[k], v) for k, v in default.items()) for t in trials[REFERENCE_RUN]):
        raise TuningError(f"PaCo-FR's configuration of profile {profile_name} ({default}) is not one of its "
                          "tuning trials: add its values to `tuning.methods.paco` in the suite file")


def _same(a, b) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except (TypeError, ValueError):
        return a == b


def plan_trials(profile: Profile | str, runs_root: str | Path = "runs", methods: list[str] | None = None,
                overrides: dict | None = None, budget_by: str = "flops", section: dict | None = None,
                log: Callable[[str], None] | None = None) -> list[PlannedTrial]:
    """Every trial with its FLOP-matched length: the budget is PaCo-FR's configured run (its
    default configuration, as in plan_suite), and each trial gets the steps that spend it at the
    trial's own cost per step (a mask ratio or a loss weight may change it). MCF-style's trials
    keep the suite's teacher (`runs/<profile>/mcf_teacher`), charged as in the study. `profile`:
    the Profile (its `study:` section), or a bundled profile's name."""
    from bench_tasks.plan.study import planned_length
    from paco_fr.config import load_config
    from paco_fr.flops import step_cost

    profile_name = name_of(profile)
    trials = tuning_trials(methods, section)
    check_defaults_included(profile, trials)
    runs = {r.name: r for r in suite_runs(False, profile)}
    missing = [m for m in trials if m not in runs]
    if missing:
        raise TuningError(f"tuning.methods names {missing}, which are not runs of the suite ({', '.join(runs)})")
    root = Path(runs_root) / profile_name
    base = {**study_overrides(profile), **(overrides or {})}
    ref_cfg = load_config(profile_name, {**base, **runs[REFERENCE_RUN].overrides})
    costs = {"__reference__": step_cost(ref_cfg, teacher="random")}
    ovs, teachers = {}, {}
    for m, ts in trials.items():
        run = runs[m]
        for t in ts:
            ov = {**base, **run.overrides, **t.overrides, "name": t.name}
            if run.teacher:
                ov["mcf.teacher"] = str(root / run.teacher / "encoder.safetensors")
                teachers[t.name] = run.teacher
                if run.teacher not in costs:
                    costs[run.teacher] = step_cost(load_config(profile_name, {**base, **runs[run.teacher].overrides}),
                                                   teacher="random")
            ovs[t.name] = ov
            costs[t.name] = step_cost(load_config(profile_name, ov), teacher="random")
    steps = match_steps(costs, "__reference__", planned_length(ref_cfg), budget_by, teachers)
    warmup, ref_steps = int(ref_cfg["train"]["warmup_steps"]), planned_length(ref_cfg)
    out = []
    for ts in trials.values():
        for t in ts:
            ov = dict(ovs[t.name])
            ov["train.steps"], ov["train.epochs"] = steps[t.name], None
            ov["train.warmup_steps"] = max(1, round(warmup * steps[t.name] / max(1, ref_steps)))
            flops = steps[t.name] * float(costs[t.name]["flops_per_step"])
            out.append(PlannedTrial(t, ov, root / TUNING_DIR / t.name, steps[t.name], flops, dict(costs[t.name])))
    if log is not None:
        for p in out:
            log(f"tuning: {p.trial.name} ({p.trial.text()}): {p.steps} steps, {p.flops / 1e12:.2f} TFLOP")
    return out


# ----------------------------------------------------------------------------- the objective (val only)
def _val_score(row: dict) -> float | None:
    v = (row.get("metrics") or {}).get("val_score")
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def objective(rows: list[dict], uri: str, random_uri: str, tasks: list[str],
              margins: dict | None = None) -> tuple[float | None, dict[str, float]]:
    """`val_gain_in_margins` of one trial's encoder: per task, (val score of the trial − val score
    of the random-init control) in the metric's better direction, divided by the task's equivalence
    margin; the objective is their mean over `tasks`. Reads each row's `metrics.val_score` (the
    validation score its epoch was selected by) and nothing of `test`. Returns (objective or None
    when a task lacks a score, {task: its gain in margins})."""
    def val(u: str, task: str):
        got = [(r, _val_score(r)) for r in rows if r.get("status") == "ok"
               and (r.get("cell") or {}).get("backbone") == u and (r.get("cell") or {}).get("task") == task]
        got = [(r, v) for r, v in got if v is not None]
        if not got:
            return None, None
        return sum(v for _, v in got) / len(got), got[0][0]

    per = {}
    for task in tasks:
        (a, row), (b, _) = val(uri, task), val(random_uri, task)
        if a is None or b is None:
            return None, per
        metric = row.get("headline")
        margin = margin_for(task, metric, margins)
        if not margin:
            raise TuningError(f"tuning objective: no equivalence margin for {task}/{metric} "
                              "(bench_tasks/configs/verdicts/margins.yaml)")
        sign = 1.0 if row.get("higher_is_better", True) else -1.0
        per[task] = sign * (a - b) / margin
    return sum(per.values()) / len(per), per


@dataclass
class TrialResult:
    name: str
    overrides: dict
    steps: int
    flops: float
    objective: float | None
    per_task: dict
    encoder: str = ""


def select(method: str, results: list[TrialResult], objective_name: str, tasks: list[str]) -> dict:
    """The record of a method's tuning: every trial with its val objective, and the chosen one (the
    highest objective; ties go to the earlier trial). Raises when no trial has an objective."""
    scored = [r for r in results if r.objective is not None]
    if not scored:
        raise TuningError(f"tuning {method}: no trial has a val objective (every trial failed or lacks rows)")
    best = max(scored, key=lambda r: r.objective)  # max keeps the first of equal values
    return {"method": method, "objective": objective_name, "split": "val", "tasks": list(tasks),
            "trials": [asdict(r) for r in results], "chosen": best.name, "chosen_overrides": dict(best.overrides)}


def record_path(runs_root: str | Path, profile_name: str, method: str) -> Path:
    return Path(runs_root) / profile_name / TUNING_DIR / f"{method}.json"


def write_record(record: dict, runs_root: str | Path, profile_name: str) -> Path:
    path = record_path(runs_root, profile_name, record["method"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")
    return path


def read_record(runs_root: str | Path, profile_name: str, method: str) -> dict | None:
    path = record_path(runs_root, profile_name, method)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise TuningError(f"{path}: not a tuning record ({err}); delete it to tune {method} again") from err
    if not isinstance(data, dict) or not isinstance(data.get("chosen_overrides"), dict):
        raise TuningError(f"{path}: expected a tuning record with `chosen_overrides`; delete it to tune again")
    return data


def tuned_overrides(runs_root: str | Path, profile_name: str, methods=None) -> dict[str, dict]:
    """{method: the overrides of its chosen trial} for every method with a record."""
    names = methods if methods is not None else list((suite_definition().get("tuning") or {}).get("methods") or {})
    out = {}
    for m in names:
        rec = read_record(runs_root, profile_name, m)
        if rec is not None:
            out[m] = dict(rec["chosen_overrides"])
    return out


def tuned_method(run) -> str | None:
    """The tuned method whose chosen configuration a suite run takes: a compared method's own (its
    every pre-training seed), PaCo-FR's for the PaCo-FR ablations (they ablate the tuned model);
    none for a teacher."""
    if run.role == "main":
        return run.base_name
    if run.role == "ablation" and run.overrides.get("objective") == REFERENCE_RUN:
        return REFERENCE_RUN
    return None


def method_block_tuning(record: dict) -> dict:
    """The `tuning` entry of a run's method block: the trials, their val objectives, the choice."""
    return {k: record[k] for k in ("objective", "split", "tasks", "chosen", "chosen_overrides", "trials")}
