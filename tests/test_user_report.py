"""`report` on a plan that is not the study: a compact table about the user's backbones, figures
with intervals, and "What is missing" only about the rows' own cells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import _md_row

from bench_tasks.report.build import build_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(uri, task, ds, protocol, value, ci, seed=0, fraction=1.0, metric="balanced_acc", status="ok",
         method=None):
    r = {"key": f"{uri}|{task}|{ds}|{protocol}|{fraction}|{seed}", "status": status,
         "cell": {"backbone": uri, "task": task, "dataset": ds, "protocol": protocol, "fraction": fraction,
                  "seed": seed, "profile": "smoke"},
         "headline": metric, "higher_is_better": True, "metrics": {metric: value}, "ci": {metric: ci}}
    if method:
        r["method"] = method
    if status != "ok":
        r.update(metrics={}, error="RuntimeError: out of memory\n  more lines")
    return r


MINE = "timm:vit_tiny_patch16_224:/w/mine.safetensors"


def _rows():
    return [
        _row("floor:input-free", "attributes", "synthface", "floor", 50.0, [49.0, 51.0]),
        _row("floor:input-free", "expression", "synthface", "floor", 14.3, [13.0, 15.6], metric="acc"),
        _row(MINE, "attributes", "synthface", "linear", 71.0, [69.0, 73.0]),
        _row(MINE, "expression", "synthface", "linear", 15.0, [12.0, 18.0], metric="acc"),
        _row("random:vit_tiny", "attributes", "synthface", "linear", 60.0, [58.0, 62.0]),
        _row("supervised:vit_tiny", "attributes", "synthface", "finetune", 85.0, [84.0, 86.0]),
        _row(MINE, "attributes", "synthface", "finetune", 0, None, status="failed"),
    ]


@pytest.fixture(scope="module")
def user_report(tmp_path_factory):  # built once: the tests below only read it
    tmp_path = tmp_path_factory.mktemp("user_report")
    res = tmp_path / "mine.jsonl"
    res.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    out = tmp_path / "rep"
    info = build_report([res], out, runs_dir=None, profile="smoke", reconstruct=False)
    return out, info



def test_compact_table_with_intervals_and_verdicts(user_report):
    out, info = user_report
    s = (out / "SUMMARY.md").read_text()
    assert "## Your backbones" in s
    md = (out / "user_table.md").read_text()
    header = _md_row(md, "backbone")
    assert header == ["backbone", "role", "Attributes · SynthFace", "Expression · SynthFace"]  # one column per task
    mine = _md_row(md, next(c for c in md.split("|") if "mine" in c).strip())
    assert mine[1] == "yours"
    assert mine[2].startswith("71.0 [69.0, 73.0]") and "above floor" in mine[2]
    assert mine[3].startswith("15.0 [12.0, 18.0]") and "no difference from floor shown" in mine[3]
    # rows: the user's backbone, random init, ceiling, floor; no empty study columns
    roles = [r[1] for r in (_md_row(md, c) for c in (mine[0],))] + [
        ln.split("|")[2].strip() for ln in md.splitlines()[2:] if ln.startswith("|")]
    assert {"yours", "random init", "ceiling", "floor"} <= set(roles)
    assert "(reported)" not in md and "PaCo-FR" not in s


def test_missing_is_about_the_users_cells_only(user_report):
    out, info = user_report
    s = (out / "SUMMARY.md").read_text()
    missing = s.split("## What is missing", 1)[1].split("##", 1)[0]
    assert "failed:" in missing and "RuntimeError: out of memory" in missing and "more lines" not in missing
    # a timm: backbone's architecture cannot be matched to random:vit_tiny / supervised:vit_tiny
    assert "no random-init row of the same architecture" in missing
    assert "MAE" not in missing and "objective" not in missing and "ablation" not in missing
    assert "One seed per cell" in s and "mean ± sd" not in s


def test_headline_figure_has_intervals(user_report):
    out, info = user_report
    png = out / "figures" / "headline.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert "figures/headline.png" in (out / "SUMMARY.md").read_text()
    assert "figures/headline.png" in info["files"]


def test_study_rows_keep_the_study_report(tmp_path):
    from bench_tasks.store.method import block

    rows = _rows()[:4] + [_row("paco_fr:/x/runs/smoke/paco/encoder.safetensors", "attributes", "synthface",
                               "linear", 70.0, [68.0, 72.0], method=block("paco", "main", label="PaCo-FR",
                                                                           run="paco"))]
    res = tmp_path / "r.jsonl"
    res.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_report([res], tmp_path / "rep", runs_dir=None, profile="smoke", reconstruct=False)
    s = (tmp_path / "rep" / "SUMMARY.md").read_text()
    assert "## Your backbones" not in s and not (tmp_path / "rep" / "user_table.md").exists()
    assert Path(tmp_path / "rep" / "main_table.md").is_file()


def test_data_efficiency_figure_draws_intervals_and_only_drawn_references(tmp_path, monkeypatch):
    from bench_tasks.report import figures as F
    from bench_tasks.report.tables import rows_to_frames

    rows = [_row(MINE, "attributes", "synthface", "linear", v, [v - 2, v + 3], fraction=f)
            for f, v in ((0.1, 60.0), (1.0, 70.0))] + [_rows()[0]]
    df_ok, _, methods, _ = rows_to_frames(rows)
    figs = []
    monkeypatch.setattr(F.plt, "close", lambda fig: figs.append(fig))
    p, note = F.data_efficiency_figure(df_ok, methods, {"attributes": "linear"}, tmp_path / "de.png")
    assert note is None and p.read_bytes()[:8] == PNG_MAGIC
    fig = figs[0]
    title = fig._suptitle.get_text()
    assert "one seed" in title and "95 %" in title and "± sd" not in title
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "floor (input-free)" in legend and not any("ceiling" in t for t in legend)
    # the error bar of each point is the row's interval: 2 below, 3 above
    pts = F._points_with_error(df_ok[df_ok["uri"] == MINE])
    assert pts["err_lo"].tolist() == [2.0, 2.0] and pts["err_hi"].tolist() == [3.0, 3.0]


def test_slices_figure_makes_no_sd_claim_with_one_seed(tmp_path, monkeypatch):
    from bench_tasks.report import figures as F
    from bench_tasks.report.tables import rows_to_frames

    row = _row(MINE, "attributes", "synthface", "linear", 70.0, [68.0, 72.0])
    row["slices"] = {"pose:frontal": {"balanced_acc": 72.0}, "pose:profile": {"balanced_acc": 66.0}}
    df_ok, _, methods, _ = rows_to_frames([row])
    figs = []
    monkeypatch.setattr(F.plt, "close", lambda fig: figs.append(fig))
    sf = F.slice_frame(df_ok, "linear", 1.0)
    p, note = F.slices_figure(sf, methods, tmp_path / "s.png", title="Robustness slices (mean ± sd over seeds)")
    assert p is not None and note is None
    title = figs[0]._suptitle.get_text()
    assert "± sd" not in title and "one seed" in title
