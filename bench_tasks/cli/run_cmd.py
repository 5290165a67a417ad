"""`python -m bench_tasks run`: plan, estimate, run here or launch, then the run's table and report.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench_tasks.cli.common import (
    build_backbone_list,
    fmt_elapsed,
    is_study,
    progress_bars_off,
    quiet_progress,
    set_threads,
)
from bench_tasks.cli.planning import (
    PretrainOnlyDone,
    StageFailed,
    build_plan,
    native_profile,
    print_plan_notes,
)
from bench_tasks.errors import PlanError
from bench_tasks.plan.profiles import PROFILES, dotted_overrides, get_profile
from bench_tasks.run.launch import add_launch_arguments


def rows_kept(args) -> int:
    """The result rows (ok or failed) in this run's results file and its worker files."""
    try:
        from bench_tasks.store.rowfiles import union_latest

        results = Path(args.results or f"results/{args.profile}.jsonl")
        return len(union_latest(results)) if results.exists() or results.with_suffix(".d").exists() else 0
    except Exception:  # noqa: BLE001 - the interrupt message must print
        return 0


def plan_estimate(args, cells, results, profile, pretrain_plan=None):
    """The plan's PlanEstimate (bench_tasks.plan.estimate), or None when it cannot be made (said once)."""
    try:
        from bench_tasks.backbones.base import resolve_device
        from bench_tasks.plan.estimate import estimate_plan

        study_arch = None
        if is_study(args):
            from bench_tasks.plan.suite import random_control

            study_arch = random_control(profile.name)
        device = str(resolve_device(args.device))
        return estimate_plan(cells, results, profile, pretrain_plan, device=device, study_arch=study_arch)
    except Exception as err:  # noqa: BLE001 - an estimate never stops a plan
        print(f"estimate: none ({type(err).__name__}: {err})")
        return None


def suite_plan(args, profile):
    """The study's pre-training plan (bench_tasks.plan.study.plan_suite) for the estimate: the one the dry
    run printed, else planned here (no log)."""
    if not is_study(args) or getattr(args, "eval_only", False):
        return None
    got = getattr(args, "suite_plan", None)
    if got is None:
        from bench_tasks.plan.study import plan_suite

        got = plan_suite(profile.name, args.runs, not args.no_ablations,
                         dotted_overrides(args.pretrain_override or []), getattr(args, "budget_by", "flops"))
    return got


def print_plan_estimate(args, cells, results, profile) -> None:
    """`--dry-run` / `--status`: seconds per stage and in total (bench_tasks.plan.estimate)."""
    try:
        plan = suite_plan(args, profile)
    except Exception as err:  # noqa: BLE001
        print(f"estimate: no pre-training estimate ({type(err).__name__}: {err})")
        plan = None
    est = plan_estimate(args, cells, results, profile, plan)
    if est is not None:
        print()
        for line in est.lines():
            print(line)


def pretrain_estimate_before(args, profile):
    """Seconds the study's pre-training runs not finished yet should take (a local run that
    pre-trains; None otherwise), for the estimate-vs-actual line at the end."""
    if args.dry_run or args.status or not is_study(args) or getattr(args, "launcher", "local") != "local":
        return None
    try:
        plan = suite_plan(args, profile)
        est = plan_estimate(args, [], Path("/nonexistent"), profile, plan)
        return None if est is None else sum(r.seconds for r in est.pretrain if not r.done)
    except Exception:  # noqa: BLE001
        return None


def print_estimate_vs_actual(pretrain_est, pretrain_taken, cells_est, cells_taken) -> None:
    from bench_tasks.plan.estimate import actual_line

    if pretrain_est:
        print("pre-training " + actual_line(pretrain_est, pretrain_taken))
    if cells_est is not None:
        print("cells " + actual_line(cells_est.stage_seconds()["cells"][1], cells_taken))


def cmd_run(args) -> int:
    """`run`, with Ctrl-C answered in one line (exit 130) and no progress bars off a terminal."""
    t0 = time.monotonic()
    try:
        with progress_bars_off(quiet_progress(args)):
            return run_plan_command(args)
    except KeyboardInterrupt:
        print(f"\ninterrupted after {fmt_elapsed(time.monotonic() - t0)}; {rows_kept(args)} rows kept; run the same "
              "command to resume", file=sys.stderr)
        return 130


