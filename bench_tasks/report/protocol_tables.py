"""One table per encoder protocol: every backbone, ablations included, with the floor and ceiling
rows, intervals, flags and gain columns."""

from __future__ import annotations

import pandas as pd

from .columns import POST_HOC, add_gain_columns, add_references, measured_table
from .frames import aggregate, pick_fraction
from .naming import MethodInfo
from .table import BOLD_FOOTNOTE, Table, mark_best


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
        t2 = measured_table(agg, methods, uris, title)
        t2.footnotes = [BOLD_FOOTNOTE.split(" \"(reported)\"")[0]] + ([f"Post hoc: {why}."] if why else [])
        add_gain_columns(t2, sel, calibrated=calibrated)
        mark_best(t2)
        out.append((proto, t2))
    return out
