"""The compact table printed at the end of `python -m bench_tasks run`: one line per cell of this
run, its headline metric, the 95 % CI when the row has one (`row["ci"][headline] = [lo, hi]`), and
the difference to the task's floor when the results hold a floor row (backbone `floor:...`, same
task, dataset and profile) with the floor verdict of the report (`report.compare.floor_comparison`:
score - floor over all the cell's seeds in the results, paired over the test items, judged by
`stats.floor_verdict`), so this table and SUMMARY.md never disagree; a failed cell
shows its cause instead."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from bench_tasks import stats
from bench_tasks.contracts import BackboneURI
from bench_tasks.errors import cause_line
from bench_tasks.plan.floors import is_floor
from bench_tasks.report.compare import design_interval, floor_comparison
from bench_tasks.report.load import load_rows
from bench_tasks.report.tables import rows_to_frames
from bench_tasks.store.readers import latest_rows


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


def find_floor(row: dict, latest: dict[str, dict]) -> dict | None:
    """The ok floor row of the same task / dataset / profile, if the results hold one."""
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


def table_rows(cells: Sequence, results: str | Path) -> tuple[list[list[str]], list[str]]:
    latest = latest_rows(results)
    frame = None
    out = []
    any_ci = any_floor = False
    for c in cells:
        row = latest.get(c.key())
        base = [_short_backbone(c.backbone), f"{c.task}/{c.dataset}", c.protocol, f"{c.fraction:g}", str(c.seed)]
        if row is None:
            out.append([*base, "not run", "", "", ""])
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


def format_run_table(cells: Sequence, results: str | Path, max_rows: int = 200) -> str:
    """The table as text (the first max_rows cells, then a count)."""
    seen, uniq = set(), []
    for c in cells:
        if c.key() not in seen:
            seen.add(c.key())
            uniq.append(c)
    rows, headers = table_rows(uniq[:max_rows], results)
    text = tabulate(rows, headers=headers)
    if len(uniq) > max_rows:
        text += f"\n... {len(uniq) - max_rows} more cell(s): python -m bench_tasks report --results {results}"
    return text
