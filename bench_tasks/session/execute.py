"""Run a resolved Experiment (bench_tasks.session.experiment): `execute(experiment, executor)`.

Its stages, in order, each said in the log:
  1. pretrain   the study's suite (`run --all` without --backbones): the encoders it writes are
                checked, the cells of a run that failed are left out;
  2. evaluate   the plan's cells that have no current row, through an executor: `InProcess` (this
                process alone writes the results file: no claims) or `SharedResults` (one of several
                workers on one results file: `--num-shards`, `--worker-files`; each cell claimed
                first, bench_tasks.run.worker); submitit jobs are the launcher's (bench_tasks.run.launch);
  3. report     the study's report.
`--dry-run` and `--status` show the plan and stop. Whether a cell is done is the plan's rule
(Plan.todo: an ok row of the cell's current version, from the weights its file holds now)
wherever it is asked.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from tabulate import tabulate

from bench_tasks.plan.estimate import actual_line, estimate_plan
from bench_tasks.plan.profiles import effective_settings, format_settings
from bench_tasks.plan.suite import finished_elsewhere, study_setting
from bench_tasks.session.experiment import Experiment
from bench_tasks.session.planning import StageFailed, StudyStage, study_suite
from bench_tasks.session.process import apply_threads
from bench_tasks.store.readers import describe_rejected, inspect, rejected_path
from bench_tasks.store.results import ResultsStore
from bench_tasks.store.rowfiles import union_latest

# ----------------------------------------------------------------------------- executors


class InProcess:
    """The plan's cells one after the other in this process, the only writer of the results file:
    no claims (bench_tasks.run.loop.run_plan with its SoleWriter). `record`: write the plan into the
    results file's launch records, for `status` to read while it runs."""

    def __init__(self, record: bool = True):
        self.record = record

    def writer(self, exp: Experiment, since: float):
        return None  # the loop's SoleWriter

    def kind(self, exp: Experiment) -> str:
        return "local"

    def __call__(self, exp: Experiment, log: Callable[[str], None] | None = None):
        # lazy: the loop (the tasks' training code) loads when cells run, not on --help/list/status
        from bench_tasks.run.loop import run_plan
        from bench_tasks.store.rowfiles import record_launch

        since = launch_time(exp)
        if self.record:  # `status` reads the plan of a run in flight from its launch record
            record_launch(exp.results, launch_record(exp, self.kind(exp), since))
        return run_plan(exp.plan, run_context(exp), self.writer(exp, since), backbones=exp.backbones, log=log)


class SharedResults(InProcess):
    """This process as one of several workers on one results file (`--num-shards`, `--worker-files`,
    `--eval-only`): each cell is claimed before it is computed (bench_tasks.run.worker.SharedWriter);
    its rows go to its own worker file (`rows_to="worker"`) or, appended under the store's lock, to
    the results file (`rows_to="main"`)."""

    def __init__(self, record: bool = True, rows_to: str = "worker"):
        super().__init__(record)
        self.rows_to = rows_to

    def writer(self, exp: Experiment, since: float):
        # lazy: the claim ledger loads when cells run
        from bench_tasks.run.worker import Claims, SharedWriter

        launch = exp.spec.launch
        return SharedWriter(Claims(rows_to=self.rows_to, since=since, timeout_s=launch.claim_timeout,
                                   heartbeat_s=launch.heartbeat, wait_s=launch.wait_claimed))

    def kind(self, exp: Experiment) -> str:
        launch = exp.spec.launch
        return "local" if launch.num_shards <= 1 else f"shard {launch.shard_index}/{launch.num_shards}"


def run_context(exp: Experiment):
    """The RunContext (bench_tasks.run.runner) every cell of `exp` is computed in."""
    from bench_tasks.run.runner import RunContext

    spec = exp.spec
    return RunContext(results=exp.results, work_dir=Path(spec.work_dir), data_roots=exp.roots, device=spec.device,
                      progress=spec.progress, force=spec.force, labels=exp.labels)


def launch_time(exp: Experiment) -> float:
    """The launch time the workers of one launch share (`since`: rows written after it are this launch's)."""
    since = exp.spec.launch.since
    return since if since is not None else time.time()


