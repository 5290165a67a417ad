"""`python -m bench_tasks run`'s flags. The parser leaves out every flag not given, so that
bench_tasks.run.spec.RunSpec (its defaults are the only ones) and a `--spec` file fill them in.
"""

from __future__ import annotations

import argparse

from bench_tasks.plan.profile_files import bundled_profile_names
from bench_tasks.run.claims import CLAIM_TIMEOUT_S, HEARTBEAT_S
from bench_tasks.run.launchers import LAUNCHERS


def add_run_parser(sub, cmd_run) -> None:
    pr = sub.add_parser("run", help="run (or resume) a plan of cells", argument_default=argparse.SUPPRESS,
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="Cells already done (an ok row in --results) are skipped; failed ones are "
                               "retried. Kill and re-run at any time.")
    add_plan_arguments(pr)
    pr.add_argument("--label", action="append", metavar="NAME|URI=NAME",
                    help="the name a backbone gets in its rows and the report (the rows' method block): "
                         "NAME with one --backbones URI, else URI=NAME (repeatable); default: what the "
                         "weights file recorded (study runs), else derived from the URI")
    pr.add_argument("--work-dir", help="scratch: feature cache (default work_dirs/)")
    pr.add_argument("--dry-run", action="store_true", help="print the plan and how many cells are done")
    pr.add_argument("--no-report", action="store_true", help="--all: do not write the report at the end")
    pr.add_argument("--reports", help="--all: where the report goes (<reports>/<profile>/)")
    pr.add_argument("--pretrain-jobs", type=int, metavar="N",
                    help="--all: pre-train N runs of the suite at once, each in its own process sharing this "
                         "machine's GPU or CPU cores (default 1: one after the other; the runs are the same)")
    pr.add_argument("--pretrain-only", action="store_true",
                    help="--all: stage 1 only (pre-train or reuse the suite's runs), then stop; a later `run --all` "
                         "with the same options evaluates them")
    pr.add_argument("--eval-only", action="store_true",
                    help="--all: no pre-training; evaluate the suite's runs that have finished (those not finished "
                         "are named and left out): e.g. several evaluation processes after one --pretrain-only")
    pr.add_argument("--follow", action="store_true",
                    help="--eval-only: keep evaluating the suite's runs as they finish (another process, e.g. "
                         "`run --all --worker-files`, pre-trains them), looking again every minute, until every "
                         "run has finished and its cells have rows; with --worker-files both share the cells "
                         "(claims); the report is written once, at the end")
    pr.add_argument("--by-run", action="store_true",
                    help="--all: pre-train one run of the suite, evaluate its cells, then the next (one at a time), "
                         "so that a stopped study loses at most one run's work; the rows are the same. With the "
                         "runs' small files kept (summary.json records each encoder's hash), a run whose cells "
                         "all have rows is not trained again on a machine without its encoder")
    pr.add_argument("--force", action="store_true",
                    help="recompute cells that are already done; also add rows next to other seeds of a cell made "
                         "with other settings (the report never pools two settings: it keeps one per cell and names the others)")
    pr.add_argument("--no-progress", action="store_true", help="no progress bars")
    pr.add_argument("--threads", type=int,
                    help="CPU threads for torch (default: 1 in the smoke profile, where two threads on a "
                         "2-core CPU stall whenever another process runs; torch's default otherwise)")
    pr.add_argument("--status", action="store_true",
                    help="cells done / claimed / failed / to do of this plan per backbone and task, workers "
                         "in flight, estimated time left (see also `python -m bench_tasks status`)")
    add_launch_arguments(pr)
    pr.set_defaults(func=cmd_run)


