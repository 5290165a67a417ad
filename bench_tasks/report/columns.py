"""The columns and rows the report's tables share: a table of measured rows (`measured_table`),
the floor and ceiling rows (`add_references`), the gain columns, floor flags and mean gain
(`add_gain_columns`), and the secondary-metric and probe columns (`add_variant_columns`)."""

from __future__ import annotations

import math

import pandas as pd

from bench_tasks.plan.references import PROBE_PROTOCOLS

from .compare import _mean_ci, beats_floor, floor_comparison, gain, reference_rows, references
from .fairness import NOT_REACHED
from .frames import to_float
from .naming import MethodInfo, dataset_name, lower_is_better, task_name
from .table import FLAG, FLAG_FOOTNOTE, GAIN_COL, MEAN_GAIN, Col, Table, TCell, TRow

# protocols a study added after its results were seen: labelled "post hoc" in that study's tables
# until a study plans them before it runs ({profile: {protocol: why}})
POST_HOC = {"cpu": {"concat": "the concatenated-feature probe was added to the cpu study after its results were seen"}}

# secondary metrics shown next to a task's headline in the main table
SECONDARY = {"attributes": "mean_acc"}


def _measured_cols(agg: pd.DataFrame) -> list[Col]:
    cols: dict[tuple, Col] = {}
    for _, r in agg.iterrows():
        k = (r["task"], r["dataset"])
        if k not in cols:
            cols[k] = Col(r["task"], r["dataset"], r["metric"], bool(r["higher_is_better"]))
    return sorted(cols.values(), key=Col.sort_key)


def _row_kind(m: MethodInfo) -> str:
    return m.kind if m.kind in ("floor", "ceiling") else "measured"


def measured_table(agg: pd.DataFrame, methods: dict[str, MethodInfo], uris: list[str], title: str,
                    labels: dict[str, str] | None = None, extra: dict[str, dict] | None = None,
                    first_col: str = "Method") -> Table:
    sub = agg[agg["uri"].isin(uris)]
    cols = _measured_cols(sub)
    rows, cells = [], {}
    for u in uris:
        label = (labels or {}).get(u, methods[u].label)
        rows.append(TRow(label, _row_kind(methods[u]), (extra or {}).get(u, {})))
        for _, r in sub[sub["uri"] == u].iterrows():
            std = None if pd.isna(r["std"]) else float(r["std"])
            ci = r.get("ci") if isinstance(r.get("ci"), list) else None
            cells[(label, (r["task"], r["dataset"], ""))] = TCell(float(r["mean"]), std, int(r["n"]), ci=ci)
    uri_of = {(labels or {}).get(u, methods[u].label): u for u in uris}
    return Table(title, rows, cols, cells, first_col=first_col, uris=uri_of)


def add_references(sub: pd.DataFrame, df_ok: pd.DataFrame) -> pd.DataFrame:
    """`sub` (a selection of encoder rows) plus the floor and ceiling rows of its tasks."""
    if df_ok.empty or "kind" not in df_ok:
        return sub
    ref = reference_rows(df_ok)
    if not sub.empty:
        ref = ref[ref["task"].isin(set(sub["task"]))]
    enc = sub[~sub["kind"].isin(["floor", "ceiling"])] if "kind" in sub else sub
    return pd.concat([enc, ref], ignore_index=True) if not ref.empty else enc


def _beats_floor(table: Table, row_label: str, c: Col, cell, ref, df_sel: pd.DataFrame,
                 df_all: pd.DataFrame | None) -> bool | None:
    """The floor verdict of one cell: score - floor compared as any two rows are
    (compare.floor_comparison, paired over the same test items where both stored per-item scores),
    else the cell's interval against the floor value."""
    uri = table.uris.get(row_label)
    if uri is not None:
        if c.variant == "probe":
            frame, proto, frac = (df_all if df_all is not None else df_sel), c.probe, 1.0
        else:
            frame, proto, frac = df_sel, None, None  # df_sel holds the table's protocol and fraction only
        cmp = floor_comparison(frame, uri, c.task, c.dataset, proto, frac)
        if cmp is not None:
            return cmp.word == "beats the floor"
    return beats_floor(cell.ci, ref)


