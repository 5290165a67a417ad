"""One setting per reported number: rows of one cell group made with different settings are never
pooled.

A cell group is a cell without its seed (backbone, task, dataset, protocol, fraction, profile): the
rows a table pools into one number (mean and interval over the seeds). A row records the version
of its computation: the settings fingerprint (`settings_hash`), the task's and the dataset's
versions (bench_tasks.store.rows). When one group holds rows of several versions (a run with
`--set` next to one with the defaults, in one results file), only one version is kept per group:
the current one (`prefer(row)` True: the row was made with the settings the reader runs with),
else the one of the row finished last; the others are set aside and described, never averaged in.

    row_version(row) -> RowVersion             (settings hash or None, task version, data version)
    cell_group(row_or_cell) -> tuple           the cell without its seed
    split_settings(rows, prefer=None) -> SettingsSplit(rows, set_aside, notes)
    other_settings(rows, group, version) -> [row]   rows of `group` made with another version
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bench_tasks.store.rowfiles import row_time
from bench_tasks.store.rows import row_data_version, row_task_version

GROUP_FIELDS = ("backbone", "task", "dataset", "protocol", "fraction", "profile")


@dataclass(frozen=True)
class RowVersion:
    settings: str | None  # None: a row written before rows recorded their settings (cannot be checked)
    task: int
    data: str

    def matches(self, other: RowVersion) -> bool:
        """Same task and data versions and, when both are known, the same settings."""
        if (self.task, self.data) != (other.task, other.data):
            return False
        return self.settings is None or other.settings is None or self.settings == other.settings

    def label(self, ref: RowVersion | None = None) -> str:
        """'settings 1a2b3c' (+ the task / data version where it differs from `ref`, or is not 1)."""
        out = f"settings {self.settings or 'unrecorded'}"
        if (self.task != ref.task) if ref is not None else self.task != 1:
            out += f", task v{self.task}"
        if (self.data != ref.data) if ref is not None else self.data != "1":
            out += f", data v{self.data}"
        return out


def row_version(row: dict) -> RowVersion:
    h = row.get("settings_hash")
    return RowVersion(settings=str(h) if h else None, task=row_task_version(row), data=row_data_version(row))


def cell_group(row_or_cell) -> tuple:
    """The cell without its seed, from a row (its `cell` dict) or a Cell."""
    cell = (row_or_cell.get("cell") or {}) if isinstance(row_or_cell, dict) else vars(row_or_cell)
    out = []
    for f in GROUP_FIELDS:
        v = cell.get(f)
        if f == "fraction":
            try:
                v = float(v if v is not None else 1.0)
            except (TypeError, ValueError):
                v = str(v)
        out.append(v)
    return tuple(out)


def group_label(group: tuple) -> str:
    g = dict(zip(GROUP_FIELDS, group))
    return f"{g['backbone']} | {g['task']}/{g['dataset']} | {g['protocol']} | frac={g['fraction']}"


@dataclass
class SettingsSplit:
    rows: list[dict]  # the rows kept: one version per cell group
    set_aside: list[dict] = field(default_factory=list)  # rows of the other versions
    notes: list[str] = field(default_factory=list)  # one line per group that held several versions


def _distinct(versions: Iterable[RowVersion]) -> list[RowVersion]:
    """The versions that are really different (a row without a recorded settings hash joins any)."""
    out: list[RowVersion] = []
    for v in sorted(set(versions), key=lambda v: v.settings is None):
        if not any(v.matches(o) for o in out):
            out.append(v)
    return out


def split_settings(rows: list[dict], prefer: Callable[[dict], bool] | None = None) -> SettingsSplit:
    """Keep one version per cell group (see the module docstring); rows keep their order."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(cell_group(r), []).append(i)
    drop: set[int] = set()
    notes = []
    for g, idx in groups.items():
        versions = _distinct(row_version(rows[i]) for i in idx)
        if len(versions) < 2:
            continue
        ok = [i for i in idx if rows[i].get("status") == "ok"] or idx
        chosen = None
        if prefer is not None:
            current = [i for i in ok if prefer(rows[i])]
            if current:
                chosen = row_version(rows[current[-1]])
        if chosen is None:  # the version of the row finished last (file order breaks ties)
            last = max(ok, key=lambda i: (row_time(rows[i]), i))
            chosen = row_version(rows[last])
        if chosen.settings is None:  # a recorded hash of the same versions says more
            chosen = next((v for v in versions if v.matches(chosen) and v.settings), chosen)
        out = [i for i in idx if not row_version(rows[i]).matches(chosen)]
        drop.update(out)
        others = _distinct(row_version(rows[i]) for i in out)
        why = "the current settings" if prefer is not None and any(prefer(rows[i]) for i in ok) else \
            "the settings of the row finished last"
        notes.append(f"{group_label(g)}: {len(out)} row(s) made with other settings "
                     f"({'; '.join(v.label(chosen) for v in others)}) left out, not pooled; shown: "
                     f"{chosen.label(others[0] if len(others) == 1 else None)} "
                     f"({why})")
    return SettingsSplit(rows=[r for i, r in enumerate(rows) if i not in drop],
                         set_aside=[rows[i] for i in sorted(drop)], notes=notes)


def other_settings(rows: Iterable[dict], group: tuple, version: RowVersion) -> list[dict]:
    """The rows of `group` made with another version than `version`."""
    return [r for r in rows if cell_group(r) == group and not row_version(r).matches(version)]
