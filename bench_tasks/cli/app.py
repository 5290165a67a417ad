"""`python -m bench_tasks {list,run,preview,report}`.

    python -m bench_tasks list
    python -m bench_tasks run --tasks attributes,expression --backbones random:vit_tiny
    python -m bench_tasks run --all --profile small --data-root /data --dry-run
    python -m bench_tasks run --tasks attributes --datasets celeba --data-root celeba=/d/CelebA \\
        --backbones farl:FaRL-Base-Patch16-LAIONFace20M-ep64.pth --protocols linear,finetune
    python -m bench_tasks preview synthface --out grid.png --n 16 --size 128
    python -m bench_tasks preview --datasets 300w --data-root 300w=data/300w
    python -m bench_tasks report ...

Extra registry modules (your own dataset readers, tasks, backbone schemes) can be imported with
the environment variable BENCH_TASKS_PLUGINS=module1,module2 (they register on import).
"""

from __future__ import annotations

import argparse
import sys

from bench_tasks.cli.common import backbone_schemes_help
from bench_tasks.cli.list_cmd import cmd_list
from bench_tasks.cli.report_cmd import cmd_report
from bench_tasks.cli.run_cmd import cmd_run
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.registry import load_registries

# ----------------------------------------------------------------------------- list


# ----------------------------------------------------------------------------- run


# ----------------------------------------------------------------------------- run: what the plan means


# ----------------------------------------------------------------------------- run: estimate, interrupt, progress


# ----------------------------------------------------------------------------- preview / report


# ----------------------------------------------------------------------------- parser


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench_tasks",
                                description="Benchmark any pre-trained ViT backbone on face parsing, landmarks, "
                                            "attributes, expression and recognition (FaRL protocol).")
    sub = p.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("list", help="tasks, datasets, backbone schemes, heads, profiles")
    pl.add_argument("--layouts", action="store_true", help="also print the folder layout each reader expects")
    pl.set_defaults(func=cmd_list)

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
    from bench_tasks.run.launch import add_launch_arguments

    add_launch_arguments(pr)
    pr.set_defaults(func=cmd_run)

    from bench_tasks.run.status import add_status_parser

    add_status_parser(sub)

    from bench_tasks.cli.preview import add_preview_parser

    add_preview_parser(sub)

    from bench_tasks.report.build import add_arguments as add_report_arguments

    prep = sub.add_parser("report", help="tables and figures from results/ only (no recomputation)")
    add_report_arguments(prep)
    prep.set_defaults(func=cmd_report)
    _add_scheme_epilogs(p, sub)
    return p


def _add_scheme_epilogs(parser: argparse.ArgumentParser, sub) -> None:
    """Every verb's --help ends with the backbone URI schemes (plug-ins included)."""
    load_registries()
    schemes = backbone_schemes_help()
    if not schemes:
        return
    for sp in [parser, *sub.choices.values()]:
        sp.epilog = (sp.epilog + "\n\n" if sp.epilog else "") + schemes
        sp.formatter_class = argparse.RawDescriptionHelpFormatter


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.command in ("list", "run"):
        load_registries()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
