"""The whole study behind `python -m bench_tasks run --all` (when no --backbones are given).

Stage 1, pre-training suite (`pretrain_suite`): PaCo-FR, MAE, FaRL-style and MCF-style
objectives with the same backbone and data (the profile's bundled pre-training config:
`paco_fr/configs/<profile>.yaml`) and the same *budget* (`budget_by`: FLOPs by default, or
distinct images, or steps; PaCo-FR's configured length is the reference, every other run gets
the steps that spend the same budget: bench_tasks.budget), a random-init control, and the
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
see ABLATION_TASKS). SynthFace's robustness slices come with every SynthFace row. Every task
also gets its floor (input-free predictor) and ceiling (`supervised:<the suite's arch>`) rows
and recognition its parameter-free cosine probe (bench_tasks.references).

Stage 3 is `python -m bench_tasks report` (bench_tasks.report.build).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench_tasks.api import Cell, Profile

# the main PaCo-FR config has its own codebook size (256 in smoke/small, 8192 in paper); the
# ablation adds these (duplicates of the main size are skipped)
ABLATION_CODEBOOK_SIZES = (64, 512, 2048, 8192)

# The study's pre-training budget on top of the profile's bundled config (paco_fr/configs/<profile>.yaml),
# identical for every run of the suite. smoke: 64 steps on 512 SynthFace images (incubation = the
# first epoch = 32 steps), so that the whole `run --all` fits CI's 2-core CPU in about 15 minutes;
# small and paper use their configs as they are.
STUDY_OVERRIDES: dict[str, dict] = {
    "smoke": {"train.steps": 64, "data.num_images": 512, "train.snapshot_every": 64, "train.ckpt_every": 32},
    "small": {},
    # gpu: train.steps is set on the device from measured step times (bench_tasks/device_study.py)
    "gpu": {},
    "cpu": {},
    "paper": {},
}

# Tasks the ablation encoders are evaluated on. smoke: the three cheap ones (the dense heads cost
# ~40 s a cell on 2 CPU cores, 9 ablations x 2 dense tasks would double the study's time);
# small and paper: every task.
ABLATION_TASKS: dict[str, tuple[str, ...] | None] = {
    "smoke": ("attributes", "expression", "recognition"),
    "small": None,
    "gpu": None,
    "cpu": None,
    "paper": None,
}


@dataclass(frozen=True)
class SuiteRun:
    name: str  # folder under runs/<profile>/ (never parsed: what a run is, is `identity`)
    overrides: dict = field(default_factory=dict, hash=False, compare=False)
    role: str = "main"  # "main" (compared in the main table) | "ablation" | "teacher" (not evaluated; bench_tasks.method.ROLES)
    component: str = ""  # ablation: one of bench_tasks.method.COMPONENTS (masking, codebook, candidates, ...)
    teacher: str | None = None  # the run whose encoder is this run's teacher (passed as mcf.teacher)

    def identity(self, profile_name: str, overrides: dict | None = None) -> dict:
        """This run's method block (bench_tasks.method): recorded in the run folder's method.json
        and summary.json, the encoder's metadata, and every result row of the encoder."""
        from bench_tasks.method import suite_identity
        from paco_fr.config import load_config

        cfg = load_config(profile_name, {**(overrides or {}), **self.overrides})
        return suite_identity(self.name, str(cfg["objective"]), self.role, self.component, cfg)


def suite_identities(profile_name: str) -> dict[str, dict]:
    """{run name: method block} of every run of the profile's suite (ablations included)."""
    return {r.name: r.identity(profile_name, STUDY_OVERRIDES.get(profile_name, {}))
            for r in suite_runs(True, profile_name)}


def write_run_identity(run: SuiteRun, run_dir: str | Path, profile_name: str, overrides: dict | None = None) -> dict:
    """Write the run's method block to <run_dir>/method.json (before pre-training, so paco_fr's
    export copies it into the encoder's safetensors metadata) and into summary.json when the run
    has one (a finished run reused). Returns the block."""
    import json

    ident = run.identity(profile_name, overrides)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "method.json").write_text(json.dumps(ident, indent=2) + "\n")
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            data = json.loads(summary.read_text())
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("method") != ident:
            data["method"] = ident
            tmp = summary.with_name(summary.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=2))
            tmp.replace(summary)
    return ident


CONTROL_COMPONENTS = ("replacement", "belief")  # the controls of issue 13 among the ablation runs
REFERENCE_RUN = "paco"  # its configured length x its cost per step is every run's budget
TEACHER_DATA = {"data.split": "teacher"}  # SynthFace split disjoint from `pretrain` (paco_fr.data.synthface)