def run_plan_command(args) -> int:
    from bench_tasks.plan.profiles import ProfileError, load_profile

    try:  # a bundled name or a YAML file, with --set overrides; registered for this process's runner
        profile = load_profile(args.profile, getattr(args, "set", None))
        profile = native_profile(args, profile)
    except ProfileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.profile = profile.name
    set_threads(args)
    from bench_tasks.plan.validate import check_args

    results = Path(args.results or f"results/{args.profile}.jsonl")
    problems = check_args(args)
    pretrain_before = pretrain_estimate_before(args, profile) if not problems else None
    t_plan = time.monotonic()
    planned = plan_or_exit_code(args, problems)
    if isinstance(planned, int):
        return planned
    cells, roots = planned
    print_plan_notes(args, cells, roots, get_profile(args.profile))
    from bench_tasks.store.method import parse_labels

    try:
        args.labels = parse_labels(getattr(args, "label", None), build_backbone_list(args) if args.backbones else [])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from bench_tasks.store.readers import describe_rejected, inspect, rejected_path

    rejected = inspect(results) if args.dry_run else []  # a run moves them (run_plan says so)
    if rejected:
        print(f"warning: {describe_rejected(results, rejected)}; a run would move them to "
              f"{rejected_path(results)} (they are not counted as done)", file=sys.stderr)

    from bench_tasks.run import launch

    cells = launch.select_shard(args, cells)  # --num-shards N --shard-index i
    if args.status:
        from bench_tasks.run.status import print_status

        code = print_status(results, cells)
        print_plan_estimate(args, cells, results, profile)
        return code
    if args.launcher != "local" and not args.dry_run:
        study = launch.study_runs(args, get_profile(args.profile)) if is_study(args) else None
        code = launch.launch(args, cells, results, study_runs=study)
        if code == 0 and study and args.launcher == "submitit-local" and not args.no_wait and not args.no_report:
            write_report(args, results)
        return code
    if args.dry_run:
        return print_dry_run(args, cells, results, profile)
    return run_here_and_report(args, cells, roots, results, profile, pretrain_before, time.monotonic() - t_plan)


def plan_or_exit_code(args, problems: list[str]):
    """(cells, roots) of the plan, or the exit code after printing why there is none (bad input:
    2; a failed pre-training stage: 1; `--pretrain-only` done: 0 or 1)."""
    from bench_tasks.plan.validate import PlanInvalid, format_problems

    try:
        cells, roots = build_plan(args, problems=problems)
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
    except PretrainOnlyDone as done:
        for name, enc in done.encoders.items():
            print(f"  {name}: {enc}")
        for name, cause in done.failed:
            print(f"  {name}: FAILED ({cause})", file=sys.stderr)
        print(f"--pretrain-only: {len(done.encoders)} run(s) ready, {len(done.failed)} failed; evaluate them with "
              "the same command without --pretrain-only")
        return 1 if done.failed else 0
    if not cells:
        print("nothing to run: the plan is empty", file=sys.stderr)
        return 2
    return cells, roots


def plan_counts(cells, results) -> tuple[dict[str, str], int, int]:
    from bench_tasks.run.runner import cell_status

    status = cell_status(cells, results)
    return status, sum(v == "done" for v in status.values()), sum(v == "failed" for v in status.values())


def print_dry_run(args, cells, results, profile) -> int:
    """`run --dry-run`: the effective settings, every cell with its status, the estimate."""
    from tabulate import tabulate

    from bench_tasks.plan.profiles import effective_settings, format_settings

    status, n_done, n_failed = plan_counts(cells, results)
    print(f"effective settings ({args.profile} profile; change with --set KEY=VALUE):")
    print(format_settings(effective_settings(profile)))
    rows = [[i, c.backbone, c.task, c.dataset, c.protocol, f"{c.fraction:g}", c.seed, c.key(),
             "redo (--force)" if args.force and status[c.key()] == "done" else status[c.key()]]
            for i, c in enumerate(cells)]
    print(tabulate(rows, headers=["#", "backbone", "task", "dataset", "protocol", "fraction", "seed",
                                  "key", "status"]))
    print(f"\n{len(cells)} cells in the plan ({args.profile} profile): {n_done} already done, "
          f"{n_failed} failed before (will be retried), {len(cells) - n_done - n_failed} to do; "
          f"results -> {results}")
    print_plan_estimate(args, cells, results, profile)
    return 0


