"""`python -m bench_tasks run`: the experiment (a bench_tasks.run.spec.RunSpec, from the flags and a
`--spec` file) planned, estimated, run here or launched, then its table and report. `run_spec(spec)`
is the one orchestrator; the CLI and bench_tasks.api.run call it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tabulate import tabulate

from bench_tasks.backbones.base import resolve_device
from bench_tasks.cli.common import apply_threads, fmt_elapsed, progress_bars_off
from bench_tasks.cli.planning import (
    PlannedRun,
    StageFailed,
    build_plan,
    native_profile,
    print_plan_notes,
    study_suite,
)
from bench_tasks.errors import PlanError
from bench_tasks.plan.estimate import actual_line, estimate_plan
from bench_tasks.plan.profiles import ProfileError, effective_settings, format_settings, load_profile
from bench_tasks.plan.suite import random_control, study_setting
from bench_tasks.report.build import build_report
from bench_tasks.run.spec import RunSpec, SpecError
from bench_tasks.run.status import print_status
from bench_tasks.store.method import parse_labels
from bench_tasks.store.readers import describe_rejected, inspect, rejected_path
from bench_tasks.store.rowfiles import union_latest


def rows_kept(results: Path) -> int:
    """The result rows (ok or failed) in this run's results file and its worker files."""
    try:
        return len(union_latest(results)) if results.exists() or results.with_suffix(".d").exists() else 0
    except Exception:  # noqa: BLE001 - the interrupt message must print
        return 0


def plan_estimate(spec: RunSpec, cells, results, profile, pretrain_plan=None):
    """The plan's PlanEstimate (bench_tasks.plan.estimate), or None when it cannot be made (said once)."""
    try:
        study_arch = None
        if spec.is_study:
            study_arch = random_control(profile.name)
        device = str(resolve_device(spec.device))
        return estimate_plan(cells, results, profile, pretrain_plan, device=device, study_arch=study_arch)
    except Exception as err:  # noqa: BLE001 - an estimate never stops a plan
        print(f"estimate: none ({type(err).__name__}: {err})")
        return None


def suite_plan(spec: RunSpec, profile, known=None):
    """The study's pre-training plan (bench_tasks.plan.study.plan_suite) for the estimate: `known`
    (the one the dry run printed), else planned here (no log)."""
    if not spec.is_study or spec.eval_only:
        return None
    if known is None:
        # lazy: keeps the study planner (paco_fr's config) out of --help/list/status
        from bench_tasks.plan.study import plan_suite

        pseeds, _ = study_suite(spec, profile)
        known = plan_suite(profile.name, spec.runs, not spec.no_ablations, spec.overrides, spec.budget_by,
                           pretrain_seeds=pseeds)
    return known


def print_plan_estimate(spec: RunSpec, cells, results, profile, known_suite_plan=None) -> None:
    """`--dry-run` / `--status`: seconds per stage and in total (bench_tasks.plan.estimate)."""
    try:
        plan = suite_plan(spec, profile, known_suite_plan)
    except Exception as err:  # noqa: BLE001
        print(f"estimate: no pre-training estimate ({type(err).__name__}: {err})")
        plan = None
    est = plan_estimate(spec, cells, results, profile, plan)
    if est is not None:
        print()
        for line in est.lines():
            print(line)
    tune = study_setting(profile.name, "tune") if spec.is_study and not spec.eval_only else None
    if tune:  # the tuning stage that runs before stage 1 (bench_tasks.run.tuning)
        try:
            from bench_tasks.run.tuning import tuning_estimate_lines

            for line in tuning_estimate_lines(profile, spec.runs, results, list(tune), spec.overrides,
                                              spec.budget_by, str(resolve_device(spec.device))):
                print(line)
        except Exception as err:  # noqa: BLE001 - an estimate never stops a plan
            print(f"estimate: no tuning estimate ({type(err).__name__}: {err})")


def pretrain_estimate_before(spec: RunSpec, profile):
    """Seconds the study's pre-training runs not finished yet should take (a local run that
    pre-trains; None otherwise), for the estimate-vs-actual line at the end."""
    if spec.stage == "name" or not spec.is_study:
        return None
    try:
        plan = suite_plan(spec, profile)
        est = plan_estimate(spec, [], Path("/nonexistent"), profile, plan)
        return None if est is None else sum(r.seconds for r in est.pretrain if not r.done)
    except Exception:  # noqa: BLE001
        return None


