"""One head learning rate, for the tests that check plumbing (commands, stages, resume, workers),
not the choice on val: every protocol's `lr_grid` and `dense_lr_grid` set to [] train the protocol's
`lr_head` alone (bench_tasks/protocols/selection.py: one value turns selection off), one fit a cell
instead of the grid's fits plus the chosen value's. The grid and its choice have their own tests
(tests/test_selection_on_val.py, tests/test_tuning_on_val.py).

    ONE_LR              {setting key: []}, for a profile's `extra`
    one_lr_set(keys)    ["--set", "linear.lr_grid=[]", ...] for a `run` command line
"""

from __future__ import annotations

GRID_KEYS = ("linear.lr_grid", "concat.lr_grid", "frozen.lr_grid", "finetune.lr_grid", "recognition.lr_grid",
             "dense_lr_grid")
ONE_LR = {k: [] for k in GRID_KEYS}


def one_lr_set(keys=GRID_KEYS) -> list[str]:
    return [a for k in keys for a in ("--set", f"{k}=[]")]
