"""Test-wide settings.

One intra-op thread: on a 2-core CPU, two OpenMP threads stall whenever any other process runs
(an Adam step of a 1M-parameter model went from 7 ms to 500 ms), and the tests' models are tiny.
Subprocesses the tests start (CLI runs) get the same through OMP_NUM_THREADS.

Two tiers: `pytest -m "not slow"` is the edit loop (a couple of minutes on 2 cores); plain
`pytest` (CI, `tox -e test`) runs everything. A test that takes more than SLOW_S seconds belongs
under `@pytest.mark.slow`: the end of every run lists the unmarked ones that took longer here (a
notice, never a failure: timings differ between machines and loads).

`tox -e test` runs the suite on two pytest-xdist workers, a module at a time (`-n 2 --dist loadscope
--no-loadscope-reorder`: a module's fixtures are made once); the modules with the most slow tests go
first, so that what is handed out last is short and both workers end together.
"""

import os
from collections import Counter

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

SLOW_S = 5.0  # seconds of setup + call + teardown
_unmarked_slow: dict[str, float] = {}


def pytest_runtest_logreport(report):
    """Add up each test's time; remember the ones over SLOW_S that are not marked `slow`."""
    if "slow" in report.keywords:
        return
    total = _unmarked_slow.get(report.nodeid, 0.0) + report.duration
    _unmarked_slow[report.nodeid] = total


def pytest_terminal_summary(terminalreporter):
    over = sorted(((s, nodeid) for nodeid, s in _unmarked_slow.items() if s > SLOW_S), reverse=True)
    if over:
        terminalreporter.section(f"tests over {SLOW_S:.0f} s not marked slow")
        for s, nodeid in over:
            terminalreporter.write_line(f"{s:6.1f} s  {nodeid}  (make it faster, or add @pytest.mark.slow)")


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist: the modules with the most `slow` tests first, each module's tests in their
    order. A plain `pytest` keeps the usual order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    first: dict = {}
    slow: Counter = Counter()
    for i, item in enumerate(items):
        first.setdefault(item.path, i)
        if item.get_closest_marker("slow"):
            slow[item.path] += 1
    items.sort(key=lambda item: (-slow[item.path], first[item.path]))  # stable: a module's order is kept