def print_estimate_vs_actual(pretrain_est, pretrain_taken, cells_est, cells_taken) -> None:
    if pretrain_est:
        print("pre-training " + actual_line(pretrain_est, pretrain_taken))
    if cells_est is not None:
        print("cells " + actual_line(cells_est.stage_seconds()["cells"][1], cells_taken))


def spec_from_args(args) -> RunSpec:
    """The run's RunSpec: the `--spec` file's (when given), with the flags given over it."""
    path = vars(args).get("spec")
    return RunSpec.from_args(args, RunSpec.from_yaml(path) if path else None)


def cmd_run(args) -> int:
    """`run`, with Ctrl-C answered in one line (exit 130) and no progress bars off a terminal."""
    try:
        spec = spec_from_args(args)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not sys.stderr.isatty():  # a log file: no progress bars
        spec = spec.replace(no_progress=True)
    t0 = time.monotonic()
    try:
        with progress_bars_off(spec.no_progress):
            return run_spec(spec)
    except KeyboardInterrupt:
        print(f"\ninterrupted after {fmt_elapsed(time.monotonic() - t0)}; {rows_kept(spec.results_path)} rows kept; "
              "run the same command to resume", file=sys.stderr)
        return 130


def run_spec(spec: RunSpec) -> int:
    """Plan, estimate, pre-train (the study), evaluate here or launch, report: the whole run of
    `spec`. Returns the exit code (0 ok, 1 a failed cell or stage, 2 bad input)."""
    # lazy: keeps the plan checks and the launcher out of --help/list/status
    from bench_tasks.plan.validate import check_args

    try:  # a bundled name or a YAML file, with --set overrides; registered for this process's runner
        profile = load_profile(spec.profile, list(spec.set))
        profile, native_lines = native_profile(spec, profile)
    except ProfileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    spec = spec.replace(profile=profile.name)
    apply_threads(spec.threads, profile.name)
    results = spec.results_path
    problems = check_args(spec.plan_options())
    pretrain_before = pretrain_estimate_before(spec, profile) if not problems else None
    t_plan = time.monotonic()
    planned = plan_or_exit_code(spec, profile, problems)
    if isinstance(planned, int):
        return planned
    print_plan_notes(spec, planned.plan, planned.roots, profile, native_lines)
    try:
        labels = parse_labels(list(spec.label), spec.backbone_list if spec.backbones else [])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rejected = inspect(results) if spec.dry_run else []  # a run moves them (run_plan says so)
    if rejected:
        print(f"warning: {describe_rejected(results, rejected)}; a run would move them to "
              f"{rejected_path(results)} (they are not counted as done)", file=sys.stderr)

    from bench_tasks.run import launch

    plan = launch.select_shard(spec, planned.plan)  # --num-shards N --shard-index i
    if spec.status:
        code = print_status(results, plan.cells)
        print_plan_estimate(spec, plan.cells, results, profile)
        return code
    if spec.launch.launcher != "local" and not spec.dry_run:
        study = launch.study_runs(spec, profile) if spec.is_study else None
        code = launch.launch(spec, plan, results, study_runs=study, labels=labels)
        if code == 0 and study and spec.launch.launcher == "submitit-local" and not spec.launch.no_wait \
                and not spec.no_report:
            write_report(spec, results)
        return code
    planned = planned.replace(plan=plan)
    if spec.dry_run:
        return print_dry_run(spec, planned, results, profile)
    return run_here_and_report(spec, planned, results, profile, labels, pretrain_before,
                               time.monotonic() - t_plan)


