"""The ablation tables (one per PaCo-FR component: the full model, its ablations, floor and ceiling)
and each ablation's difference from the full model (`ablation_deltas`)."""

from __future__ import annotations

import pandas as pd

from .columns import add_gain_columns, add_references, measured_table
from .compare import compare, protocol_mask, protocol_text
from .frames import aggregate
from .naming import COMPONENTS, MethodInfo, dataset_name, is_full_paco, metric_name, task_name
from .table import Table, mark_best


def build_ablation_tables(df_ok: pd.DataFrame, methods: dict[str, MethodInfo], protocol, fraction, calibrated=None):
    """-> (list of (group id, Table), list of missing group titles)."""
    sub = df_ok[protocol_mask(df_ok, protocol) & (df_ok["fraction"] == fraction)] if not df_ok.empty else df_ok
    sub = add_references(sub, df_ok)
    agg = aggregate(sub)
    present = set(agg["uri"])
    refs = sorted([u for u in present if methods[u].kind in ("floor", "ceiling")], key=lambda u: methods[u].order)
    full = [u for u in present if is_full_paco(methods[u])]
    full = sorted(full, key=lambda u: methods[u].order)[:1]
    tables, missing = [], []
    groups = list(COMPONENTS) + ["other"]
    for g in groups:
        abl = sorted([u for u in present if methods[u].kind == "ablation" and methods[u].group == g],
                     key=lambda u: methods[u].order)
        title = COMPONENTS[g].title if g in COMPONENTS else "Other ablations"
        if not abl:
            if g != "other":
                missing.append(title)
            continue
        labels, extra = {}, {}
        for u in full:
            setting = methods[u].settings.get(g) or ("default" if g in COMPONENTS else "full")
            labels[u] = f"PaCo-FR (full): {setting}"
            extra[u] = {"Setting": setting}
        for u in abl:
            labels[u] = f"{methods[u].label}"
            extra[u] = {"Setting": methods[u].setting}
        t = measured_table(agg, methods, refs[:1] + full + abl + refs[1:],
                            f"Ablation: {title} (protocol {protocol_text(protocol)}, fraction {fraction:g})",
                            labels, extra)
        t.extra_cols = ["Setting"]
        t.footnotes = ["Bold: best per column among these rows (↓ = lower is better)."]
        add_gain_columns(t, sub[sub["uri"].isin(full + abl + refs)], mean_gain=True, calibrated=calibrated)
        t.selection = (protocol, fraction)
        mark_best(t)
        if not full:
            t.footnotes.append("The full PaCo-FR row (run `paco`) has no results: nothing to compare against.")
        tables.append((g, t))
    return tables, missing


def ablation_comparisons(table: Table, df_ok: pd.DataFrame | None = None) -> list[tuple]:
    """Each ablation row vs the table's full PaCo-FR row, per headline column: (row label, column,
    a − full, compare.Comparison or None, digits). The comparison is compare.compare (paired bootstrap
    over the same test items where the rows' per-item scores exist, the seed / run spread of the
    cell), its verdict stats.verdict; None without `df_ok` or an interval ("untested")."""
    full = [r for r in table.rows if r.label.startswith("PaCo-FR (full)")]
    if not full:
        return []
    fl = full[0].label
    protocol, fraction = table.selection
    out = []
    for r in table.rows:
        if r.label == fl or r.kind != "measured":
            continue
        for c in table.cols:
            if c.variant != "":
                continue
            a, b = table.cells.get((r.label, c.key)), table.cells.get((fl, c.key))
            if a is None or b is None:
                continue
            cmp = None
            if df_ok is not None and r.label in table.uris and fl in table.uris:
                cmp = compare(df_ok, table.uris[r.label], table.uris[fl], c.task, c.dataset, protocol, fraction)
            out.append((r.label, c, a.mean - b.mean, cmp, 3 if abs(b.mean) < 1 else 2))
    return out


def ablation_deltas(table: Table, df_ok: pd.DataFrame | None = None, comparisons: list | None = None) -> list[str]:
    """Each ablation row vs the full row, per headline column: the difference with its 95 % interval
    and the verdict of stats.verdict ("better" / "worse" when the interval excludes zero, "the same"
    when equivalence within the task's margin is shown, else "not shown"; see ablation_comparisons).
    Without `df_ok` (or intervals) the difference is "untested"."""
    comparisons = ablation_comparisons(table, df_ok) if comparisons is None else comparisons
    by_row: dict[str, list[str]] = {}
    for label, c, delta, cmp, digits in comparisons:
        name = f"{task_name(c.task)} {dataset_name(c.dataset)} {metric_name(c.metric)}"
        by_row.setdefault(label, []).append(f"{name} {delta:+.{digits}f} (untested: no interval)" if cmp is None
                                            else f"{name} {cmp.text(digits)}")
    lines = []
    for label, parts in by_row.items():
        n_better = sum("(better;" in p for p in parts)
        n_worse = sum("(worse;" in p for p in parts)
        n_same = sum("(the same," in p for p in parts)
        lines.append(f"{label} vs full (better in {n_better}, worse in {n_worse}, the same in {n_same} of "
                     f"{len(parts)} columns, the rest not shown or untested): " + "; ".join(parts))
    return lines


def one_ablation_table(groups: list[tuple[str, list]]) -> str | None:
    """Every ablation of every component in ONE table: per headline column, ablation − full PaCo-FR
    with its 95 % interval and its verdict (the main table's interval and stats.verdict).
    groups: [(component title, ablation_comparisons of its table)]."""
    cols, rows = {}, {}
    for title, comps in groups:
        for label, c, delta, cmp, digits in comps:
            cols.setdefault(c.key, c)
            text = (f"{delta:+.{digits}f} (untested)" if cmp is None else
                    f"{cmp.diff.delta:+.{digits}f} [{cmp.diff.lo:+.{digits}f}, {cmp.diff.hi:+.{digits}f}] {cmp.word}")
            rows.setdefault((title, label), {})[c.key] = text
    if not rows:
        return None
    order = sorted(cols.values(), key=lambda c: c.sort_key())
    L = ["| component | ablation | " + " | ".join(c.header() for c in order) + " |",
         "|---|---|" + "---|" * len(order)]
    for (title, label), cells in rows.items():
        L.append(f"| {title} | {label} | " + " | ".join(cells.get(c.key, "–") for c in order) + " |")
    return "\n".join(L) + "\n"
