"""`python -m bench_tasks status`: cells done / claimed / failed / to do of a results file, workers
in flight, time left (bench_tasks.run.status)."""

from __future__ import annotations

import sys
from pathlib import Path

from bench_tasks.run.status import has_plan, print_status


def add_status_parser(sub) -> None:
    ps = sub.add_parser("status", help="cells done / claimed / failed / to do, workers in flight, time left")
    ps.add_argument("--profile", default="smoke", help="results/<profile>.jsonl (default smoke)")
    ps.add_argument("--results", help="results file (default results/<profile>.jsonl)")
    ps.add_argument("--claim-timeout", type=float, default=None, help="seconds after which a claim is stale")
    ps.set_defaults(func=cmd_status)


def cmd_status(args) -> int:
    results = Path(args.results or f"results/{args.profile}.jsonl")
    if results.is_dir():
        print(f"error: --results {results} is a folder; expected a results .jsonl file", file=sys.stderr)
        return 2
    if not has_plan(results):
        print(f"no plan to report on: {results} has no rows, no worker holds a cell and no launch recorded a plan "
              f"({Path(results).stem}.d/launches/). To see a plan before it starts (its cells and time estimate), "
              "run `python -m bench_tasks run <the plan's options> --status`.")
        return 1
    return print_status(results, None, claim_timeout_s=args.claim_timeout)
