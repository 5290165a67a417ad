"""A plan as the runner takes it: one value that holds every cell to run (reference cells included,
duplicates removed, in run order) and, for each, the version of its computation that its row
records and is checked against (`CellVersion`: the task's `Task.version`, the dataset's
`DatasetSpec.version` and the fingerprint of the effective settings). It is computed here, once;
the runner, the workers and the launcher only read it.

    plan = make_plan(cells)                       # floors added; ceilings=None, probes=False
    plan = make_plan(cells, ceilings="auto", probes=True)
    plan = make_plan(cells, references=False)     # the cells as given (a cluster job's share)
    todo, skipped, stale = plan.todo(store.latest(), force=False)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from bench_tasks.backbones.base import weights_file, weights_sha256
from bench_tasks.contracts import BackboneURI, Cell
from bench_tasks.plan.profiles import get_profile, settings_hash
from bench_tasks.plan.references import with_references
from bench_tasks.registry import TASKS
from bench_tasks.store.rows import dataset_version, row_data_version, row_task_version


@dataclass(frozen=True)
class CellVersion:
    """What a row of a cell must have been computed with to count as current."""

    task: int  # Task.version of the cell's task
    data: str  # DatasetSpec.version of its dataset
    settings: str | None  # profiles.settings_hash under the cell's profile (None: an unknown profile)

    def row_fields(self) -> dict:
        """The row's fields that record it (bench_tasks.store.rows.make_row)."""
        return {"task_version": self.task, "data_version": self.data, "settings_hash": self.settings}


def task_version(task_name: str) -> int:
    """`Task.version` of a registered task (1 for a task that is not registered)."""
    try:
        return int(getattr(TASKS.get(task_name), "version", 1))
    except KeyError:
        return 1


def cell_version(cell: Cell) -> CellVersion:
    """The current CellVersion of `cell` under its registered profile."""
    try:
        digest = settings_hash(cell, get_profile(cell.profile))
    except KeyError:
        digest = None
    return CellVersion(task=task_version(cell.task), data=dataset_version(cell.dataset), settings=digest)


def version_stale(version: CellVersion, row: dict | None) -> bool:
    """True when `row` was computed by another version of the cell's task or dataset, or with other
    effective settings, than `version` (rows without `task_version` / `data_version` count as
    version 1; rows written before rows recorded `settings_hash` cannot be checked and count as
    current). SynthFace's version is its generator's, so rows of SynthFace 1.x are recomputed on 2.1."""
    if row is None:
        return False
    if row_task_version(row) != version.task or row_data_version(row) != version.data:
        return True
    was = row.get("settings_hash")
    return bool(was) and was != version.settings


@dataclass(frozen=True)
class Plan:
    """The cells of a plan with their versions (`make_plan` builds it)."""

    items: tuple[tuple[Cell, CellVersion], ...]

    @property
    def cells(self) -> list[Cell]:
        return [c for c, _ in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Cell]:
        return iter(self.cells)

    def versions(self) -> dict[Cell, CellVersion]:
        return dict(self.items)

    def keys(self) -> list[str]:
        return [c.key() for c, _ in self.items]

    def status(self, latest: dict[str, dict]) -> dict[str, str]:
        """{key: "done" | "failed" | "todo"} against the latest rows (a row of another version is
        "todo")."""
        out = {}
        for c, v in self.items:
            r = latest.get(c.key())
            if r is None or version_stale(v, r):
                out[c.key()] = "todo"
            else:
                out[c.key()] = "done" if r["status"] == "ok" else "failed"
        return out

    def stale_keys(self, latest: dict[str, dict], done: Iterable[str]) -> set[str]:
        """Keys of done cells whose row must be recomputed: computed by another version (task,
        dataset or settings), or from weights other than the backbone file holds now (a cell is
        keyed by the backbone URI, a path, so re-training into the same path must not reuse old
        rows; each file is hashed once)."""
        done = set(done)
        hashes: dict[str, str | None] = {}
        out = set()
        for c, v in self.items:
            k = c.key()
            row = latest.get(k)
            if k not in done or row is None:
                continue
            if version_stale(v, row):
                out.add(k)
                continue
            if c.backbone not in hashes:
                f = weights_file(c.backbone)
                hashes[c.backbone] = weights_sha256(f) if f is not None and f.exists() else None
            was = (row.get("provenance") or {}).get("backbone_hash")
            if hashes[c.backbone] is not None and was is not None and hashes[c.backbone] != was:
                out.add(k)
        return out

    def todo(self, latest: dict[str, dict], force: bool = False
             ) -> tuple[list[tuple[Cell, CellVersion]], int, set[str]]:
        """(the cells to compute with their versions, how many are done and skipped, the keys of
        done cells that are stale and recomputed). With force every cell is computed."""
        done = {k for k, r in latest.items() if r.get("status") == "ok"}
        stale = self.stale_keys(latest, done)
        todo = [(c, v) for c, v in self.items if force or c.key() not in done or c.key() in stale]
        return todo, len(self.items) - len(todo), stale


def make_plan(cells: Sequence[Cell] | Plan, references: bool = True, ceilings: str | Iterable[str] | None = None,
              probes: bool = False) -> Plan:
    """The Plan of `cells`: with references, each (task, dataset, profile)'s floor (always), the
    ceilings (`ceilings`: None, "auto" or URIs) and the probes (bench_tasks.plan.references); then
    duplicates removed (order kept) and every cell's version computed once."""
    if isinstance(cells, Plan):
        cells = cells.cells
    planned = with_references(cells, ceilings=ceilings, probes=probes) if references else cells
    unique = list({c.key(): c for c in planned}.values())
    versions: dict[tuple, CellVersion] = {}  # one settings hash per what it depends on
    items = []
    for c in unique:
        memo = (c.profile, c.task, c.dataset, c.protocol, BackboneURI.read(c.backbone).is_ceiling)
        if memo not in versions:
            versions[memo] = cell_version(c)
        items.append((c, versions[memo]))
    return Plan(items=tuple(items))