def shares_results(spec) -> bool:
    """Whether this process is one of several sharing the results file and the study's runs by
    design (`--num-shards`, `--worker-files`): its cells and pre-training runs are claimed."""
    return spec.launch.num_shards > 1 or spec.launch.worker_files


def executor_for(spec) -> InProcess | SharedResults:
    """The executor of a local run: claims only when several workers share the results file: shards,
    worker files, or `--eval-only` (made to run beside other evaluation processes of one study; its
    rows go to the results file)."""
    if shares_results(spec):
        return SharedResults()
    return SharedResults(rows_to="main") if spec.eval_only else InProcess()


def launch_record(exp: Experiment, kind: str, since: float) -> dict:
    """What `status` reads of a run in flight: its plan's cells and its launch time."""
    import os
    from dataclasses import asdict

    spec = exp.spec
    return {"launcher": kind, "since": since, "profile": spec.profile, "pid": os.getpid(),
            "command": "python -m bench_tasks " + " ".join(sys.argv[1:]), "keys": exp.plan.keys(),
            "cells": [asdict(c) for c in exp.plan.cells], "jobs": []}


# ----------------------------------------------------------------------------- estimates


def plan_estimate(exp: Experiment, cells, pretrain_plan=None, results: Path | None = None,
                  status: dict[str, str] | None = None):
    """The plan's PlanEstimate (bench_tasks.plan.estimate), or None when it cannot be made (said once)."""
    from bench_tasks.backbones.base import resolve_device
    from bench_tasks.plan.suite import random_control

    spec = exp.spec
    try:
        study_arch = random_control(exp.profile) if spec.is_study else None
        results = exp.results if results is None else results
        if status is None:  # the caller's plan_counts when it has them: the results file read once
            status = exp.plan.status(ResultsStore(results).latest())
        done = [k for k, v in status.items() if v == "done" and not spec.force]  # the plan's skip rule
        return estimate_plan(cells, results, exp.profile, pretrain_plan, device=str(resolve_device(spec.device)),
                             study_arch=study_arch, done=done)
    except Exception as err:  # noqa: BLE001 - an estimate never stops a plan
        print(f"estimate: none ({type(err).__name__}: {err})")
        return None


def suite_plan(exp: Experiment, known=None):
    """The study's pre-training plan (bench_tasks.plan.study.plan_suite) for the estimate: `known`
    (the one the dry run printed), else planned here (no log)."""
    spec = exp.spec
    if not spec.is_study or spec.eval_only:
        return None
    if known is None:
        from bench_tasks.plan.study import plan_suite

        pseeds, _ = study_suite(spec, exp.profile)
        known = plan_suite(exp.profile, spec.runs, not spec.no_ablations, spec.overrides, spec.budget_by,
                           pretrain_seeds=pseeds)
    return known


def print_plan_estimate(exp: Experiment, cells, known_suite_plan=None) -> None:
    """`--dry-run` / `--status`: seconds per stage and in total (bench_tasks.plan.estimate)."""
    try:
        plan = suite_plan(exp, known_suite_plan)
    except Exception as err:  # noqa: BLE001
        print(f"estimate: no pre-training estimate ({type(err).__name__}: {err})")
        plan = None
    est = plan_estimate(exp, cells, plan)
    if est is not None:
        print()
        for line in est.lines():
            print(line)
    tune = study_setting(exp.profile, "tune") if exp.spec.is_study and not exp.spec.eval_only else None
    if tune:  # the tuning stage that runs before stage 1 (bench_tasks.run.tuning)
        try:
            from bench_tasks.backbones.base import resolve_device
            from bench_tasks.run.tuning import tuning_estimate_lines

            for line in tuning_estimate_lines(exp.profile, exp.spec.runs, exp.results, list(tune), exp.spec.overrides,
                                              exp.spec.budget_by, str(resolve_device(exp.spec.device))):
                print(line)
        except Exception as err:  # noqa: BLE001 - an estimate never stops a plan
            print(f"estimate: no tuning estimate ({type(err).__name__}: {err})")


def pretrain_estimate_before(exp: Experiment):
    """Seconds the study's pre-training runs not finished yet should take (a local run that
    pre-trains; None otherwise), for the estimate-vs-actual line at the end."""
    if exp.spec.stage != "pretrain" or not exp.spec.is_study:
        return None
    try:
        est = plan_estimate(exp, [], suite_plan(exp), results=Path("/nonexistent"))
        return None if est is None else sum(r.seconds for r in est.pretrain if not r.done)
    except Exception:  # noqa: BLE001
        return None


