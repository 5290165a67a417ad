"""The report with floors, ceilings, CIs, normalised gain and noise-aware verdicts, on hand-made
rows whose numbers are worked out by hand."""

import numpy as np
import pandas as pd
import pytest

from bench_tasks.contracts import Cell, CellResult
from bench_tasks.plan.floors import FLOOR_URI
from bench_tasks.report.build import build_report
from bench_tasks.stats import ItemScores
from bench_tasks.store.results import ResultsStore
from bench_tasks.store.rows import make_row

RANDOM = "random:vit_tiny@64/8/d2"
PACO = "paco_fr:runs/smoke/paco/encoder.safetensors"
CEIL = "supervised:vit_tiny@64/8/d2"

# (backbone, task, protocol, headline value, ci)
ROWS = [
    (FLOOR_URI, "attributes", "floor", 50.0, [50.0, 50.0]),
    (RANDOM, "attributes", "linear", 60.0, [58.0, 62.0]),
    (PACO, "attributes", "linear", 51.0, [49.0, 53.0]),  # interval includes the floor
    (CEIL, "attributes", "finetune", 90.0, [89.0, 91.0]),
    (FLOOR_URI, "landmarks", "floor", 26.0, [24.0, 28.0]),
    (RANDOM, "landmarks", "frozen", 20.0, [19.0, 21.0]),
    (PACO, "landmarks", "frozen", 25.0, [22.0, 27.5]),  # NME: interval reaches above the floor
    (CEIL, "landmarks", "finetune", 8.0, [7.5, 8.5]),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("instr")
    store = ResultsStore(d / "results" / "smoke.jsonl")
    base = np.random.default_rng(0).normal(55, 20, 300)
    for uri, task, proto, value, ci in ROWS:
        cell = Cell(uri, task, "synthface", proto, 1.0, 0, "smoke")
        headline, hib = ("balanced_acc", True) if task == "attributes" else ("nme", False)
        metrics = {headline: value}
        artifacts = {}
        if task == "attributes":
            metrics["mean_acc"] = value + 20
            if uri in (RANDOM, PACO):  # per-item scores: PaCo is exactly 9 points below random on every item
                items = ItemScores("mean", {"balanced_acc": base + (5.0 if uri == RANDOM else -4.0)},
                                   items=np.arange(300))
                rel = f"artifacts/{cell.key()}/items.npz"
                items.save(store.root / rel)
                artifacts["items"] = rel
        res = CellResult(metrics=metrics, ci={headline: ci, **({"mean_acc": [ci[0] + 20, ci[1] + 20]}
                                                               if task == "attributes" else {})},
                         artifacts=artifacts)
        store.append(make_row(cell, "ok", headline, hib, result=res, provenance={"git_commit": "abc"}))
    out = d / "report"
    info = build_report([store.path], out, runs_dir=None, profile="smoke", reconstruct=False)
    return out, info


def _cell(long, method, task, column):
    sel = long[(long["method"].str.startswith(method)) & (long["task"].fillna("") == task) & (long["column"] == column)]
    assert len(sel) == 1, (method, task, column, long[["method", "task", "column"]])
    return sel.iloc[0]


def test_main_table_has_floor_ceiling_gain_and_flags(report):
    out, _ = report
    long = pd.read_csv(out / "main_table_long.csv")
    assert _cell(long, "Floor (input-free)", "attributes", "headline")["kind"] == "floor"
    assert _cell(long, "Ceiling (supervised", "landmarks", "headline")["kind"] == "ceiling"
    # g = (score - floor) / (ceiling - floor)
    assert _cell(long, "Random init", "attributes", "gain")["mean"] == pytest.approx(10 / 40)
    assert _cell(long, "PaCo-FR (ours)", "attributes", "gain")["mean"] == pytest.approx(1 / 40)
    assert _cell(long, "Random init", "landmarks", "gain")["mean"] == pytest.approx(6 / 18)
    assert _cell(long, "PaCo-FR (ours)", "landmarks", "gain")["mean"] == pytest.approx(1 / 18)
    assert _cell(long, "Random init", "", "mean_gain")["mean"] == pytest.approx((10 / 40 + 6 / 18) / 2)
    assert _cell(long, "Floor (input-free)", "landmarks", "gain")["mean"] == 0
    assert _cell(long, "Ceiling (supervised", "attributes", "gain")["mean"] == 1
    # FaRL's mAcc kept as a second attributes column
    assert _cell(long, "Random init", "attributes", "secondary")["mean"] == pytest.approx(80.0)
    # flags: PaCo's intervals include the floor in both tasks; random's do not
    assert _cell(long, "PaCo-FR (ours)", "attributes", "headline")["flag"] == "†"
    assert _cell(long, "PaCo-FR (ours)", "landmarks", "headline")["flag"] == "†"
    assert pd.isna(_cell(long, "Random init", "landmarks", "headline")["flag"])
    r = _cell(long, "Random init", "attributes", "headline")
    # recomputed from the per-item scores (sd 20 over 300 items: half-width ~1.96 * 20 / sqrt(300))
    assert r["ci_lo"] < 60.0 < r["ci_hi"] and r["ci_hi"] - r["ci_lo"] == pytest.approx(2 * 2.26, rel=0.15)
    assert f"[{r['ci_lo']:.1f}, {r['ci_hi']:.1f}]" in r["display"]
    md = (out / "main_table.md").read_text()
    assert "protocol `linear` (Landmarks: `frozen`)" in md and "gain ↑" in md and "Mean gain ↑" in md
    # floors and ceilings are never bold
    assert not long.loc[long["kind"].isin(["floor", "ceiling"]), "is_best"].any()


def test_summary_flags_and_verdicts(report):
    out, _ = report
    s = (out / "SUMMARY.md").read_text()
    assert "**2 score(s) do not beat their floor**" in s
    assert "- PaCo-FR (ours): Attributes SynthFace bAcc ↑" in s
    # paired over the same items: exactly -9 on every resample
    assert "Attributes SynthFace bAcc -9.00 [-9.00, -9.00] (worse; paired; test items only; one pre-training run)" in s
    # landmarks have no per-item scores: unpaired from the intervals, +5 NME excludes 0 -> worse
    assert "Landmarks SynthFace NME +5.00" in s and "(worse; unpaired)" in s
    # the ceiling is compared with the control too
    assert "**Ceiling (supervised, vit_tiny@64/8/d2)** vs Random init" in s


def test_protocol_tables_show_references(report):
    out, _ = report
    proto = (out / "protocols.md").read_text()
    assert "Floor (input-free)" in proto and "Ceiling (supervised" in proto and "Protocol `floor`" not in proto
    assert "Protocol `linear`" in proto and "Protocol `frozen`" in proto


def test_summary_compares_each_baseline_with_paco(tmp_path):
    """SUMMARY.md has a line per compared method against PaCo-FR (ours), `baseline − PaCo-FR` with the
    paired interval: here MAE is exactly 5 points above PaCo-FR on every item, FaRL-style exactly equal."""
    store = ResultsStore(tmp_path / "results" / "smoke.jsonl")
    base = np.random.default_rng(1).normal(60, 15, 200)
    mae, farl = PACO.replace("/paco/", "/mae/"), PACO.replace("/paco/", "/farl/")
    # the head (`linear`) and the concatenated-feature probe (`concat`: MAE 2 points below PaCo-FR there)
    for proto, probe_shift in (("linear", 0.0), ("concat", 1.0)):
        for uri, shift in ((RANDOM, -3.0), (PACO, 0.0), (mae, 5.0), (farl, 0.0)):
            shift = shift if proto == "linear" else {mae: -2.0}.get(uri, shift) + probe_shift
            cell = Cell(uri, "attributes", "synthface", proto, 1.0, 0, "smoke")
            rel = f"artifacts/{cell.key()}/items.npz"
            ItemScores("mean", {"balanced_acc": base + shift}, items=np.arange(200)).save(store.root / rel)
            v = float(np.mean(base + shift))
            res = CellResult(metrics={"balanced_acc": v, "mean_acc": v}, ci={"balanced_acc": [v - 1, v + 1]},
                             artifacts={"items": rel})
            store.append(make_row(cell, "ok", "balanced_acc", True, result=res, provenance={"git_commit": "abc"}))
    build_report([store.path], tmp_path / "rep", runs_dir=None, profile="smoke", reconstruct=False)
    text = (tmp_path / "rep" / "SUMMARY.md").read_text()
    assert "Differences from PaCo-FR (ours)" in text
    lines = {ln.split("**")[1]: ln for ln in text.splitlines() if ln.startswith("- **") and "vs PaCo-FR (ours)" in ln}
    assert set(lines) == {"MAE", "FaRL-style"}, lines  # not the random-init control, floor or ceiling
    assert "Attributes SynthFace bAcc +5.00 [+5.00, +5.00] (better; paired; test items only; one pre-training run)" in lines["MAE"]
    # the probe column is compared on the probe's rows: (-2 + 1) - (0 + 1) = -2 on every item
    assert "Attributes SynthFace bAcc (concat probe) -2.00 [-2.00, -2.00] (worse; paired; test items only; one pre-training run)" in lines["MAE"]
    # identical on every item: equivalence within the declared margin is shown
    assert "(the same, within ±1; paired" in lines["FaRL-style"]
