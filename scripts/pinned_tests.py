"""The tests marked `pinned` (numbers recorded on another machine) once more, under ATen's scalar
CPU code path (`ATEN_CPU_CAPABILITY=default`: no AVX2/AVX-512/SVE kernels), so that a number pinned to
one machine's kernels fails on the machine that runs the suite rather than on a user's.
`tox -e test` runs it after the suite; by hand: `python scripts/pinned_tests.py [pytest args]`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["ATEN_CPU_CAPABILITY"] = "default"  # read once, when torch loads its CPU kernels

import pytest  # noqa: E402
import torch  # noqa: E402


def main(argv: list[str]) -> int:
    cap = torch.backends.cpu.get_cpu_capability()
    if cap != "DEFAULT":
        print(f"pinned_tests: torch ignored ATEN_CPU_CAPABILITY=default (it runs {cap}): the second CPU code "
              "path is not exercised", file=sys.stderr)
        return 1
    print(f"pinned tests under the CPU code path {cap} (ATEN_CPU_CAPABILITY=default)", flush=True)
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    # pytest exits 5 when nothing is marked `pinned`: a step that checks nothing fails
    return int(pytest.main(["-q", "-m", "pinned", tests, *argv]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
