"""How errors are shown to a user: one line of cause on the console, the full text in the row.

    short_list(names, n=8)      "['a', 'b', ... (+140 more)]" instead of 150 names on one line
    cause_line(exc_or_text)     "CheckpointError: weight file x.pth does not fit ..." (type + first line)
    closest(name, choices)      " (did you mean 'linear'?)" or ""

The catalogue of errors a user can meet, and what to do about each, is docs/errors.md.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

MAX_CAUSE = 300


class PlanError(SystemExit):
    """A plan that cannot run (bad flags, an unreadable override): the CLI exits with its message."""


def short_list(names: Iterable, n: int = 8) -> str:
    """A list of names cut to its first n, with the count of the rest."""
    names = list(names)
    if len(names) <= n:
        return repr(names)
    head = ", ".join(repr(x) for x in names[:n])
    return f"[{head}, ... (+{len(names) - n} more, {len(names)} in all)]"


def closest(name: str, choices: Sequence[str]) -> str:
    """' (did you mean X?)' for the closest registered name, '' when none is close."""
    m = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {m[0]!r}?)" if m else ""


def cause_line(err: BaseException | str | None, limit: int = MAX_CAUSE) -> str:
    """The exception's type and the first line of its message.

    Accepts an exception or the text of `traceback.format_exc()` (the `error` field of a failed
    row): the cause is the LAST exception of the traceback (the one raised out of the cell), and of
    its message only the first line (later lines are layouts, long key lists, documentation)."""
    if err is None:
        return ""
    if isinstance(err, BaseException):
        msg = str(err).strip().splitlines()
        line = f"{type(err).__name__}: {msg[0]}" if msg else type(err).__name__
        return _cut(line, limit)
    lines = str(err).rstrip().splitlines()
    # the final exception starts at the first non-indented line after the last "  File" frame
    last_frame = max((i for i, ln in enumerate(lines) if ln.startswith("  File ")), default=-1)
    for ln in lines[last_frame + 1:]:
        if ln and not ln.startswith((" ", "\t", "^", "~")):
            return _cut(_strip_module(ln), limit)
    return _cut(lines[-1].strip() if lines else "", limit)


def _strip_module(line: str) -> str:
    """'safetensors_rust.SafetensorError: x' -> 'SafetensorError: x'."""
    head, sep, rest = line.partition(": ")
    if " " not in head and "." in head:
        head = head.rsplit(".", 1)[1]
    return head + sep + rest


def _cut(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."
