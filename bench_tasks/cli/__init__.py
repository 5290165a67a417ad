"""`python -m bench_tasks`: one module per command (list, run, status, preview, report) over the
plan, run, store and report layers; `bench_tasks.cli.app.main` is the entry point."""
