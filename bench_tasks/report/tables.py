"""Tables from result rows: main table (paper style), per-protocol tables, ablation tables.

A `Table` is rendered to Markdown (tabulate, best in **bold**), LaTeX (booktabs, \\textbf) and
CSV (wide, as displayed; plus a long numeric CSV with an `is_best` column).
Values are mean ± sample std (ddof=1) over seeds; the std is omitted with one seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from .naming import (
    COMPONENTS,
    REPORTED_APART,
    MethodInfo,
    canon_dataset,
    dataset_name,
    dataset_sort_key,
    is_full_paco,
    lower_is_better,
    method_info,
    metric_name,
    task_name,
    task_sort_key,
)
from .reported import PRIMARY_METRIC, REPORTED_ORDER, VARIANT_TEXT, reported_label

MISSING = "–"
BOLD_FOOTNOTE = ("Bold: best among our measured rows in each column (lower is better for ↓ metrics such as "
                 "NME); shown only where at least two measured rows have a value. \"(reported)\" rows are "
                 "published numbers on the real data sets (ViT-B/16, the authors' protocols) and are never "
                 "compared with our measured rows.")


# ----------------------------------------------------------------------------- frame


def rows_to_frames(rows: list[dict]):
    """-> (ok DataFrame: one row per ok result with its headline value, failed DataFrame,
    {uri: MethodInfo} from the rows' method blocks, problems: list of str)."""
    methods: dict[str, MethodInfo] = {}
    recorded: set[str] = set()  # URIs whose MethodInfo comes from a row's own block
    ok, failed, problems = [], [], []
    for r in rows:
        cell = r.get("cell") or {}
        uri = str(cell.get("backbone", "?"))
        if uri not in recorded and (uri not in methods or r.get("method")):
            methods[uri] = method_info(r)
            if r.get("method"):
                recorded.add(uri)
        base = {
            "key": r.get("key"), "uri": uri, "task": str(cell.get("task", "?")),
            "dataset": canon_dataset(cell.get("dataset", "?")), "protocol": str(cell.get("protocol", "?")),
            "fraction": _float(cell.get("fraction", 1.0), 1.0), "seed": cell.get("seed", 0),
            "profile": cell.get("profile"), "provenance": r.get("provenance") or {},
        }
        if r.get("status") != "ok":
            failed.append({**base, "status": r.get("status", "?"), "error": r.get("error")})
            continue
        metrics = r.get("metrics") or {}
        headline = r.get("headline")
        if not headline or _float(metrics.get(headline)) is None:
            problems.append(f"{_label(base)}: status ok but headline metric {headline!r} missing from metrics")
            continue
        hib = r.get("higher_is_better")
        hib = (not lower_is_better(headline)) if hib is None else bool(hib)
        ci = (r.get("ci") or {}).get(headline)
        ci = [float(ci[0]), float(ci[1])] if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci else None
        items = (r.get("artifacts") or {}).get("items")
        if items and r.get("_source"):
            items = _artifact_path(r["_source"], items)
        farl = (((r.get("config") or {}).get("task") or {}).get("farl") or {})
        ok.append({**base, "metric": headline, "higher_is_better": hib, "value": _float(metrics[headline]),
                   "slices": r.get("slices") or {}, "kind": methods[uri].kind, "ci": ci,
                   "ci_all": r.get("ci") or {}, "metrics": metrics, "items": items,
                   "farl_exact": bool(farl.get("farl_exact")),
                   "method_label": methods[uri].label,  # before _disambiguate: shared by a method's runs
                   "pretrain_seed": (r.get("method") or {}).get("pretrain_seed")})
    ok_cols = ["key", "uri", "task", "dataset", "protocol", "fraction", "seed", "profile", "provenance",
               "metric", "higher_is_better", "value", "slices", "kind", "ci", "ci_all", "metrics", "items",
               "farl_exact", "method_label", "pretrain_seed"]
    df = pd.DataFrame(ok, columns=ok_cols)
    fdf = pd.DataFrame(failed, columns=["key", "uri", "task", "dataset", "protocol", "fraction", "seed",
                                        "profile", "provenance", "status", "error"])
    runs_of = _pretraining_runs(methods)
    for frame in (df, fdf):
        frame["run"] = list(frame["uri"])  # the backbone: one pre-training run
        frame["uri"] = [runs_of.get(u, u) for u in frame["uri"]]  # the method's row in the tables
    _disambiguate({u: m for u, m in methods.items() if u not in runs_of})
    for frame in (df, fdf):
        frame["method"] = [methods[u].label for u in frame["uri"]]
    return df, fdf, methods, problems


RUNS_PREFIX = "runs:"


def _pretraining_runs(methods: dict[str, MethodInfo]) -> dict[str, str]:
    """{backbone URI: method key} for methods whose label several backbones share: they are that
    method's pre-training runs (rows of one method at several pre-training seeds carry its label and
    a `pretrain_seed`), shown as ONE table row ("runs:<label>", added to `methods`) whose interval
    resamples the runs (bench_tasks.stats). Floors are never grouped."""
    by_label: dict[str, list[str]] = {}
    for u, m in methods.items():
        if m.kind != "floor" and not u.startswith(RUNS_PREFIX):
            by_label.setdefault(m.label, []).append(u)
    out = {}
    for label, uris in by_label.items():
        if len(uris) < 2:
            continue
        key = RUNS_PREFIX + label
        first = methods[uris[0]]
        methods[key] = MethodInfo(key, label, first.method, first.kind, first.group, first.setting, first.run,
                                  dict(first.settings), {}, {}, first.order)
        for u in uris:
            out[u] = key
    return out


def _artifact_path(source: str, rel: str) -> str:
    """An artifact path of a row read from `source`: relative to the results folder, which for a
    worker's row file (results/<profile>.d/<worker>.jsonl, bench_tasks.rowfiles) is the folder above."""
    from bench_tasks.store.rowfiles import WORKER_SUFFIX

    folder = Path(source).parent
    if folder.name.endswith(WORKER_SUFFIX) and not (folder / rel).exists():
        folder = folder.parent
    return str(folder / rel)


def _disambiguate(methods: dict[str, MethodInfo]) -> None:
    seen: dict[str, list[str]] = {}
    for uri, m in methods.items():
        seen.setdefault(m.label, []).append(uri)
    for label, uris in seen.items():
        if len(uris) > 1:
            for u in uris:
                methods[u].label = f"{label} [{u}]"


def _label(base: dict) -> str:
    return (f"{base['uri']} | {base['task']}/{base['dataset']} | {base['protocol']} "
            f"| frac={base['fraction']:g} | seed={base['seed']}")


def cell_label(row) -> str:
    return _label(dict(row))


def _float(v, default=None):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(f) else f


def pick_protocol(df: pd.DataFrame, preferred: str = "linear") -> str | None:
    if df.empty:
        return None
    protos = list(dict.fromkeys(df["protocol"]))
    return preferred if preferred in protos else protos[0]


def pick_fraction(df: pd.DataFrame) -> float | None:
    if df.empty:
        return None
    fr = sorted(set(df["fraction"]))
    return 1.0 if 1.0 in fr else fr[-1]


def aggregate(df: pd.DataFrame, pool_df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean, sample std (NaN for one seed), n per (uri, task, dataset, metric, protocol, fraction), and
    the 95 % interval of the mean under the study's design (compare.design_interval: test items, or
    identities, shared by the seeds, plus the seed spread of the cell's pool; `covers` says what it
    resamples); rows without per-item scores: the mean of their per-seed intervals."""
    cols = ["uri", "method", "task", "dataset", "metric", "higher_is_better", "protocol", "fraction"]
    if df.empty:
        return pd.DataFrame(columns=cols + ["mean", "std", "n", "ci", "covers"])
    g = df.groupby(cols, sort=False, dropna=False)["value"]
    out = g.agg(mean="mean", std=lambda s: s.std(ddof=1) if len(s) > 1 else float("nan"), n="count").reset_index()
    if "ci" in df:
        from .compare import _mean_ci, design_interval

        pool_df = df if pool_df is None else pool_df
        cis, covers = [], []
        for _, grp in df.groupby(cols, sort=False, dropna=False):
            got = design_interval(pool_df, grp, grp["metric"].iloc[0]) if "items" in grp else None
            cis.append([got[0], got[1]] if got else _mean_ci(list(grp["ci"])))
            covers.append(got[2] if got else "per-seed intervals averaged")
        out["ci"], out["covers"] = cis, covers
    else:
        out["ci"], out["covers"] = None, None
    return out


# ----------------------------------------------------------------------------- table model


# column variants next to a task's headline column (bench_tasks.report.compare)
VARIANT_ORDER = {"": 0, "secondary": 1, "probe": 2, "gain": 3}
GAIN_COL = "gain"
MEAN_GAIN = "mean_gain"


@dataclass(frozen=True)
class Col:
    task: str
    dataset: str
    metric: str
    higher_is_better: bool = True
    variant: str = ""  # "" headline | "secondary" (another metric) | "probe" | "gain" | "mean_gain"
    probe: str = ""  # variant "probe": the probe's protocol (references.PROBE_PROTOCOLS)
    post_hoc: bool = False  # a protocol added after the study's results were seen (POST_HOC)

    @property
    def key(self):
        return (self.task, self.dataset, self.variant)

    def sort_key(self):
        if self.variant == MEAN_GAIN:
            return ((99, ""), (99, ""), 99)
        return (task_sort_key(self.task), dataset_sort_key(self.dataset), VARIANT_ORDER.get(self.variant, 9))

    def header(self, style: str = "md") -> str:
        arrow = {"md": ("↑", "↓"), "tex": (r"$\uparrow$", r"$\downarrow$"),
                 "csv": ("(higher is better)", "(lower is better)")}[style][0 if self.higher_is_better else 1]
        if self.variant == MEAN_GAIN:
            return f"Mean gain {arrow}"
        probe = f"{self.probe} probe" + (", post hoc" if self.post_hoc else "")
        metric = {"gain": "gain", "probe": f"{metric_name(self.metric)} ({probe})"}.get(
            self.variant, metric_name(self.metric))
        if style == "csv":
            return f"{task_name(self.task)} / {dataset_name(self.dataset)} / {metric} {arrow}"
        return f"{task_name(self.task)} {dataset_name(self.dataset)} {metric} {arrow}"


# protocols a study added after its results were seen: labelled "post hoc" in that study's tables
# until a study plans them before it runs ({profile: {protocol: why}})
POST_HOC = {"cpu": {"concat": "the concatenated-feature probe was added to the cpu study after its results were seen"}}

FLAG = "†"  # the row's 95 % interval includes its floor: it does not beat the floor
FLAG_FOOTNOTE = (f"{FLAG}: the 95 % interval includes the floor — this score does not beat the input-free "
                 "predictor (never bold).")


@dataclass
class TCell:
    mean: float
    std: float | None = None
    n: int = 1
    note: str | None = None
    best: bool = False
    ci: list | None = None  # 95 % bootstrap interval over test items (mean over seeds)
    flag: str | None = None
    digits: int | None = None  # None: fmt_num's choice

    def text(self) -> str:
        s = fmt_num(self.mean) if self.digits is None else (MISSING if math.isnan(self.mean) else f"{self.mean:.{self.digits}f}")
        if self.n > 1 and self.std is not None and not math.isnan(self.std):
            s += f" ± {fmt_num(self.std, ref=self.mean)}"
        if self.ci:
            from .compare import fmt_ci

            s += f" {fmt_ci(self.ci, self.mean)}"
        if self.flag:
            s += f" {self.flag}"
        if self.note:
            s += f" ({self.note})"
        return s


@dataclass
class TRow:
    label: str
    kind: str = "measured"  # "measured" | "reported" | "floor" | "ceiling"
    extra: dict = field(default_factory=dict)  # e.g. {"Setting": "64"}


@dataclass
class Table:
    title: str
    rows: list[TRow]
    cols: list[Col]
    cells: dict  # (row label, col.key) -> TCell
    first_col: str = "Method"
    extra_cols: list[str] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)  # "<row>: <column>" whose CI includes the floor
    uris: dict = field(default_factory=dict)  # row label -> backbone URI (measured rows)
    selection: tuple = (None, None)  # (protocol or {task: protocol}, fraction) of the measured rows

    @property
    def empty(self) -> bool:
        return not self.rows or not self.cols


def fmt_num(v: float, ref: float | None = None) -> str:
    ref = v if ref is None else ref
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    return f"{v:.3f}" if abs(ref) < 1 else f"{v:.2f}"


def mark_best(table: Table, min_values: int = 2) -> None:
    """Bold the best measured value per column (ties all bold); reported rows never, and a score
    marked † (its interval includes the floor) never: the best among the others is bold."""
    for col in table.cols:
        vals = [(r.label, table.cells[(r.label, col.key)].mean) for r in table.rows
                if r.kind == "measured" and (r.label, col.key) in table.cells
                and not math.isnan(table.cells[(r.label, col.key)].mean)
                and table.cells[(r.label, col.key)].flag != FLAG]
        if len(vals) < min_values:
            continue
        best = max(v for _, v in vals) if col.higher_is_better else min(v for _, v in vals)
        for label, v in vals:
            if math.isclose(v, best, rel_tol=1e-9, abs_tol=1e-12):
                table.cells[(label, col.key)].best = True


def _measured_cols(agg: pd.DataFrame) -> list[Col]:
    cols: dict[tuple, Col] = {}
    for _, r in agg.iterrows():
        k = (r["task"], r["dataset"])
        if k not in cols:
            cols[k] = Col(r["task"], r["dataset"], r["metric"], bool(r["higher_is_better"]))
    return sorted(cols.values(), key=Col.sort_key)


def _row_kind(m: MethodInfo) -> str:
    return m.kind if m.kind in ("floor", "ceiling") else "measured"


def _measured_table(agg: pd.DataFrame, methods: dict[str, MethodInfo], uris: list[str], title: str,
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
    from .compare import reference_rows

    if df_ok.empty or "kind" not in df_ok:
        return sub
    ref = reference_rows(df_ok)
    if not sub.empty:
        ref = ref[ref["task"].isin(set(sub["task"]))]
    enc = sub[~sub["kind"].isin(["floor", "ceiling"])] if "kind" in sub else sub
    return pd.concat([enc, ref], ignore_index=True) if not ref.empty else enc


def add_gain_columns(table: Table, df_sel: pd.DataFrame, mean_gain: bool = True, calibrated=None) -> None:
    """For each headline and probe column: flag cells whose interval includes the floor; for each
    headline column add a normalised
    gain column g = (score - floor) / (ceiling - floor) where floor and ceiling exist, and a mean
    gain over the tasks that have one."""
    from .compare import beats_floor, gain, references

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
            if beats_floor(cell.ci, ref) is False:
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
    from bench_tasks.plan.references import PROBE_PROTOCOLS

    from .compare import _mean_ci

    label_of = {u: methods[u].label for u in methods}
    new_cols = {}
    for task, metric in SECONDARY.items():
        sub = df_sel[(df_sel["task"] == task)]
        for (uri, ds), g in sub.groupby(["uri", "dataset"], sort=False):
            vals = [float(m[metric]) for m in g["metrics"] if isinstance(m, dict) and _float(m.get(metric)) is not None]
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


# secondary metrics shown next to a task's headline in the main table
SECONDARY = {"attributes": "mean_acc"}


def build_main_table(df_ok: pd.DataFrame, methods: dict[str, MethodInfo], reported: pd.DataFrame | None,
                     protocol, fraction: float | None, title: str | None = None, calibrated=None) -> Table:
    """`protocol`: a name or {task: name} (compare.main_protocols). Floors and ceilings are rows of
    their own; each headline column gets a gain column, a mean gain closes the table."""
    from .compare import protocol_mask, protocol_text

    sub = df_ok[protocol_mask(df_ok, protocol) & (df_ok["fraction"] == fraction)] if not df_ok.empty else df_ok
    sub = add_references(sub, df_ok)
    agg = aggregate(sub)
    uris = sorted({u for u in agg["uri"] if methods[u].kind != "ablation"}, key=lambda u: methods[u].order)
    title = title or f"Main results (protocol {protocol_text(protocol)}, training fraction {fraction:g})"
    table = _measured_table(agg, methods, uris, title)
    if not sub.empty:
        add_variant_columns(table, sub[sub["uri"].isin(uris)], df_ok, methods, fraction)
        add_gain_columns(table, sub, calibrated=calibrated)
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


def build_protocol_tables(df_ok: pd.DataFrame, methods: dict[str, MethodInfo], calibrated=None) -> list[tuple[str, Table]]:
    """One table per encoder protocol (all backbones incl. ablations), with the floor and ceiling
    rows, CIs, flags and gain columns; the floor's own protocol gets no table."""
    out = []
    if df_ok.empty:
        return out
    enc = df_ok[~df_ok["kind"].isin(["floor", "ceiling"])] if "kind" in df_ok else df_ok
    for proto in dict.fromkeys(enc["protocol"]):
        sub = enc[enc["protocol"] == proto]
        frac = pick_fraction(sub)
        title = f"Protocol `{proto}` (training fraction {frac:g}), all backbones incl. ablations"
        why = POST_HOC.get(str(sub["profile"].iloc[0]), {}).get(proto)
        title += ", post hoc" if why else ""
        sel = add_references(sub[sub["fraction"] == frac], df_ok)
        agg = aggregate(sel)
        uris = sorted(set(agg["uri"]), key=lambda u: methods[u].order)
        t2 = _measured_table(agg, methods, uris, title)
        t2.footnotes = [BOLD_FOOTNOTE.split(" \"(reported)\"")[0]] + ([f"Post hoc: {why}."] if why else [])
        add_gain_columns(t2, sel, calibrated=calibrated)
        mark_best(t2)
        out.append((proto, t2))
    return out


def build_ablation_tables(df_ok: pd.DataFrame, methods: dict[str, MethodInfo], protocol, fraction, calibrated=None):
    """-> (list of (group id, Table), list of missing group titles)."""
    from .compare import protocol_mask

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
        from .compare import protocol_text

        t = _measured_table(agg, methods, refs[:1] + full + abl + refs[1:],
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


def ablation_deltas(table: Table, df_ok: pd.DataFrame | None = None) -> list[str]:
    """Each ablation row vs the full row, per headline column: the difference with its 95 % interval
    and "better" / "worse" only when the interval excludes zero, else "same within noise"
    (compare.compare: paired bootstrap over the same test items where the rows' per-item scores
    exist). Without `df_ok` (or intervals) the difference is "untested"."""
    from .compare import compare

    full = [r for r in table.rows if r.label.startswith("PaCo-FR (full)")]
    if not full:
        return []
    fl = full[0].label
    protocol, fraction = table.selection
    lines = []
    for r in table.rows:
        if r.label == fl or r.kind != "measured":
            continue
        parts = []
        for c in table.cols:
            if c.variant != "":
                continue
            a, b = table.cells.get((r.label, c.key)), table.cells.get((fl, c.key))
            if a is None or b is None:
                continue
            digits = 3 if abs(b.mean) < 1 else 2
            cmp = None
            if df_ok is not None and r.label in table.uris and fl in table.uris:
                cmp = compare(df_ok, table.uris[r.label], table.uris[fl], c.task, c.dataset, protocol, fraction)
            name = f"{task_name(c.task)} {dataset_name(c.dataset)} {metric_name(c.metric)}"
            if cmp is None:
                parts.append(f"{name} {a.mean - b.mean:+.{digits}f} (untested: no interval)")
            else:
                parts.append(f"{name} {cmp.text(digits)}")
        if parts:
            n_better = sum("(better;" in p for p in parts)
            n_worse = sum("(worse;" in p for p in parts)
            lines.append(f"{r.label} vs full (better in {n_better}, worse in {n_worse} of {len(parts)} columns, "
                         "the rest same within noise or untested): " + "; ".join(parts))
    return lines


# ----------------------------------------------------------------------------- renderers


def _grid(table: Table, style: str) -> tuple[list[str], list[list[str]]]:
    headers = [table.first_col] + table.extra_cols + [c.header(style) for c in table.cols]
    body = []
    for r in table.rows:
        label = r.label if style != "tex" else tex_escape(r.label)
        line = [label] + [str(r.extra.get(e, "")) if style != "tex" else tex_escape(r.extra.get(e, ""))
                          for e in table.extra_cols]
        for c in table.cols:
            cell = table.cells.get((r.label, c.key))
            if cell is None:
                line.append("--" if style == "tex" else MISSING)
                continue
            txt = cell.text()
            if style == "tex":
                txt = tex_escape(txt)
                txt = rf"\textbf{{{txt}}}" if cell.best else txt
            elif style == "md" and cell.best:
                txt = f"**{txt}**"
            line.append(txt)
        body.append(line)
    return headers, body


def to_markdown(table: Table, heading_level: int = 3) -> str:
    if table.empty:
        return f"{'#' * heading_level} {table.title}\n\n_No results for this table._\n"
    headers, body = _grid(table, "md")
    md = tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True,
                  colalign=["left"] * (1 + len(table.extra_cols)) + ["center"] * len(table.cols))
    out = f"{'#' * heading_level} {table.title}\n\n{md}\n"
    if table.footnotes:
        out += "\n" + "\n".join(f"- {f}" for f in table.footnotes) + "\n"
    return out


def tex_escape(s: str) -> str:
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
           "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "`": ""}
    return "".join(rep.get(ch, ch) for ch in str(s)).replace("–", "--").replace("±", r"$\pm$").replace("↓", r"$\downarrow$").replace("↑", r"$\uparrow$")


def to_latex(table: Table, label: str = "tab:main") -> str:
    if table.empty:
        return f"% {tex_escape(table.title)}: no results\n"
    headers, body = _grid(table, "tex")
    nlead = 1 + len(table.extra_cols)
    spec = "l" * nlead + "c" * len(table.cols)
    lines = [r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{tex_escape(table.title)}}}", rf"\label{{{label}}}", rf"\begin{{tabular}}{{{spec}}}",
             r"\toprule"]
    # task header with \multicolumn spans
    spans, cmid, start = [], [], nlead + 1
    groups: list[tuple[str, int]] = []
    for c in table.cols:
        if groups and groups[-1][0] == c.task:
            groups[-1] = (c.task, groups[-1][1] + 1)
        else:
            groups.append((c.task, 1))
    for task, n in groups:
        spans.append(rf"\multicolumn{{{n}}}{{c}}{{{tex_escape(task_name(task))}}}")
        cmid.append(rf"\cmidrule(lr){{{start}-{start + n - 1}}}")
        start += n
    lines.append(" & " * nlead + " & ".join(spans) + r" \\")
    lines.append(" ".join(cmid))
    sub = [tex_escape(h) for h in [table.first_col] + table.extra_cols]
    sub += [f"{tex_escape(dataset_name(c.dataset))} {tex_escape(metric_name(c.metric))} "
            + (r"$\uparrow$" if c.higher_is_better else r"$\downarrow$") for c in table.cols]
    lines.append(" & ".join(sub) + r" \\")
    lines.append(r"\midrule")
    prev_kind = None
    for r, line in zip(table.rows, body):
        if prev_kind is not None and r.kind != prev_kind:
            lines.append(r"\midrule")
        prev_kind = r.kind
        lines.append(" & ".join(line) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.footnotes:
        lines.append(r"\par\smallskip\footnotesize " + r" \\ ".join(tex_escape(f) for f in table.footnotes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_wide_frame(table: Table) -> pd.DataFrame:
    headers, body = _grid(table, "csv")
    df = pd.DataFrame(body, columns=headers)
    df.insert(1, "Kind", [r.kind for r in table.rows])
    return df


def to_long_frame(table: Table) -> pd.DataFrame:
    recs = []
    for r in table.rows:
        for c in table.cols:
            cell = table.cells.get((r.label, c.key))
            if cell is None:
                continue
            recs.append({"method": r.label, "kind": r.kind, **{k.lower(): v for k, v in r.extra.items()},
                         "task": c.task, "dataset": c.dataset, "metric": c.metric, "column": c.variant or "headline",
                         "higher_is_better": c.higher_is_better, "mean": cell.mean,
                         "ci_lo": cell.ci[0] if cell.ci else None, "ci_hi": cell.ci[1] if cell.ci else None,
                         "flag": cell.flag,
                         "std": cell.std, "n_seeds": cell.n, "note": cell.note, "is_best": cell.best,
                         "display": cell.text()})
    return pd.DataFrame(recs)
