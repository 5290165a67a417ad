"""The compact table printed at the end of `python -m bench_tasks run`: one line per cell of this
run, its headline metric, the 95 % CI when the row has one (`row["ci"][headline] = [lo, hi]`), and
the difference to the task's floor when the results hold a floor row (backbone `floor:...`, same
task, dataset and profile) with the floor verdict of the report (`report.compare.floor_comparison`:
score - floor over all the cell's seeds in the results, paired over the test items, judged by
`stats.floor_verdict`), so this table and SUMMARY.md never disagree; a failed cell shows its cause
instead. Only rows made with this plan's settings (and task / data versions) are shown: a row of
the same cell made with other settings (another run on the same results file) shows as "other
settings", never as this plan's number."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tabulate import tabulate

from bench_tasks import stats
from bench_tasks.contracts import BackboneURI, Cell, Profile
from bench_tasks.errors import cause_line
from bench_tasks.plan.cell_plan import cell_version, version_stale
from bench_tasks.plan.floors import is_floor
from bench_tasks.report.compare import design_interval, floor_comparison
from bench_tasks.report.load import load_rows
from bench_tasks.report.tables import rows_to_frames
from bench_tasks.store.readers import latest_rows
from bench_tasks.store.readers import load_rows as load_store_rows


def _short_backbone(uri: str, width: int = 38) -> str:
    """The backbone column: a weight file's path cut to its folder and name (after the timm model's
    name), then the last `width` characters."""
    u = BackboneURI.read(uri)
    s = uri
    if u.file and "/" in u.file and Path(u.file).suffix:  # a file path: its folder and name say enough
        short = "/".join(Path(u.file).parts[-2:])
        s = f"{u.scheme}:{u.name}:{short}" if u.scheme == "timm" else f"{u.scheme}:{short}"
    return s if len(s) <= width else "..." + s[-(width - 3):]


def _is_floor_row(row: dict) -> bool:
    return is_floor((row.get("cell") or {}).get("backbone", ""))


def _current(row: dict, memo: dict) -> bool:
    """The row was made with the settings this process's profile gives its cell (rows that do not
    record their settings cannot be checked and count as current)."""
    try:
        cell = Cell(**{k: v for k, v in (row.get("cell") or {}).items() if k in Cell.__dataclass_fields__})
        return not version_stale(_version_of(cell, memo), row)
    except (TypeError, ValueError):
        return False


def find_floor(row: dict, latest: dict[str, dict]) -> dict | None:
    """The ok floor row of the same task / dataset / profile, if `latest` holds one (table_rows passes
    only rows made with the current settings)."""
    c = row.get("cell") or {}
    for r in latest.values():
        rc = r.get("cell") or {}
        if (r.get("status") == "ok" and _is_floor_row(r) and rc.get("task") == c.get("task")
                and rc.get("dataset") == c.get("dataset") and rc.get("profile") == c.get("profile")):
            return r
    return None


def floor_word(row: dict, floor_value: float, frame) -> str:
    """The report's floor verdict for the cell of `row` (every seed of its backbone, task, dataset,
    protocol and fraction in the results frame)."""
    c = row.get("cell") or {}
    hib = bool(row.get("higher_is_better", True))
    sub = frame[(frame["run"] == c.get("backbone")) & (frame["task"] == c.get("task"))
                & (frame["protocol"] == c.get("protocol")) & (frame["fraction"] == float(c.get("fraction", 1.0)))
                & (frame["dataset"] == frame.loc[frame["key"] == row.get("key"), "dataset"].iloc[0])] \
        if (frame["key"] == row.get("key")).any() else frame.iloc[0:0]
    if len(sub):  # the report's own floor verdict: score - floor, paired over the test items
        cmp = floor_comparison(frame, sub["uri"].iloc[0], sub["task"].iloc[0], sub["dataset"].iloc[0],
                               c.get("protocol"), float(c.get("fraction", 1.0)))
        if cmp is not None:
            return cmp.word
    got = design_interval(frame, sub, sub["metric"].iloc[0]) if len(sub) else None
    ci = [got[0], got[1]] if got else (row.get("ci") or {}).get(row.get("headline"))
    return stats.floor_verdict(ci, floor_value, hib) or "untested: no interval"


def _version_of(c: Cell, memo: dict):
    """The cell's version under the plan's Profile of its name (memo["profiles"]), else the registered one."""
    k = (c.profile, c.task, c.dataset, c.protocol, BackboneURI.read(c.backbone).is_ceiling)
    if k not in memo:
        memo[k] = cell_version(c, memo.get("profiles", {}).get(c.profile))
    return memo[k]


def table_rows(cells: Sequence, results: str | Path,
               profiles: Mapping[str, Profile] | None = None) -> tuple[list[list[str]], list[str]]:
    rows_of: dict[str, list[dict]] = {}
    for r in load_store_rows(results):
        rows_of.setdefault(r["key"], []).append(r)
    memo: dict = {"profiles": dict(profiles or {})}
    latest = latest_rows(r for rs in rows_of.values() for r in rs if _current(r, memo))
    frame = None
    out = []
    any_ci = any_floor = False
    for c in cells:
        mine = rows_of.get(c.key(), [])
        # the last row made with this plan's settings; else the last row (shown as "other settings")
        row = next((r for r in reversed(mine) if not version_stale(_version_of(c, memo), r)), mine[-1] if mine else None)
        base = [_short_backbone(c.backbone), f"{c.task}/{c.dataset}", c.protocol, f"{c.fraction:g}", str(c.seed)]
        if row is None:
            out.append([*base, "not run", "", "", ""])
            continue
        if version_stale(_version_of(c, memo), row):  # another run's row: not this plan's number
            out.append([*base, "other settings", f"its row: settings {row.get('settings_hash')}", "", ""])
            continue
        if row.get("status") != "ok":
            out.append([*base, "FAILED", cause_line(row.get("error"), limit=70), "", ""])
            continue
        h = row.get("headline") or ""
        v = (row.get("metrics") or {}).get(h)
        val = f"{h} {v:.2f}" if isinstance(v, (int, float)) else f"{h} n/a"
        ci = (row.get("ci") or {}).get(h)
        ci_s = ""
        if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
            ci_s, any_ci = f"[{ci[0]:.2f}, {ci[1]:.2f}]", True
        vs = ""
        if not _is_floor_row(row) and isinstance(v, (int, float)):
            fl = find_floor(row, latest)
            fv = (fl.get("metrics") or {}).get(h) if fl else None
            if isinstance(fv, (int, float)):
                if frame is None:
                    frame = rows_to_frames(load_rows([results]).rows)[0]
                vs, any_floor = f"{v - fv:+.2f} ({floor_word(row, fv, frame)})", True
        elif _is_floor_row(row):
            vs = "(floor)"
        out.append([*base, "ok", val, ci_s, vs])
    headers = ["backbone", "task/dataset", "protocol", "frac", "seed", "status", "headline", "95% CI", "vs floor"]
    if not any_floor:  # drop empty columns: the table stays compact
        headers, out = headers[:-1], [r[:-1] for r in out]
    if not any_ci:
        i = headers.index("95% CI")
        headers, out = headers[:i] + headers[i + 1:], [r[:i] + r[i + 1:] for r in out]
    return out, headers


def format_run_table(cells: Sequence, results: str | Path, max_rows: int = 200,
                     profiles: Mapping[str, Profile] | None = None) -> str:
    """The table as text (the first max_rows cells, then a count). `profiles`: the plan's Profiles by
    name (Plan.profiles), so that "this plan's settings" are the plan's, `--set` included."""
    seen, uniq = set(), []
    for c in cells:
        if c.key() not in seen:
            seen.add(c.key())
            uniq.append(c)
    rows, headers = table_rows(uniq[:max_rows], results, profiles)
    text = tabulate(rows, headers=headers)
    if len(uniq) > max_rows:
        text += f"\n... {len(uniq) - max_rows} more cell(s): python -m bench_tasks report --results {results}"
    return text
