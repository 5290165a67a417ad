"""`run`'s flags to a plan: the tasks and their data sets, the study's stages (pre-training suite,
then its cells) or the given backbones' cells, reference cells, and the notes printed about it.
"""

from __future__ import annotations

from pathlib import Path

from bench_tasks.cli.common import SYNTHFACE, _csv, build_backbone_list, is_study
from bench_tasks.contracts import uri_parts, uri_scheme
from bench_tasks.errors import PlanError
from bench_tasks.plan.options import PlanOptions
from bench_tasks.plan.profiles import PROFILES, get_profile


class StageFailed(RuntimeError):
    """A stage of `run --all` failed as a whole (exit code 1)."""


class PretrainOnlyDone(Exception):
    """`run --all --pretrain-only`: stage 1 is done, nothing is evaluated."""

    def __init__(self, encoders: dict, failed: list):
        super().__init__("pre-training only")
        self.encoders, self.failed = encoders, failed


def build_task_datasets(opts: PlanOptions, roots, log=print) -> dict[str, list[str]]:
    """{task: [datasets]} of the options' tasks and datasets after checking the data roots.
    Datasets named with --datasets must exist (an error shows the expected layout); implicitly
    chosen ones whose root is missing are skipped with a message."""
    from bench_tasks.plan.cells import missing_root_error
    from bench_tasks.registry import DATASETS, TASKS

    tasks = _csv(opts.tasks)
    if opts.all or not tasks:
        if not opts.all and not tasks:
            raise PlanError("choose --tasks <t1,t2> or --all (see `python -m bench_tasks list`)")
        tasks = tasks or TASKS.names()
    for t in tasks:
        if t not in TASKS:
            raise PlanError(f"unknown task {t!r}; registered: {', '.join(TASKS.names())}")
    explicit = _csv(opts.datasets)
    out: dict[str, list[str]] = {}
    if explicit:
        for d in explicit:
            if d not in DATASETS:
                raise PlanError(f"unknown dataset {d!r}; registered: {', '.join(DATASETS.names())}")
            spec = DATASETS.get(d)
            if spec.needs_root and roots.get(d) is None:
                raise PlanError(f"error: {missing_root_error(d, roots)}")
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


def build_plan(args, log=print, problems: list[str] | None = None):
    """(cells, roots) for the parsed `run` arguments. `run --all` with no --backbones is the whole
    study: the pre-training suite runs first (bench_tasks.plan.study) and its encoders are evaluated.
    Every problem found (plus `problems` found earlier by bench_tasks.plan.validate.check_args) is raised
    together as one PlanInvalid before anything runs."""
    from bench_tasks.plan.cells import DataRoots, plan_cells
    from bench_tasks.plan.references import with_references  # floors, ceilings, cosine probes
    from bench_tasks.plan.validate import (
        PlanInvalid,
        check_backbones,
        check_data,
        parse_fractions,
        parse_seeds,
    )

    profile = get_profile(args.profile)
    roots = DataRoots.parse(args.data_root)
    task_ds = build_task_datasets(PlanOptions.from_args(args), roots, log=log)
    protocols = _csv(args.protocols)
    problems = list(problems or []) + protocol_problems(task_ds, protocols, problems or [])
    seeds, bad = parse_seeds(args.seeds)
    fractions, bad2 = parse_fractions(args.fractions)
    problems += [p for p in bad + bad2 if p not in problems]
    problems += check_data(task_ds, roots, profile)
    if not is_study(args):  # the study's encoders are checked once stage 1 has written them
        problems += check_backbones(build_backbone_list(args), task_ds, profile, args.device)
    if problems:
        raise PlanInvalid(problems)
    if is_study(args):
        return study_plan(args, profile, task_ds, protocols, seeds, fractions, log), roots
    cells = plan_cells(build_backbone_list(args), task_ds, protocols=protocols, seeds=seeds,
                       fractions=fractions, profile=profile.name)
    cells = with_references(cells, ceilings=None if getattr(args, "no_ceilings", False) else "auto",
                            probes=not getattr(args, "no_probes", False))
    return cells, roots


