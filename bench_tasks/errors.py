"""How errors are shown to a user: one line of cause on the console, the full text in the row.

    short_list(names, n=8)      "['a', 'b', ... (+140 more)]" instead of 150 names on one line
    cause_line(exc_or_text)     "CheckpointError: weight file x.pth does not fit ..." (type + first line)
    closest(name, choices)      " (did you mean 'linear'?)" or ""

The errors the harness raises share one base, `BenchError`, and one tree; the CLI's exit code is
the type's `exit_code` (2 bad input, 1 a failed stage), never read from the message:

    BenchError                      exit 2
      PlanError                     a plan that cannot run: flags, a spec or profile file, an override
        UnknownName                 an unknown task or dataset, or no task chosen (the plan checks list it too)
      DataError                     a data set that cannot be read (layout, a corrupt or unsafe file)
      BackboneError                 a backbone that cannot be built (a checkpoint that does not fit)
      RunError                      exit 1: a stage of the run failed as a whole

The catalogue of errors a user can meet, and what to do about each, is docs/errors.md.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

MAX_CAUSE = 300


class BenchError(Exception):
    """The base of the harness's errors: the CLI prints the message and exits with `exit_code`."""

    exit_code = 2


class PlanError(BenchError):
    """A plan that cannot run (bad flags, a spec or profile file, an unreadable override)."""


class UnknownName(PlanError):
    """An unknown task or dataset, or no task chosen: the plan checks (plan.validate.check_args)
    name it too, so a caller that has their list does not repeat it."""


class DataError(BenchError):
    """A data set that cannot be read: a missing root or file of its layout, a corrupt or unsafe file."""


class BackboneError(BenchError):
    """A backbone that cannot be built from its URI (a checkpoint that does not fit its model)."""


class RunError(BenchError):
    """A stage of the run failed as a whole (every pre-training run, no finished encoder)."""

    exit_code = 1


def exit_code(err: BaseException) -> int:
    """The CLI's exit code for an error: its type's, 1 for anything else."""
    return int(getattr(err, "exit_code", 1)) if isinstance(err, BenchError) else 1


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
