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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: bench_tasks.profiles imports this module while bench_tasks.api loads
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


# The ablation runs a profile's study trains (None = every one). cpu_reference: the ground-truth
# region map (what the labels add to label-free PaCo-FR) and the codebook sizes (the figure); the
# other ablations are in the `cpu` study (results/cpu.jsonl) and cost a 2-core CPU ~20 min each.
ABLATION_RUNS: dict[str, tuple[str, ...] | None] = {
    "cpu_reference": ("abl_regions_gt", *[f"abl_codebook_{n}" for n in ABLATION_CODEBOOK_SIZES]),
}


@dataclass(frozen=True)
class SuiteRun:
    name: str  # folder under runs/<profile>/ (never parsed: what a run is, is `identity`)
    overrides: dict = field(default_factory=dict, hash=False, compare=False)
    role: str = "main"  # "main" (compared in the main table) | "ablation" | "teacher" (not evaluated; bench_tasks.method.ROLES)
    component: str = ""  # ablation: one of bench_tasks.method.COMPONENTS (masking, codebook, candidates, ...)
    teacher: str | None = None  # the run whose encoder is this run's teacher (passed as mcf.teacher)
    pretrain_seed: int = 0  # the pre-training seed (config `seed`); see with_seed
    base: str = ""  # the suite's run this one repeats with another seed ("" = itself)

    @property
    def base_name(self) -> str:
        return self.base or self.name

    def with_seed(self, seed: int, teacher: str | None = None) -> SuiteRun:
        """This run with pre-training seed `seed`: seed 0 is the run itself (its folder and config
        unchanged, so the cell keys of its rows stay the same); another seed is the folder
        `<name>_seed<k>` with `seed: k` and `data.seed: 0` (the same images, another
        initialisation, batch order, masks). `teacher`: the teacher's run name for this seed."""
        if int(seed) == 0:
            return self if teacher in (None, self.teacher) else replace(self, teacher=teacher)
        return replace(self, name=seeded_name(self.base_name, seed),
                       overrides={**self.overrides, "seed": int(seed), "data.seed": 0},
                       pretrain_seed=int(seed), base=self.base_name, teacher=teacher or self.teacher)

    def identity(self, profile_name: str, overrides: dict | None = None) -> dict:
        """This run's method block (bench_tasks.method): recorded in the run folder's method.json
        and summary.json, the encoder's metadata, and every result row of the encoder."""
        from bench_tasks.method import suite_identity
        from paco_fr.config import load_config

        cfg = load_config(profile_name, {**(overrides or {}), **self.overrides})
        return suite_identity(self.name, str(cfg["objective"]), self.role, self.component, cfg,
                              teacher=self.teacher, pretrain_seed=self.pretrain_seed)


SEED_SUFFIX = "_seed"


def seeded_name(name: str, seed: int) -> str:
    """The run folder of `name` at pre-training seed `seed`: `name` for 0, else `name_seed<k>`."""
    return name if int(seed) == 0 else f"{name}{SEED_SUFFIX}{int(seed)}"


def split_seeded_name(name: str) -> tuple[str, int]:
    """`paco_seed2` -> ("paco", 2); `paco` -> ("paco", 0)."""
    base, sep, k = name.rpartition(SEED_SUFFIX)
    return (base, int(k)) if sep and base and k.isdigit() else (name, 0)


def parse_pretrain_seeds(spec) -> dict[str, tuple[int, ...]]:
    """The pre-training seeds of a study: {"default": seeds, <run name>: seeds, ...}.

    `spec`: None / [] (seed 0 only), a list of ints or "0,1,2" (the default), a mapping
    {"default": [0, 1, 2], "farl": [0]} (profile YAML `pretrain_seeds:`), or a list of strings
    from `--pretrain-seeds` ("0,1,2", "farl=0", "mcf=0,1"). `default` applies to the compared
    methods (role main); ablations and controls train at its first seed unless named; a teacher
    trains at every seed of the runs that use it. Raises ValueError naming the bad entry."""
    out: dict[str, tuple[int, ...]] = {}

    def seeds_of(v, where) -> tuple[int, ...]:
        items = v if isinstance(v, (list, tuple)) else str(v).split(",")
        try:
            seeds = tuple(dict.fromkeys(int(str(x).strip()) for x in items if str(x).strip() != ""))
        except ValueError:
            raise ValueError(f"pre-training seeds {where}: {v!r} is not a list of integers (e.g. 0,1,2)") from None
        if not seeds or any(x < 0 for x in seeds):
            raise ValueError(f"pre-training seeds {where}: {v!r}: give one or more seeds >= 0")
        return seeds

    if spec is None or spec == [] or spec == ():
        return {"default": (0,)}
    if isinstance(spec, dict):
        for k, v in spec.items():
            out[str(k)] = seeds_of(v, f"of {k!r}")
    elif isinstance(spec, (list, tuple)) and all(isinstance(x, int) for x in spec):
        out["default"] = seeds_of(list(spec), "")
    else:
        for item in ([spec] if isinstance(spec, str) else spec):
            name, eq, val = str(item).rpartition("=")
            if eq:
                out[name.strip()] = seeds_of(val, f"of {name.strip()!r}")
            else:
                out["default"] = seeds_of(val, "")
    out.setdefault("default", (0,))
    return out


