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


def with_upward_import(tmp_path: Path, module: str, body: str) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the packages where `module` (a path under the repository) gets
    a function whose body is `body`."""
    repo = tmp_path / module.replace("/", "_")
    for pkg in ("bench_tasks", "paco_fr"):
        shutil.copytree(ROOT / pkg, repo / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.csv", "*.yaml"))
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    path = repo / module
    path.write_text(path.read_text() + f"\n\ndef _upward():\n    {body}\n")
    return lint_imports(repo)


def test_the_layers_hold_and_an_upward_import_breaks_them(tmp_path):
    pytest.importorskip("importlinter")
    ok = lint_imports(ROOT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 broken" in ok.stdout

    # the contracts import nothing of bench_tasks: one import of the runner breaks the layers
    bad = with_upward_import(tmp_path, "bench_tasks/contracts.py", "from bench_tasks.run import runner")
    assert bad.returncode != 0, bad.stdout
    assert "bench_tasks.contracts -> bench_tasks.run.runner" in bad.stdout

    # paco_fr's own layers: its losses never import the training loop
    bad = with_upward_import(tmp_path, "paco_fr/losses.py", "import paco_fr.engine")
    assert bad.returncode != 0, bad.stdout
    assert "paco_fr.losses -> paco_fr.engine" in bad.stdout

    # paco_fr never imports bench_tasks
    bad = with_upward_import(tmp_path, "paco_fr/backbone.py", "import bench_tasks.registry")
    assert bad.returncode != 0, bad.stdout
    assert "paco_fr never imports bench_tasks BROKEN" in bad.stdout.replace("\n", " ")
