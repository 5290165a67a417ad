"""`run`'s flags to a plan: the tasks and their data sets, the study's encoders (named: the
pre-training stage writes them) or the given backbones' cells, reference cells, and the notes
printed about it. Planning reads files and builds backbones to check them; it trains nothing and
writes nothing (bench_tasks.session.experiment.resolve).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench_tasks.backbones.native import native_size, resize_effect
from bench_tasks.contracts import Profile, uri_parts, uri_scheme
from bench_tasks.datasets.lfw import CROP_FRAC
from bench_tasks.errors import PlanError, RunError, UnknownName
from bench_tasks.plan.cell_costs import task_size
from bench_tasks.plan.cell_plan import Plan, make_plan
from bench_tasks.plan.cells import DataRoots, missing_root_error, plan_cells
from bench_tasks.plan.options import SYNTHFACE, PlanOptions
from bench_tasks.plan.options import csv_list as _csv
from bench_tasks.plan.profiles import dotted_overrides
from bench_tasks.plan.references import ceiling_lines, is_reference
from bench_tasks.plan.suite import (
    encoder_finished,
    expand_seeds,
    finished_elsewhere,
    study_seeds,
    suite_encoders,
    suite_runs,
)
from bench_tasks.registry import DATASETS, TASKS
from bench_tasks.run.spec import RunSpec
from bench_tasks.tasks.recognition import settings_for


class StageFailed(RunError, RuntimeError):
    """A stage of `run --all` failed as a whole (exit code 1)."""


@dataclass(frozen=True)
class StudyStage:
    """The study's stage 1: its encoders {run name: encoder file} (named when planned; after the
    pre-training stage, those it wrote), the runs that failed [(name, cause)], and the
    pre-training budget plan a dry run printed."""

    encoders: dict
    failed: tuple = ()
    suite_plan: object | None = None
    evaluated_s: float = 0.0  # seconds spent evaluating runs during stage 1 (`--by-run`)


@dataclass(frozen=True)
class PlannedCells:
    """A run's plan (bench_tasks.plan.cell_plan.Plan), its data roots, its tasks' data sets and the
    study's stage 1 (None for the given backbones)."""

    plan: Plan
    roots: DataRoots
    task_datasets: dict
    study: StudyStage | None = None


@dataclass(frozen=True)
class StudyRequest:
    """The study's stage 1 as the spec asks for it, read once (bench_tasks.run.spec.RunSpec): where
    its runs live, whether the ablations train, its pre-training seeds (parsed), what stage 1 does
    here (RunSpec.stage), whether a dry run plans the budget, the pre-training overrides and budget
    rule, whether a cluster launcher (re)writes the encoders, --pretrain-only, and what is wrong with
    the pre-training seeds (None: nothing)."""

    runs: str
    ablations: bool
    pretrain_seeds: dict
    stage: str
    verb: str
    budget: bool
    pretrain_override: tuple[str, ...]
    budget_by: str
    cluster: bool
    pretrain_only: bool = False
    seeds_problem: str | None = None  # bad pre-training seeds: raised when stage 1 is planned

    @property
    def overrides(self) -> dict:
        """The pre-training overrides as {dotted key: value} (read once the options are checked)."""
        return dotted_overrides(list(self.pretrain_override))


@dataclass(frozen=True)
class PlanRequest:
    """Everything a plan is made from, built once by `plan_request` (bench_tasks.session.experiment.resolve):
    the Profile, the plan options, the data roots, the given backbones (the study's are named by
    its request), the device, the reference cells asked for, and the study's request (None:
    the given backbones' plan). Each check reads the small values it needs from it."""

    profile: Profile
    opts: PlanOptions
    roots: DataRoots
    backbones: tuple[str, ...] = ()
    device: str = "auto"
    ceilings: bool = True
    probes: bool = True
    study: StudyRequest | None = None