def expand_seeds(runs: list[SuiteRun], seeds: dict[str, tuple[int, ...]] | None) -> list[SuiteRun]:
    """`runs` with one copy per pre-training seed (parse_pretrain_seeds), teachers before the runs
    that use them, each run's seeds in order; with seed 0 only, `runs` unchanged."""
    seeds = parse_pretrain_seeds(None) if seeds is None else seeds
    unknown = [k for k in seeds if k != "default" and k not in {r.name for r in runs}]
    if unknown:
        raise ValueError(f"pre-training seeds for unknown run(s) {unknown}; runs: {', '.join(r.name for r in runs)}")
    default = seeds.get("default", (0,))
    own: dict[str, tuple[int, ...]] = {}
    for r in runs:
        if r.name in seeds:
            own[r.name] = seeds[r.name]
        elif r.role == "main":
            own[r.name] = default
        elif r.role != "teacher":
            own[r.name] = default[:1]
    for r in runs:  # a teacher: every seed of the runs that use it (its own list when named)
        if r.role == "teacher" and r.name not in own:
            used = [s for u in runs if u.teacher == r.name for s in own.get(u.name, ())]
            own[r.name] = tuple(dict.fromkeys(used)) or default[:1]
    out = []
    for i, r in enumerate(runs):
        for j, s in enumerate(own[r.name]):
            teacher = None
            if r.teacher:
                t_seeds = own.get(r.teacher, (0,))
                teacher = seeded_name(r.teacher, s if s in t_seeds else t_seeds[0])
            out.append(((r.role not in ("main", "teacher"), j, i), r.with_seed(s, teacher)))
    # the compared methods (and teachers) first, seed by seed (every method's first seed before any
    # second one: a study cut short has each method at least once), then the ablations
    return [r for _, r in sorted(out, key=lambda t: t[0])]


def study_seeds(args, profile: Profile | None = None) -> dict[str, tuple[int, ...]]:
    """The study's pre-training seeds: `--pretrain-seeds` when given (its entries replace the
    profile's), else the profile's `pretrain_seeds:`, else seed 0 only."""
    given = list(getattr(args, "pretrain_seeds", None) or [])
    spec = getattr(profile, "pretrain_seeds", None) or None
    seeds = parse_pretrain_seeds(spec)
    if given:
        seeds = {**seeds, **parse_pretrain_seeds(given)} if spec else parse_pretrain_seeds(given)
    return seeds


def suite_run(profile_name: str, name: str) -> SuiteRun | None:
    """The run of the suite named `name` (`<run>` or `<run>_seed<k>`), None when there is none."""
    base, seed = split_seeded_name(name)
    runs = {r.name: r for r in suite_runs(True, profile_name)}
    if name in runs:
        return runs[name]
    if base not in runs:
        return None
    r = runs[base]
    return r.with_seed(seed, seeded_name(r.teacher, seed) if r.teacher else None)


def suite_identities(profile_name: str) -> dict[str, dict]:
    """{run name: method block} of every run of the profile's suite (ablations included; seed 0)."""
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
            # each face's own region map from its ground-truth landmarks (supervision: labels_used
            # "landmarks (ground truth)"), against the label-free canonical map of the aligned face
            SuiteRun("abl_regions_gt", {"objective": "paco", "mask.regions": "landmarks"}, "ablation", "regions"),
        ]
        only = ABLATION_RUNS.get(profile_name)
        if only is not None:
            runs = [r for r in runs if r.role != "ablation" or r.name in only]
    return runs


