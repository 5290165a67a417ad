"""`python -m bench_tasks report`: tables, figures and SUMMARY.md from result rows only — what each
row's backbone is comes from its `method` block (bench_tasks.store.method). The one exception is the
codebook reconstruction figure, which reads the study runs named in the rows (`method.run`) under
runs/<profile>/ (their snapshots or checkpoints) and calls the pre-training engine on a few faces;
without runs/ that figure is skipped and everything else is built.

    build_report(results_paths, out_dir, runs_dir="runs", profile=None, *, command=None,
                 reconstruct=True, reported_path=None) -> dict
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import shlex
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from bench_tasks.store.provenance import git_state

from . import figures as F
from .ablation_tables import build_ablation_tables
from .arguments import add_arguments
from .calibration import calibrated_tasks, calibration_markdown
from .codebook_curve import codebook_curve, codebook_points
from .compare import main_protocols, protocol_mask, protocol_text
from .compute import compute_frame, compute_markdown
from .diagnostics import write_diagnostics_table
from .fairness import fairness_markdown
from .frames import pick_fraction, rows_to_frames
from .label_scaling import label_scaling_markdown, read_rows
from .load import load_rows
from .main_table import build_main_table
from .naming import TASK_ORDER, is_full_paco, task_name
from .protocol_tables import build_protocol_tables
from .reported import load_reported
from .summary import ReportParts, ReportStamp, StudySummary, render_summary
from .supervision import supervision_markdown
from .table_formats import to_latex, to_long_frame, to_markdown, to_wide_frame
from .tuning import tuning_markdown
from .user_report import is_study, write_user_report


def _git_commit() -> str:
    """Short commit of the checkout the report is built in, marked when its code (not results/ or
    reports/, which a run itself writes) differs from that commit."""
    state = git_state(".")
    if not state["git_commit"]:
        return "unknown"
    return state["git_commit"][:12] + (" (dirty tree)" if state["git_dirty"] else "")


def _infer_profile(rows, paths) -> str:
    c = Counter(str((r.get("cell") or {}).get("profile")) for r in rows if (r.get("cell") or {}).get("profile"))
    if c:
        return c.most_common(1)[0][0]
    for p in paths:
        if str(p).endswith(".jsonl"):
            return Path(p).stem
    return "unknown"


def _write_table_set(tables, out_dir: Path, stem: str, label_prefix: str, group_col: str | None = None) -> list[str]:
    """Write a list of (group, Table) as one .md, one .tex and one .csv (long + wide)."""
    md, tex, wide, long = [], [], [], []
    for g, t in tables:
        md.append(to_markdown(t))
        tex.append(to_latex(t, label=f"{label_prefix}:{g}"))
        w = to_wide_frame(t)
        lf = to_long_frame(t)
        if group_col:
            w.insert(0, group_col, g)
            lf.insert(0, group_col, g)
        wide.append(w)
        long.append(lf)
    files = []
    (out_dir / f"{stem}.md").write_text("\n".join(md) if md else "_No results._\n")
    (out_dir / f"{stem}.tex").write_text("\n".join(tex) if tex else "% no results\n")
    pd.concat(wide, ignore_index=True).to_csv(out_dir / f"{stem}.csv", index=False) if wide else \
        (out_dir / f"{stem}.csv").write_text("")
    pd.concat(long, ignore_index=True).to_csv(out_dir / f"{stem}_long.csv", index=False) if long else \
        (out_dir / f"{stem}_long.csv").write_text("")
    files += [f"{stem}.md", f"{stem}.tex", f"{stem}.csv", f"{stem}_long.csv"]
    return files


def _codebook_run_dirs(methods, runs_dir, profile) -> dict:
    """{codebook size: run dir} of the rows' study runs that vary the codebook (the full PaCo-FR and
    the codebook ablations, by their method blocks) whose folder runs_dir/<profile>/<run> exists."""
    found = {}
    for m in sorted(methods.values(), key=lambda m: m.order):
        if not m.run or not (m.group == "codebook" or is_full_paco(m)):
            continue
        rd = next((d for d in (Path(runs_dir) / profile / m.run, Path(runs_dir) / m.run) if d.is_dir()), None)
        size = F.codebook_size_of(m) or ("default (full)" if is_full_paco(m) else None)
        if rd is not None and size is not None and size not in found:
            found[size] = str(rd)
    return found


def _run_image_size(run_dir: Path) -> int | None:
    """The pre-training image size of a run (its summary.json / config.yaml), for the figure."""
    try:
        data = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        data = {}
    cfg = data.get("config") if isinstance(data.get("config"), dict) else data
    for path in (("model", "img_size"), ("data", "image_size"), ("image_size",), ("img_size",)):
        cur = cfg
        for part in path:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if isinstance(cur, int):
            return cur
    return None


SETTINGS_NOTES_INLINE = 5  # more cell groups with rows of other settings than this: one line, the list in a file


def _settings_warnings(notes: list[str], out_dir: Path) -> list[str]:
    """SUMMARY's warnings for cell groups whose rows were made with other settings (left out, never
    pooled): each inline when there are few; else one line and the list in settings_left_out.md."""
    if len(notes) <= SETTINGS_NOTES_INLINE:
        return [f"**warning, settings differ**: {n}" for n in notes]
    (out_dir / "settings_left_out.md").write_text(
        "# Rows left out: made with other settings than the ones shown\n\n" + "".join(f"- {n}\n" for n in notes))
    return [f"**warning, settings differ**: {len(notes)} cell groups also have rows made with other settings "
            "(another task or data version, or other profile settings); those rows are left out, never pooled "
            "with the ones shown; each is listed in [settings_left_out.md](settings_left_out.md)"]


def build_report(results_paths=None, out_dir=None, runs_dir="runs", profile: str | None = None, *,
                 command: str | None = None, reconstruct: bool = True, reported_path=None,
                 label_scaling=None) -> dict:
    """Build every table, figure and SUMMARY.md. Never raises on partial results.

    results_paths: JSONL file(s) or folder(s) of them (default results/<profile>.jsonl).
    out_dir: default reports/<profile>. runs_dir: pre-training runs (for summary.json settings and
    the codebook figure); may be None or missing. label_scaling: results file(s) of a label-scaling
    study (`report.label_scaling`), default results/<profile>_label_scaling/ when it exists. Returns {"out_dir", "summary", "files", "notes",
    "n_ok", "n_failed", "profile"}."""
    if results_paths is None:
        results_paths = [Path("results") / f"{profile or 'smoke'}.jsonl"]
    elif isinstance(results_paths, (str, Path)):
        results_paths = [results_paths]
    loaded = load_rows(results_paths)
    rows = loaded.rows
    profile = profile or _infer_profile(rows, results_paths)
    other_profile = [r for r in rows if (r.get("cell") or {}).get("profile") not in (None, profile)]
    rows = [r for r in rows if (r.get("cell") or {}).get("profile") in (None, profile)]
    out_dir = Path(out_dir) if out_dir is not None else Path("reports") / profile
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    runs_missing = True if runs_dir is not None and not Path(runs_dir).is_dir() else runs_dir is None

    df_ok, df_failed, methods, problems = rows_to_frames(rows)
    if other_profile:
        problems.append(f"{len(other_profile)} row(s) of other profiles were ignored")
    problems += _settings_warnings(loaded.settings_notes, out_dir)
    reported = load_reported(reported_path)
    missing: list[str] = []
    # the tasks whose calibration passes (random init beats the floor, room >= 2): the mean gain's
    calibrated = calibrated_tasks(rows)
    protocol = main_protocols(df_ok) or None  # {task: protocol}: linear, else frozen (dense), ...
    fraction = pick_fraction(df_ok[protocol_mask(df_ok, protocol)] if protocol else df_ok)
    main, files = _write_main_table(df_ok, methods, reported, protocol, fraction, calibrated, out_dir, missing)
    files += _write_table_set(build_protocol_tables(df_ok, methods, calibrated), out_dir, "protocols", "tab:protocol", "protocol")
    calibration, more = _write_calibration(rows, profile, label_scaling, out_dir)
    files += more
    fair = fairness_markdown(df_ok, methods)  # ceilings not reached, learning rates chosen, sizes
    if fair:
        calibration = (calibration.rstrip("\n") + "\n\n" if calibration else "") + fair
    abl_tables, missing_abl = build_ablation_tables(df_ok, methods, protocol, fraction, calibrated) if protocol else ([], [])
    files += _write_table_set(abl_tables, out_dir, "ablations", "tab:abl", "ablation")
    if not abl_tables:
        missing.append("no ablation results (no rows of method role `ablation`): ablation tables are empty")
    compute_md, more = _write_compute(methods, out_dir)
    files += more
    tuning_md = tuning_markdown(rows)  # the tuning stage's trials and val scores (report.tuning)
    if tuning_md:
        (out_dir / "tuning.md").write_text(tuning_md)
        files.append("tuning.md")
    # PaCo-FR diagnostics: the rows' method blocks (copied from each run's summary.json)
    files += write_diagnostics_table(methods, out_dir)
    figures, fig_notes, more = _write_figures(df_ok, methods, protocol, fraction, out_dir, runs_dir, profile,
                                              runs_missing, reconstruct)
    files += more
    missing += _missing_parts(df_ok, methods, figures, fig_notes, runs_dir, runs_missing)

    files = list(dict.fromkeys(files))
    stamp = ReportStamp(profile=profile, command=command or "python -m bench_tasks report", commit=_git_commit(),
                        date=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                        results_files=tuple(loaded.files or [str(p) for p in results_paths]))
    parts = ReportParts(df_ok=df_ok, df_failed=df_failed, methods=methods, problems=tuple(problems),
                        figures=figures, figure_notes=fig_notes, files=tuple(files))
    if not is_study(methods):  # the user's backbones: a compact table, not the study's wide one
        return write_user_report(out_dir, stamp,
                                 dataclasses.replace(parts, problems=(*problems, *fig_notes["extra"])), calibration)
    summary = render_summary(StudySummary(
        stamp=stamp, parts=parts, loaded=loaded, main_table=main, main_files=MAIN_FILES,
        ablation_tables=tuple(abl_tables), missing_ablations=tuple(missing_abl), missing=tuple(missing),
        reported_count=len(reported), compute_section=(tuning_md + "\n" if tuning_md else "") + (compute_md or ""),
        supervision_section=supervision_markdown(rows)))  # bench_tasks.report.supervision
    if calibration:
        summary = summary.rstrip("\n") + "\n\n" + calibration
    (out_dir / "SUMMARY.md").write_text(summary)
    return {"out_dir": str(out_dir), "summary": str(out_dir / "SUMMARY.md"), "files": ["SUMMARY.md"] + files,
            "notes": problems + fig_notes["extra"], "missing": missing, "n_ok": len(df_ok),
            "n_failed": len(df_failed), "profile": profile}


MAIN_FILES = {"LaTeX": "main_table.tex", "CSV": "main_table.csv", "long CSV": "main_table_long.csv"}


def _write_main_table(df_ok, methods, reported, protocol, fraction, calibrated, out_dir: Path, missing: list[str]):
    """main_table.{md,tex,csv} and main_table_long.csv -> (the Table, the files written)."""
    if protocol is not None:
        main = build_main_table(df_ok, methods, reported, protocol, fraction, calibrated=calibrated)
        odd = {t: p for t, p in protocol.items() if p not in ("linear", "frozen")}
        if odd:
            main.footnotes.insert(0, "No `linear` / `frozen` rows for " + ", ".join(odd) + ": the main table "
                                  "uses " + ", ".join(f"`{p}`" for p in dict.fromkeys(odd.values())) + " there.")
        if fraction != 1.0:
            main.footnotes.insert(0, f"No rows at training fraction 1.0: the main table uses {fraction:g}.")
    else:
        main = build_main_table(df_ok, methods, reported, None, None, title="Main results (no measured rows)")
        missing.append("no ok result rows: the main table has only the reported numbers")
    (out_dir / "main_table.md").write_text(to_markdown(main, heading_level=2))
    (out_dir / "main_table.tex").write_text(to_latex(main, label="tab:main"))
    to_wide_frame(main).to_csv(out_dir / "main_table.csv", index=False)
    to_long_frame(main).to_csv(out_dir / "main_table_long.csv", index=False)
    return main, ["main_table.md", "main_table.tex", "main_table.csv", "main_table_long.csv"]


def _write_calibration(rows, profile: str, label_scaling, out_dir: Path) -> tuple[str | None, list[str]]:
    """The instrument's calibration (floor, random-init, ceiling per task; rows only) and the
    label-scaling section -> (calibration.md's text or None, the files written)."""
    files = []
    calibration = calibration_markdown(rows, profile)
    scaling = _label_scaling(label_scaling, profile, out_dir)
    if scaling:
        files.append("label_scaling.md")
        calibration = (calibration.rstrip("\n") + "\n\n" if calibration else "") + scaling
    if calibration:
        (out_dir / "calibration.md").write_text(calibration)
        files.append("calibration.md")
    return calibration, files


def _write_compute(methods, out_dir: Path) -> tuple[str | None, list[str]]:
    """Pre-training compute (summary.json's compute blocks of the evaluated runs)."""
    compute_df = compute_frame(methods)
    compute_md = compute_markdown(compute_df)
    if not compute_md:
        return compute_md, []
    (out_dir / "pretraining_compute.md").write_text(compute_md)
    compute_df.to_csv(out_dir / "pretraining_compute.csv", index=False)
    return compute_md, ["pretraining_compute.md", "pretraining_compute.csv"]


def _write_figures(df_ok, methods, protocol, fraction, out_dir: Path, runs_dir, profile: str, runs_missing: bool,
                   reconstruct: bool) -> tuple[dict, dict, list[str]]:
    """The figures (data efficiency, robustness slices + slices.csv, codebook reconstructions) ->
    ({name: path or None}, {name: note, "extra": [notes]}, the files written)."""
    fig_dir = out_dir / "figures"
    files = []
    figures, fig_notes = {}, {"extra": []}
    p, note = F.data_efficiency_figure(df_ok, methods, protocol, fig_dir / "data_efficiency.png")
    figures["data_efficiency"], fig_notes["data_efficiency"] = _rel(p, out_dir), note
    sf = F.slice_frame(df_ok, protocol, fraction)
    if not sf.empty:
        agg = sf.groupby(["method", "task", "dataset", "slice", "metric"], sort=False)["value"].agg(
            mean="mean", std=lambda s: s.std(ddof=1) if len(s) > 1 else float("nan"), n="count").reset_index()
        # sorted: the table must not depend on the order rows were written (several workers' files)
        agg = agg.sort_values(["method", "task", "dataset", "slice", "metric"], kind="stable")
        agg.to_csv(out_dir / "slices.csv", index=False)
        files.append("slices.csv")
    p, note = F.slices_figure(sf, methods, fig_dir / "robustness_slices.png",
                              title=f"Robustness slices (protocol {protocol_text(protocol)}, fraction "
                                    f"{fraction if fraction is not None else 1.0:g}; mean ± sd over seeds)")
    figures["robustness_slices"], fig_notes["robustness_slices"] = _rel(p, out_dir), note

    if runs_missing:
        fig_notes["codebook_reconstruction"] = f"no runs dir (`{runs_dir}`)"
    elif not reconstruct:
        fig_notes["codebook_reconstruction"] = "disabled (--no-reconstruct)"
    else:
        run_dirs = _codebook_run_dirs(methods, runs_dir, profile)
        if len(run_dirs) == 0:
            fig_notes["codebook_reconstruction"] = (f"no run folder under `{runs_dir}` for the rows' full PaCo-FR / "
                                                    "codebook ablation runs")
        else:
            img_size = next((s for s in map(_run_image_size, map(Path, run_dirs.values())) if s), None)
            data, rnotes = F.load_reconstructions(run_dirs, img_size)
            fig_notes["extra"] += rnotes
            p, note = F.codebook_figure(data, fig_dir / "codebook_reconstruction.png")
            figures["codebook_reconstruction"] = _rel(p, out_dir)
            fig_notes["codebook_reconstruction"] = note or ""
            if note:
                fig_notes["codebook_reconstruction"] = "no reconstruction could be produced (see notes below)"
            # the result: masked-region error vs codebook size, every run a point (report.codebook_curve)
            points, cnotes = codebook_points(methods, runs_dir, profile, img_size)
            fig_notes["extra"] += [n for n in cnotes if n not in fig_notes["extra"]]
            p, caption = codebook_curve(points, fig_dir / "codebook_curve.png")
            if p is not None:
                figures["codebook_curve"] = _rel(p, out_dir)
                files.append(_rel(p.with_suffix(".csv"), out_dir))
                fig_notes["codebook_curve_caption"] = caption
            else:
                fig_notes["codebook_curve"] = caption
    if "codebook_curve" not in fig_notes and "codebook_curve" not in figures:
        fig_notes["codebook_curve"] = fig_notes.get("codebook_reconstruction") or "no runs"
    return figures, fig_notes, files + [v for v in figures.values() if v]


def _missing_parts(df_ok, methods, figures: dict, fig_notes: dict, runs_dir, runs_missing: bool) -> list[str]:
    """What the report lacks: tasks without results, a single seed, a main method without rows, the
    runs dir, a figure not drawn."""
    missing = []
    present_tasks = set(df_ok["task"]) if not df_ok.empty else set()
    for t in TASK_ORDER:
        if t not in present_tasks:
            missing.append(f"no ok results for task {task_name(t)}")
    if not df_ok.empty:
        if df_ok.groupby(["uri", "task", "dataset", "protocol", "fraction"]).size().max() <= 1:
            missing.append("a single seed per cell: no std reported")
        main_methods = {methods[u].method for u in df_ok["uri"] if methods[u].kind == "main"}
        for name, label in [("paco", "PaCo-FR"), ("mae", "MAE"), ("farl", "FaRL-style"), ("mcf", "MCF-style")]:
            if name not in main_methods:
                missing.append(f"no measured rows for {label} (objective `{name}`)")
    if runs_missing:
        missing.append(f"runs dir `{runs_dir}` not found: the codebook reconstruction figure is unavailable "
                       "(every table and the other figures come from the rows)")
    for k in ("data_efficiency", "robustness_slices"):
        if not figures.get(k):
            missing.append(f"figure {k}: {fig_notes.get(k)}")
    return missing


def _rel(p, out_dir: Path):
    if p is None:
        return None
    return Path(p).relative_to(out_dir).as_posix()


def _label_scaling(paths, profile: str, out_dir: Path) -> str | None:
    """The label-scaling section (written as label_scaling.md) from `paths`, else from
    results/<profile>_label_scaling/ when that folder exists; None without rows."""
    if paths is None:
        default = Path("results") / f"{profile}_label_scaling"
        if not default.is_dir():
            return None
        paths = [default]
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    md = label_scaling_markdown(read_rows(paths))
    if md:
        md = md.replace("\n\n", f"\n\nRows: {', '.join(f'`{p}`' for p in paths)}.\n\n", 1)
        (out_dir / "label_scaling.md").write_text(md)
    return md


def run_from_args(args, argv_for_header=None) -> int:
    profile = args.profile
    results = args.results
    if results is None:
        results = [Path("results") / f"{profile or 'smoke'}.jsonl"]
    cmd = "python -m bench_tasks report" + (
        " " + " ".join(shlex.quote(a) for a in argv_for_header) if argv_for_header else "")
    res = build_report(results, args.out, args.runs, profile, command=cmd, reconstruct=not args.no_reconstruct,
                       reported_path=args.reported, label_scaling=getattr(args, "label_scaling", None))
    print(f"report written to {res['out_dir']} ({res['n_ok']} ok, {res['n_failed']} failed cells)")
    print(f"read first: {res['summary']}")
    for n in res["notes"]:
        print(f"note: {n}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        argv = argv[1:]
    if argv and argv[0] == "--":  # `python -m bench_tasks report -- --results ...`
        argv = argv[1:]
    ap = add_arguments(argparse.ArgumentParser(prog="python -m bench_tasks report", description=__doc__.split("\n")[0]))
    args = ap.parse_args(argv)
    return run_from_args(args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
