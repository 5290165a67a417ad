"""A `Table` rendered: Markdown (tabulate, best in **bold**), LaTeX (booktabs, \\textbf), a wide CSV
frame as displayed and a long numeric frame with an `is_best` column."""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from .naming import dataset_name, metric_name, task_name
from .table import MISSING, Table


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