def plan_request(spec: RunSpec, profile: Profile, opts: PlanOptions) -> PlanRequest:
    """The PlanRequest of `spec` under `profile`; `opts`: its plan options (RunSpec.plan_options, an
    in-memory model's URIs left out)."""
    study = None
    if spec.is_study:
        try:
            pseeds, seeds_problem = study_seeds(spec.pretrain_seeds, profile), None
        except ValueError as err:  # raised with the plan's other problems (study_encoders)
            pseeds, seeds_problem = {}, f"--pretrain-seeds: {err}"
        study = StudyRequest(
            runs=spec.runs, ablations=not spec.no_ablations, pretrain_seeds=pseeds, seeds_problem=seeds_problem,
            stage=spec.stage, budget=bool(spec.dry_run),
            # --status only reads: it plans like a dry run, never pre-trains
            verb=("would run or reuse" if spec.dry_run or spec.status
                  else "runs as cluster jobs (finished runs are reused)"),
            pretrain_override=tuple(spec.pretrain_override), budget_by=spec.budget_by, cluster=spec.launch.launcher != "local",
            pretrain_only=spec.pretrain_only)
    return PlanRequest(profile=profile, opts=opts, roots=DataRoots.parse(list(spec.data_root) or None),
                       backbones=() if spec.is_study else tuple(spec.backbone_list), device=spec.device,
                       ceilings=not spec.no_ceilings, probes=not spec.no_probes, study=study)


def build_task_datasets(opts: PlanOptions, roots, log=print) -> dict[str, list[str]]:
    """{task: [datasets]} of the options' tasks and datasets after checking the data roots.
    Datasets named with --datasets must exist (an error shows the expected layout); implicitly
    chosen ones whose root is missing are skipped with a message."""
    tasks = _csv(opts.tasks)
    if opts.all or not tasks:
        if not opts.all and not tasks:
            raise UnknownName("choose --tasks <t1,t2> or --all (see `python -m bench_tasks list`)")
        tasks = tasks or TASKS.names()
    for t in tasks:
        if t not in TASKS:
            raise UnknownName(f"unknown task {t!r}; registered: {', '.join(TASKS.names())}")
    explicit = _csv(opts.datasets)
    out: dict[str, list[str]] = {}
    if explicit:
        for d in explicit:
            if d not in DATASETS:
                raise UnknownName(f"unknown dataset {d!r}; registered: {', '.join(DATASETS.names())}")
            spec = DATASETS.get(d)
            if spec.needs_root and roots.get(d) is None:
                raise PlanError(str(missing_root_error(d, roots)))
        unused = [d for d in explicit if not any(t in getattr(DATASETS.get(d), "tasks", ()) for t in tasks)]
        if unused:
            raise PlanError(f"dataset(s) {unused} serve none of the tasks {tasks}")
        for t in tasks:
            out[t] = [d for d in explicit if t in getattr(DATASETS.get(d), "tasks", ())]
        return {t: ds for t, ds in out.items() if ds}
    for t in tasks:
        task = TASKS.get(t)
        cands = list(task.default_datasets)
        if SYNTHFACE in DATASETS and t in getattr(DATASETS.get(SYNTHFACE), "tasks", ()):
            cands.append(SYNTHFACE)
        chosen = []
        for d in cands:
            if d not in DATASETS:
                log(f"skip {t}/{d}: no reader registered for {d!r}")
                continue
            spec = DATASETS.get(d)
            if spec.needs_root and roots.get(d) is None:
                log(f"skip {t}/{d}: no data root (expected {roots.expected(d)}; "
                    f"see `python -m bench_tasks list --layouts`)")
                continue
            chosen.append(d)
        if chosen:
            out[t] = chosen
        else:
            log(f"skip task {t}: none of its datasets is available")
    return out


