"""Test-wide settings.

One intra-op thread: on a 2-core CPU, two OpenMP threads stall whenever any other process runs
(an Adam step of a 1M-parameter model went from 7 ms to 500 ms), and the tests' models are tiny.
Subprocesses the tests start (CLI runs) get the same through OMP_NUM_THREADS.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