def plan_or_exit_code(spec: RunSpec, profile, problems: list[str]) -> PlannedRun | int:
    """The run's PlannedRun, or the exit code after printing why there is none (bad input: 2; a
    failed pre-training stage: 1; `--pretrain-only` done: 0 or 1)."""
    # lazy: keeps the plan checks (paco_fr's config) out of --help/list/status
    from bench_tasks.plan.validate import PlanInvalid, format_problems

    try:
        planned = build_plan(spec, profile, problems=problems)
    except PlanInvalid as err:
        print(err, file=sys.stderr)
        return 2
    except PlanError as err:
        msg = str(err.code)
        if problems:  # unknown names are already among them; anything else is added
            covered = msg.startswith(("unknown task", "unknown dataset", "choose --tasks"))
            print(format_problems(problems + ([] if covered else [msg])), file=sys.stderr)
        else:
            print(msg, file=sys.stderr)
        return 2
    except StageFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if planned.study is not None and planned.study.stop:  # --pretrain-only: stage 1 is the whole run
        for name, enc in planned.study.encoders.items():
            print(f"  {name}: {enc}")
        for name, cause in planned.study.failed:
            print(f"  {name}: FAILED ({cause})", file=sys.stderr)
        print(f"--pretrain-only: {len(planned.study.encoders)} run(s) ready, {len(planned.study.failed)} failed; "
              "evaluate them with the same command without --pretrain-only")
        return 1 if planned.study.failed else 0
    if not len(planned.plan):
        print("nothing to run: the plan is empty", file=sys.stderr)
        return 2
    return planned


def plan_counts(plan, results) -> tuple[dict[str, str], int, int]:
    # lazy: keeps the results store out of --help/list/status
    from bench_tasks.store.results import ResultsStore

    status = plan.status(ResultsStore(results).latest())
    return status, sum(v == "done" for v in status.values()), sum(v == "failed" for v in status.values())


def print_dry_run(spec: RunSpec, planned: PlannedRun, results, profile) -> int:
    """`run --dry-run`: the effective settings, every cell with its status, the estimate."""
    cells = planned.plan.cells
    status, n_done, n_failed = plan_counts(planned.plan, results)
    print(f"effective settings ({spec.profile} profile; change with --set KEY=VALUE):")
    print(format_settings(effective_settings(profile)))
    rows = [[i, c.backbone, c.task, c.dataset, c.protocol, f"{c.fraction:g}", c.seed, c.key(),
             "redo (--force)" if spec.force and status[c.key()] == "done" else status[c.key()]]
            for i, c in enumerate(cells)]
    print(tabulate(rows, headers=["#", "backbone", "task", "dataset", "protocol", "fraction", "seed",
                                  "key", "status"]))
    print(f"\n{len(cells)} cells in the plan ({spec.profile} profile): {n_done} already done, "
          f"{n_failed} failed before (will be retried), {len(cells) - n_done - n_failed} to do; "
          f"results -> {results}")
    print_plan_estimate(spec, cells, results, profile, planned.study.suite_plan if planned.study else None)
    return 0


def run_here_and_report(spec: RunSpec, planned: PlannedRun, results, profile, labels: dict[str, str],
                        pretrain_before, pretrain_taken: float) -> int:
    """Run the plan in this process (claiming each cell), print its table and the estimate against
    the time taken, and write the study's report."""
    # lazy: keeps the launcher and the run table out of --help/list/status
    from bench_tasks.cli.run_table import format_run_table
    from bench_tasks.run import launch

    cells = planned.plan.cells
    _, n_done, _ = plan_counts(planned.plan, results)
    print(f"plan: {len(cells)} cells ({n_done} already done{', recomputed with --force' if spec.force else ''}); "
          f"results -> {results}")
    cells_before = plan_estimate(spec, cells, results, profile)
    t_cells = time.monotonic()
    summary = launch.run_here(spec, planned.plan, planned.roots, results, labels)  # claims each cell (run.worker)
    print("\n" + format_run_table(cells, results) + "\n")
    print(summary.line())
    print_estimate_vs_actual(pretrain_before, pretrain_taken, cells_before, time.monotonic() - t_cells)
    pretrain_failed = planned.pretrain_failed
    if pretrain_failed:
        print(f"{len(pretrain_failed)} pre-training run(s) FAILED and were left out of the study:\n"
              + "\n".join(f"  {n}: {c}" for n, c in pretrain_failed), file=sys.stderr)
    if summary.failed:
        print(f"{summary.failed} cell(s) FAILED (the full traceback is in each failed row of {results}); "
              "re-running retries them", file=sys.stderr)
    if spec.is_study and not spec.no_report:
        print("[stage 3: report]")
        write_report(spec, results)
    return 1 if summary.failed or pretrain_failed else 0


def write_report(spec: RunSpec, results: Path) -> None:
    res = build_report([results], Path(spec.reports) / spec.profile, Path(spec.runs) / spec.profile, spec.profile,
                       command="python -m bench_tasks " + " ".join(sys.argv[1:]))
    print(f"report written to {res['out_dir']}; read first: {res['summary']}")
