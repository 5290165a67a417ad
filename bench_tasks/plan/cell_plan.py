"""A plan as the runner takes it: one value that holds every cell to run (reference cells included,
duplicates removed, in run order) and, for each, the version of its computation that its row
records and is checked against (`CellVersion`: the task's `Task.version`, the dataset's
`DatasetSpec.version` and the fingerprint of the effective settings), and the Profile each cell
is computed under (a cell names its profile; the plan holds the Profile object, so a profile
file or `--set` overrides reach the runner without registering anything). It is computed here,
once; the runner, the workers and the launcher only read it; whether a row is current
(`Plan.skip_rule`, `Plan.todo`, `Plan.stale_reasons`) is decided here for every caller.

    plan = make_plan(cells)                       # floors added; ceilings=None, probes=False
    plan = make_plan(cells, ceilings="auto", probes=True)
    plan = make_plan(cells, references=False)     # the cells as given (a cluster job's share)
    plan = make_plan(cells, profiles=profile)     # the cells' profile given (else looked up by name, once)
    todo, skipped, stale = plan.todo(store.latest(), force=False)
    rule = plan.skip_rule(store.latest(), since=launch_time)  # what the loop asks of each row
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from bench_tasks.backbones.base import recorded_sha256, weights_file, weights_sha256
from bench_tasks.contracts import BackboneURI, Cell, Profile
from bench_tasks.plan.profiles import get_profile, settings_hash
from bench_tasks.plan.references import with_references
from bench_tasks.registry import TASKS
from bench_tasks.store.rowfiles import row_time
from bench_tasks.store.rows import dataset_version, row_data_version, row_task_version
from bench_tasks.store.settings_split import cell_group, group_label


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


def cell_version(cell: Cell, profile: Profile | None = None) -> CellVersion:
    """The current CellVersion of `cell` under `profile` (default: its profile looked up by name)."""
    try:
        digest = settings_hash(cell, profile if profile is not None else get_profile(cell.profile))
    except KeyError:
        digest = None
    return CellVersion(task=task_version(cell.task), data=dataset_version(cell.dataset), settings=digest)


def version_stale(version: CellVersion, row: dict | None) -> bool:
    """True when `row` was computed by another version of the cell's task or dataset, or with other
    effective settings, than `version` (rows without `task_version` / `data_version` count as
    version 1; rows written before rows recorded `settings_hash` cannot be checked and count as
    current). SynthFace's version is its generator's, so rows of SynthFace 1.x are recomputed on 2.1."""
    return version_change(version, row) is not None


def version_change(version: CellVersion, row: dict | None) -> str | None:
    """What differs between `row` and `version` ("task version 1 -> 2", "data version ...",
    "settings"), None when the row is current (see version_stale)."""
    if row is None:
        return None
    if row_task_version(row) != version.task:
        return f"task version {row_task_version(row)} -> {version.task}"
    if row_data_version(row) != version.data:
        return f"data version {row_data_version(row)} -> {version.data}"
    was = row.get("settings_hash")
    return "settings" if bool(was) and was != version.settings else None


@dataclass(frozen=True)
class SkipRule:
    """The one rule that says whether a cell's latest row answers for it (`Plan.skip_rule` builds it):
    an ok row answers when it is current (`redo`: the done cells computed by another version or from
    other weights, with what changed) and the run does not force; with `since` (the launch time that
    several workers share), a row written during this launch answers either way (ok: done by another
    worker, even under force; failed: not retried twice in one launch)."""

    redo: Mapping[str, str] = field(default_factory=dict)
    force: bool = False
    since: float | None = None

    def state(self, key: str, row: dict | None) -> str | None:
        """"done" or "failed" when `row` answers for the cell, None when the cell is to compute."""
        if row is None:
            return None
        fresh = self.since is not None and row_time(row) >= self.since
        if row.get("status") == "ok" and (fresh or not (self.force or key in self.redo)):
            return "done"
        if row.get("status") == "failed" and fresh:
            return "failed"
        return None


@dataclass(frozen=True)
class Plan:
    """The cells of a plan with their versions (`make_plan` builds it)."""

    items: tuple[tuple[Cell, CellVersion], ...]
    # {profile name: Profile} of the cells (make_plan resolves each name once)
    profiles: Mapping[str, Profile] = field(default_factory=dict, compare=False)

    def profile_of(self, cell: Cell) -> Profile:
        """The Profile `cell` is computed under."""
        if cell.profile in self.profiles:
            return self.profiles[cell.profile]
        return get_profile(cell.profile)

    def shard(self, num_shards: int, index: int) -> Plan:
        """The part of the plan that shard `index` of `num_shards` runs (`--num-shards N --shard-index i`;
        all of it when N is 1): a contiguous block (`shard`)."""
        if num_shards <= 1:
            return self
        return self.only(c.key() for c in shard(self.cells, num_shards, index))

    def only(self, keys: Iterable[str]) -> Plan:
        """The plan restricted to `keys` (its order, versions and profiles kept)."""
        keep = set(keys)
        return dataclasses.replace(self, items=tuple((c, v) for c, v in self.items if c.key() in keep))

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
        """Keys of done cells whose row must be recomputed (stale_reasons)."""
        return set(self.stale_reasons(latest, done))

    def stale_reasons(self, latest: dict[str, dict], done: Iterable[str]) -> dict[str, str]:
        """{key: what changed} of the done cells whose row must be recomputed: computed by another
        version ("task version 1 -> 2", "data version ...", "settings": the effective settings of
        its profile differ), or from other "weights" than the backbone file holds now (a cell is
        keyed by the backbone URI, a path, so re-training into the same path must not reuse old
        rows; each file is hashed once; a finished study run whose encoder is not on this machine
        answers with the hash its summary.json recorded, bench_tasks.backbones.base.recorded_sha256)."""
        done = set(done)
        hashes: dict[str, str | None] = {}
        out: dict[str, str] = {}
        for c, v in self.items:
            k = c.key()
            row = latest.get(k)
            if k not in done or row is None:
                continue
            change = version_change(v, row)
            if change is not None:
                out[k] = change
                continue
            if c.backbone not in hashes:
                f = weights_file(c.backbone)
                # a finished study run whose encoder is not on this machine: the hash its summary recorded
                hashes[c.backbone] = (None if f is None else weights_sha256(f) if f.exists()
                                      else recorded_sha256(f))
            was = (row.get("provenance") or {}).get("backbone_hash")
            if hashes[c.backbone] is not None and was is not None and hashes[c.backbone] != was:
                out[k] = "weights"
        return out

    def mixed_settings(self, latest: dict[str, dict]) -> list[str]:
        """One problem per cell group (a cell without its seed) where this plan would add rows next to
        ok rows made with other settings (or task / data versions) that it does not recompute: other
        seeds of the same cell computed by another run. Their numbers would describe two settings
        (the report keeps them apart, but the plan's own result would hold fewer seeds than asked);
        `run` refuses unless `--force` (or another results file)."""
        keys = set(self.keys())
        by_group: dict[tuple, tuple[CellVersion, list[Cell]]] = {}
        for c, v in self.items:
            by_group.setdefault(cell_group(c), (v, []))[1].append(c)
        others: dict[tuple, list[dict]] = {}
        for k, r in latest.items():
            if k not in keys and r.get("status") == "ok":
                others.setdefault(cell_group(r), []).append(r)
        out = []
        for g, (v, cells) in by_group.items():
            stale = [r for r in others.get(g, []) if version_stale(v, r)]
            if not stale:
                continue
            seeds = sorted({(r.get("cell") or {}).get("seed") for r in stale}, key=str)
            was = sorted({str(r.get("settings_hash")) for r in stale})
            out.append(f"{group_label(g)}: the results hold {len(stale)} ok row(s) of this cell made with other "
                       f"settings (seed(s) {seeds}; settings {', '.join(was)}; this plan: {v.settings}). Adding "
                       f"seed(s) {sorted({c.seed for c in cells})} with this plan's settings would put two settings "
                       "in one result. Pass --force to add them anyway (the report never pools two settings: it keeps one per cell and names the others), "
                       "write to another file with --results, or include those seeds in the plan so that they "
                       "are recomputed with these settings")
        return out

    def skip_rule(self, latest: dict[str, dict], force: bool = False, since: float | None = None) -> SkipRule:
        """The SkipRule of this plan against the latest rows (the stale done cells found once)."""
        done = {k for k, r in latest.items() if r.get("status") == "ok"}
        return SkipRule(redo=self.stale_reasons(latest, done), force=force, since=since)

    def todo(self, latest: dict[str, dict], force: bool = False
             ) -> tuple[list[tuple[Cell, CellVersion]], int, set[str]]:
        """(the cells to compute with their versions, how many are done and skipped, the keys of
        done cells that are stale and recomputed): the SkipRule asked of each cell. With force
        every cell is computed."""
        rule = self.skip_rule(latest, force)
        todo = [(c, v) for c, v in self.items if rule.state(c.key(), latest.get(c.key())) is None]
        return todo, len(self.items) - len(todo), set(rule.redo)

    def covers(self, backbone: str, latest: dict[str, dict]) -> bool:
        """True when every cell of `backbone` in this plan is done by the skip rule (False when the
        plan has none): nothing is left to compute from its weights."""
        mine = self.only(c.key() for c in self.cells if c.backbone == backbone)
        return bool(len(mine)) and not mine.todo(latest)[0]


def shard(cells: Sequence[Cell], num_shards: int, index: int) -> list[Cell]:
    """Shard `index` of `num_shards`: a contiguous block of the (de-duplicated, backbone-major)
    plan, so a shard builds few backbones. Deterministic: every process computes the same split."""
    if num_shards < 1 or not 0 <= index < num_shards:
        raise ValueError(f"--shard-index must be in [0, {num_shards}), got {index}")
    uniq = list({c.key(): c for c in cells}.values())
    n = len(uniq)
    return uniq[index * n // num_shards:(index + 1) * n // num_shards]


def make_plan(cells: Sequence[Cell] | Plan, references: bool = True, ceilings: str | Iterable[str] | None = None,
              probes: bool = False, profiles: Profile | Mapping[str, Profile] | None = None) -> Plan:
    """The Plan of `cells`: with references, each (task, dataset, profile)'s floor (always), the
    ceilings (`ceilings`: None, "auto" or URIs) and the probes (bench_tasks.plan.references); then
    duplicates removed (order kept) and every cell's version computed once. `profiles`: the
    Profile the cells name (or {name: Profile}); a name not given is looked up once, here."""
    known: dict[str, Profile] = {}
    if isinstance(cells, Plan):
        known.update(cells.profiles)
        cells = cells.cells
    if isinstance(profiles, Profile):
        known[profiles.name] = profiles
    elif profiles:
        known.update(profiles)
    # references sized at each cell's evaluation size under the plan's Profile (a profile file or
    # --set may change a bundled profile's sizes under the same name)
    planned = with_references(cells, ceilings=ceilings, probes=probes, profiles=known) if references else cells
    unique = list({c.key(): c for c in planned}.values())
    for c in unique:
        if c.profile not in known:
            try:
                known[c.profile] = get_profile(c.profile)
            except KeyError:
                pass  # an unknown profile: its cells fail with the lookup's message when they run
    versions: dict[tuple, CellVersion] = {}  # one settings hash per what it depends on
    items = []
    for c in unique:
        memo = (c.profile, c.task, c.dataset, c.protocol, BackboneURI.read(c.backbone).is_ceiling)
        if memo not in versions:
            versions[memo] = cell_version(c, known.get(c.profile))
        items.append((c, versions[memo]))
    return Plan(items=tuple(items), profiles=known)
