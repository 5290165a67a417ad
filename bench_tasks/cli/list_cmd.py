"""`python -m bench_tasks list`: tasks, datasets, backbone schemes, heads, profiles.

What it prints is read from the registries (every task, data set, backbone scheme and head module,
plug-ins included, and the profiles), which loads torch. The catalogue is kept in
`$PACO_FR_CACHE/catalogue.json` (~/.cache/paco_fr) under a key of the package's and the plug-ins'
source files (path, size, modification time): `list` answers from it without torch until a file
changes, and rebuilds it then.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from tabulate import tabulate

from bench_tasks.cli.common import SYNTHFACE, _first_line, plugin_files
from paco_fr.atomic import write_text_atomic

CATALOGUE_VERSION = 1
PROFILE_KEYS = ["image_size", "dense_size", "synthface_train", "synthface_val", "synthface_test", "batch_size",
                "linear_epochs", "finetune_epochs", "dense_epochs", "recognition_epochs", "seeds", "fractions",
                "protocols"]


def cmd_list(args) -> int:
    cat = cached_catalogue()
    print("Tasks")
    print(tabulate(cat["tasks"], headers=["task", "default datasets", "protocols", "headline"]))
    print("\nDatasets")
    print(tabulate(cat["datasets"], headers=["dataset", "tasks", "needs a root"]))
    print("\nBackbone schemes (URI scheme:spec)")
    print(tabulate(cat["schemes"], headers=["scheme", "what"]))
    print("\nHeads")
    print(tabulate(cat["heads"], headers=["head", "what"]))
    print("\nProfiles")
    print(tabulate(cat["profiles"], headers=["profile"] + PROFILE_KEYS))
    if args.layouts:
        print("\nDataset layouts")
        for name, layout in cat["layouts"]:
            print(f"\n[{name}]\n{layout}")
    return 0


def catalogue() -> dict[str, list]:
    """Every row `list` prints, read from the registries (loads them, and torch)."""
    import dataclasses

    from bench_tasks.plan.profiles import PROFILES
    from bench_tasks.registry import BACKBONES, DATASETS, HEADS, TASKS, load_registries

    load_registries()
    tasks = []
    for name, task in TASKS.items():
        ds = list(task.default_datasets)
        if SYNTHFACE in DATASETS and name in getattr(DATASETS.get(SYNTHFACE), "tasks", ()):
            ds.append(SYNTHFACE)
        aliases = "".join(f" ({a} = {b})" for a, b in task.protocol_aliases.items())
        tasks.append([name, ", ".join(ds), ", ".join(task.protocols) + aliases,
                      f"{task.headline} ({'higher' if task.higher_is_better else 'lower'} is better)"])
    datasets = [[name, ", ".join(spec.tasks), f"yes (<data-root>/{spec.folder or name}/)" if spec.needs_root
                 else "no (embedded)"] for name, spec in DATASETS.items()]
    schemes = [[name, _first_line(sys.modules.get(getattr(fn, "__module__", ""), None)) or _first_line(fn)]
               for name, fn in BACKBONES.items()]
    heads = [[name, _first_line(h) or _first_line(sys.modules.get(h.__module__))] for name, h in HEADS.items()]
    profiles = []
    for name, p in PROFILES.items():
        d = dataclasses.asdict(p)
        profiles.append([name] + [",".join(map(str, d[k])) if isinstance(d[k], tuple) else d[k] for k in PROFILE_KEYS])
    layouts = [[name, spec.layout] for name, spec in DATASETS.items() if spec.layout]
    return {"tasks": tasks, "datasets": datasets, "schemes": schemes, "heads": heads, "profiles": profiles,
            "layouts": layouts}


def source_files() -> list[Path]:
    """The files the catalogue is read from: the package's modules and bundled profiles, and the
    plug-in modules of BENCH_TASKS_PLUGINS."""
    root = Path(__file__).resolve().parents[1]
    return sorted([*root.rglob("*.py"), *root.rglob("*.yaml")]) + plugin_files()


def catalogue_key() -> str:
    h = hashlib.sha1(f"v{CATALOGUE_VERSION}|{sys.version}|{os.environ.get('BENCH_TASKS_PLUGINS', '')}".encode())
    for f in source_files():
        try:
            st = f.stat()
        except OSError:
            continue
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def catalogue_path() -> Path:
    return Path(os.environ.get("PACO_FR_CACHE") or "~/.cache/paco_fr").expanduser() / "catalogue.json"


def cached_catalogue() -> dict[str, list]:
    """The catalogue from the cache when its key matches the source files, else read from the
    registries and cached (an unwritable cache: read again next time)."""
    path, key = catalogue_path(), catalogue_key()
    try:
        got = json.loads(path.read_text())
        if isinstance(got, dict) and got.get("key") == key and isinstance(got.get("catalogue"), dict):
            return got["catalogue"]
    except (OSError, ValueError):
        pass
    cat = catalogue()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({"key": key, "catalogue": cat}))
    except OSError:
        pass
    return cat


def add_list_parser(sub) -> None:
    pl = sub.add_parser("list", help="tasks, datasets, backbone schemes, heads, profiles")
    pl.add_argument("--layouts", action="store_true", help="also print the folder layout each reader expects")
    pl.set_defaults(func=cmd_list)