def suite_runs(include_ablations: bool = True, profile_name: str = "smoke") -> list[SuiteRun]:
    from paco_fr.config import load_config

    main_codebook = load_config(profile_name)["codebook"]["num_tokens"]
    runs = [
        SuiteRun("paco", {"objective": "paco"}),
        SuiteRun("mae", {"objective": "mae"}),
        SuiteRun("farl", {"objective": "farl"}),
        # MCF-style's teacher: an MAE on images disjoint from the suite's (MCF used a MoCo-v3 ImageNet
        # model); trained first, its compute charged to MCF (bench_tasks.budget.TEACHER_SHARE)
        SuiteRun("mcf_teacher", {"objective": "mae", **TEACHER_DATA}, "teacher"),
        SuiteRun("mcf", {"objective": "mcf"}, teacher="mcf_teacher"),
    ]
    if include_ablations:
        runs += [
            SuiteRun("abl_mask_random", {"objective": "paco", "mask.strategy": "random"}, "ablation", "masking"),
            SuiteRun("abl_mask_block", {"objective": "paco", "mask.strategy": "block"}, "ablation", "masking"),
            *[SuiteRun(f"abl_codebook_{n}", {"objective": "paco", "codebook.num_tokens": n}, "ablation", "codebook")
              for n in ABLATION_CODEBOOK_SIZES if n != main_codebook],
            SuiteRun("abl_k1", {"objective": "paco", "codebook.k": 1}, "ablation", "candidates"),
            SuiteRun("abl_no_incubation", {"objective": "paco", "incubation.epochs": 0}, "ablation", "incubation"),
            # the term off, the two views kept: the same distinct images per step as PaCo-FR
            SuiteRun("abl_no_spatial", {"objective": "paco", "spatial.weight": 0, "spatial.keep_views": True},
                     "ablation", "spatial"),
            # controls (issue 13): the same region mask with a learned mask token (no codebook, no
            # Belief Predictor), and the Belief Predictor trained by cross-entropy only (no
            # reconstruction gradient through the mixing weights): evaluated like the ablations,
            # each in the ablation table of its component
            SuiteRun("abl_learned_mask_token", {"objective": "paco", "mask.replace": "mask_token"}, "ablation",
                     "replacement"),
            SuiteRun("abl_belief_ce_only", {"objective": "paco", "belief.detach_weights": True}, "ablation", "belief"),
        ]
    return runs


def suite_encoders(runs_root: str | Path, profile_name: str, include_ablations: bool = True) -> dict[str, Path]:
    """{run name: where its encoder is (or will be)} for every evaluated run of the suite (not the
    teacher): runs/<profile>/<name>/encoder.safetensors."""
    return {r.name: Path(runs_root) / profile_name / r.name / "encoder.safetensors"
            for r in suite_runs(include_ablations, profile_name) if r.role != "teacher"}


def random_control(profile_name: str) -> str:
    """The random-init control has the same architecture as the suite's encoders."""
    from paco_fr.config import load_config

    m = load_config(profile_name)["model"]
    spec = f"{m['arch']}@{m['img_size']}/{m['patch_size']}"
    if m.get("depth"):
        spec += f"/d{m['depth']}"
    return f"random:{spec}"