def add_gain_columns(table: Table, df_sel: pd.DataFrame, mean_gain: bool = True, calibrated=None,
                     df_all: pd.DataFrame | None = None) -> None:
    """For each headline and probe column: flag cells that do not beat the floor (the floor verdict
    of `stats`, on score - floor paired over the test items; `df_all`: the rows of the probe
    columns' protocols); for each headline column add a normalised
    gain column g = (score - floor) / (ceiling - floor) where floor and ceiling exist, and a mean
    gain over the tasks that have one."""
    refs = references(df_sel)
    gain_cols = []
    for c in [c for c in table.cols if c.variant in ("", "probe")]:
        ref = refs.get((c.task, c.dataset))
        if ref is None or ref.floor is None:
            continue
        for r in table.rows:
            cell = table.cells.get((r.label, c.key))
            if cell is None or r.kind in ("floor", "reported"):
                continue
            if _beats_floor(table, r.label, c, cell, ref, df_sel, df_all) is False:
                cell.flag = FLAG
                table.flagged.append(f"{r.label}: {c.header()}")
        if ref.ceiling is None or c.variant == "probe":  # a probe is flagged, its gain is not a column
            continue
        gc = Col(c.task, c.dataset, c.metric, True, GAIN_COL)
        gain_cols.append(gc)
        for r in table.rows:
            cell = table.cells.get((r.label, c.key))
            if cell is None or r.kind == "reported":
                continue
            if r.kind == "ceiling" and table.uris.get(r.label) in ref.not_reached:
                cell.note = NOT_REACHED  # an encoder of its architecture matches it: no gain against it
            # a measured encoder's gain: against the ceiling of its own architecture and size only
            own = ref.for_encoder(table.uris.get(r.label)) if r.kind == "measured" else ref
            table.cells[(r.label, gc.key)] = TCell(gain(cell.mean, own), digits=2)
    if not gain_cols:
        return
    table.cols = sorted(table.cols + gain_cols, key=Col.sort_key)
    averaged = [g for g in gain_cols if calibrated is None or (g.task, g.dataset) in calibrated]
    if mean_gain and averaged:
        mc = Col("", "", "gain", True, MEAN_GAIN)
        table.cols.append(mc)
        left_out = [g for g in gain_cols if g not in averaged]
        if left_out:
            table.footnotes.append(
                "Mean gain over the tasks whose calibration passes (random init beats the floor and the ceiling "
                "leaves room ≥ 2×, calibration.md); shown but not averaged: "
                + ", ".join(f"{task_name(g.task)} {dataset_name(g.dataset)}" for g in left_out) + ".")
        gain_cols = averaged
        for r in table.rows:
            if r.kind == "reported":
                continue
            vals = [table.cells[(r.label, g.key)].mean for g in gain_cols if (r.label, g.key) in table.cells]
            vals = [v for v in vals if not math.isnan(v)]
            if vals:
                note = None if len(vals) == len(gain_cols) else f"{len(vals)} of {len(gain_cols)} tasks"
                table.cells[(r.label, mc.key)] = TCell(float(sum(vals) / len(vals)), note=note, digits=2)
    table.footnotes.append("Gain: normalised gain g = (score − floor) / (ceiling − floor) on the headline "
                           "(0 = the input-free floor, 1 = the supervised ceiling; the same formula for ↓ "
                           "metrics); mean gain over the tasks with a floor and a ceiling. Values in [ ] are "
                           "95 % intervals of the mean over seeds from the study-design bootstrap (one set of "
                           "test-item weights shared by every seed, identities for verification, plus the "
                           "seed spread of the cell's encoders; docs/harness.md).")
    table.footnotes.append(FLAG_FOOTNOTE)
    above = sorted({r.label for r in table.rows for g in gain_cols if r.kind == "measured"
                    and (r.label, g.key) in table.cells and table.cells[(r.label, g.key)].mean > 1})
    if above:
        table.footnotes.append("Gain above 1 (" + ", ".join(above) + "): the score beats the supervised ceiling, "
                               "whose fine-tune budget is then too small to be a ceiling for that task.")


def add_variant_columns(table: Table, df_sel: pd.DataFrame, df_ok: pd.DataFrame, methods: dict[str, MethodInfo],
                        fraction) -> None:
    """Attributes: FaRL's mAcc next to the balanced-accuracy headline (SECONDARY); recognition:
    each task's probe (references.PROBE_PROTOCOLS: recognition's parameter-free cosine probe, the
    concatenated-feature probe of attributes / expression) next to the head's score."""
    label_of = {u: methods[u].label for u in methods}
    new_cols = {}
    for task, metric in SECONDARY.items():
        sub = df_sel[(df_sel["task"] == task)]
        for (uri, ds), g in sub.groupby(["uri", "dataset"], sort=False):
            vals = [float(m[metric]) for m in g["metrics"] if isinstance(m, dict) and to_float(m.get(metric)) is not None]
            if not vals or metric == g["metric"].iloc[0]:
                continue
            col = Col(task, ds, metric, not lower_is_better(metric), "secondary")
            new_cols[col.key] = col
            ci = _mean_ci([c.get(metric) for c in g["ci_all"] if isinstance(c, dict)])
            std = float(pd.Series(vals).std(ddof=1)) if len(vals) > 1 else None
            table.cells[(label_of[uri], col.key)] = TCell(float(sum(vals) / len(vals)), std, len(vals), ci=ci)
    cos = df_ok[[PROBE_PROTOCOLS.get(t) == p for t, p in zip(df_ok["task"], df_ok["protocol"])]] \
        if not df_ok.empty else df_ok
    shown = {r.label for r in table.rows}
    for (uri, task, ds), g in cos.groupby(["uri", "task", "dataset"], sort=False):
        if label_of[uri] not in shown:
            continue
        why = POST_HOC.get(str(g["profile"].iloc[0]), {}).get(PROBE_PROTOCOLS[task])
        col = Col(task, ds, g["metric"].iloc[0], bool(g["higher_is_better"].iloc[0]), "probe",
                  probe=PROBE_PROTOCOLS[task], post_hoc=bool(why))
        if why and f"Post hoc: {why}." not in table.footnotes:
            table.footnotes.append(f"Post hoc: {why}.")
        new_cols[col.key] = col
        std = float(g["value"].std(ddof=1)) if len(g) > 1 else None
        table.cells[(label_of[uri], col.key)] = TCell(float(g["value"].mean()), std, len(g), ci=_mean_ci(g["ci"]))
    if new_cols:
        table.cols = sorted(table.cols + list(new_cols.values()), key=Col.sort_key)
