"""The main table (paper style): every method at the main protocol and fraction, floor and ceiling
rows, gain columns and the mean gain, the published numbers as "(reported)" rows."""

from __future__ import annotations

import pandas as pd

from .columns import add_gain_columns, add_references, add_variant_columns, measured_table
from .compare import protocol_mask, protocol_text
from .frames import aggregate
from .naming import REPORTED_APART, MethodInfo, dataset_name, lower_is_better, task_name
from .reported import PRIMARY_METRIC, REPORTED_ORDER, VARIANT_TEXT, reported_label
from .table import BOLD_FOOTNOTE, Col, Table, TCell, TRow, mark_best


def build_main_table(df_ok: pd.DataFrame, methods: dict[str, MethodInfo], reported: pd.DataFrame | None,
                     protocol, fraction: float | None, title: str | None = None, calibrated=None) -> Table:
    """`protocol`: a name or {task: name} (compare.main_protocols). Floors and ceilings are rows of
    their own; each headline column gets a gain column, a mean gain closes the table."""
    sub = df_ok[protocol_mask(df_ok, protocol) & (df_ok["fraction"] == fraction)] if not df_ok.empty else df_ok
    sub = add_references(sub, df_ok)
    agg = aggregate(sub)
    uris = sorted({u for u in agg["uri"] if methods[u].kind != "ablation"}, key=lambda u: methods[u].order)
    title = title or f"Main results (protocol {protocol_text(protocol)}, training fraction {fraction:g})"
    table = measured_table(agg, methods, uris, title)
    if not sub.empty:
        add_variant_columns(table, sub[sub["uri"].isin(uris)], df_ok, methods, fraction)
        add_gain_columns(table, sub, calibrated=calibrated, df_all=df_ok)
    table.selection = (protocol, fraction)
    gain_notes = list(table.footnotes)
    notes = []
    if reported is not None and not reported.empty:
        reported = reported.copy()
        colmap = {c.key: c for c in table.cols}
        # a measured real-data column shares its column with the published numbers only when every
        # measured row in it ran FaRL's protocol exactly (bench_tasks/protocols/farl.py, farl_exact);
        # otherwise the published numbers go to a column of their own, "<data set> (reported)"
        for (task, ds), _grp in list(reported.groupby(["task", "dataset"], sort=False)):
            if (task, ds, "") not in colmap:
                continue
            rows = sub[(sub["task"] == task) & (sub["dataset"] == ds)]
            proto = protocol.get(task) if isinstance(protocol, dict) else protocol
            exact = bool(len(rows)) and bool(rows["farl_exact"].all()) and str(proto).startswith("farl-")
            if exact:
                notes.append(f"{task_name(task)} {dataset_name(ds)}: the measured rows ran FaRL's downstream protocol "
                             f"exactly (`{protocol}`: FaRL's configuration files, no override), so they stand in "
                             "the same column as the published \"(reported)\" numbers.")
            else:
                apart = ds + REPORTED_APART
                reported.loc[(reported["task"] == task) & (reported["dataset"] == ds), "dataset"] = apart
                notes.append(f"{task_name(task)} {dataset_name(ds)}: the measured rows did not run FaRL's protocol "
                             f"exactly (protocol `{protocol}`), so the published numbers stay apart, in the column "
                             f"\"{dataset_name(apart)}\"; run `--protocols farl-refine` / `farl-frozen` with the "
                             "`paper` profile to compare.")
        extra_cols = []
        for (task, ds), grp in reported.groupby(["task", "dataset"], sort=False):
            if (task, ds, "") not in colmap:
                base_ds = ds[: -len(REPORTED_APART)] if ds.endswith(REPORTED_APART) else ds
                metric = PRIMARY_METRIC.get((task, base_ds), grp["metric"].iloc[0])
                c = Col(task, ds, metric, not lower_is_better(metric))
                colmap[c.key] = c
                extra_cols.append(c)
        table.cols = sorted(table.cols + extra_cols, key=Col.sort_key)
        order = {m: i for i, m in enumerate(REPORTED_ORDER)}
        for method in sorted(dict.fromkeys(reported["method"]), key=lambda m: (order.get(m, 99), m)):
            label = reported_label(method)
            table.rows.append(TRow(label, "reported"))
            for _, r in reported[reported["method"] == method].iterrows():
                note = r["note"] if isinstance(r["note"], str) else None
                if note:
                    what = VARIANT_TEXT.get(r["metric"], f"{r['metric']} ({note})")
                    notes.append(f"{label}, {task_name(r['task'])} {dataset_name(r['dataset'])}: "
                                 f"\"({note})\" marks {what}; source: {r['source']}.")
                table.cells[(label, (r["task"], r["dataset"], ""))] = TCell(float(r["value"]), note=note)
    mark_best(table)
    table.footnotes = [BOLD_FOOTNOTE,
                       "Measured: mean ± sample std over seeds (std omitted for a single seed); "
                       "SynthFace columns are our synthetic benchmark, not comparable with real-data numbers.",
                       "Floor: the best input-free predictor of each task (labels only: majority per attribute / "
                       "class, mean training shape, per-pixel class prior, constant similarity); Ceiling: the same "
                       "architecture trained end to end from random init with the task's labels (protocol "
                       "`finetune`, fraction 1). Neither is bolded."]
    table.footnotes += gain_notes + notes
    return table