def teacher_of(include_ablations: bool = True, profile_name: str = "smoke") -> dict[str, str]:
    """{run: the run whose encoder is its teacher} (MCF-style -> mcf_teacher)."""
    return {r.name: r.teacher for r in suite_runs(include_ablations, profile_name) if r.teacher}


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
        from paco_fr.data.pretrain_data import build_pretrain_dataset

        n = len(build_pretrain_dataset(d, int(cfg["model"]["img_size"])))
    per_epoch = max(1, max(1, (n // world) // int(tc["batch_size"])) // int(tc["grad_accum"]))
    return int(round(float(tc["epochs"]) * per_epoch))


def plan_suite(profile_name: str, runs_root: str | Path = "runs", include_ablations: bool = True,
               overrides: dict | None = None, budget_by: str = "flops", world: int = 1,
               log: Callable[[str], None] | None = None) -> list[PlannedRun]:
    """Every run of the suite with its overrides and its budget-matched number of steps.

    Each run's cost per step is measured once on tiny batches (paco_fr.flops.step_cost; MCF-style
    with a random teacher of the teacher run's architecture, since the teacher may not exist yet:
    its weights do not change the count). Warm-up is scaled with the steps (the same fraction of
    every run); `overrides` apply to every run (e.g. train.steps sets the reference length)."""
    from bench_tasks.budget import match_steps, plan_lines
    from paco_fr.config import load_config
    from paco_fr.flops import step_cost

    runs = suite_runs(include_ablations, profile_name)
    root = Path(runs_root) / profile_name
    base = {**STUDY_OVERRIDES.get(profile_name, {}), **(overrides or {})}
    ovs, cfgs, costs = {}, {}, {}
    for run in runs:
        ov = {**base, **run.overrides, "name": run.name}
        if run.teacher:
            ov["mcf.teacher"] = str(root / run.teacher / "encoder.safetensors")
        ovs[run.name], cfgs[run.name] = ov, load_config(profile_name, ov)
        costs[run.name] = step_cost(cfgs[run.name], world=world, teacher="random")
    ref = REFERENCE_RUN if REFERENCE_RUN in cfgs else runs[0].name
    ref_steps = planned_length(cfgs[ref], world)
    teachers = {r.name: r.teacher for r in runs if r.teacher}
    steps = match_steps(costs, ref, ref_steps, budget_by, teachers)
    warmup = int(cfgs[ref]["train"]["warmup_steps"])
    out = []
    for run in runs:
        ov = dict(ovs[run.name])
        if steps[run.name] != planned_length(cfgs[run.name], world) or ov.get("train.steps") is not None:
            ov["train.steps"], ov["train.epochs"] = steps[run.name], None
        if run.name != ref and steps[run.name] != ref_steps:
            ov["train.warmup_steps"] = max(1, round(warmup * steps[run.name] / max(1, ref_steps)))
        out.append(PlannedRun(run, ov, root / run.name, steps[run.name], costs[run.name]))
    if log is not None:
        for line in plan_lines(costs, steps, budget_by, teachers):
            log(line)
    return out


def write_budget_plan(plan: list[PlannedRun], path: Path, budget_by: str) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"budget_by": budget_by, "reference": REFERENCE_RUN, "runs": {
        p.run.name: {"steps": p.steps, **p.cost, "role": p.run.role, "teacher": p.run.teacher}
        for p in plan}}, indent=1))


def pretrain_suite(profile: Profile, runs_root: str | Path = "runs", include_ablations: bool = True,
                   log: Callable[[str], None] = print, progress: bool = True,
                   overrides: dict | None = None, failed: list | None = None,
                   budget_by: str = "flops", jobs: int = 1) -> dict[str, Path]:
    """Pre-train (or reuse / resume) every run of the suite; returns {run name: encoder path}.
    `overrides` (dotted keys, e.g. {"train.steps": 500}) apply to every run; the runs' lengths are
    then matched to the reference's budget (`budget_by`: flops / images / steps; bench_tasks.budget).
    `jobs` > 1: that many runs at once, each in its own process (one GPU or CPU shared; a run
    whose teacher is in the suite starts when the teacher has finished); the runs and their
    results are the same as one after the other. A run that fails is reported and left out
    (appended to `failed` as (name, cause)); the others go on."""
    plan = plan_suite(profile.name, runs_root, include_ablations, overrides, budget_by, log=log)
    write_budget_plan(plan, Path(runs_root) / profile.name / "budget.json", budget_by)
    if int(jobs) > 1 and len(plan) > 1:
        return _pretrain_parallel(plan, profile.name, int(jobs), log, failed)
    out: dict[str, Path] = {}
    for i, p in enumerate(plan, 1):
        log(f"[stage 1: pre-training {i}/{len(plan)}] {p.run.name} ({p.steps} steps) -> {p.run_dir}")
        try:
            out[p.run.name] = _pretrain_one(p.run, dict(p.overrides), str(p.run_dir), profile.name, progress)
        except (KeyboardInterrupt, InterruptedError):
            raise
        except Exception as err:  # one broken objective must not sink the study
            from bench_tasks.errors import cause_line

            _run_failed(p.run.name, cause_line(err), log, failed)
    return out


def _run_failed(name: str, cause: str, log: Callable[[str], None], failed: list | None, where: str = "") -> None:
    """A pre-training run that failed: said in the log and appended to `failed` as (name, cause)."""
    log(f"pre-training {name} FAILED: {cause}{where}")
    if failed is not None:
        failed.append((name, cause))


def _pretrain_one(run: SuiteRun, overrides: dict, run_dir: str, profile_name: str, progress: bool = True,
                  threads: int = 0) -> Path:
    """One run of the suite: its method block written before (for the export) and after (into the
    summary of a reused run); returns the encoder's path. Top-level, so a worker process can run it."""
    from paco_fr.engine import pretrain

    ov = dict(overrides)
    if not progress:
        ov["train.progress"] = False
    if threads:  # a worker's share of the cores (the profile's train.threads would oversubscribe them)
        import torch

        torch.set_num_threads(threads)
        ov["train.threads"] = threads
    write_run_identity(run, run_dir, profile_name, ov)
    enc = pretrain(profile_name, ov, run_dir=run_dir)
    write_run_identity(run, run_dir, profile_name, ov)  # into the summary.json pretrain wrote
    return enc


