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
import os
import sys

from bench_tasks.cli.common import backbone_schemes_help
from bench_tasks.cli.list_cmd import add_list_parser
from bench_tasks.cli.preview_cmd import add_preview_parser
from bench_tasks.cli.report_cmd import add_report_parser
from bench_tasks.cli.run_cmd import cmd_run
from bench_tasks.cli.run_parser import add_run_parser
from bench_tasks.cli.status_cmd import add_status_parser
from bench_tasks.errors import BenchError

# ----------------------------------------------------------------------------- list


# ----------------------------------------------------------------------------- run


# ----------------------------------------------------------------------------- run: what the plan means


# ----------------------------------------------------------------------------- run: estimate, interrupt, progress


# ----------------------------------------------------------------------------- preview / report


# ----------------------------------------------------------------------------- parser


def make_parser(schemes: bool = False) -> argparse.ArgumentParser:
    """The CLI's parser; `schemes`: end every verb's --help with the backbone URI schemes (read from
    their source: a few tenths of a second, so `main` adds them only when help is asked for)."""
    p = argparse.ArgumentParser(prog="python -m bench_tasks",
                                description="Benchmark any pre-trained ViT backbone on face parsing, landmarks, "
                                            "attributes, expression and recognition (FaRL protocol).")
    sub = p.add_subparsers(dest="command", required=True)

    add_list_parser(sub)
    add_run_parser(sub, cmd_run)
    add_status_parser(sub)
    add_preview_parser(sub)
    add_report_parser(sub)
    if schemes:
        add_scheme_epilogs(p)
    return p


def add_scheme_epilogs(parser: argparse.ArgumentParser) -> None:
    """Every verb's --help ends with the backbone URI schemes (plug-ins included; read from their
    source, so --help loads no registry and no torch)."""
    schemes = backbone_schemes_help()
    if not schemes:
        return
    verbs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for sp in [parser, *(p for v in verbs for p in v.choices.values())]:
        sp.epilog = (sp.epilog + "\n\n" if sp.epilog else "") + schemes
        sp.formatter_class = argparse.RawDescriptionHelpFormatter


def main(argv: list[str] | None = None) -> int:
    """Run one command; an error of the harness (bench_tasks.errors.BenchError) is printed in one
    paragraph and exits with its type's code (2 bad input, 1 a failed stage)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = make_parser()
    if any(a in ("-h", "--help") for a in argv):
        add_scheme_epilogs(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # the reader stopped early (`list | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