def print_estimate_vs_actual(pretrain_est, pretrain_taken, cells_est, cells_taken) -> None:
    if pretrain_est:
        print("pre-training " + actual_line(pretrain_est, pretrain_taken))
    if cells_est is not None:
        print("cells " + actual_line(cells_est.stage_seconds()["cells"][1], cells_taken))


# ----------------------------------------------------------------------------- what the plan shows


def plan_counts(plan, results) -> tuple[dict[str, str], int, int]:
    status = plan.status(ResultsStore(results).latest())
    return status, sum(v == "done" for v in status.values()), sum(v == "failed" for v in status.values())


def print_dry_run(exp: Experiment) -> int:
    """`run --dry-run`: the effective settings, every cell with its status, the estimate."""
    spec, results, cells = exp.spec, exp.results, exp.plan.cells
    status, n_done, n_failed = plan_counts(exp.plan, results)
    print(f"effective settings ({spec.profile} profile; change with --set KEY=VALUE):")
    print(format_settings(effective_settings(exp.profile)))
    rows = [[i, c.backbone, c.task, c.dataset, c.protocol, f"{c.fraction:g}", c.seed, c.key(),
             "redo (--force)" if spec.force and status[c.key()] == "done" else status[c.key()]]
            for i, c in enumerate(cells)]
    print(tabulate(rows, headers=["#", "backbone", "task", "dataset", "protocol", "fraction", "seed",
                                  "key", "status"]))
    print(f"\n{len(cells)} cells in the plan ({spec.profile} profile): {n_done} already done, "
          f"{n_failed} failed before (will be retried), {len(cells) - n_done - n_failed} to do; "
          f"results -> {results}")
    print_plan_estimate(exp, cells, exp.study.suite_plan if exp.study else None)
    return 0


# ----------------------------------------------------------------------------- stages


def pretrain_stage(exp: Experiment, log: Callable[[str], None] = print, executor=None) -> Experiment:
    """Stage 1 of the study: pre-train its suite (finished runs are reused; a run finished on another
    machine whose cells all have rows from its recorded weights is kept without its encoder), check
    the encoders it wrote, leave out the cells of the runs that failed; with `--by-run` each run's
    cells are evaluated (through `executor`) before the next run starts. Raises StageFailed when
    every run failed, PlanInvalid when an encoder written cannot be used."""
    # lazy: the pre-training stage (paco_fr's engine) loads when the study pre-trains
    from bench_tasks.plan.study import plan_suite
    from bench_tasks.plan.validate import PlanInvalid, check_backbones
    from bench_tasks.run.pretrain import pretrain_suite

    spec, profile = exp.spec, exp.profile
    pseeds, _ = study_suite(spec, profile)
    tune = study_setting(profile, "tune")
    if tune:  # the tuning stage first: plan_suite configures each tuned method from its record
        from bench_tasks.run.tuning import tune_suite

        tune_suite(profile, spec.runs, list(tune), run_context(exp), log=log, overrides=spec.overrides,
                   budget_by=spec.budget_by)
    failed: list[tuple[str, str]] = []
    # the budgets after the tuning stage: a tuned method's record sets its configuration
    planned = plan_suite(profile, spec.runs, not spec.no_ablations, spec.overrides, spec.budget_by, log=log,
                         pretrain_seeds=pseeds)
    latest = union_latest(exp.results)

    def keep(p) -> bool:  # finished on another machine and nothing of it left to compute: not trained again
        if not finished_elsewhere(p.encoder):
            return False
        uri = f"paco_fr:{p.encoder}"
        if any(c.backbone == uri for c in exp.plan.cells):
            return exp.plan.covers(uri, latest)
        # a run without cells of its own (a teacher) is needed only by the runs it teaches
        return all(keep(q) for q in planned if q.run.teacher == p.run.name)

    kept_runs = {p.run.name for p in planned if keep(p)}  # decided once, before anything is trained

    after, evaluated = None, [0.0]
    if spec.by_run and not spec.pretrain_only:
        def after(p, enc) -> None:  # --by-run: this run's cells before the next run is pre-trained
            t = time.monotonic()
            evaluate_run(exp, enc, executor, log)
            evaluated[0] += time.monotonic() - t

    encoders = pretrain_suite(profile, planned, spec.runs, spec.budget_by, log=log, progress=spec.progress,
                              failed=failed, jobs=max(1, int(spec.pretrain_jobs)),
                              keep=lambda p: p.run.name in kept_runs, after=after, claims=run_claims(exp))
    kept = {f"paco_fr:{p.encoder}" for p in planned if p.run.name in kept_runs}
    if failed and not encoders and not kept:
        raise StageFailed(f"every pre-training run failed ({len(failed)}); nothing to evaluate or "
                          "report:\n" + "\n".join(f"  {n}: {c}" for n, c in failed))
    study = StudyStage(encoders, tuple(failed), evaluated_s=evaluated[0])
    if spec.pretrain_only:
        return exp.replace(study=study)
    written = {f"paco_fr:{p}" for p in encoders.values()}
    problems = check_backbones(sorted(written), exp.task_datasets, profile, spec.device)
    if problems:
        raise PlanInvalid(problems)
    planned = {f"paco_fr:{p}" for p in (exp.study.encoders if exp.study else {}).values()}
    lost = planned - written - kept  # a kept run's cells stay: they are done
    plan = exp.plan.only(c.key() for c in exp.plan.cells if c.backbone not in lost)
    return exp.replace(plan=plan, study=study)