def _pretrain_parallel(plan: list[PlannedRun], profile_name: str, jobs: int, log: Callable[[str], None],
                       failed: list | None) -> dict[str, Path]:
    """`jobs` runs at a time in spawned worker processes (CUDA needs spawn, not fork); a run with a
    teacher in the plan is submitted once the teacher's encoder exists. Each worker gets an equal
    share of the CPU cores as its torch threads, and writes its log to <run_dir>/stdout.log."""
    import multiprocessing as mp
    import os
    import time
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from bench_tasks.errors import cause_line

    threads = max(1, (os.cpu_count() or 1) // jobs)
    by_name = {p.run.name: p for p in plan}
    # the compared methods (and MCF-style's teacher) first, then the two controls, then the other
    # ablations: a deadline that cuts the stage cuts the least needed runs
    first = {"main": 0, "teacher": 0}
    waiting = sorted(plan, key=lambda p: first.get(p.run.role, 1 if p.run.component in CONTROL_COMPONENTS else 2))
    out: dict[str, Path] = {}
    broken: set[str] = set()
    running: dict = {}
    t0 = {}

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as ex:
        while waiting or running:
            for p in list(waiting):
                teacher = p.run.teacher if p.run.teacher in by_name else None
                if teacher in broken:
                    waiting.remove(p)
                    broken.add(p.run.name)
                    _run_failed(p.run.name, f"its teacher run {teacher} failed", log, failed)
                    continue
                if (teacher is None or teacher in out) and len(running) < jobs:
                    waiting.remove(p)
                    log(f"[stage 1: pre-training, {jobs} at a time] {p.run.name} ({p.steps} steps) -> {p.run_dir}")
                    fut = ex.submit(_pretrain_logged, p.run, dict(p.overrides), str(p.run_dir), profile_name, threads)
                    running[fut], t0[p.run.name] = p, time.time()
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                p = running.pop(fut)
                try:
                    out[p.run.name] = Path(fut.result())
                    log(f"[stage 1] {p.run.name} finished in {time.time() - t0[p.run.name]:.0f}s")
                except Exception as err:  # noqa: BLE001 - one broken objective must not sink the study
                    broken.add(p.run.name)
                    _run_failed(p.run.name, cause_line(err), log, failed, f" (log: {p.run_dir}/stdout.log)")
    return {p.run.name: out[p.run.name] for p in plan if p.run.name in out}  # the plan's order


def _pretrain_logged(run: SuiteRun, overrides: dict, run_dir: str, profile_name: str, threads: int) -> str:
    """A worker process's run, its output to <run_dir>/stdout.log (parallel runs do not interleave)."""
    import contextlib

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / "stdout.log", "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        return str(_pretrain_one(run, overrides, run_dir, profile_name, progress=False, threads=threads))


def study_cells(profile: Profile, encoders: dict[str, Path], task_datasets: dict[str, list[str]],
                protocols: list[str] | None = None, seeds: list[int] | None = None,
                fractions: list[float] | None = None, ceilings: bool = True, probes: bool = True) -> list[Cell]:
    """Stage 2's plan: methods x tasks x protocols x fractions x seeds, ablations x tasks once."""
    from bench_tasks.runner import plan_cells

    roles = {r.name: r.role for r in suite_runs(True, profile.name)}
    methods = [f"paco_fr:{p}" for n, p in encoders.items() if roles.get(n, "main") == "main"]
    methods.append(random_control(profile.name))
    ablations = [f"paco_fr:{p}" for n, p in encoders.items() if roles.get(n) == "ablation"]
    cells = plan_cells(methods, task_datasets, protocols=protocols, seeds=seeds, fractions=fractions,
                       profile=profile.name)
    if ablations:
        first_protocol = (protocols or list(profile.protocols))[:1]
        first_seed = (seeds or list(profile.seeds))[:1]
        only = ABLATION_TASKS.get(profile.name)
        abl_tasks = {t: d for t, d in task_datasets.items() if only is None or t in only}
        cells += plan_cells(ablations, abl_tasks, protocols=first_protocol, seeds=first_seed,
                            fractions=[1.0], profile=profile.name)
    # floors and the supervised ceiling (the suite's architecture trained end to end) for every
    # task evaluated, the parameter-free recognition probe next to every recognition cell
    from bench_tasks.references import with_references

    ceiling = ["supervised:" + random_control(profile.name).partition(":")[2]] if ceilings else None
    return with_references(cells, ceilings=ceiling, probes=probes)
