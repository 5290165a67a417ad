"""`python -m bench_tasks`: one module per command (list, run, status, preview, report) over the
plan, run, store and report layers; `main` (bench_tasks.cli.app) is the entry point."""

from bench_tasks.cli.app import main, make_parser

__all__ = ["main", "make_parser"]
