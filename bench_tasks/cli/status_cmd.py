"""`python -m bench_tasks status`: cells done / claimed / failed / to do, workers in flight, time
left (bench_tasks.run.status), of the plan that `run`'s flags name (`status --spec smoke`, `status
--tasks attributes --backbones random:vit_tiny`: the same as `run ... --status`) or of a results
file (`status --results FILE`, `status --profile NAME`: every cell that has a row or a claim or that
a launch recorded). Without any of them it names none: no other study's file is read by default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench_tasks.cli.run_parser import add_plan_arguments

# the flags that choose a plan's cells (given: the plan is made as `run` makes it)
PLAN_FLAGS = ("tasks", "datasets", "backbones", "protocols", "seeds", "fractions", "set", "data_root", "all",
              "runs", "no_ablations", "pretrain_override", "pretrain_seeds", "budget_by", "no_ceilings",
              "no_probes", "spec")


def add_status_parser(sub) -> None:
    ps = sub.add_parser("status", help="cells done / claimed / failed / to do, workers in flight, time left",
                        argument_default=argparse.SUPPRESS,
                        description="Where a plan stands: name it with `run`'s flags (--spec, --tasks, "
                                    "--backbones, ...), or give its results file (--results, --profile).")
    add_plan_arguments(ps)
    ps.add_argument("--claim-timeout", type=float, help="seconds after which a claim is stale")
    ps.set_defaults(func=cmd_status)


def cmd_status(args) -> int:
    given = vars(args)
    if any(k in given for k in PLAN_FLAGS):  # the plan run's flags name: `run ... --status`
        # lazy: planning loads the registries (torch); a results file's status does not
        from bench_tasks.cli.run_cmd import cmd_run

        args.status = True
        return cmd_run(args)
    if "results" not in given and "profile" not in given:
        print("status: which plan? Give `run`'s flags (e.g. `status --spec smoke`, `status --tasks attributes "
              "--backbones random:vit_tiny`), or its results file (`--results results/<name>.jsonl`, or "
              "`--profile NAME` for results/NAME.jsonl)", file=sys.stderr)
        return 2
    # lazy: the claim ledger and the row files load when a status is shown
    from bench_tasks.run.status import has_plan, print_status

    results = Path(given.get("results") or f"results/{given['profile']}.jsonl")
    if results.is_dir():
        print(f"error: --results {results} is a folder; expected a results .jsonl file", file=sys.stderr)
        return 2
    if not has_plan(results):
        print(f"no plan to report on: {results} has no rows, no worker holds a cell and no launch recorded a plan "
              f"({Path(results).stem}.d/launches/). To see a plan before it starts (its cells and time estimate), "
              "run `python -m bench_tasks status <the plan's options>`.")
        return 1
    return print_status(results, None, claim_timeout_s=given.get("claim_timeout"))
