"""What makes the instrument's comparisons fair, from the rows alone: ceilings that are not reached
(a supervised ceiling that does not beat an encoder or random init of its own architecture is no
ceiling: flagged, and no normalised gain is computed against it), the head learning rate each
backbone's cells chose on val (bench_tasks.protocols.selection), and each backbone's evaluation
size next to the size its checkpoint was made for. `fairness_markdown` is SUMMARY.md's section.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from bench_tasks.backbones.native import native_size
from bench_tasks.plan.references import same_architecture

from .naming import MethodInfo, dataset_name, task_name

NOT_REACHED = "ceiling not reached"


def _means(df_ok: pd.DataFrame) -> pd.DataFrame:
    keys = ["uri", "kind", "task", "dataset", "protocol", "fraction"]
    return df_ok.groupby(keys, dropna=False)["value"].mean().reset_index()


def unreached_ceilings(df_ok: pd.DataFrame) -> dict[tuple[str, str, str], list[str]]:
    """{(task, dataset, ceiling uri): [uris of the encoders / random inits of its architecture whose
    mean headline matches or beats it]} for the ceilings that do not beat them (any protocol and
    fraction of theirs)."""
    out: dict[tuple[str, str, str], list[str]] = {}
    if df_ok.empty or "kind" not in df_ok:
        return out
    means = _means(df_ok)
    hib_of = df_ok.groupby(["task", "dataset"])["higher_is_better"].first().to_dict()
    for (task, ds), sub in means.groupby(["task", "dataset"]):
        hib = bool(hib_of.get((task, ds), True))
        ceilings = sub[(sub["kind"] == "ceiling") & (sub["fraction"] == 1.0)].groupby("uri")["value"].mean()
        others = sub[~sub["kind"].isin(["floor", "ceiling"])]
        for cu, cv in ceilings.items():
            beaten = [r.uri for r in others.itertuples()
                      if same_architecture(r.uri, cu) and (r.value >= cv if hib else r.value <= cv)]
            if beaten:
                out[(task, ds, cu)] = list(dict.fromkeys(beaten))
    return out


def _fmt_lr(v) -> str:
    return f"{float(v):g}"


def chosen_learning_rates(df_ok: pd.DataFrame, methods: dict[str, MethodInfo]) -> pd.DataFrame:
    """One row per backbone, one column per task · dataset · protocol: the head learning rate its
    cells chose on val (several values over seeds / fractions: each with its count)."""
    if df_ok.empty or "selection" not in df_ok:
        return pd.DataFrame()
    rows = df_ok[df_ok["selection"].map(lambda s: isinstance(s, dict) and len(s.get("grid") or []) > 1)]
    if rows.empty:
        return pd.DataFrame()
    table: dict[str, dict[str, str]] = {}
    for (uri, task, ds, proto), sub in rows.groupby(["uri", "task", "dataset", "protocol"], sort=False):
        counts = Counter(_fmt_lr(s["chosen"]) for s in sub["selection"])
        grid = "/".join(_fmt_lr(v) for v in sub["selection"].iloc[0]["grid"])
        text = ", ".join(f"{v}" + (f" ×{n}" if n > 1 else "") for v, n in counts.most_common())
        col = f"{task_name(task)} · {dataset_name(ds)} · `{proto}` (grid {grid})"
        label = methods[uri].label if uri in methods else uri
        table.setdefault(label, {})[col] = text
    return pd.DataFrame.from_dict(table, orient="index").rename_axis("backbone").reset_index().fillna("–")


def evaluation_sizes(df_ok: pd.DataFrame, methods: dict[str, MethodInfo]) -> pd.DataFrame:
    """Each backbone's evaluation size(s) (the rows' image size per task) and its native size."""
    if df_ok.empty:
        return pd.DataFrame()
    records = []
    for uri, sub in df_ok[~df_ok["kind"].isin(["floor"])].groupby("uri", sort=False):
        sizes = sorted({int(s) for s in sub["image_size"].dropna()}) if "image_size" in sub else []
        try:
            native = native_size(uri)
        except Exception:  # noqa: BLE001 - a file that is gone: unknown
            native = None
        records.append({"backbone": methods[uri].label if uri in methods else uri,
                        "evaluated at (px)": ", ".join(map(str, sizes)) or "?",
                        "native size (px)": str(native) if native else "any (built at the task's size)"})
    return pd.DataFrame(records)


def fairness_markdown(df_ok: pd.DataFrame, methods: dict[str, MethodInfo]) -> str | None:
    """SUMMARY.md's section: ceilings not reached, learning rates chosen on val, evaluation sizes."""
    if df_ok.empty:
        return None
    lines = ["## Fair comparison: ceilings, learning rates, sizes", ""]
    unreached = unreached_ceilings(df_ok)
    if unreached:
        lines += [f"**{NOT_REACHED}** (no normalised gain is computed against these; the table and the "
                  "figure mark them):", ""]
        for (task, ds, cu), who in unreached.items():
            names = ", ".join(methods[u].label if u in methods else u for u in who)
            lines.append(f"- {task_name(task)} · {dataset_name(ds)}: `{cu}` does not beat {names}")
        lines.append("")
    lr = chosen_learning_rates(df_ok, methods)
    if not lr.empty:
        lines += ["Head learning rate chosen on `val` (each value of the protocol's grid trained, the best "
                  "val score chosen, test scored for it only):", "", lr.to_markdown(index=False), ""]
    sizes = evaluation_sizes(df_ok, methods)
    if not sizes.empty:
        lines += ["Input size each backbone was evaluated at, and the size its checkpoint was made for "
                  "(ceilings and random-init controls are built at the evaluation size):", "",
                  sizes.to_markdown(index=False), ""]
    return "\n".join(lines) if len(lines) > 2 else None