def protocol_problems(task_ds: dict, protocols: list[str] | None, problems: list[str]) -> list[str]:
    """--protocols a single task does not run (several tasks: each runs the ones it has)."""
    from bench_tasks.registry import TASKS

    out = []
    for t in task_ds if protocols else ():
        task = TASKS.get(t)
        bad = [p for p in protocols if task.plan_protocol(p) is None]
        if bad and len(task_ds) == 1 and not any(p.startswith("--protocols") for p in problems + out):
            out.append(f"--protocols: task {t} does not support protocol(s) {bad}; it has "
                       f"{', '.join(TASKS.get(t).protocols)}")
    return out


def study_plan(args, profile, task_ds, protocols, seeds, fractions, log) -> list:
    """The study's cells: its encoders (pre-trained here first, or only named for a dry run, --status
    or a cluster launcher, or the finished ones with --eval-only), their references, all checked."""
    from bench_tasks.plan.run_spec import build_run_spec
    from bench_tasks.plan.study import study_cells
    from bench_tasks.plan.validate import PlanInvalid, check_backbones

    try:
        spec = build_run_spec(args, profile, task_ds, protocols, seeds, fractions)
    except ValueError as err:
        raise PlanInvalid([f"--pretrain-seeds: {err}"]) from err
    encoders = study_encoders(args, spec, log)
    cells = study_cells(profile, encoders, task_ds, protocols=protocols, seeds=seeds, fractions=fractions,
                        ceilings=spec.ceilings, probes=spec.probes)
    problems = check_backbones(dict.fromkeys(c.backbone for c in cells), task_ds, profile, args.device,
                               # a dry run skips encoders not written yet; with a cluster launcher the
                               # pre-training jobs (re)write them, and each evaluation job checks its own
                               skip_missing=lambda uri: uri_scheme(uri) == "paco_fr" and bool(
                                   spec.launcher.launcher != "local"
                                   or ((spec.dry_run or spec.status)
                                       and not Path(uri_parts(uri)[1]).is_file())))
    if problems:
        raise PlanInvalid(problems)
    return cells


def study_encoders(args, spec, log) -> dict:
    """{run name: encoder file} of the study's suite (`spec`: its bench_tasks.plan.run_spec.RunSpec):
    named only (a dry run, --status, a cluster launcher), the finished ones (--eval-only), or
    pre-trained here (stage 1). Sets `args.suite_plan` (a dry run) and `args.pretrain_failed` (stage 1)
    for the run's report."""
    from bench_tasks.plan.study import plan_suite
    from bench_tasks.plan.suite import suite_encoders
    from bench_tasks.run.launch import _finished
    from bench_tasks.run.pretrain import pretrain_suite

    profile, pseeds, opts = spec.profile, spec.pretrain_seeds, spec.launcher
    if spec.stage == "name":  # --status only reads: it plans like a dry run, never pre-trains
        verb = ("would run or reuse" if spec.dry_run or spec.status
                else "runs as cluster jobs (finished runs are reused)")
        log(f"stage 1 (pre-training, {profile.name} config) {verb}: {', '.join(r.name for r in spec.suite)}")
        if spec.dry_run:  # the budget plan (cost per step measured on tiny batches: seconds)
            args.suite_plan = plan_suite(profile.name, spec.runs_root, spec.ablations, spec.overrides,
                                         opts.budget_by, log=log, pretrain_seeds=pseeds)
        return suite_encoders(spec.runs_root, profile.name, spec.ablations, pseeds)
    if spec.stage == "eval_only":
        encoders = {}
        for name, enc in suite_encoders(spec.runs_root, profile.name, spec.ablations, pseeds).items():
            if _finished(enc):
                encoders[name] = enc
            else:
                log(f"--eval-only: {name} has not finished pre-training ({enc.parent}); left out")
        if not encoders:
            raise StageFailed(f"--eval-only: no finished pre-training run under {Path(spec.runs_root) / profile.name}")
        return encoders
    failed: list[tuple[str, str]] = []
    args.pretrain_failed = failed
    encoders = pretrain_suite(profile, spec.runs_root, include_ablations=spec.ablations, log=log,
                              progress=opts.progress, overrides=spec.overrides, failed=failed,
                              budget_by=opts.budget_by, jobs=opts.pretrain_jobs, pretrain_seeds=pseeds)
    if failed and not encoders:
        raise StageFailed(f"every pre-training run failed ({len(failed)}); nothing to evaluate or "
                          "report:\n" + "\n".join(f"  {n}: {c}" for n, c in failed))
    if spec.pretrain_only:
        raise PretrainOnlyDone(encoders, failed)
    return encoders


