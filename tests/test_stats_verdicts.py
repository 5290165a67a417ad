"""One verdict everywhere: the end-of-run table and SUMMARY.md give the same floor verdict for the
same rows, and the verdict functions follow the interval, never the sign alone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench_tasks import stats
from bench_tasks.contracts import Cell, CellResult
from bench_tasks.plan.floors import FLOOR_URI
from bench_tasks.report.build import build_report
from bench_tasks.session.run_table import format_run_table
from bench_tasks.store.results import ResultsStore
from bench_tasks.store.rows import make_row

ENCODERS = {"random:vit_tiny@64/8/d2": 1.5, "paco_fr:runs/smoke/paco/encoder.safetensors": 0.3,
            "paco_fr:runs/smoke/mae/encoder.safetensors": 8.0}


def test_verdict_functions_follow_the_interval():
    assert stats.verdict(stats.Difference(2.0, -0.1, 4.1, True)) == "same within noise"
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
            store.append(make_row(cell, "ok", "acc", True, result=res, provenance={"git_commit": "abc"}))
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
    assert f"Attributes SynthFace bAcc {got['delta']:+.2f} [{got['lo']:+.2f}, {got['hi']:+.2f}] ({got['verdict']};" in line
