"""From the CLI entry to the appended row: at most 12 modules, never back up a layer (the layers of
pyproject.toml's import-linter contract), planning done before any cell runs."""

from __future__ import annotations

from run_path import path_of, trace

LAYERS = ("bench_tasks.cli", "bench_tasks.session", "bench_tasks.report", "bench_tasks.run", "bench_tasks.plan",
          "bench_tasks.store")


def _layer(module: str) -> int:
    return next((i for i, p in enumerate(LAYERS) if module == p or module.startswith(p + ".")), len(LAYERS))


def test_run_goes_from_the_cli_to_the_row_down_the_layers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stacks = trace(["run", "--spec", "smoke", "--backbones", "random:vit_tiny@32/16/d1", "--tasks", "attributes",
                          "--fractions", "1", "--no-ceilings", "--no-probes", "--no-progress",
                          "--results", str(tmp_path / "r.jsonl")])
    assert code == 0
    assert set(stacks) == {"bench_tasks.plan.cell_plan.make_plan", "bench_tasks.run.runner.run_cell",
                           "bench_tasks.store.results.ResultsStore.append"}
    path = path_of(stacks)
    assert len(path) <= 12, path
    for at, stack in stacks.items():
        layers = [_layer(m) for m in stack]
        assert layers == sorted(layers), f"{at}: climbs back up: {' -> '.join(stack)}"
    # resolving (the plan) and executing (the cells) are two branches below session.run, in that order
    assert stacks["bench_tasks.plan.cell_plan.make_plan"][:3] == stacks["bench_tasks.run.runner.run_cell"][:3]
    assert "bench_tasks.session.execute" not in stacks["bench_tasks.plan.cell_plan.make_plan"]
