"""What supervision each method's pre-training used, and whether a comparison is equal.

Every study run records `labels_used` in its method block (bench_tasks.store.method.labels_used: none |
captions (noisy) | landmarks (ground truth | detected | user file) | teacher (which)) and its
`pretrain_seed`. The report prints, for every method label of the rows, its supervision and its
pre-training runs (distinct backbones under one label, with their seeds), and says when the
compared methods (role main, the random-init control left aside) do not all use the same kind of
supervision: such a comparison is unequal, and the section names who differs from PaCo-FR.

    supervision_frame(rows) -> DataFrame(label, role, labels_used, kind, runs, pretrain_seeds)
    supervision_markdown(rows) -> "## Supervision ..." section ("" without rows)
"""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from bench_tasks.plan.suite import method_of_row
from bench_tasks.store.method import supervision_kind

NOT_RECORDED = "not recorded"
# roles whose rows are compared with each other in the main table (the control has no pre-training)
COMPARED_ROLES = ("main",)
_SHOWN_ROLES = ("main", "control", "ablation")


def supervision_frame(rows) -> pd.DataFrame:
    """One line per method label of the rows (roles main, control, ablation): its supervision
    (every distinct `labels_used` of its rows, joined), the kind, its number of pre-training runs
    (distinct backbone URIs) and their seeds."""
    seen: dict[str, dict] = {}
    for row in rows or []:
        if row.get("status", "ok") != "ok":
            continue
        b = method_of_row(row)
        role = str(b.get("role", "main"))
        if role not in _SHOWN_ROLES:
            continue
        label = str(b.get("label") or (row.get("cell") or {}).get("backbone", "?"))
        d = seen.setdefault(label, {"label": label, "role": role, "labels": set(), "uris": set(), "seeds": set()})
        d["labels"].add(str(b.get("labels_used") or NOT_RECORDED))
        d["uris"].add(str((row.get("cell") or {}).get("backbone", "?")))
        if b.get("pretrain_seed") is not None:
            d["seeds"].add(int(b["pretrain_seed"]))
    out = []
    for d in seen.values():
        labels = sorted(d["labels"])
        kinds = sorted({supervision_kind(x if x != NOT_RECORDED else None) for x in labels})
        out.append({"label": d["label"], "role": d["role"], "labels_used": "; ".join(labels),
                    "kind": " + ".join(kinds), "runs": len(d["uris"]),
                    "pretrain_seeds": ", ".join(map(str, sorted(d["seeds"]))) or "—"})
    cols = ["label", "role", "labels_used", "kind", "runs", "pretrain_seeds"]
    order = {r: i for i, r in enumerate(_SHOWN_ROLES)}
    df = pd.DataFrame(out, columns=cols)
    if not df.empty:
        df = df.assign(_o=df["role"].map(order)).sort_values(["_o", "label"], kind="stable").drop(columns="_o")
    return df.reset_index(drop=True)


def unequal_lines(df: pd.DataFrame, ours: str = "paco") -> list[str]:
    """Sentences saying which compared methods use another kind of supervision ([] when equal)."""
    comp = df[df["role"].isin(COMPARED_ROLES)] if not df.empty else df
    if comp.empty or comp["kind"].nunique() <= 1:
        return []
    ref = comp[comp["label"].str.startswith("PaCo-FR")]
    ref_kind = ref["kind"].iloc[0] if not ref.empty else comp["kind"].mode().iloc[0]
    ref_name = ref["label"].iloc[0] if not ref.empty else f"the most common kind ({ref_kind})"
    others = [f"{r.label} ({r.labels_used})" for r in comp.itertuples() if r.kind != ref_kind]
    same = [r.label for r in comp.itertuples() if r.kind == ref_kind and r.label != ref_name]
    line = (f"**Unequal comparison:** the compared methods do not use the same supervision. {ref_name} uses "
            f"{ref_kind}; " + "; ".join(others) + " use(s) another kind, so a difference to them mixes the "
            "objective with the labels it saw.")
    if same:
        line += f" Same kind as {ref_name}: {', '.join(same)}."
    return [line]


def supervision_markdown(rows) -> str:
    """The SUMMARY section: the table, and the unequal-comparison verdict (or that it is equal)."""
    df = supervision_frame(rows)
    if df.empty:
        return ""
    L = ["## Supervision used in pre-training", "",
         "`labels_used` of each method's rows (the run's method block); runs = pre-training runs "
         "(distinct encoders) pooled under the label.", ""]
    L.append(tabulate(df.rename(columns={"label": "method", "labels_used": "labels used",
                                         "pretrain_seeds": "pre-training seeds"}),
                      headers="keys", tablefmt="github", showindex=False))
    L.append("")
    unequal = unequal_lines(df)
    if unequal:
        L += unequal
    elif not df[df["role"].isin(COMPARED_ROLES)].empty:
        kind = df[df["role"].isin(COMPARED_ROLES)]["kind"].iloc[0]
        L.append(f"Equal comparison: every compared method uses {kind}." if kind != NOT_RECORDED else
                 "The compared methods' rows do not record their supervision (rows written before "
                 "`labels_used` existed): whether the comparison is equal is not known.")
    L.append("")
    return "\n".join(L)
