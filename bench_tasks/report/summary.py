"""SUMMARY.md: the one page a person reads first."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bench_tasks.contracts import uri_scheme
from bench_tasks.store.method import METHOD_LABELS

from .ablation_tables import ablation_comparisons, ablation_deltas, one_ablation_table
from .compare import compare
from .discrimination import FLAG as DISC_FLAG
from .discrimination import discriminating_power, non_discriminating
from .frames import cell_label
from .load import first_error_line
from .naming import dataset_name, metric_name, task_name
from .table import Table
from .table_formats import to_markdown

# the verdict rule (bench_tasks.stats.verdict), stated once wherever verdicts are listed
VERDICT_RULE = ("\"better\" / \"worse\" only when the 95 % interval excludes zero; \"the same\" only when "
                "two one-sided tests show equivalence within the task's declared margin (the 90 % interval "
                "inside ±margin, bench_tasks/configs/verdicts/margins.yaml); otherwise \"not shown\"")

SMOKE_BANNER = ("> **⚠ smoke profile: tiny models and few steps prove the pipeline; numbers are not "
                "meaningful.**")


@dataclass(frozen=True)
class ReportStamp:
    """Where a report comes from: its profile, the command that built it, the commit it was built at,
    the date and the results files it read."""

    profile: str
    command: str
    commit: str
    date: str
    results_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportParts:
    """What `build_report` computed from the rows that every SUMMARY.md shows: the ok and failed rows
    (data frames), the methods, the problems found, the figures drawn ({name: path}) and why others
    were not (`figure_notes`), and the files written."""

    df_ok: object
    df_failed: object
    methods: dict = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    figures: dict = field(default_factory=dict)
    figure_notes: dict = field(default_factory=dict)
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class StudySummary:
    """SUMMARY.md of the study: the stamp and the parts, the loaded rows (unreadable lines, missing
    files), the main table and its other formats, the ablation tables and the ablations without
    rows, what is missing, the count of reported numbers, and the sections computed elsewhere
    (pre-training compute and tuning; what each method's pre-training saw)."""

    stamp: ReportStamp
    parts: ReportParts
    loaded: object
    main_table: Table | None
    main_files: dict = field(default_factory=dict)
    ablation_tables: tuple = ()
    missing_ablations: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    reported_count: int = 0
    compute_section: str = ""
    supervision_section: str = ""


def _provenance(df_ok, df_failed) -> dict:
    commits, devices, dirty, started = Counter(), Counter(), False, []
    for frame in (df_ok, df_failed):
        for p in frame["provenance"]:
            if not isinstance(p, dict):
                continue
            if p.get("git_commit"):
                commits[str(p["git_commit"])[:12]] += 1
            if p.get("device"):
                host = p.get("hostname")
                devices[f"{p['device']}" + (f" ({host})" if host else "")] += 1
            dirty = dirty or bool(p.get("git_dirty"))
            if p.get("started"):
                started.append(str(p["started"]))
    return {"commits": commits, "devices": devices, "dirty": dirty,
            "started": (min(started), max(started)) if started else None}


def _controls(table: Table) -> list[str]:
    """Labels of the measured random-init rows (the control every method is compared with)."""
    return [r.label for r in table.rows if r.kind == "measured"
            and uri_scheme(table.uris.get(r.label, "")) == "random"]


def comparison_lines(table: Table, df_ok, base: str | None = None, skip: tuple[str, ...] = ()) -> list[str]:
    """Every measured row of `table` against `base` (default: the random-init control), per headline
    column and per probe column (the task's probe protocol), with the verdict of compare.compare (better / worse only when the 95 % interval of the
    difference excludes zero). Rows named in `skip` are left out."""
    if base is None:
        control = _controls(table)
        base = control[0] if control else None
    if not base or base not in table.uris or df_ok is None or df_ok.empty:
        return []
    protocol, fraction = table.selection
    weak = non_discriminating(discriminating_power(df_ok, fraction if fraction is not None else 1.0))
    out = []
    for r in table.rows:
        if r.kind not in ("measured", "ceiling") or r.label == base or r.label not in table.uris or r.label in skip:
            continue
        parts = []
        for c in table.cols:
            if c.variant not in ("", "probe") or (r.label, c.key) not in table.cells or (base, c.key) not in table.cells:
                continue
            # a probe column: the task's probe protocol, which is planned at fraction 1.0
            proto, frac = (c.probe, 1.0) if c.variant == "probe" else (protocol, fraction)
            cmp = compare(df_ok, table.uris[r.label], table.uris[base], c.task, c.dataset, proto, frac)
            ref = table.cells[(base, c.key)].mean
            name = f"{task_name(c.task)} {dataset_name(c.dataset)} {metric_name(c.metric)}" + (
                f" ({c.probe} probe)" if c.variant == "probe" else "")
            p = proto.get(c.task) if isinstance(proto, dict) else proto
            mark = f" {DISC_FLAG}" if (c.task, c.dataset, p) in weak else ""
            parts.append(f"{name} {cmp.text(3 if abs(ref) < 1 else 2)}{mark}" if cmp else f"{name}: untested (no interval)")
        if parts:
            out.append(f"- **{r.label}** vs {base}: " + "; ".join(parts))
    return out


def ours_lines(table: Table, df_ok) -> list[str]:
    """PaCo-FR (ours) against each other compared method (not the control, floor or ceiling):
    one line per baseline, `baseline − PaCo-FR`, so "worse" means the baseline is worse than PaCo-FR."""
    ours = METHOD_LABELS["paco"]
    if ours not in table.uris:
        return []
    ceilings = [r.label for r in table.rows if r.kind == "ceiling"]
    return comparison_lines(table, df_ok, base=ours, skip=tuple(_controls(table) + ceilings))


def floors_section(main_table: Table | None, df_ok) -> list[str]:
    L = ["## Floors, ceilings and noise", ""]
    if main_table is None or main_table.empty:
        return L + ["_No results._", ""]
    has_floor = any(r.kind == "floor" for r in main_table.rows)
    has_ceiling = any(r.kind == "ceiling" for r in main_table.rows)
    L.append("The main table has a floor row (input-free predictor) " + ("and a ceiling row (supervised from "
             "random init) " if has_ceiling else "") + "for each task, a normalised gain column per task "
             "(0 = floor, 1 = ceiling) and the mean gain; `[lo, hi]` are 95 % bootstrap intervals over test "
             "items." if has_floor else "_No floor rows: re-run the plan to add them (they take seconds)._")
    L.append("")
    if main_table.flagged:
        L += [f"**{len(main_table.flagged)} score(s) do not beat their floor** (the 95 % interval of score − "
              "floor, paired over the same test items, does not exclude zero; marked † in the table):", ""]
        L += [f"- {f}" for f in main_table.flagged]
    elif has_floor:
        L.append("Every measured score with an interval beats its floor (the interval of score − floor "
                 "excludes zero).")
    L.append("")
    cmp = comparison_lines(main_table, df_ok)
    if cmp:
        L += ["Differences from the random-init control (a − control, 95 % interval of the difference; "
              + VERDICT_RULE + "; paired bootstrap over the same test items where both rows stored per-item "
              "scores):", ""] + cmp + [""]
    ours = ours_lines(main_table, df_ok)
    if ours:
        L += ["Differences from PaCo-FR (ours) (a − PaCo-FR at the same pre-training budget; \"better\" / "
              "\"worse\" is the other method's verdict against PaCo-FR; " + VERDICT_RULE + "; paired as "
              "above):", ""] + ours + [""]
    if any(DISC_FLAG in x for x in cmp + ours):
        L += [f"{DISC_FLAG}: the column does not discriminate between pre-training methods (calibration.md, "
              "\"Discriminating power of each task\"): its verdict is no evidence about the methods.", ""]
    return L


def render_summary(s: StudySummary) -> str:
    """SUMMARY.md of the study, as text."""
    parts, profile = s.parts, s.stamp.profile
    L = _header(s.stamp, _provenance(parts.df_ok, parts.df_failed))
    L += _cells_section(s.loaded, parts.df_ok, parts.df_failed, parts.problems)
    L += _main_section(s.main_table, s.main_files)
    if s.supervision_section:  # what each method's pre-training saw (bench_tasks.report.supervision)
        L += [s.supervision_section.rstrip("\n"), ""]
    L += floors_section(s.main_table, parts.df_ok)
    if s.compute_section:  # bench_tasks.report.compute: FLOPs, images, wall time per pre-training run
        L += [s.compute_section]
    L += _measured_vs_reported(profile, s.reported_count)
    L += _figures_section(parts.figures, parts.figure_notes)
    L += _ablations_section(s.ablation_tables, s.missing_ablations, parts.df_ok)
    L += ["## What is missing", ""]
    L += [f"- {m}" for m in s.missing] or ["- nothing obvious."]
    L += ["", "## Files", ""] + [f"- [{f}]({f})" for f in parts.files] + [""]
    return "\n".join(L)


def _header(stamp: ReportStamp, prov: dict) -> list[str]:
    """The title, the smoke banner and the provenance table."""
    profile, command, report_commit, date, results_files = (stamp.profile, stamp.command, stamp.commit, stamp.date,
                                                            stamp.results_files)
    L = [f"# PaCo-FR bench report — profile `{profile}`", ""]
    if profile == "smoke":
        L += [SMOKE_BANNER, ""]
    commits = ", ".join(f"`{c}` ({n} rows)" for c, n in prov["commits"].most_common()) or "unknown"
    devices = ", ".join(f"{d} ({n} rows)" for d, n in prov["devices"].most_common()) or "unknown"
    L += ["| | |", "|---|---|",
          f"| command | `{command}` |",
          f"| report built at commit | `{report_commit}` |",
          f"| results produced at commit(s) | {commits}{' — some rows from a dirty tree' if prov['dirty'] else ''} |",
          f"| date | {date} |",
          f"| profile | `{profile}` |",
          f"| device(s) | {devices} |",
          f"| results file(s) | {', '.join(f'`{f}`' for f in results_files) or 'none'} |"]
    if prov["started"]:
        L.append(f"| cells started | {prov['started'][0]} … {prov['started'][1]} |")
    L.append("")
    return L


def _cells_section(loaded, df_ok, df_failed, problems) -> list[str]:
    """How many cells are ok / failed, what could not be read, each failed cell's first error line."""
    n_ok, n_failed = len(df_ok), len(df_failed)
    L = ["## Cells", "", f"**{n_ok} ok, {n_failed} failed** (last row per cell key; failed cells are excluded "
         "from every table and figure)."]
    if loaded.skipped_lines:
        L.append(f"- {loaded.skipped_lines} torn / unreadable line(s) in the results file(s) were skipped.")
    for f in loaded.missing_files:
        L.append(f"- results file `{f}` does not exist.")
    for p in problems:
        L.append(f"- {p}")
    if n_failed:
        L += ["", "Failed cells (first error line):", ""]
        for _, r in df_failed.iterrows():
            L.append(f"- `{cell_label(r)}` — {first_error_line(r['error'])}")
    L.append("")
    return L


def _main_section(main_table: Table | None, main_files: dict) -> list[str]:
    L = ["## Main table", ""]
    if main_table is not None and not main_table.empty:
        L.append(to_markdown(main_table, heading_level=3))
        if main_files:
            L.append("Also as " + ", ".join(f"[{k}]({v})" for k, v in main_files.items()) + ".")
        L.append("")
    else:
        L += ["_No ok results to tabulate._", ""]
    return L


def _measured_vs_reported(profile, reported_count: int) -> list[str]:
    return ["## Measured vs reported", "",
            f"- **Measured** rows (method names without a suffix) come from `results/` of this run: our backbones "
            f"(profile `{profile}`), evaluated by `bench_tasks` on the data sets named in the column headers.",
            f"- **Reported** rows (suffix \"(reported)\", {reported_count} numbers) are published numbers copied from "
            "the papers / an aggregator (`bench_tasks/reported/reported_numbers.csv`, sources there): ViT-B/16 "
            "pre-trained on millions of real faces, evaluated on the real data sets. They are context, not a "
            "comparison: they are never bolded against measured rows. A measured real-data column shares its column "
            "with them only when every measured row in it ran FaRL's protocol exactly (`farl-frozen` / `farl-refine` "
            "without overrides, `docs/farl_protocol.md`); otherwise they stay apart in \"<data set> (reported)\" "
            "columns (the table's notes say which).", ""]


def _figures_section(figures: dict, figure_notes: dict) -> list[str]:
    L = ["## Figures", ""]
    for name, title in [("data_efficiency", "Data efficiency"), ("robustness_slices", "Robustness slices"),
                        ("codebook_reconstruction", "Reconstruction vs codebook size"),
                        ("codebook_curve", "Masked-region reconstruction error vs codebook size")]:
        if figures.get(name):
            L += [f"### {title}", "", f"![{title}]({figures[name]})", ""]
            if figure_notes.get(f"{name}_caption"):
                L += [figure_notes[f"{name}_caption"], ""]
        else:
            L += [f"### {title}", "", f"_Not drawn: {figure_notes.get(name, 'no data')}._", ""]
    for n in figure_notes.get("extra", []):
        L.append(f"- {n}")
    if figure_notes.get("extra"):
        L.append("")
    return L


def _ablations_section(ablation_tables, missing_ablations, df_ok) -> list[str]:
    """All ablations in one table of differences from the full PaCo-FR (one_ablation_table), then
    each component's differences as text (ablation_deltas); one comparison each, computed once."""
    L = ["## Ablation highlights", ""]
    if ablation_tables:
        groups, blocks = [], []
        for _g, t in ablation_tables:
            comps = ablation_comparisons(t, df_ok)
            groups.append((t.title.split(" (protocol")[0].removeprefix("Ablation: "), comps))
            deltas = ablation_deltas(t, df_ok, comps)
            blocks += [f"**{t.title}**", ""] + ([f"- {d}" for d in deltas]
                                                or ["- no overlapping columns with the full PaCo-FR row"]) + [""]
        one = one_ablation_table(groups)
        if one:
            L += ["Every ablation against the full PaCo-FR in one table (ablation − full, 95 % interval of the "
                  "difference under the study's design, as in the main table; " + VERDICT_RULE + "):", "", one]
        L += blocks
        L += ["Full tables: [ablations.md](ablations.md).", ""]
    else:
        L += ["_No ablation results (runs `abl_*`)._", ""]
    if missing_ablations:
        L += ["Ablations without results: " + ", ".join(missing_ablations) + ".", ""]
    return L