def suite_encoders(runs_root: str | Path, profile_name: str, include_ablations: bool = True,
                   pretrain_seeds: dict | None = None) -> dict[str, Path]:
    """{run name: where its encoder is (or will be)} for every evaluated run of the suite (not the
    teacher) at each of its pre-training seeds: runs/<profile>/<name>[_seed<k>]/encoder.safetensors."""
    return {r.name: Path(runs_root) / profile_name / r.name / "encoder.safetensors"
            for r in expand_seeds(suite_runs(include_ablations, profile_name), pretrain_seeds)
            if r.role != "teacher"}


def random_control(profile_name: str) -> str:
    """The random-init control has the same architecture as the suite's encoders."""
    from paco_fr.config import load_config

    m = load_config(profile_name)["model"]
    spec = f"{m['arch']}@{m['img_size']}/{m['patch_size']}"
    if m.get("depth"):
        spec += f"/d{m['depth']}"
    return f"random:{spec}"


def teacher_of(include_ablations: bool = True, profile_name: str = "smoke",
               pretrain_seeds: dict | None = None) -> dict[str, str]:
    """{run: the run whose encoder is its teacher} (MCF-style -> mcf_teacher; mcf_seed1 -> mcf_teacher_seed1)."""
    return {r.name: r.teacher for r in expand_seeds(suite_runs(include_ablations, profile_name), pretrain_seeds)
            if r.teacher}


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
               log: Callable[[str], None] | None = None, pretrain_seeds: dict | None = None) -> list[PlannedRun]:
    """Every run of the suite with its overrides and its budget-matched number of steps.

    Each run's cost per step is measured once on tiny batches (paco_fr.flops.step_cost; MCF-style
    with a random teacher of the teacher run's architecture, since the teacher may not exist yet:
    its weights do not change the count). Warm-up is scaled with the steps (the same fraction of
    every run); `overrides` apply to every run (e.g. train.steps sets the reference length).
    `pretrain_seeds` (parse_pretrain_seeds): one planned run per (run, seed), every seed of a run
    with the run's steps (a seed changes neither the cost nor the budget)."""
    from bench_tasks.budget import match_steps, plan_lines
    from paco_fr.config import load_config
    from paco_fr.flops import step_cost

    runs = suite_runs(include_ablations, profile_name)  # the budget: once per run (seed 0's config)
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
    matched = {}
    for run in runs:
        ov = dict(ovs[run.name])
        if steps[run.name] != planned_length(cfgs[run.name], world) or ov.get("train.steps") is not None:
            ov["train.steps"], ov["train.epochs"] = steps[run.name], None
        if run.name != ref and steps[run.name] != ref_steps:
            ov["train.warmup_steps"] = max(1, round(warmup * steps[run.name] / max(1, ref_steps)))
        matched[run.name] = ov
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
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"budget_by": budget_by, "reference": REFERENCE_RUN, "runs": {
        p.run.name: {"steps": p.steps, **p.cost, "role": p.run.role, "teacher": p.run.teacher}
        for p in plan}}, indent=1))


def pretrain_suite(profile: Profile, runs_root: str | Path = "runs", include_ablations: bool = True,
                   log: Callable[[str], None] = print, progress: bool = True,
                   overrides: dict | None = None, failed: list | None = None,
                   budget_by: str = "flops", jobs: int = 1, pretrain_seeds: dict | None = None) -> dict[str, Path]:
    """Pre-train (or reuse / resume) every run of the suite at each of its pre-training seeds
    (`pretrain_seeds`: parse_pretrain_seeds); returns {run name: encoder path}.
    `overrides` (dotted keys, e.g. {"train.steps": 500}) apply to every run; the runs' lengths are
    then matched to the reference's budget (`budget_by`: flops / images / steps; bench_tasks.budget).
    `jobs` > 1: that many runs at once, each in its own process (one GPU or CPU shared; a run
    whose teacher is in the suite starts when the teacher has finished); the runs and their
    results are the same as one after the other. A run that fails is reported and left out
    (appended to `failed` as (name, cause)); the others go on."""
    plan = plan_suite(profile.name, runs_root, include_ablations, overrides, budget_by, log=log,
                      pretrain_seeds=pretrain_seeds)
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

    base_roles = {r.name: r.role for r in suite_runs(True, profile.name)}
    roles = {n: base_roles.get(split_seeded_name(n)[0], base_roles.get(n, "main")) for n in encoders}
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
