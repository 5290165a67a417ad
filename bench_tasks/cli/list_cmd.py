"""`python -m bench_tasks list`: tasks, datasets, backbone schemes, heads, profiles.
"""

from __future__ import annotations

import dataclasses
import sys

from tabulate import tabulate

from bench_tasks.cli.common import SYNTHFACE, _first_line
from bench_tasks.registry import BACKBONES, DATASETS, HEADS, TASKS


def cmd_list(args) -> int:
    # lazy: the profiles (and the tasks their settings name) load when `list` runs, not on --help
    from bench_tasks.plan.profiles import PROFILES

    print("Tasks")
    rows = []
    for name, task in TASKS.items():
        ds = list(task.default_datasets)
        if SYNTHFACE in DATASETS and name in getattr(DATASETS.get(SYNTHFACE), "tasks", ()):
            ds.append(SYNTHFACE)
        aliases = "".join(f" ({a} = {b})" for a, b in task.protocol_aliases.items())
        rows.append([name, ", ".join(ds), ", ".join(task.protocols) + aliases,
                     f"{task.headline} ({'higher' if task.higher_is_better else 'lower'} is better)"])
    print(tabulate(rows, headers=["task", "default datasets", "protocols", "headline"]))
    print("\nDatasets")
    rows = []
    for name, spec in DATASETS.items():
        needs = spec.needs_root
        folder = spec.folder or name
        rows.append([name, ", ".join(spec.tasks),
                     f"yes (<data-root>/{folder}/)" if needs else "no (embedded)"])
    print(tabulate(rows, headers=["dataset", "tasks", "needs a root"]))
    print("\nBackbone schemes (URI scheme:spec)")
    rows = [[name, _first_line(sys.modules.get(getattr(fn, "__module__", ""), None)) or _first_line(fn)]
            for name, fn in BACKBONES.items()]
    print(tabulate(rows, headers=["scheme", "what"]))
    print("\nHeads")
    print(tabulate([[name, _first_line(h) or _first_line(sys.modules.get(h.__module__))] for name, h in HEADS.items()],
                   headers=["head", "what"]))
    print("\nProfiles")
    keys = ["image_size", "dense_size", "synthface_train", "synthface_val", "synthface_test", "batch_size",
            "linear_epochs", "finetune_epochs", "dense_epochs", "recognition_epochs", "seeds", "fractions",
            "protocols"]
    rows = []
    for name, p in PROFILES.items():
        d = dataclasses.asdict(p)
        rows.append([name] + [",".join(map(str, d[k])) if isinstance(d[k], tuple) else d[k] for k in keys])
    print(tabulate(rows, headers=["profile"] + keys))
    if args.layouts:
        print("\nDataset layouts")
        for name, spec in DATASETS.items():
            if spec.layout:
                print(f"\n[{name}]\n{spec.layout}")
    return 0


def add_list_parser(sub) -> None:
    pl = sub.add_parser("list", help="tasks, datasets, backbone schemes, heads, profiles")
    pl.add_argument("--layouts", action="store_true", help="also print the folder layout each reader expects")
    pl.set_defaults(func=cmd_list)