def run_claims(exp: Experiment):
    """The pre-training runs' claims when several processes share the study (`--worker-files`,
    `--num-shards`): each run is trained by one of them (bench_tasks.run.pretrain.RunClaims); else None."""
    if not shares_results(exp.spec):
        return None
    launch = exp.spec.launch
    from bench_tasks.run.claims import ClaimBook
    from bench_tasks.run.pretrain import RunClaims

    book = ClaimBook.for_results(exp.results, timeout_s=launch.claim_timeout, heartbeat_s=launch.heartbeat)
    return RunClaims(book, launch_time(exp))


def evaluate_run(exp: Experiment, encoder, executor=None, log: Callable[[str], None] = print) -> None:
    """`--by-run`: the plan's cells of one study run just pre-trained (its encoder checked first),
    and, for a run the codebook figure reads, its reconstructions saved beside it while its files
    are here (bench_tasks.report.figures.save_reconstructions)."""
    from bench_tasks.plan.validate import PlanInvalid, check_backbones

    uri = f"paco_fr:{encoder}"
    mine = exp.plan.only(c.key() for c in exp.plan.cells if c.backbone == uri)
    problems = check_backbones([uri], exp.task_datasets, exp.profile, exp.spec.device)
    if problems:
        raise PlanInvalid(problems)
    if len(mine):
        log(f"[stage 2 for {Path(encoder).parent.name}] its {len(mine)} cell(s) before the next run")
        summary = evaluate_stage(exp.replace(plan=mine), executor)
        log(summary.line())
    from bench_tasks.report.figures import save_reconstructions

    note = save_reconstructions(Path(encoder).parent, exp.profile.image_size)
    if note:
        log(note)


def evaluate_stage(exp: Experiment, executor=None, log: Callable[[str], None] | None = None):
    """Stage 2: the plan's cells that have no current row, through `executor` (InProcess, or
    SharedResults when several workers share the results file). Returns its RunSummary."""
    return (executor or executor_for(exp.spec))(exp, log)


def report_stage(exp: Experiment) -> None:
    """Stage 3: the study's report (bench_tasks.report.build)."""
    from bench_tasks.report.build import build_report

    spec = exp.spec
    res = build_report([exp.results], Path(spec.reports) / spec.profile, Path(spec.runs) / spec.profile,
                       spec.profile, command="python -m bench_tasks " + " ".join(sys.argv[1:]))
    print(f"report written to {res['out_dir']}; read first: {res['summary']}")


