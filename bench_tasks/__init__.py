"""PaCo-FR bench harness. Python API: `evaluate(backbone_or_uri, tasks=..., datasets=..., profile=...)`
-> pandas.DataFrame and `load_results(path)` (bench_tasks/api.py); CLI: `python -m bench_tasks`
(bench_tasks/cli/). The layers of the package: docs/ARCHITECTURE.md."""

__all__ = ["evaluate", "load_results"]


def __getattr__(name):  # lazy: `import bench_tasks` stays cheap (no torch import)
    if name in __all__:
        from bench_tasks import api

        return getattr(api, name)
    raise AttributeError(f"module 'bench_tasks' has no attribute {name!r}")
