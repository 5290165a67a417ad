"""The import paths users and plug-ins have written keep working after the package was layered:
`bench_tasks.evaluate` / `load_results`, `from bench_tasks.api import ...` (the public API and the
contract types plug-ins implement), `bench_tasks.cli.main` (the console script)."""

from __future__ import annotations  # the old import paths below are the point of this file: keep them

import subprocess
import sys


def test_old_import_paths_resolve_to_the_layered_modules():
    import bench_tasks
    from bench_tasks import api, contracts
    from bench_tasks.api import DatasetSpec  # as plug-ins written before the layers import it
    from bench_tasks.cli import main
    from bench_tasks.plan import profiles

    assert bench_tasks.evaluate is api.evaluate and bench_tasks.load_results is api.load_results
    assert DatasetSpec is contracts.DatasetSpec
    for name in ("Cell", "CellContext", "CellResult", "DatasetLayoutError", "Profile", "Task", "TaskSplit",
                 "split_targets"):
        assert getattr(api, name) is getattr(contracts, name), name
    assert api.PROFILES is profiles.PROFILES and api.get_profile is profiles.get_profile
    assert callable(main)


def test_import_bench_tasks_stays_cheap():
    """`import bench_tasks` loads no torch: the public names are imported on first use."""
    code = "import sys, bench_tasks; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