def run_here_and_report(args, cells, roots, results, profile, pretrain_before, pretrain_taken: float) -> int:
    """Run the plan in this process (claiming each cell), print its table and the estimate against
    the time taken, and write the study's report."""
    from bench_tasks.cli.run_table import format_run_table
    from bench_tasks.run import launch

    _, n_done, _ = plan_counts(cells, results)
    print(f"plan: {len(cells)} cells ({n_done} already done{', recomputed with --force' if args.force else ''}); "
          f"results -> {results}")
    cells_before = plan_estimate(args, cells, results, profile)
    t_cells = time.monotonic()
    summary = launch.run_here(args, cells, roots, results)  # claims each cell (bench_tasks.run.worker)
    print("\n" + format_run_table(cells, results) + "\n")
    print(summary.line())
    print_estimate_vs_actual(pretrain_before, pretrain_taken, cells_before, time.monotonic() - t_cells)
    pretrain_failed = getattr(args, "pretrain_failed", None) or []
    if pretrain_failed:
        print(f"{len(pretrain_failed)} pre-training run(s) FAILED and were left out of the study:\n"
              + "\n".join(f"  {n}: {c}" for n, c in pretrain_failed), file=sys.stderr)
    if summary.failed:
        print(f"{summary.failed} cell(s) FAILED (the full traceback is in each failed row of {results}); "
              "re-running retries them", file=sys.stderr)
    if is_study(args) and not args.no_report:
        print("[stage 3: report]")
        write_report(args, results)
    return 1 if summary.failed or pretrain_failed else 0


def write_report(args, results: Path) -> None:
    from bench_tasks.report.build import build_report

    res = build_report([results], Path(args.reports) / args.profile, Path(args.runs) / args.profile, args.profile,
                       command="python -m bench_tasks " + " ".join(sys.argv[1:]))
    print(f"report written to {res['out_dir']}; read first: {res['summary']}")


