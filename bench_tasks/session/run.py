"""A RunSpec from start to exit code, as `python -m bench_tasks run` and bench_tasks.api.run both
run it: resolve, then execute; an error of the harness is printed and becomes its type's exit code.
`--eval-only --follow` resolves and executes again, as the study's runs finish, until all have.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench_tasks.errors import BenchError
from bench_tasks.run.spec import RunSpec
from bench_tasks.session.execute import execute
from bench_tasks.session.experiment import resolve, resolve_profile
from bench_tasks.session.process import apply_threads, progress_bars_off


def report_error(err: BenchError) -> int:
    """Print a harness error (a PlanInvalid lists its problems itself) and return its exit code."""
    # lazy: keeps the plan checks (paco_fr's config) out of --help/list/status
    from bench_tasks.plan.validate import PlanInvalid

    print(err if isinstance(err, PlanInvalid) else f"error: {err}", file=sys.stderr)
    return err.exit_code


def run_spec(spec: RunSpec) -> int:
    """Resolve and execute `spec` (no progress bars with `no_progress`). Returns the exit code (0 ok,
    1 a failed cell or stage, 2 bad input)."""
    if spec.follow:
        return follow(spec)
    try:
        with progress_bars_off(spec.no_progress):
            apply_threads(spec.threads, Path(spec.profile).stem)  # before the plan's checks build backbones
            exp = resolve(spec)
            if not len(exp.plan) and not (exp.spec.is_study and exp.spec.pretrain_only):
                print("nothing to run: the plan is empty", file=sys.stderr)
                return 2
            return execute(exp)
    except BenchError as err:
        return report_error(err)


FOLLOW_EVERY_S = 60.0  # --follow: the shortest time between two looks at the study's runs


def _suite_encoders(spec: RunSpec) -> dict[str, str]:
    # lazy: the study planner (paco_fr's config) loads when a study runs
    from bench_tasks.plan.suite import suite_encoders
    from bench_tasks.session.planning import study_suite

    profile, _ = resolve_profile(spec)
    pseeds, _ = study_suite(spec, profile)
    return suite_encoders(spec.runs, profile, not spec.no_ablations, pseeds)


def runs_still_training(spec: RunSpec) -> list[str]:
    """The study's runs (one per pre-training seed, teachers left out) that have not finished, here
    or on another machine (bench_tasks.plan.suite.finished_elsewhere), and whose last attempt has
    not failed (runs_failed)."""
    from bench_tasks.plan.suite import encoder_finished, finished_elsewhere, run_failure

    return [n for n, enc in _suite_encoders(spec).items()
            if not encoder_finished(enc) and not finished_elsewhere(enc) and run_failure(enc) is None]


def runs_failed(spec: RunSpec) -> dict[str, str]:
    """{run: "cause (file)"} for the study's runs whose last pre-training attempt failed (their run
    directory's failed.json; gone once a process tries the run again)."""
    from bench_tasks.plan.suite import FAILED_NAME, encoder_finished, run_failure

    out = {}
    for n, enc in _suite_encoders(spec).items():
        got = run_failure(enc)
        if got is not None and not encoder_finished(enc):
            out[n] = f"{got.get('cause', '?')} ({Path(enc).parent / FAILED_NAME})"
    return out


def quiet_waiting(line: str) -> None:
    """--follow's log: the runs left out of a pass are said once a pass, in one line (follow)."""
    if not line.startswith("--eval-only: "):
        print(line)


def follow(spec: RunSpec, sleep=time.sleep) -> int:
    """`run --all --eval-only --follow`: evaluate the runs that have finished (as --eval-only does),
    look again, and so on until a pass that began with every run finished; the report (unless
    --no-report) only after that last pass. Returns the worst exit code of the passes."""
    from bench_tasks.session.planning import StageFailed

    code = 0
    while True:
        t0 = time.monotonic()
        try:
            with progress_bars_off(spec.no_progress):
                apply_threads(spec.threads, Path(spec.profile).stem)
                waiting = runs_still_training(spec)  # before the pass: a pass that starts with none is the last
                try:
                    exp = resolve(spec.replace(no_report=spec.no_report or bool(waiting)), log=quiet_waiting)
                except StageFailed:  # no run has finished yet
                    exp = None
                if exp is not None and len(exp.plan):
                    code = max(code, execute(exp))
        except BenchError as err:
            return report_error(err)
        if not waiting:
            failed = runs_failed(spec)
            if failed:  # nothing trains them: waiting would never end
                print(f"--follow: {len(failed)} run(s) failed and are not waited for: "
                      + "; ".join(f"{n}: {c}" for n, c in failed.items())
                      + " (pre-train again to retry: the same run command; then --follow again)", flush=True)
                return max(code, 1)
            return code
        shown = ", ".join(waiting[:4]) + (f" and {len(waiting) - 4} more" if len(waiting) > 4 else "")
        print(f"--follow: {len(waiting)} run(s) not finished yet ({shown}); looking again "
              f"(Ctrl-C stops; the rows made are kept)", flush=True)
        sleep(max(0.0, FOLLOW_EVERY_S - (time.monotonic() - t0)))