def build_plan(request: PlanRequest, log=print, problems: list[str] | None = None, backbones=None) -> PlannedCells:
    """The plan `request` asks for. The study (`request.study`) plans its suite's encoders by name
    (bench_tasks.plan.study; the pre-training stage writes them). Every problem found (plus
    `problems` found earlier by bench_tasks.plan.validate.check_args) is raised together as one
    PlanInvalid before anything runs. `backbones`: an in-memory model's source
    (bench_tasks.session.in_memory.InMemoryBackbones), checked by a forward pass at each input size."""
    # lazy: keeps the plan checks (paco_fr's config) out of --help/list/status
    from bench_tasks.plan.validate import (
        PlanInvalid,
        check_backbones,
        check_data,
        check_requirements,
        parse_fractions,
        parse_seeds,
    )

    opts, roots, profile = request.opts, request.roots, request.profile
    try:
        task_ds = build_task_datasets(opts, roots, log=log)
    except UnknownName as err:  # check_args names it too, with the other problems
        if problems:
            raise PlanInvalid(problems) from err
        raise
    except PlanError as err:
        if problems:
            raise PlanInvalid([*problems, str(err)]) from err
        raise
    protocols = _csv(opts.protocols)
    problems = list(problems or []) + protocol_problems(task_ds, protocols, problems or [])
    seeds, bad = parse_seeds(opts.seeds)
    fractions, bad2 = parse_fractions(opts.fractions)
    problems += [p for p in bad + bad2 if p not in problems]
    problems += check_data(task_ds, roots, profile, fractions=fractions)
    problems += check_requirements(task_ds)
    if request.study is None:  # the study's encoders are checked once stage 1 has written them
        served = backbones.serves if backbones is not None else (lambda uri: False)
        problems += check_backbones([u for u in request.backbones if not served(u)], task_ds, profile, request.device)
        problems += backbones.problems(task_ds, profile) if backbones is not None else []
    if problems:
        raise PlanInvalid(problems)
    if request.study is not None:
        stage = study_encoders(request.study, profile, log)
        if request.study.pretrain_only:
            return PlannedCells(make_plan([], references=False, profiles=profile), roots, task_ds, stage)
        return PlannedCells(study_plan(request, stage, task_ds, protocols, seeds, fractions), roots, task_ds, stage)
    cells = plan_cells(list(request.backbones), task_ds, protocols=protocols, seeds=seeds, fractions=fractions,
                       profile=profile)
    return PlannedCells(make_plan(cells, ceilings="auto" if request.ceilings else None, probes=request.probes,
                                  profiles=profile), roots, task_ds)


def protocol_problems(task_ds: dict, protocols: list[str] | None, problems: list[str]) -> list[str]:
    """--protocols a single task does not run (several tasks: each runs the ones it has)."""
    out = []
    for t in task_ds if protocols else ():
        task = TASKS.get(t)
        bad = [p for p in protocols if task.plan_protocol(p) is None]
        if bad and len(task_ds) == 1 and not any(p.startswith("--protocols") for p in problems + out):
            out.append(f"--protocols: task {t} does not support protocol(s) {bad}; it has "
                       f"{', '.join(TASKS.get(t).protocols)}")
    return out


def study_plan(request: PlanRequest, stage: StudyStage, task_ds, protocols, seeds, fractions) -> Plan:
    """The study's plan: its encoders (named: pre-trained by the run's first stage or by cluster
    jobs; the finished ones with --eval-only), their references, all checked (an encoder not
    written yet is checked once the pre-training stage has written it)."""
    # lazy: keeps the study planner and plan checks (paco_fr's config) out of --help/list/status
    from bench_tasks.plan.study import study_cells
    from bench_tasks.plan.validate import PlanInvalid, check_backbones

    profile, cluster = request.profile, request.study.cluster
    cells = study_cells(profile, stage.encoders, task_ds, protocols=protocols, seeds=seeds, fractions=fractions,
                        ceilings=request.ceilings, probes=request.probes)
    problems = check_backbones(dict.fromkeys(c.backbone for c in cells), task_ds, profile, request.device,
                               # encoders not written yet are checked after the pre-training stage; with
                               # a cluster launcher the pre-training jobs (re)write them, and each
                               # evaluation job checks its own
                               skip_missing=lambda uri: uri_scheme(uri) == "paco_fr" and bool(
                                   cluster or not Path(uri_parts(uri)[1]).is_file()))
    if problems:
        raise PlanInvalid(problems)
    return make_plan(cells, references=False, profiles=profile)


def study_suite(spec: RunSpec, profile: Profile) -> tuple[dict, list]:
    """(the pre-training seeds {run: seeds}, the suite's runs, one per seed) of the study; raises
    PlanInvalid when `pretrain_seeds` (or the profile's `pretrain_seeds:`) is bad."""
    # lazy: keeps the plan checks (paco_fr's config) out of --help/list/status
    from bench_tasks.plan.validate import PlanInvalid

    try:
        pseeds = study_seeds(spec.pretrain_seeds, profile)
    except ValueError as err:
        raise PlanInvalid([f"--pretrain-seeds: {err}"]) from err
    return pseeds, expand_seeds(suite_runs(not spec.no_ablations, profile), pseeds)