def add_plan_arguments(p) -> None:
    """The flags that say which plan (cells, profile, results file) `run` and `status` mean."""
    p.add_argument("--tasks", help="comma list of tasks (see `list`)")
    p.add_argument("--datasets", help="comma list of datasets (default: each task's defaults + synthface, "
                                       "those without a data root skipped)")
    p.add_argument("--backbones", help="comma list of backbone URIs, e.g. random:vit_tiny,"
                                        "paco_fr:runs/x/encoder.safetensors,farl:FaRL-ep64.pth "
                                        "(default random:vit_tiny)")
    p.add_argument("--protocols", help="comma list: linear,frozen,finetune (default: the profile's)")
    p.add_argument("--seeds", help="comma list of seeds (default: the profile's)")
    p.add_argument("--fractions", help="comma list of training fractions, e.g. 0.01,0.1,1 (default: the profile's)")
    p.add_argument("--profile",
                    help=f"evaluation profile: {', '.join(bundled_profile_names())} (bench_tasks/configs/<name>.yaml) or "
                         "a profile YAML file of the same shape (default smoke)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override one profile value (repeatable): a profile field (batch_size=32, seeds=[0,1]) or "
                         "a task setting (dense_channels=64, linear.lr_head=0.02, recognition.emb_dim=64, "
                         "farl_epochs=2); unknown keys are errors listing the valid ones; see `run --dry-run`")
    p.add_argument("--data-root", action="append",
                    help="a folder holding one sub-folder per dataset, or name=path pairs (comma list; repeatable)")
    p.add_argument("--results", help="results file (default results/<profile>.jsonl)")
    p.add_argument("--all", action="store_true",
                    help="every registered task on its default datasets (SynthFace when no data root is given); "
                         "without --backbones this is the whole study: pre-train the PaCo-FR, MAE, FaRL-style, "
                         "MCF-style and ablation runs (runs/<profile>/), evaluate them with a random-init control, "
                         "then write reports/<profile>/")
    p.add_argument("--runs", help="pre-training runs folder for --all (default runs/)")
    p.add_argument("--no-ablations", action="store_true", help="--all: pre-train and evaluate the methods only")
    p.add_argument("--pretrain-override", action="append", metavar="KEY=VALUE",
                    help="--all: a pre-training config override applied to every run of the suite, e.g. "
                         "train.steps=500 (repeatable; see docs/pretraining.md for the keys)")
    p.add_argument("--pretrain-seeds", action="append", metavar="SEEDS|RUN=SEEDS",
                    help="--all: pre-training seeds, one run folder per (run, seed): 0,1,2 for the compared methods "
                         "(ablations train at the first), RUN=SEEDS for one run (e.g. farl=0); repeatable; replaces "
                         "the profile's pretrain_seeds entries (default: seed 0 only; docs/pretraining.md)")
    p.add_argument("--budget-by", choices=("flops", "images", "steps"),
                    help="--all: match the pre-training runs by model FLOPs (default), distinct images seen or "
                         "optimizer steps; PaCo-FR's configured length is the reference and MCF-style is charged "
                         "for its teacher's pre-training (docs/pretraining.md, 'Budget matching')")
    p.add_argument("--no-ceilings", action="store_true",
                    help="do not add the supervised:<arch> ceiling cells (floors are always added)")
    p.add_argument("--no-probes", action="store_true",
                    help="do not add the probe cells next to the encoders' (recognition: cosine; attributes, "
                         "expression: concat; bench_tasks.plan.references.PROBE_PROTOCOLS)")
    p.add_argument("--device", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1")
    p.add_argument("--spec", metavar="FILE",
                    help="a YAML file of `run` flags (without dashes; the cluster flags under launch:) or the name of "
                         "a bundled one (bench_tasks/configs/studies/: smoke, cpu_reference); flags given here "
                         "override it")


def add_launch_arguments(p) -> None:
    g = p.add_argument_group("launching (cluster, shards; docs/cluster.md)")
    g.add_argument("--launcher", choices=LAUNCHERS,
                   help="local: this process (default); slurm: a SLURM job array via submitit; "
                        "submitit-local: the same jobs as local processes")
    g.add_argument("--num-shards", type=int,
                   help="split the plan into N contiguous shards (for other schedulers); with --shard-index")
    g.add_argument("--shard-index", type=int, help="which shard this process runs (0..N-1)")
    g.add_argument("--group-size", type=int,
                   help="cells per job, all of one backbone (0: a whole backbone; default per profile)")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--account", help="SLURM account")
    g.add_argument("--qos", help="SLURM quality of service")
    g.add_argument("--constraint", help="SLURM node constraint, e.g. a100")
    g.add_argument("--gpus", type=int, help="GPUs per evaluation job (default per profile)")
    g.add_argument("--cpus", type=int, help="CPUs per evaluation job (default per profile)")
    g.add_argument("--time", type=int, help="minutes per evaluation job (default per profile)")
    g.add_argument("--mem", type=int, help="GB of memory per evaluation job (default per profile)")
    g.add_argument("--array-parallelism", type=int,
                   help="evaluation jobs running at once (slurm: 64; submitit-local: one per GPU, or CPUs / --cpus)")
    g.add_argument("--pretrain-nodes", type=int, help="--all: nodes per pre-training job")
    g.add_argument("--pretrain-gpus", type=int,
                   help="--all: GPUs (= torchrun processes) per node of a pre-training job")
    g.add_argument("--pretrain-time", type=int, help="--all: minutes per pre-training job")
    g.add_argument("--jobs-dir",
                   help="submitit's folder for job scripts, pickles and logs (default <results stem>.d/jobs/; "
                        "must be on a filesystem the compute nodes share)")
    g.add_argument("--no-wait", action="store_true",
                   help="submitit-local: return after submitting (slurm never waits)")
    g.add_argument("--print-sbatch", action="store_true",
                   help="print the sbatch script of the evaluation job array and exit (submits nothing)")
    g.add_argument("--worker-files", action="store_true",
                   help="local: write rows to results/<profile>.d/<worker>.jsonl instead of the results file "
                        "(for several `run` processes on different machines sharing the folder)")
    g.add_argument("--claim-timeout", type=float,
                   help=f"seconds without heartbeat after which a claim is stale and taken over ({CLAIM_TIMEOUT_S:g})")
    g.add_argument("--heartbeat", type=float,
                   help=f"seconds between claim heartbeats ({HEARTBEAT_S:g})")
    g.add_argument("--wait-claimed", type=float,
                   help="at the end, wait up to this many seconds for cells other workers hold, taking over "
                        "those whose worker dies (default 0: check once)")
    g.add_argument("--since", type=float, help=argparse.SUPPRESS)  # launch time of a worker set
