"""One head learning rate, for the tests that check plumbing (commands, stages, resume, workers),
not the choice on val: every protocol's `lr_grid`, recognition's and `dense_lr_grid` set to [] train
the protocol's `lr_head` alone (bench_tasks/protocols/selection.py: one value turns selection off),
one fit a cell instead of the grid's fits plus the chosen value's. The grid and its choice have
their own tests (tests/test_selection_on_val.py, tests/test_tuning_on_val.py);
tests/test_selection_on_val.py checks that these settings do turn it off for every task.

    one_lr_extra(extra)   a profile's `extra` settings with every grid set to []
    one_lr_set(keys)      ["--set", "linear.lr_grid=[]", ...] for a `run` command line
    one_lr_profile()      the smoke profile with them, for make_plan(..., profiles=) or a CellContext
"""

from __future__ import annotations

# as `--set` keys: `recognition.<key>` lives in the profile's `recognition:` section
GRID_KEYS = ("linear.lr_grid", "concat.lr_grid", "frozen.lr_grid", "finetune.lr_grid", "recognition.lr_grid",
             "dense_lr_grid")


def one_lr_extra(extra: dict) -> dict:
    out = {**extra, **{k: [] for k in GRID_KEYS if not k.startswith("recognition.")}}
    out["recognition"] = {**(extra.get("recognition") or {}), "lr_grid": []}
    return out


def one_lr_set(keys=GRID_KEYS) -> list[str]:
    return [a for k in keys for a in ("--set", f"{k}=[]")]


def one_lr_profile(name: str = "smoke", keys=GRID_KEYS):
    """The profile `name` with one head learning rate (`--set` of `keys`), under its own name: give it
    to make_plan(..., profiles=) or a CellContext; the registered profile is left as it is."""
    from bench_tasks.plan.profiles import load_profile

    return load_profile(name, [f"{k}=[]" for k in keys])