def study_encoders(study: StudyRequest, profile: Profile, log) -> StudyStage:
    """The study's stage 1 as planned: its suite's encoders {run name: encoder file}, named (the
    pre-training stage or cluster jobs write them), or the finished ones (--eval-only); a dry run
    also plans the pre-training budget. Trains nothing."""
    # lazy: keeps the study planner (paco_fr's config) out of --help/list/status
    from bench_tasks.plan.study import plan_suite
    from bench_tasks.plan.validate import PlanInvalid

    if study.seeds_problem:
        raise PlanInvalid([study.seeds_problem])
    named = suite_encoders(study.runs, profile, study.ablations, study.pretrain_seeds)
    if study.stage == "name":
        log(f"stage 1 (pre-training, {profile.name} config) {study.verb}: {', '.join(named_runs(study, profile))}")
        budget = None
        if study.budget:  # the budget plan (cost per step measured on tiny batches: seconds)
            budget = plan_suite(profile, study.runs, study.ablations, study.overrides, study.budget_by, log=log,
                                pretrain_seeds=study.pretrain_seeds)
        return StudyStage(named, suite_plan=budget)
    if study.stage == "eval_only":
        encoders = {}
        for name, enc in named.items():
            if encoder_finished(enc):
                encoders[name] = enc
            elif finished_elsewhere(enc):
                log(f"--eval-only: {name} finished on another machine (its encoder is not here); left out")
            else:
                log(f"--eval-only: {name} has not finished pre-training ({enc.parent}); left out")
        if not encoders:
            raise StageFailed(f"--eval-only: no finished pre-training run under {Path(study.runs) / profile.name}")
        return StudyStage(encoders)
    return StudyStage(named)


def named_runs(study: StudyRequest, profile: Profile) -> list[str]:
    """The suite's runs stage 1 trains, one per pre-training seed, teachers included."""
    return [r.name for r in expand_seeds(suite_runs(study.ablations, profile), study.pretrain_seeds)]


def resolution_lines(cells, profile) -> list[str]:
    """One line per encoder that runs at another input size than its own (a ViT's position embedding
    is resampled, a CNN's maps scale): `timm:vit_base_patch16_224:w.safetensors: 224 -> 64 px ...`."""
    sizes: dict[str, set[int]] = {}
    for c in cells:
        if not is_reference(c.backbone):
            sizes.setdefault(c.backbone, set()).add(task_size(c.task, profile))
    out = []
    for uri, used in sizes.items():
        try:
            own = native_size(uri)
        except Exception:  # noqa: BLE001 - the plan's backbone check reports a file that cannot be read
            own = None
        other = sorted(n for n in used if n != own)
        if own and other:
            out.append(f"input size: {uri}: {own} -> {'/'.join(map(str, other))} px, {resize_effect(uri)} "
                       f"(profile {profile.name}; keep {own} px with --profile native or "
                       f"--set image_size={own} --set dense_size={own})")
    return out


def verification_lines(cells, roots, profile) -> list[str]:
    """What a real verification set's number means: its head trains on SynthFace identities when
    no training faces are given; LFW's images are centre-cropped, not aligned."""
    out = []
    for ds in dict.fromkeys(c.dataset for c in cells if c.task == "recognition"):
        if ds not in DATASETS or not getattr(DATASETS.get(ds), "test_only", False):
            continue
        train_root = settings_for(profile).get("train_root")
        root = roots.get(ds)
        cand = Path(root).resolve().parent / "train_faces" if root else None
        if not train_root and not (cand is not None and cand.is_dir()):
            where = cand if cand is not None else "<data-root>/train_faces"
            out.append(f"recognition/{ds}: the head trains on SynthFace identities (no {where} folder; give one, or "
                       "--set recognition.train_root=<face folder>): the number measures transfer from SynthFace")
        if ds == "lfw":
            out.append(f"recognition/lfw: images are centre-cropped (the centred {CROP_FRAC:.0%} square), not aligned; "
                       "an aligned copy of LFW in the same layout gives comparable numbers")
    return out


def plan_notes(plan: Plan, roots, profile, native_lines: list[str], ceilings: bool = True) -> list[str]:
    """Lines that say what the plan's numbers mean: native size, resized backbones, ceilings
    (`ceilings`: asked for), verification sets' training faces and crops."""
    cells = plan.cells
    lines = list(native_lines)
    for fn in (lambda: resolution_lines(cells, profile),
               lambda: ceiling_lines(cells, enabled=ceilings),
               lambda: verification_lines(cells, roots, profile)):
        try:
            lines += fn()
        except Exception as err:  # noqa: BLE001 - a note never stops a plan
            lines.append(f"(a plan note could not be made: {type(err).__name__}: {err})")
    return lines
