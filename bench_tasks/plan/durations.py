"""Durations as `status`, the estimates and the interrupt line write them: `42s`, `26min`, `5.8h`."""

from __future__ import annotations


def fmt_seconds(s: float) -> str:
    s = max(0.0, float(s))
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}min"
    return f"{s / 3600:.1f}h"


def fmt_duration(s: float | None) -> str:
    """`42s`, `26min`, `5.8h`; `?` for no estimate."""
    return "?" if s is None else fmt_seconds(s)
