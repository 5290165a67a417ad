"""A RunSpec from start to exit code, as `python -m bench_tasks run` and bench_tasks.api.run both
run it: resolve, then execute; an error of the harness is printed and becomes its type's exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench_tasks.errors import BenchError
from bench_tasks.run.spec import RunSpec
from bench_tasks.session.execute import execute
from bench_tasks.session.experiment import resolve
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
