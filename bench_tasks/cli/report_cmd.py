"""`python -m bench_tasks report`: tables and figures from result rows only.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench_tasks.report.arguments import add_arguments as add_report_arguments
from bench_tasks.store.readers import describe_rejected, inspect, load_rows


def check_report_inputs(args) -> list[str]:
    """`report` on a missing or empty results file is an error (an empty report would look like a
    finished study)."""
    paths = args.results or [Path("results") / f"{args.profile or 'smoke'}.jsonl"]
    problems = []
    for p in map(Path, paths):
        if not p.is_file():
            near = sorted(q.name for q in p.parent.glob("*.jsonl")) if p.parent.is_dir() else []
            problems.append(f"results file {p} not found" + (f"; files there: {', '.join(near)}" if near else "")
                            + " (run `python -m bench_tasks run ...` first, or pass --results <file.jsonl>)")
        elif not load_rows(p):
            bad = inspect(p)
            problems.append(f"results file {p} has no result rows"
                            + (f": {describe_rejected(p, bad)}" if bad else " (it is empty)"))
    return problems


def cmd_report(args) -> int:
    problems = check_report_inputs(args)
    if problems:
        print("report: " + "\n".join(problems), file=sys.stderr)
        return 2

    # lazy: the report's tables and figures (pandas, matplotlib) load when a report is built
    from bench_tasks.report.build import run_from_args

    return int(run_from_args(args, sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "report" else None) or 0)


def add_report_parser(sub) -> None:
    prep = sub.add_parser("report", help="tables and figures from results/ only (no recomputation)")
    add_report_arguments(prep)
    prep.set_defaults(func=cmd_report)