def add_run_parser(sub) -> None:
    pr = sub.add_parser("run", help="run (or resume) a plan of cells",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="Cells already done (an ok row in --results) are skipped; failed ones are "
                               "retried. Kill and re-run at any time.")
    pr.add_argument("--tasks", help="comma list of tasks (see `list`)")
    pr.add_argument("--datasets", help="comma list of datasets (default: each task's defaults + synthface, "
                                       "those without a data root skipped)")
    pr.add_argument("--backbones", help="comma list of backbone URIs, e.g. random:vit_tiny,"
                                        "paco_fr:runs/x/encoder.safetensors,farl:FaRL-ep64.pth "
                                        "(default random:vit_tiny)")
    pr.add_argument("--label", action="append", metavar="NAME|URI=NAME",
                    help="the name a backbone gets in its rows and the report (the rows' method block): "
                         "NAME with one --backbones URI, else URI=NAME (repeatable); default: what the "
                         "weights file recorded (study runs), else derived from the URI")
    pr.add_argument("--protocols", help="comma list: linear,frozen,finetune (default: the profile's)")
    pr.add_argument("--seeds", help="comma list of seeds (default: the profile's)")
    pr.add_argument("--fractions", help="comma list of training fractions, e.g. 0.01,0.1,1 (default: the profile's)")
    pr.add_argument("--profile", default="smoke",
                    help=f"evaluation profile: {', '.join(sorted(PROFILES))} (bench_tasks/configs/<name>.yaml) or "
                         "a profile YAML file of the same shape (default smoke)")
    pr.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override one profile value (repeatable): a profile field (batch_size=32, seeds=[0,1]) or "
                         "a task setting (dense_channels=64, linear.lr_head=0.02, recognition.emb_dim=64, "
                         "farl_epochs=2); unknown keys are errors listing the valid ones; see `run --dry-run`")
    pr.add_argument("--data-root", action="append",
                    help="a folder holding one sub-folder per dataset, or name=path pairs (comma list; repeatable)")
    pr.add_argument("--results", help="results file (default results/<profile>.jsonl)")
    pr.add_argument("--work-dir", default="work_dirs", help="scratch: feature cache (default work_dirs/)")
    pr.add_argument("--dry-run", action="store_true", help="print the plan and how many cells are done")
    pr.add_argument("--all", action="store_true",
                    help="every registered task on its default datasets (SynthFace when no data root is given); "
                         "without --backbones this is the whole study: pre-train the PaCo-FR, MAE, FaRL-style, "
                         "MCF-style and ablation runs (runs/<profile>/), evaluate them with a random-init control, "
                         "then write reports/<profile>/")
    pr.add_argument("--runs", default="runs", help="pre-training runs folder for --all (default runs/)")
    pr.add_argument("--no-ablations", action="store_true", help="--all: pre-train and evaluate the methods only")
    pr.add_argument("--no-report", action="store_true", help="--all: do not write the report at the end")
    pr.add_argument("--reports", default="reports", help="--all: where the report goes (<reports>/<profile>/)")
    pr.add_argument("--pretrain-override", action="append", metavar="KEY=VALUE",
                    help="--all: a pre-training config override applied to every run of the suite, e.g. "
                         "train.steps=500 (repeatable; see docs/pretraining.md for the keys)")
    pr.add_argument("--pretrain-jobs", type=int, default=1, metavar="N",
                    help="--all: pre-train N runs of the suite at once, each in its own process sharing this "
                         "machine's GPU or CPU cores (default 1: one after the other; the runs are the same)")
    pr.add_argument("--pretrain-seeds", action="append", metavar="SEEDS|RUN=SEEDS",
                    help="--all: pre-training seeds, one run folder per (run, seed): 0,1,2 for the compared methods "
                         "(ablations train at the first), RUN=SEEDS for one run (e.g. farl=0); repeatable; replaces "
                         "the profile's pretrain_seeds entries (default: seed 0 only; docs/pretraining.md)")
    pr.add_argument("--pretrain-only", action="store_true",
                    help="--all: stage 1 only (pre-train or reuse the suite's runs), then stop; a later `run --all` "
                         "with the same options evaluates them")
    pr.add_argument("--eval-only", action="store_true",
                    help="--all: no pre-training; evaluate the suite's runs that have finished (those not finished "
                         "are named and left out): e.g. several evaluation processes after one --pretrain-only")
    pr.add_argument("--budget-by", choices=("flops", "images", "steps"), default="flops",
                    help="--all: match the pre-training runs by model FLOPs (default), distinct images seen or "
                         "optimizer steps; PaCo-FR's configured length is the reference and MCF-style is charged "
                         "for its teacher's pre-training (docs/pretraining.md, 'Budget matching')")
    pr.add_argument("--no-ceilings", action="store_true",
                    help="do not add the supervised:<arch> ceiling cells (floors are always added)")
    pr.add_argument("--no-probes", action="store_true",
                    help="do not add the probe cells next to the encoders' (recognition: cosine; attributes, "
                         "expression: concat; bench_tasks.plan.references.PROBE_PROTOCOLS)")
    pr.add_argument("--force", action="store_true", help="recompute cells that are already done")
    pr.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1")
    pr.add_argument("--no-progress", action="store_true", help="no progress bars")
    pr.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch (default: 1 in the smoke profile, where two threads on a "
                         "2-core CPU stall whenever another process runs; torch's default otherwise)")
    pr.add_argument("--status", action="store_true",
                    help="cells done / claimed / failed / to do of this plan per backbone and task, workers "
                         "in flight, estimated time left (see also `python -m bench_tasks status`)")
    add_launch_arguments(pr)
    pr.set_defaults(func=cmd_run)
