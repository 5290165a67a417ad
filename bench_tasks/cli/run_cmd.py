"""`python -m bench_tasks run`: the experiment (a bench_tasks.run.spec.RunSpec, from the flags and a
`--spec` file), resolved and executed by the session layer (bench_tasks.session.run.run_spec, which
bench_tasks.api.run calls too).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench_tasks.cli.common import fmt_elapsed


def rows_kept(results: Path) -> int:
    """The result rows (ok or failed) in this run's results file and its worker files."""
    # lazy: the results store loads when a run was interrupted, not on --help
    from bench_tasks.store.rowfiles import union_latest

    try:
        return len(union_latest(results)) if results.exists() or results.with_suffix(".d").exists() else 0
    except Exception:  # noqa: BLE001 - the interrupt message must print
        return 0


def spec_from_args(args):
    """The run's RunSpec: the `--spec` file's (when given), with the flags given over it."""
    # lazy: the spec's checks (the plan's options) load when a command runs, not on --help
    from bench_tasks.run.spec import RunSpec

    path = vars(args).get("spec")
    return RunSpec.from_args(args, RunSpec.from_yaml(path) if path else None)


def cmd_run(args) -> int:
    """`run`, with Ctrl-C answered in one line (exit 130) and no progress bars off a terminal."""
    spec = spec_from_args(args)  # a SpecError is printed by the CLI with its exit code (no torch loaded yet)
    # lazy: the registries (plug-ins included: BENCH_TASKS_PLUGINS) and the session layer (the
    # planner, the runner) load when a run or a plan's status starts, not on --help or a bad spec
    from bench_tasks.registry import load_registries
    from bench_tasks.session.run import run_spec

    load_registries()
    if not sys.stderr.isatty():  # a log file: no progress bars
        spec = spec.replace(no_progress=True)
    t0 = time.monotonic()
    try:
        return run_spec(spec)
    except KeyboardInterrupt:
        print(f"\ninterrupted after {fmt_elapsed(time.monotonic() - t0)}; {rows_kept(spec.results_path)} rows kept; "
              "run the same command to resume", file=sys.stderr)
        return 130
