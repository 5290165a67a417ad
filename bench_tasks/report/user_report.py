"""The report of a plan that is not the study: a compact table about the user's backbones.

When no row comes from a run of the study's pre-training suite (no method block names a `run`),
`python -m bench_tasks report` writes SUMMARY.md from this module instead of the study's wide
table: one row per backbone of the plan (the user's, then random init, the supervised ceiling and
the input-free floor), one headline column per task/dataset with its 95 % interval, and for the
user's backbones a verdict against the floor and against random init of the same architecture
(`compare.compare`, whose words come from `bench_tasks.stats.verdict`). A figure draws every value
with its interval; "What is missing" lists only what the rows' own cells lack.

    is_study(methods) -> bool
    user_table(df_ok, methods) -> (pandas.DataFrame, list of footnotes)
    headline_figure(df_ok, methods, out_path) -> (path | None, note | None)
    write_user_report(out_dir, stamp, parts, calibration) -> the dict `build_report` returns
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench_tasks.plan.references import ceiling_uri, same_architecture
from bench_tasks.stats.scores import TOO_FEW_ITEMS

from .compare import compare, fmt_ci, main_protocols
from .fairness import NOT_REACHED, unreached_ceilings
from .frames import cell_label
from .naming import MethodInfo, dataset_name, metric_name, task_name, task_sort_key
from .summary import SMOKE_BANNER, ReportParts, ReportStamp

ROLE_ORDER = {"yours": 0, "random init": 1, "ceiling": 2, "floor": 3}


def is_study(methods: dict[str, MethodInfo]) -> bool:
    """True when some row's backbone is a run of the study's pre-training suite (and for no rows at
    all: the study's report then says what is missing)."""
    return not methods or any(m.run for m in methods.values())


def role_of(m: MethodInfo) -> str:
    if m.kind == "floor":
        return "floor"
    if m.kind == "ceiling":
        return "ceiling"
    if m.method == "random":
        return "random init"
    return "yours"


def _columns(df_ok: pd.DataFrame) -> list[tuple[str, str]]:
    keys = {(t, d) for t, d in zip(df_ok["task"], df_ok["dataset"])}
    return sorted(keys, key=lambda k: (task_sort_key(k[0]), k[1]))


def _selection(df_ok: pd.DataFrame) -> tuple[dict[str, str], dict[str, float]]:
    """{task: protocol} of the encoders' rows and {task: fraction}: 1.0 when there, else the largest."""
    protocol = main_protocols(df_ok)
    fraction = {}
    for task, proto in protocol.items():
        fr = set(df_ok[(df_ok["task"] == task) & (df_ok["protocol"] == proto)]["fraction"])
        fraction[task] = 1.0 if 1.0 in fr else max(fr)
    return protocol, fraction


def _rows_of(df_ok, uri, kind, task, ds, protocol, fraction) -> pd.DataFrame:
    sub = df_ok[(df_ok["uri"] == uri) & (df_ok["task"] == task) & (df_ok["dataset"] == ds)]
    if kind == "floor":
        return sub
    if kind == "ceiling":
        return sub[sub["fraction"] == 1.0]
    return sub[(sub["protocol"] == protocol.get(task)) & (sub["fraction"] == fraction.get(task))]


def _value_ci(sub: pd.DataFrame) -> tuple[float, list | None, int]:
    """Mean over seeds, the interval (the one seed's bootstrap interval over test items, or the
    mean of the seeds' bounds), number of seeds."""
    cis = [c for c in sub["ci"] if isinstance(c, (list, tuple)) and len(c) == 2]
    ci = [float(np.mean([c[0] for c in cis])), float(np.mean([c[1] for c in cis]))] if cis else None
    return float(sub["value"].mean()), ci, int(sub["seed"].nunique())


def _fmt(v: float, ci) -> str:
    digits = 3 if abs(v) < 1 else 1
    return f"{v:.{digits}f}" + (f" {fmt_ci(ci, v)}" if ci else "")


def _same_arch(uri: str, candidates: list[str]) -> str | None:
    return next((c for c in candidates if same_architecture(uri, c)), None)


def _verdict_words(word: str, what: str) -> str:
    return {"better": f"above {what}", "worse": f"below {what}", "beats the floor": f"above {what}",
            "the same": f"≈ {what} (equivalent within the margin)"}.get(word, f"no difference from {what} shown")


def user_table(df_ok: pd.DataFrame, methods: dict[str, MethodInfo]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(table, footnotes, missing): one row per backbone, one column per task/dataset."""
    protocol, fraction = _selection(df_ok)
    cols = _columns(df_ok)
    uris = sorted(dict.fromkeys(df_ok["uri"]), key=lambda u: (ROLE_ORDER[role_of(methods[u])], methods[u].order))
    floors = [u for u in uris if methods[u].kind == "floor"]
    randoms = [u for u in uris if role_of(methods[u]) == "random init"]
    ceilings = [u for u in uris if methods[u].kind == "ceiling"]
    records, missing, seeds_seen = [], [], set()
    unreached = unreached_ceilings(df_ok)
    no_random, no_ceiling = set(), set()
    for u in uris:
        m = methods[u]
        rec = {"backbone": m.label, "role": role_of(m)}
        for task, ds in cols:
            sub = _rows_of(df_ok, u, m.kind, task, ds, protocol, fraction)
            head = f"{task_name(task)} · {dataset_name(ds)}"
            if sub.empty:
                rec[head] = "–"
                continue
            v, ci, n = _value_ci(sub)
            seeds_seen.add(n)
            text = _fmt(v, ci) + (f" (n={n})" if n > 1 else "")
            if m.kind == "ceiling" and (task, ds, u) in unreached:
                text += f"; {NOT_REACHED}"
            if "too_few" in sub and bool(sub["too_few"].any()):
                text += f"; {TOO_FEW_ITEMS}"
            elif role_of(m) in ("yours", "random init"):
                words = []
                for ref, what in ((floors[0] if floors else None, "floor"),
                                  (_same_arch(u, randoms) if role_of(m) == "yours" else None, "random init")):
                    if ref is None:
                        continue
                    c = compare(df_ok, u, ref, task, ds, protocol.get(task), fraction.get(task))
                    if c is not None:
                        words.append(_verdict_words(c.word, what))
                if role_of(m) == "yours":
                    if _same_arch(u, randoms) is None:
                        no_random.add(m.label)
                    if _same_arch(u, ceilings) is None:
                        no_ceiling.add(m.label)
                if words:
                    text += "; " + "; ".join(words)
            rec[head] = text
        records.append(rec)
    table = pd.DataFrame(records, columns=["backbone", "role"] + [f"{task_name(t)} · {dataset_name(d)}"
                                                                   for t, d in cols])
    metric_of = {(t, d): df_ok[(df_ok["task"] == t) & (df_ok["dataset"] == d)]["metric"].iloc[0] for t, d in cols}
    notes = ["Each cell: headline metric " + ", ".join(
        f"{task_name(t)} · {dataset_name(d)}: {metric_name(metric_of[(t, d)])}"
        f" {'↑' if _hib(df_ok, t, d) else '↓'}" for t, d in cols) + "; 95 % interval in brackets."]
    notes.append("Protocol per task: " + ", ".join(f"{task_name(t)} `{p}` at fraction {fraction[t]:g}"
                                                   for t, p in protocol.items())
                 + "; the ceiling is trained end to end (`finetune`, fraction 1), the floor is input-free.")
    if seeds_seen == {1}:
        notes.append("One seed per cell: the interval is the bootstrap over test items; it does not include "
                     "seed-to-seed spread.")
    elif seeds_seen - {1}:
        notes.append("(n=k): mean over k seeds, interval = the mean of the seeds' bootstrap intervals.")
    notes.append("Verdicts (bench_tasks.stats.verdict): above / below when the 95 % interval of the difference "
                 "excludes zero (paired over test items when per-item scores were kept); ≈ when two one-sided "
                 "tests show equivalence within the task's declared margin; otherwise no difference shown.")
    if not floors:
        missing.append("no floor row (`floor:input-free`): no verdict against the floor")
    arch_of = {methods[u].label: ceiling_uri(u) for u in uris}
    for label in sorted(no_random):
        arch = arch_of.get(label)
        hint = (f"add `{arch.replace('supervised:', 'random:', 1)}` to --backbones" if arch else
                "its architecture cannot be told from the URI; add `random:<arch>` of the same architecture to "
                "--backbones")
        missing.append(f"{label}: no random-init row of the same architecture, so no verdict against random init "
                       f"({hint})")
    for label in sorted(no_ceiling):
        arch = arch_of.get(label)
        missing.append(f"{label}: no supervised ceiling of the same architecture in the rows"
                       + (f" (`{arch}`; it is planned unless --no-ceilings)" if arch else ""))
    return table, notes, missing


def _hib(df_ok, task, ds) -> bool:
    return bool(df_ok[(df_ok["task"] == task) & (df_ok["dataset"] == ds)]["higher_is_better"].iloc[0])


def headline_figure(df_ok: pd.DataFrame, methods: dict[str, MethodInfo], out_path) -> tuple[Path | None, str | None]:
    """One panel per task/dataset: each backbone's headline value with its 95 % interval as an
    error bar (ceiling included); the floor as a dashed line. The legend names only what is drawn."""
    import matplotlib  # lazy: matplotlib and its Agg backend only when the figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if df_ok.empty:
        return None, "no ok rows"
    protocol, fraction = _selection(df_ok)
    cols = _columns(df_ok)
    uris = sorted(dict.fromkeys(df_ok["uri"]), key=lambda u: (ROLE_ORDER[role_of(methods[u])], methods[u].order))
    bars = [u for u in uris if methods[u].kind != "floor"]
    unreached = unreached_ceilings(df_ok)
    n = len(cols)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.8 * ncols, 0.5 * len(bars) * nrows + 1.6 * nrows + 0.6),
                             squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    colours = {"yours": "tab:blue", "random init": "tab:orange", "ceiling": "0.3"}
    drawn_roles, floor_drawn = set(), False
    for ax, (task, ds) in zip(axes.ravel(), cols):
        labels = []
        for k, u in enumerate(bars):
            m = methods[u]
            sub = _rows_of(df_ok, u, m.kind, task, ds, protocol, fraction)
            labels.append(m.label)
            if sub.empty:
                continue
            v, ci, _ = _value_ci(sub)
            err = None if ci is None else [[max(0.0, v - ci[0])], [max(0.0, ci[1] - v)]]
            ax.errorbar([v], [k], xerr=err, fmt="o", color=colours[role_of(m)], capsize=3)
            if m.kind == "ceiling" and (task, ds, u) in unreached:
                ax.annotate(NOT_REACHED, (v, k), xytext=(6, -10), textcoords="offset points", fontsize=7,
                            color="tab:red")
            drawn_roles.add(role_of(m))
        for u in (u for u in uris if methods[u].kind == "floor"):
            sub = _rows_of(df_ok, u, "floor", task, ds, protocol, fraction)
            if not sub.empty:
                ax.axvline(float(sub["value"].mean()), color="0.5", ls="--", lw=1.2)
                floor_drawn = True
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        metric = df_ok[(df_ok["task"] == task) & (df_ok["dataset"] == ds)]["metric"].iloc[0]
        ax.set_xlabel(f"{metric_name(metric)} {'↑' if _hib(df_ok, task, ds) else '↓'}")
        ax.set_title(f"{task_name(task)} · {dataset_name(ds)}", fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    handles = [plt.Line2D([], [], color=colours[r], marker="o", ls="", label=r) for r in colours if r in drawn_roles]
    if floor_drawn:
        handles.append(plt.Line2D([], [], color="0.5", ls="--", label="floor (input-free)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    seeds = df_ok.groupby(["uri", "task", "dataset", "protocol", "fraction"])["seed"].nunique().max()
    fig.suptitle("Headline per task with 95 % intervals" + (" (one seed: bootstrap over test items)"
                                                             if seeds == 1 else ""), fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=130)
    plt.close(fig)
    return out_path, None


def write_user_report(out_dir: Path, stamp: ReportStamp, parts: ReportParts, calibration: str | None) -> dict:
    """SUMMARY.md (+ user_table.md / .csv, figures/headline.png) for a plan that is not the study."""
    out_dir = Path(out_dir)
    profile, command, report_commit, date, results_files = (stamp.profile, stamp.command, stamp.commit, stamp.date,
                                                            stamp.results_files)
    df_ok, df_failed, methods, problems = parts.df_ok, parts.df_failed, parts.methods, list(parts.problems)
    figures, figure_notes, files = dict(parts.figures), dict(parts.figure_notes), list(parts.files)
    lines = [f"# Report: {profile} profile", ""]
    if profile == "smoke":
        lines += [SMOKE_BANNER, ""]
    lines += [f"Built by `{command}` at commit {report_commit} on {date} from "
              + ", ".join(f"`{f}`" for f in results_files) + f": {len(df_ok)} ok, {len(df_failed)} failed cells.",
              ""]
    missing: list[str] = []
    if df_ok.empty:
        lines += ["_No ok result rows._", ""]
    else:
        table, notes, missing = user_table(df_ok, methods)
        md = table.to_markdown(index=False)
        (out_dir / "user_table.md").write_text(md + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
        table.to_csv(out_dir / "user_table.csv", index=False)
        files = ["user_table.md", "user_table.csv", *files]
        lines += ["## Your backbones", "", md, "", *[f"- {n}" for n in notes], ""]
        p, note = headline_figure(df_ok, methods, out_dir / "figures" / "headline.png")
        if p is not None:
            figures = {"headline": p.relative_to(out_dir).as_posix(), **figures}
        else:
            figure_notes = {**figure_notes, "headline": note}
    drawn = {k: v for k, v in figures.items() if v}
    if drawn:
        lines += ["## Figures", ""] + [f"![{k}]({v})" for k, v in drawn.items()] + [""]
    if not df_failed.empty:
        missing += [f"failed: {cell_label(r)}: {str(r['error'] or r['status']).splitlines()[0][:200]}"
                    for _, r in df_failed.iterrows()]
    missing += problems
    # the data-efficiency figure only when the rows asked for several training fractions
    if not figures.get("data_efficiency") and not df_ok.empty and df_ok["fraction"].nunique() > 1:
        missing.append(f"figure data_efficiency: {figure_notes.get('data_efficiency')}")
    lines += ["## What is missing", ""] + ([f"- {m}" for m in missing] or ["Nothing: every cell of these rows "
                                                                            "is ok."]) + [""]
    lines += ["## Files", "", *[f"- `{f}`" for f in dict.fromkeys(files)], ""]
    summary = "\n".join(lines)
    if calibration:
        summary = summary.rstrip("\n") + "\n\n" + calibration
    (out_dir / "SUMMARY.md").write_text(summary)
    files = list(dict.fromkeys([*files, *drawn.values()]))
    return {"out_dir": str(out_dir), "summary": str(out_dir / "SUMMARY.md"), "files": ["SUMMARY.md"] + files,
            "notes": list(problems), "missing": missing, "n_ok": len(df_ok), "n_failed": len(df_failed),
            "profile": profile}
