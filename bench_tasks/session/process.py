"""What a run sets in its own process: torch's CPU threads, and tqdm's progress bars off for the
duration of a run that is not on a terminal. The CLI and the Python API share them.
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch
import tqdm.std

from bench_tasks.run.spec import default_threads


def apply_threads(threads: int | None, profile_name: str) -> None:
    """torch's CPU threads: `threads`, else 1 under the smoke profile (two threads on a 2-core CPU
    stall whenever another process runs), else torch's default. The CLI and the Python API
    (bench_tasks.api.evaluate) share it."""
    n = default_threads(threads, profile_name)
    if n:
        torch.set_num_threads(n)


@contextlib.contextmanager
def progress_bars_off(off: bool = True):
    """Every tqdm bar off unless its caller asks for it, for the duration (then as before):
    TQDM_DISABLE for the processes started meanwhile (tqdm reads it when it is imported), tqdm's
    default `disable=True` in this one (SynthFace generation, pre-training, feature extraction)."""
    if not off:
        yield
        return
    cls = tqdm.std.tqdm
    init, env, outer = cls.__dict__["__init__"], os.environ.get("TQDM_DISABLE"), "_bench_tasks_quiet" in cls.__dict__
    os.environ["TQDM_DISABLE"] = "1"
    if not outer:
        cls.__init__ = functools.partialmethod(init, disable=True)
        cls._bench_tasks_quiet = True
    try:
        yield
    finally:
        if not outer:
            cls.__init__ = init
            del cls._bench_tasks_quiet
        if env is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = env
