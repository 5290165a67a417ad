"""One verdict everywhere: the end-of-run table and SUMMARY.md give the same floor verdict for the
same rows, and the verdict functions follow the interval, never the sign alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench_tasks import stats
from bench_tasks.contracts import Cell, CellResult
from bench_tasks.plan.cell_plan import task_version
from bench_tasks.plan.floors import FLOOR_URI
from bench_tasks.report.build import build_report
from bench_tasks.session.run_table import format_run_table
from bench_tasks.store.results import ResultsStore
from bench_tasks.store.rows import make_row

ENCODERS = {"random:vit_tiny@64/8/d2": 1.5, "paco_fr:runs/smoke/paco/encoder.safetensors": 0.3,
            "paco_fr:runs/smoke/mae/encoder.safetensors": 15.0}


def test_verdict_functions_follow_the_interval():
    assert stats.verdict(stats.Difference(2.0, -0.1, 4.1, True)) == "not shown"
    assert stats.verdict(stats.Difference(2.0, 0.1, 4.1, True)) == "better"
    assert stats.verdict(stats.Difference(2.0, 0.1, 4.1, True), higher_is_better=False) == "worse"
    assert stats.floor_verdict([12.67, 21.33], 13.33) == "does not beat the floor"
    assert stats.floor_verdict([13.4, 21.33], 13.33) == "beats the floor"
    assert stats.floor_verdict([4.0, 4.9], 5.0, higher_is_better=False) == "beats the floor"
    assert stats.floor_verdict(None, 5.0) is None


def test_run_table_and_summary_agree(tmp_path):
    store = ResultsStore(tmp_path / "results" / "smoke.jsonl")
    rng = np.random.default_rng(3)
    correct_floor = (rng.random(400) < 0.5).astype(float) * 100
    cells = []
    for uri, gain in [(FLOOR_URI, 0.0), *ENCODERS.items()]:
        for seed in ((0,) if uri == FLOOR_URI else (0, 1)):
            proto = "floor" if uri == FLOOR_URI else "linear"
            cell = Cell(uri, "expression", "synthface", proto, 1.0, seed, "smoke")
            p = 0.5 + gain / 100 + (0.01 * seed if uri != FLOOR_URI else 0)
            per_item = correct_floor if uri == FLOOR_URI else (rng.random(400) < p).astype(float) * 100
            items = stats.ItemScores("mean", {"acc": per_item}, items=np.arange(400))
            rel = f"artifacts/{cell.key()}/items.npz"
            items.save(store.root / rel)
            res = CellResult(metrics={"acc": float(per_item.mean())}, ci=items.ci(), artifacts={"items": rel})
            store.append(make_row(cell, "ok", "acc", True, result=res, provenance={"git_commit": "abc"},
                                  task_version=task_version(cell.task)))
            cells.append(cell)
    out = tmp_path / "report"
    build_report([store.path], out, runs_dir=None, profile="smoke", reconstruct=False)
    long = pd.read_csv(out / "main_table_long.csv")
    text = format_run_table(cells, store.path)
    words = {}
    for line in text.splitlines()[2:]:
        for uri, tag in zip(ENCODERS, ("random:", "paco/", "mae/")):
            if tag in line:
                words.setdefault(uri, set()).add("does not beat" if "does not beat the floor" in line else "beats")
    labels = {"random:vit_tiny@64/8/d2": "Random init", "paco_fr:runs/smoke/paco/encoder.safetensors": "PaCo-FR",
              "paco_fr:runs/smoke/mae/encoder.safetensors": "MAE"}
    seen = set()
    for uri, label in labels.items():
        row = long[long["method"].str.startswith(label) & (long["column"] == "headline")].iloc[0]
        summary_word = "does not beat" if row["flag"] == "†" else "beats"
        assert words[uri] == {summary_word}, (uri, words[uri], row["display"])
        seen.add(summary_word)
    assert seen == {"beats", "does not beat"}  # the fixture exercises both verdicts


def test_python_api_gives_the_summary_verdict():
    import pathlib

    from bench_tasks.api import compare
    rows = pathlib.Path(__file__).resolve().parents[1] / "results" / "cpu_lc500.jsonl"
    got = compare(rows, "MAE", "PaCo-FR (ours)", "attributes")
    summary = (rows.parents[1] / "reports" / "cpu_lc500" / "SUMMARY.md").read_text()
    line = next(x for x in summary.splitlines() if x.startswith("- **MAE** vs PaCo-FR (ours)"))
    assert f"Attributes SynthFace bAcc {got['delta']:+.2f} [{got['lo']:+.2f}, {got['hi']:+.2f}] ({got['verdict']}" in line


def test_a_wide_interval_across_zero_is_not_shown_never_the_same():
    wide = stats.Difference(0.1, -3.0, 3.2, True, eq_lo=-2.5, eq_hi=2.7)
    assert stats.verdict(wide, margin=1.0) == "not shown"
    assert stats.verdict(wide) == "not shown"  # no margin: never "the same"
    assert stats.verdict(wide, margin=5.0) == "the same"  # inside a (too) generous margin it is


def test_the_same_needs_both_one_sided_tests():
    # the 90 % (TOST) interval decides, not the 95 % one: here the 95 % interval pokes out of +-1
    d = stats.Difference(0.1, -0.9, 1.1, True, eq_lo=-0.7, eq_hi=0.9)
    assert stats.equivalent(d, 1.0) and stats.verdict(d, margin=1.0) == "the same"
    # one side outside the margin: one of the two tests fails
    assert stats.verdict(stats.Difference(0.6, -0.2, 1.4, True, eq_lo=-0.1, eq_hi=1.2), margin=1.0) == "not shown"
    assert stats.verdict(stats.Difference(-0.6, -1.4, 0.2, True, eq_lo=-1.2, eq_hi=0.1), margin=1.0) == "not shown"
    # without a TOST interval the 95 % one stands in (conservative)
    assert stats.verdict(stats.Difference(0.1, -0.9, 1.1, True), margin=1.0) == "not shown"
    # a margin that is not positive shows nothing
    assert stats.verdict(stats.Difference(0.0, -0.1, 0.1, True), margin=0.0) == "not shown"


def test_a_difference_excluding_zero_is_better_or_worse_whatever_the_margin():
    d = stats.Difference(0.3, 0.1, 0.5, True, eq_lo=0.15, eq_hi=0.45)
    assert stats.verdict(d, margin=1.0) == "better"
    assert stats.verdict(d, higher_is_better=False, margin=1.0) == "worse"
    nan = stats.Difference(float("nan"), float("nan"), float("nan"), True)
    assert stats.verdict(nan, margin=1.0) == "not shown"


def test_floor_verdict_is_the_verdict_of_score_minus_floor():
    # the case: a score whose interval excludes the floor's point value, but whose paired
    # difference from the floor (the floor's own noise on the same items counted) does not
    assert stats.floor_verdict([14.3, 18.2], 13.80) == "beats the floor"
    paired = stats.Difference(2.38, -1.56, 6.39, True)
    assert stats.floor_verdict(paired) == "does not beat the floor"
    assert stats.beats_floor(paired) is False
    assert stats.floor_verdict(stats.Difference(-2.0, -3.0, -1.0, True), higher_is_better=False) == "beats the floor"


def test_paired_and_unpaired_differences_carry_the_tost_interval():
    rng = np.random.default_rng(0)
    a = stats.ItemScores("mean", {"acc": (rng.random(500) < 0.6).astype(float) * 100})
    b = stats.ItemScores("mean", {"acc": (rng.random(500) < 0.6).astype(float) * 100})
    d = stats.paired_difference(a, b, "acc", n_boot=400)
    assert d.lo < d.eq_lo < d.eq_hi < d.hi  # the 90 % interval is inside the 95 % one
    u = stats.unpaired_difference(60.0, (58.0, 62.0), 59.0, (57.0, 61.0))
    assert u.lo < u.eq_lo < u.eq_hi < u.hi
    assert abs((u.eq_hi - u.eq_lo) / (u.hi - u.lo) - 1.6449 / 1.96) < 1e-3


def test_margins_file_is_read_and_checked(tmp_path):
    from bench_tasks.stats.margins import load_margins

    assert stats.margin_for("parsing", "f1_mean") > 0
    assert stats.margin_for("parsing", "no_such_metric") is None
    assert stats.margin_for("no_such_task", "acc") is None
    bad = tmp_path / "m.yaml"
    bad.write_text("expression: {acc: -1}\n")
    with pytest.raises(ValueError, match=r"m.yaml.*expression.acc.*positive"):
        load_margins(bad)
    bad.write_text("expression: 1.0\n")
    with pytest.raises(ValueError, match="expression"):
        load_margins(bad)
