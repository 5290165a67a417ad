"""The cells of a plan and where their data lives.

    cells = plan_cells(backbones, tasks_to_datasets, protocols=None, seeds=None, fractions=None,
                       profile="smoke")                      # -> list[Cell]
    roots = DataRoots.parse(["/data"]) or DataRoots.parse(["celeba=/d/celeba", "/data"])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench_tasks.contracts import Cell, DatasetLayoutError, Profile
from bench_tasks.plan.profiles import get_profile
from bench_tasks.plan.references import CEILING_PROTOCOL
from bench_tasks.registry import DATASETS, TASKS
from bench_tasks.tasks._ceiling import is_ceiling


def dataset_folder(name: str) -> str:
    """The sub-folder name a dataset expects under a --data-root parent (e.g. affectnet7 and
    affectnet8 share `affectnet/`)."""
    try:
        spec = DATASETS.get(name)
    except KeyError:
        return name
    return spec.folder or name


@dataclass
class DataRoots:
    """Where each dataset lives: explicit `name=path` pairs win, else `<parent>/<folder>` for the
    first parent folder that has it."""

    pairs: dict[str, str] = field(default_factory=dict)
    parents: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, items: Iterable[str] | str | None) -> DataRoots:
        roots = cls()
        if items is None:
            return roots
        if isinstance(items, str):
            items = [items]
        for item in items:
            for part in str(item).split(","):
                part = part.strip()
                if not part:
                    continue
                if "=" in part:
                    name, _, path = part.partition("=")
                    roots.pairs[name.strip()] = str(Path(path.strip()).expanduser())
                else:
                    roots.parents.append(str(Path(part).expanduser()))
        return roots

    def get(self, dataset: str) -> str | None:
        if dataset in self.pairs:
            return self.pairs[dataset]
        folder = dataset_folder(dataset)
        for parent in self.parents:
            for cand in (Path(parent) / dataset, Path(parent) / folder):
                if cand.is_dir():
                    return str(cand)
        return None

    def expected(self, dataset: str) -> str:
        if dataset in self.pairs:
            return self.pairs[dataset]
        if self.parents:
            return str(Path(self.parents[0]) / dataset_folder(dataset))
        return f"<data-root>/{dataset_folder(dataset)}"


def missing_root_error(dataset: str, roots: DataRoots) -> DatasetLayoutError:
    spec = DATASETS.get(dataset)
    where = roots.expected(dataset)
    return DatasetLayoutError(
        dataset, where,
        f"no data found; pass --data-root <folder holding {dataset_folder(dataset)}/> "
        f"or --data-root {dataset}=<path>", spec.layout or "(see the reader's docstring)")


def plan_cells(backbones: Sequence[str], tasks_to_datasets: dict[str, Sequence[str]],
               protocols: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
               fractions: Sequence[float] | None = None, profile: str | Profile = "smoke") -> list[Cell]:
    """Every (backbone, task, dataset, protocol, fraction, seed) cell, backbone-major (so one
    backbone is loaded once). Protocols / seeds / fractions default to the profile's (a Profile,
    or the name of a bundled one); protocols a task does not support are left out for it."""
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    seeds = tuple(prof.seeds if seeds is None else seeds)
    fractions = tuple(prof.fractions if fractions is None else fractions)

    bad = [f for f in fractions if not 0 < float(f) <= 1]
    if bad:
        raise ValueError(f"fractions {bad} outside (0, 1]: a fraction is the share of the training split a cell uses")
    cells: list[Cell] = []
    for bb in backbones:
        for task_name, datasets in tasks_to_datasets.items():
            task = TASKS.get(task_name)
            # a ceiling (`supervised:`) is always trained end to end; a protocol the task names
            # otherwise (dense tasks: `linear` is `frozen`) is planned under that name
            wanted = [CEILING_PROTOCOL] if is_ceiling(bb) else (protocols or prof.protocols)
            protos = list(dict.fromkeys(task.plan_protocol(p) for p in wanted))
            protos = [p for p in protos if p is not None]
            for ds in datasets:
                for proto in protos:
                    for frac in fractions:
                        for seed in seeds:
                            cells.append(Cell(backbone=bb, task=task_name, dataset=ds, protocol=proto,
                                              fraction=float(frac), seed=int(seed), profile=prof.name))
    return cells
