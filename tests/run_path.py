"""The path of a command from the CLI entry to the row it appends: the modules on the call stack
when the plan is made, when a cell is computed and when its row is appended (their union, in the
order first entered). `python tests/run_path.py run --spec smoke ...` prints it; tests/test_run_path.py
checks its length and that it never climbs back to a higher layer."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the moments a row is made at: (module, attribute); a method as "Class.method"
MOMENTS = (("bench_tasks.plan.cell_plan", "make_plan"), ("bench_tasks.run.runner", "run_cell"),
           ("bench_tasks.store.results", "ResultsStore.append"))


def _stack() -> list[str]:
    """The package modules on the caller's stack, outermost first, each once per run of frames."""
    out: list[str] = []
    for fr in traceback.extract_stack()[:-2]:
        p = Path(fr.filename).resolve()
        try:
            rel = p.relative_to(REPO)
        except ValueError:
            continue
        if rel.parts[0] not in ("bench_tasks", "paco_fr"):
            continue
        mod = ".".join(rel.with_suffix("").parts)
        if not out or out[-1] != mod:
            out.append(mod)
    return out


def trace(argv: list[str]) -> tuple[int, dict[str, list[str]]]:
    """Run `python -m bench_tasks ARGV` in this process; returns (exit code, {moment: stack})."""
    import importlib

    seen: dict[str, list[str]] = {}
    undo = []
    for modname, attr in MOMENTS:
        mod = importlib.import_module(modname)
        cls, _, meth = attr.rpartition(".")
        owner = getattr(mod, cls) if cls else mod
        orig = getattr(owner, meth)

        def wrapped(*a, __orig=orig, __at=f"{modname}.{attr}", __mod=modname, **k):
            seen.setdefault(__at, _stack() + [__mod])
            return __orig(*a, **k)

        setattr(owner, meth, wrapped)
        undo.append((owner, meth, orig))
        if not cls:  # modules that imported the function by name
            for other in list(sys.modules.values()):
                if getattr(other, "__name__", "").startswith("bench_tasks") and getattr(other, meth, None) is orig:
                    setattr(other, meth, wrapped)
                    undo.append((other, meth, orig))
    try:
        from bench_tasks.cli.app import main

        code = main(argv)
    finally:
        for owner, meth, orig in reversed(undo):
            setattr(owner, meth, orig)
    return code, seen


def path_of(stacks: dict[str, list[str]]) -> list[str]:
    """The union of the stacks, in the order the modules were first entered."""
    out: list[str] = []
    for stack in stacks.values():
        for m in stack:
            if m not in out:
                out.append(m)
    return out


if __name__ == "__main__":
    code, stacks = trace(sys.argv[1:])
    for at, stack in stacks.items():
        print(f"{at}:\n  " + " -> ".join(stack), file=sys.stderr)
    path = path_of(stacks)
    print(f"path: {len(path)} modules: " + " -> ".join(path), file=sys.stderr)
    sys.exit(code)
