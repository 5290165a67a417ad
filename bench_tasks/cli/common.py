"""What the commands share: the backbone schemes of every --help, durations; light enough for
`--help`, `list` and `status` (no torch).
"""

from __future__ import annotations

import sys

from bench_tasks.plan.estimate import fmt_duration
from bench_tasks.plan.options import SYNTHFACE
from bench_tasks.registry import BACKBONES

__all__ = ["SYNTHFACE"]


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


def fmt_elapsed(s: float) -> str:
    return fmt_duration(s)