def execute(exp: Experiment, executor=None) -> int:
    """Run `exp`: show it (--dry-run, --status), launch it (a cluster launcher), or run its stages
    here (pretrain -> evaluate -> report). Returns the exit code (0 ok, 1 a failed cell or stage,
    2 bad input). Raises RunError / PlanInvalid from the pre-training stage."""
    spec, results = exp.spec, exp.results
    apply_threads(spec.threads, exp.profile.name)
    for line in exp.notes:
        print(line)
    if spec.dry_run:
        rejected = inspect(results)  # a run moves them (run_plan says so)
        if rejected:
            print(f"warning: {describe_rejected(results, rejected)}; a run would move them to "
                  f"{rejected_path(results)} (they are not counted as done)", file=sys.stderr)
    if not spec.status and refuse_mixed_settings(exp):  # the whole plan: every shard's seeds
        return 2
    exp = exp.replace(plan=exp.plan.shard(spec.launch.num_shards, spec.launch.shard_index))  # --num-shards N
    if spec.status:
        from bench_tasks.run.status import print_status

        latest = union_latest(results)
        ok = {k for k, r in latest.items() if r.get("status") == "ok"}
        redo = set(exp.plan.stale_reasons(latest, ok))  # counted to do, as the run will
        code = print_status(results, exp.plan.cells, redo=redo, time_left=False)
        print_plan_estimate(exp, exp.plan.cells)
        return code
    if spec.launch.launcher != "local" and not spec.dry_run:
        from bench_tasks.run import launch  # lazy: submitit's launcher only for cluster jobs

        study = launch.study_runs(spec, exp.profile) if spec.is_study else None
        code = launch.launch(spec, exp.plan, results, study_runs=study, labels=exp.labels)
        if code == 0 and study and spec.launch.launcher == "submitit-local" and not spec.launch.no_wait \
                and not spec.no_report:
            report_stage(exp)
        return code
    if spec.dry_run:
        return print_dry_run(exp)
    return run_stages(exp, executor)


def refuse_mixed_settings(exp: Experiment) -> bool:
    """True (after saying why) when the plan would add rows to cells whose other seeds in the results
    were made with other settings (Plan.mixed_settings); `--force` allows it."""
    if exp.spec.force:
        return False
    from bench_tasks.plan.validate import format_problems

    mixed = exp.plan.mixed_settings(union_latest(exp.results))
    if mixed:
        print(format_problems(mixed), file=sys.stderr)
    return bool(mixed)


def run_stages(exp: Experiment, executor=None) -> int:
    """pretrain -> evaluate -> report in this process, the table of the cells and the estimate
    against the time taken."""
    # lazy: the run table reads the results store
    from bench_tasks.session.run_table import format_run_table

    spec, results = exp.spec, exp.results
    pretrain_before, t0 = pretrain_estimate_before(exp), time.monotonic()
    failed_runs: tuple = ()
    if spec.is_study and spec.stage == "pretrain":
        exp = pretrain_stage(exp, executor=executor)
        failed_runs = exp.study.failed
        if spec.pretrain_only:  # stage 1 is the whole run
            for name, enc in exp.study.encoders.items():
                print(f"  {name}: {enc}")
            for name, cause in failed_runs:
                print(f"  {name}: FAILED ({cause})", file=sys.stderr)
            print(f"--pretrain-only: {len(exp.study.encoders)} run(s) ready, {len(failed_runs)} failed; "
                  "evaluate them with the same command without --pretrain-only")
            return 1 if failed_runs else 0
    pretrain_taken = time.monotonic() - t0 - (exp.study.evaluated_s if exp.study else 0.0)  # --by-run's cells apart
    cells = exp.plan.cells
    status, n_done, _ = plan_counts(exp.plan, results)
    print(f"plan: {len(cells)} cells ({n_done} already done{', recomputed with --force' if spec.force else ''}); "
          f"results -> {results}")
    cells_before = plan_estimate(exp, cells, status=status)
    t_cells = time.monotonic()
    summary = evaluate_stage(exp, executor)
    print("\n" + format_run_table(cells, results, profiles=exp.plan.profiles) + "\n")
    print(summary.line())
    print_estimate_vs_actual(pretrain_before, pretrain_taken, cells_before, time.monotonic() - t_cells)
    if failed_runs:
        print(f"{len(failed_runs)} pre-training run(s) FAILED and were left out of the study:\n"
              + "\n".join(f"  {n}: {c}" for n, c in failed_runs), file=sys.stderr)
    if summary.failed:
        print(f"{summary.failed} cell(s) FAILED (the full traceback is in each failed row of {results}); "
              "re-running retries them", file=sys.stderr)
    if spec.is_study and not spec.no_report:
        print("[stage 3: report]")
        report_stage(exp)
    return 1 if summary.failed or failed_runs else 0

