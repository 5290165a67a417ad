"""What the commands share: comma lists, the backbone schemes of every --help, the study flag,
threads and progress bars.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

import torch
import tqdm.std

from bench_tasks.plan.estimate import fmt_duration
from bench_tasks.registry import BACKBONES
from bench_tasks.run.spec import default_threads

SYNTHFACE = "synthface"


def _csv(s: str | None) -> list[str] | None:
    if s is None:
        return None
    return [x.strip() for x in s.split(",") if x.strip()]


def _first_line(obj) -> str:
    """The first sentence of a docstring's first paragraph (joined across its wrapped lines, so a
    description is never cut mid-sentence)."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    if not doc:
        return ""
    para = " ".join(ln.strip() for ln in doc.split("\n\n")[0].splitlines())
    return para.split(". ")[0] + "." if ". " in para else para


def backbone_schemes_help() -> str:
    """The backbone URI schemes, one line each (for every verb's --help)."""
    try:
        items = BACKBONES.items()
    except Exception:  # noqa: BLE001 - help must print even when a registry module is broken
        return ""
    lines = ["backbone URIs (--backbones, comma list; `python -m bench_tasks list` for more):"]
    for name, fn in items:
        lines.append(f"  {_first_line(sys.modules.get(getattr(fn, '__module__', ''), None)) or _first_line(fn) or name}")
    return "\n".join(lines)


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


def fmt_elapsed(s: float) -> str:
    return fmt_duration(s)
