"""An experiment, resolved once: `resolve(spec) -> Experiment`, a frozen value holding everything a
run needs to start (the Profile object, not its name; the Plan with each cell's version; the data
roots; the study's encoders, named; the notes that say what the numbers mean). Resolving reads
files and checks the backbones; it trains nothing and writes nothing. `execute` (session.execute)
runs it; the CLI and the Python API (bench_tasks.api.run, bench_tasks.api.evaluate) both call
these two.

    exp = resolve(RunSpec(profile="smoke", tasks=("attributes",), backbones=("random:vit_tiny",)))
    exp.plan.cells, exp.profile.linear_epochs, exp.notes
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench_tasks.contracts import Profile
from bench_tasks.errors import PlanError
from bench_tasks.plan.cell_plan import Plan
from bench_tasks.plan.cells import DataRoots
from bench_tasks.plan.profiles import ProfileError, load_profile, parse_assignments, resolve_native_size
from bench_tasks.run.spec import RunSpec
from bench_tasks.session.planning import StudyStage, build_plan, plan_notes, plan_request
from bench_tasks.store.method import parse_labels


@dataclass(frozen=True)
class Experiment:
    """A run resolved: its spec (with the profile's resolved name), the Profile, the Plan (cells,
    versions, profiles), where the data lives, the tasks' data sets, the backbones' labels, the
    study's stage 1 as planned (None for given backbones) and the plan notes. `backbones`: where the
    cells' backbones come from (None: built from their URIs; an in-memory model for evaluate)."""

    spec: RunSpec
    profile: Profile
    plan: Plan
    roots: DataRoots
    task_datasets: dict
    labels: dict = field(default_factory=dict)
    study: StudyStage | None = None
    notes: tuple[str, ...] = ()
    backbones: object | None = None

    @property
    def results(self) -> Path:
        return self.spec.results_path

    def replace(self, **changes) -> Experiment:
        return dataclasses.replace(self, **changes)


def resolve_profile(spec: RunSpec) -> tuple[Profile, list[str]]:
    """(the spec's Profile: a bundled name or a YAML file, `--set` applied, at the backbones' own
    input size under a `native_size` profile; its lines for the plan notes). Raises ProfileError."""
    profile = load_profile(spec.profile, list(spec.set))
    overridden = {k.removeprefix("extra.") for k in parse_assignments(list(spec.set))}
    return resolve_native_size(profile, spec.backbone_list if spec.backbones else [], overridden)


def resolve(spec: RunSpec, log: Callable[[str], None] = print, backbones: object | None = None) -> Experiment:
    """The Experiment of `spec`, every problem raised before anything runs: PlanInvalid (all the
    plan's problems together), ProfileError, another PlanError, or StageFailed (--eval-only with no
    finished pre-training run). Trains nothing, writes nothing, registers nothing: the Profile is
    resolved once and handed to every check and planner (PlanRequest), the Experiment carries it."""
    # lazy: keeps the plan checks (paco_fr's config) out of --help/list/status
    from bench_tasks.plan.validate import PlanInvalid, check_args

    try:
        profile, native_lines = resolve_profile(spec)
    except ProfileError as err:  # reported with every other problem of the options
        raise PlanInvalid([str(err), *options_problems(spec)]) from err
    spec = spec.replace(profile=profile.name)
    opts = spec.plan_options()
    if backbones is not None:  # an in-memory model has no URI to check; it is checked by a forward pass
        given = [u for u in spec.backbone_list if not backbones.serves(u)]
        opts = dataclasses.replace(opts, backbones=",".join(given) or None, study=False)
    request = plan_request(spec, profile, opts)  # the one value every check and planner reads
    problems = check_args(opts, profile) + results_problems(spec.results_path, Path(spec.work_dir))
    planned = build_plan(request, log=log, problems=problems, backbones=backbones)
    try:
        labels = parse_labels(list(spec.label), spec.backbone_list if spec.backbones else [])
    except ValueError as err:
        raise PlanError(str(err)) from err
    notes = plan_notes(planned.plan, planned.roots, profile, native_lines, ceilings=request.ceilings)
    return Experiment(spec=spec, profile=profile, plan=planned.plan, roots=planned.roots,
                      task_datasets=planned.task_datasets, labels=labels, study=planned.study, notes=tuple(notes),
                      backbones=backbones)


def results_problems(results: Path, work_dir: Path) -> list[str]:
    """The results file and the work folder can be written (checked in --dry-run too)."""
    from bench_tasks.store.paths import writable_file_problems, writable_folder_problems

    return writable_file_problems(results, "--results") + writable_folder_problems(work_dir, "--work-dir")


def options_problems(spec: RunSpec) -> list[str]:
    """The problems of the options that need no profile (names, values, paths), for a plan whose
    profile cannot be loaded."""
    from bench_tasks.plan.validate import check_args

    try:
        return check_args(spec.plan_options()) + results_problems(spec.results_path, Path(spec.work_dir))
    except Exception:  # noqa: BLE001 - a check that needs the missing profile: the profile's error says enough
        return results_problems(spec.results_path, Path(spec.work_dir))
