"""The import layers of pyproject.toml ([tool.importlinter], docs/ARCHITECTURE.md) hold on the
repository, and an import that runs back up a layer breaks them: `lint-imports` is what CI runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(repo: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "importlinter.cli"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.run(cmd + ["--no-cache", "--config", str(repo / "pyproject.toml")], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)


def copy_packages(dst: Path) -> Path:
    for pkg in ("bench_tasks", "paco_fr"):
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.csv", "*.yaml"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_the_layers_hold_and_an_upward_import_breaks_them(tmp_path):
    pytest.importorskip("importlinter")
    ok = lint_imports(ROOT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "broken" in ok.stdout and "0 broken" in ok.stdout

    # the contracts import nothing of bench_tasks: one import of the runner breaks the layers
    repo = copy_packages(tmp_path / "repo")
    contracts = repo / "bench_tasks" / "contracts.py"
    contracts.write_text(contracts.read_text() + "\n\ndef _upward():\n    from bench_tasks.run import runner\n\n"
                         "    return runner\n")
    bad = lint_imports(repo)
    assert bad.returncode != 0, bad.stdout
    assert "bench_tasks.contracts -> bench_tasks.run.runner" in bad.stdout

    # paco_fr never imports bench_tasks
    repo2 = copy_packages(tmp_path / "repo2")
    engine = repo2 / "paco_fr" / "backbone.py"
    engine.write_text(engine.read_text() + "\n\ndef _upward():\n    import bench_tasks.registry\n\n"
                      "    return bench_tasks.registry\n")
    bad2 = lint_imports(repo2)
    assert bad2.returncode != 0, bad2.stdout
    assert "paco_fr never imports bench_tasks BROKEN" in bad2.stdout.replace("\n", " ")
