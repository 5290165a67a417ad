"""The whole study behind `python -m bench_tasks run --all` (when no --backbones are given).

Stage 1, pre-training suite (the runs: bench_tasks.plan.suite; their budgets: `plan_suite`;
training them: bench_tasks.run.pretrain.pretrain_suite): PaCo-FR, MAE, FaRL-style and MCF-style
objectives with the same backbone and data (the profile's bundled pre-training config:
`paco_fr/configs/<profile>.yaml`) and the same *budget* (`budget_by`: FLOPs by default, or
distinct images, or steps; PaCo-FR's configured length is the reference, every other run gets
the steps that spend the same budget: bench_tasks.plan.budget), a random-init control, and the
PaCo-FR ablations: masking strategy (random / block vs structured), codebook size (4 sizes
across 64..8192), candidates k = 1 vs several, incubation off, spatial consistency off.
MCF-style's teacher is the run `mcf_teacher`: an MAE pre-trained on SynthFace's `teacher` split
(identities and images disjoint from the `pretrain` split every other run uses), given to MCF by
path, its budget (TEACHER_SHARE of the reference) charged to MCF. Runs live in
`runs/<profile>/<name>/`; a finished run is reused, an interrupted one resumes
(paco_fr.engine.pretrain); the plan is written to `runs/<profile>/budget.json`.

Stage 2, evaluation (`study_cells`): the compared methods on every task with the profile's
protocols, fractions and seeds; the ablation runs on every task with the first protocol, full
data and the first seed (enough to rank the components; in `smoke` only on the three cheap tasks,
see the profile's `study: ablation_tasks`). SynthFace's robustness slices come with every SynthFace row. Every task
also gets its floor (input-free predictor) and ceiling (`supervised:<the suite's arch>`) rows
and recognition its parameter-free cosine probe (bench_tasks.plan.references).

Stage 3 is `python -m bench_tasks report` (bench_tasks.report.build).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench_tasks.contracts import BackboneURI, Cell, Profile
from bench_tasks.plan.budget import match_steps, plan_lines
from bench_tasks.plan.cells import plan_cells
from bench_tasks.plan.profiles import profile_name as name_of
from bench_tasks.plan.references import with_references
from bench_tasks.plan.suite import (
    REFERENCE_RUN,
    SuiteRun,
    ablation_tasks,
    expand_seeds,
    random_control,
    split_seeded_name,
    study_overrides,
    study_setting,
    suite_runs,
)
from bench_tasks.plan.tuning import tuned_method, tuned_overrides
from paco_fr.config import load_config
from paco_fr.data.pretrain_data import build_pretrain_dataset
from paco_fr.flops import step_cost


@dataclass
class PlannedRun:
    run: SuiteRun
    overrides: dict  # dotted pre-training overrides, train.steps included
    run_dir: Path
    steps: int
    cost: dict  # paco_fr.flops.step_cost: flops_per_step, images_per_step, batch_per_step

    @property
    def encoder(self) -> Path:
        return self.run_dir / "encoder.safetensors"


def planned_length(cfg: dict, world: int = 1) -> int:
    """Optimizer steps a config trains for (train.epochs converted as the engine does)."""
    tc = cfg["train"]
    if tc["epochs"] is None:
        return int(tc["steps"])
    d = cfg["data"]
    if d["source"] in ("synthface", "random"):
        n = int(d["num_images"])
    else:
        n = len(build_pretrain_dataset(d, int(cfg["model"]["img_size"])))
    per_epoch = max(1, max(1, (n // world) // int(tc["batch_size"])) // int(tc["grad_accum"]))
    return int(round(float(tc["epochs"]) * per_epoch))


def plan_suite(profile: Profile | str, runs_root: str | Path = "runs", include_ablations: bool = True,
               overrides: dict | None = None, budget_by: str = "flops", world: int = 1,
               log: Callable[[str], None] | None = None, pretrain_seeds: dict | None = None) -> list[PlannedRun]:
    """Every run of the suite with its overrides and its budget-matched number of steps.

    Each run's cost per step is measured once on tiny batches (paco_fr.flops.step_cost; MCF-style
    with a random teacher of the teacher run's architecture, since the teacher may not exist yet:
    its weights do not change the count). Warm-up is scaled with the steps (the same fraction of
    every run); `overrides` apply to every run (e.g. train.steps sets the reference length).
    `pretrain_seeds` (parse_pretrain_seeds): one planned run per (run, seed), every seed of a run
    with the run's steps (a seed changes neither the cost nor the budget). `profile`: the Profile
    (its `study:` section), or the name of a bundled one."""
    profile_name = name_of(profile)
    runs = suite_runs(include_ablations, profile)  # the budget: once per run (seed 0's config)
    root = Path(runs_root) / profile_name
    base = {**study_overrides(profile), **(overrides or {})}
    tuned = tuned_overrides(runs_root, profile_name)  # the tuning stage's choices (bench_tasks.plan.tuning)
    ovs, cfgs, costs = {}, {}, {}
    for run in runs:
        ov = {**base, **tuned.get(tuned_method(run), {}), **run.overrides, "name": run.name}
        if run.teacher:
            ov["mcf.teacher"] = str(root / run.teacher / "encoder.safetensors")
        ovs[run.name], cfgs[run.name] = ov, load_config(profile_name, ov)
        costs[run.name] = step_cost(cfgs[run.name], world=world, teacher="random")
    ref = REFERENCE_RUN if REFERENCE_RUN in cfgs else runs[0].name
    ref_steps = planned_length(cfgs[ref], world)
    teachers = {r.name: r.teacher for r in runs if r.teacher}
    steps = match_steps(costs, ref, ref_steps, budget_by, teachers)
    warmup = int(cfgs[ref]["train"]["warmup_steps"])
    matched = {}
    for run in runs:
        ov = dict(ovs[run.name])
        if steps[run.name] != planned_length(cfgs[run.name], world) or ov.get("train.steps") is not None:
            ov["train.steps"], ov["train.epochs"] = steps[run.name], None
        if run.name != ref and steps[run.name] != ref_steps:
            ov["train.warmup_steps"] = max(1, round(warmup * steps[run.name] / max(1, ref_steps)))
        matched[run.name] = ov
    if log is not None:
        for m, ov in tuned.items():
            log(f"tuned configuration of {m} (runs/{profile_name}/tuning/{m}.json): "
                + ", ".join(f"{k}={v}" for k, v in ov.items()))
    out = []
    for run in expand_seeds(runs, pretrain_seeds):  # one planned run per (run, pre-training seed)
        b = run.base_name
        ov = {**matched[b], **run.overrides, "name": run.name}
        if run.teacher:
            ov["mcf.teacher"] = str(root / run.teacher / "encoder.safetensors")
        out.append(PlannedRun(run, ov, root / run.name, steps[b], costs[b]))
    if log is not None:
        for line in plan_lines(costs, steps, budget_by, teachers):
            log(line)
    return out


def write_budget_plan(plan: list[PlannedRun], path: Path, budget_by: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"budget_by": budget_by, "reference": REFERENCE_RUN, "runs": {
        p.run.name: {"steps": p.steps, **p.cost, "role": p.run.role, "teacher": p.run.teacher}
        for p in plan}}, indent=1))


def study_cells(profile: Profile, encoders: dict[str, Path], task_datasets: dict[str, list[str]],
                protocols: list[str] | None = None, seeds: list[int] | None = None,
                fractions: list[float] | None = None, ceilings: bool = True, probes: bool = True) -> list[Cell]:
    """Stage 2's plan: methods x tasks x protocols x fractions x seeds, ablations x tasks once."""
    base_roles = {r.name: r.role for r in suite_runs(True, profile)}
    roles = {n: base_roles.get(split_seeded_name(n)[0], base_roles.get(n, "main")) for n in encoders}
    methods = [f"paco_fr:{p}" for n, p in encoders.items() if roles.get(n, "main") == "main"]
    methods.append(random_control(profile))
    ablations = [f"paco_fr:{p}" for n, p in encoders.items() if roles.get(n) == "ablation"]
    cells = plan_cells(methods, task_datasets, protocols=protocols, seeds=seeds, fractions=fractions,
                       profile=profile)
    if ablations:
        first_protocol = (protocols or list(profile.protocols))[:1]
        # the ablations' evaluation seeds: the first (default), or `study: ablation_seeds: n` of them
        # (their pre-training runs carry the variance; bench_tasks/configs/paper_cpu.yaml)
        first_seed = (seeds or list(profile.seeds))[:int(study_setting(profile, "ablation_seeds", 1) or 1)]
        only = ablation_tasks(profile)
        abl_tasks = {t: d for t, d in task_datasets.items() if only is None or t in only}
        cells += plan_cells(ablations, abl_tasks, protocols=first_protocol, seeds=first_seed,
                            fractions=[1.0], profile=profile)
    # floors and the supervised ceiling (the suite's architecture trained end to end) for every
    # task evaluated, the parameter-free recognition probe next to every recognition cell

    ceiling = [str(BackboneURI.parse(random_control(profile)).with_scheme("supervised"))] if ceilings else None
    return with_references(cells, ceilings=ceiling, probes=probes, profiles=profile)
