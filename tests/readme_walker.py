"""Runs `python -m <module> ARGS...` commands one after the other in this one process, as the shell
would run them one by one, and writes what each did: `python tests/readme_walker.py IN.json OUT.json`.

IN.json: a list of argv lists without the interpreter (["-m", "bench_tasks", "list", "--layouts"]);
OUT.json: one {"argv", "code", "stdout", "stderr"} per command, in order. `code` is the command's
exit status (its SystemExit, 0 when it returns); an exception that escapes the command is printed
to its stderr with the traceback, and its code is 1. Used by tests/test_readme_walk.py: importing
torch, timm and the packages once instead of once per command saves several seconds a command.
The walk's Python blocks still run in their own interpreter each.
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
import traceback


def run_one(argv: list[str]) -> dict:
    if argv[:1] != ["-m"] or len(argv) < 2:
        raise ValueError(f"readme_walker runs `-m <module> ...` commands only, got {argv}")
    module = argv[1]
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [module, *argv[2:]]
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if not isinstance(done.code, (int, type(None))):
                print(done.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - what escaped the command is its failure, printed in full
            traceback.print_exc()
            code = 1
    return {"argv": argv, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main(args: list[str]) -> int:
    src, dst = args
    done = []
    for argv in json.loads(open(src).read()):
        done.append(run_one(argv))
        with open(dst, "w") as f:  # after every command: a crash of the walker keeps what ran before it
            json.dump(done, f)
        if done[-1]["code"] != 0:
            break  # as `set -e`: the later commands need what this one should have made
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