def native_profile(args, profile):
    """A `native_size` profile (bench_tasks/configs/native.yaml) at the input size of the plan's
    backbones, registered for this process; its line goes into the plan notes."""
    from bench_tasks.plan.profiles import parse_assignments, resolve_native_size

    uris = build_backbone_list(args) if getattr(args, "backbones", None) else []
    given = parse_assignments(getattr(args, "set", None) or [])
    resolved, lines = resolve_native_size(profile, uris, {k.removeprefix("extra.") for k in given})
    if resolved is not profile:
        PROFILES[resolved.name] = resolved
    args.native_lines = lines
    return resolved


def resolution_lines(cells, profile) -> list[str]:
    """One line per encoder that runs at another input size than its own (its position embedding
    is resampled): `timm:vit_base_patch16_224:w.safetensors: 224 -> 64 px ...`."""
    from bench_tasks.backbones.native import native_size
    from bench_tasks.plan.cell_costs import task_size
    from bench_tasks.plan.references import is_reference

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
            out.append(f"input size: {uri}: {own} -> {'/'.join(map(str, other))} px, position embedding resampled "
                       f"(profile {profile.name}; keep {own} px with --profile native or "
                       f"--set image_size={own} --set dense_size={own})")
    return out


def verification_lines(cells, roots, profile) -> list[str]:
    """What a real verification set's number means: its head trains on SynthFace identities when
    no training faces are given; LFW's images are centre-cropped, not aligned."""
    from bench_tasks.registry import DATASETS

    out = []
    for ds in dict.fromkeys(c.dataset for c in cells if c.task == "recognition"):
        if ds not in DATASETS or not getattr(DATASETS.get(ds), "test_only", False):
            continue
        from bench_tasks.tasks.recognition import settings_for

        train_root = settings_for(profile).get("train_root")
        root = roots.get(ds)
        cand = Path(root).resolve().parent / "train_faces" if root else None
        if not train_root and not (cand is not None and cand.is_dir()):
            where = cand if cand is not None else "<data-root>/train_faces"
            out.append(f"recognition/{ds}: the head trains on SynthFace identities (no {where} folder; give one, or "
                       "--set recognition.train_root=<face folder>): the number measures transfer from SynthFace")
        if ds == "lfw":
            from bench_tasks.datasets.lfw import CROP_FRAC

            out.append(f"recognition/lfw: images are centre-cropped (the centred {CROP_FRAC:.0%} square), not aligned; "
                       "an aligned copy of LFW in the same layout gives comparable numbers")
    return out


def print_plan_notes(args, cells, roots, profile) -> None:
    """Lines that say what the plan's numbers mean: native size, resized backbones, ceilings,
    verification sets' training faces and crops."""
    from bench_tasks.plan.references import ceiling_lines

    lines = list(getattr(args, "native_lines", None) or [])
    for fn in (lambda: resolution_lines(cells, profile),
               lambda: ceiling_lines(cells, enabled=not getattr(args, "no_ceilings", False)),
               lambda: verification_lines(cells, roots, profile)):
        try:
            lines += fn()
        except Exception as err:  # noqa: BLE001 - a note never stops a plan
            lines.append(f"(a plan note could not be made: {type(err).__name__}: {err})")
    for line in lines:
        print(line)
