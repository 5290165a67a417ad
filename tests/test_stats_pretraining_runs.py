"""Several pre-training runs of one method (rows sharing a method label, different backbones, a
`pretrain_seed` in the method block): one table row per method, intervals that resample the runs,
and the A/A check's run-vs-run comparisons. Synthetic rows of that shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench_tasks import stats
from bench_tasks.contracts import Cell, CellResult
from bench_tasks.plan.floors import FLOOR_URI
from bench_tasks.report.build import build_report
from bench_tasks.report.calibration import aa_check
from bench_tasks.report.compare import compare
from bench_tasks.report.load import load_rows
from bench_tasks.report.tables import rows_to_frames
from bench_tasks.store.results import ResultsStore
from bench_tasks.store.rows import make_row

N = 500
PACO_RUNS = {"paco_fr:runs/x/paco_s0/encoder.safetensors": (0, 0.0),
             "paco_fr:runs/x/paco_s1/encoder.safetensors": (1, 6.0)}  # run 1 is 6 points better
MAE = "paco_fr:runs/x/mae/encoder.safetensors"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    store = ResultsStore(d / "results" / "smoke.jsonl")
    rng = np.random.default_rng(0)
    item = rng.normal(60, 15, N)

    def add(uri, proto, seed, shift, block):
        cell = Cell(uri, "expression", "synthface", proto, 1.0, seed, "smoke")
        v = item + shift + rng.normal(0, 5, N)
        sc = stats.ItemScores("mean", {"acc": v})
        rel = f"artifacts/{cell.key()}/items.npz"
        sc.save(store.root / rel)
        row = make_row(cell, "ok", "acc", True, result=CellResult(metrics={"acc": float(v.mean())}, ci=sc.ci(),
                                                                  artifacts={"items": rel}))
        row["method"] = block
        store.append(row)

    add(FLOOR_URI, "floor", 0, -40.0, {"method": "floor", "role": "floor", "label": "Floor (input-free)"})
    for uri, (ps, shift) in PACO_RUNS.items():
        for seed in (0, 1):
            add(uri, "linear", seed, shift + 0.3 * seed,
                {"method": "paco", "role": "main", "label": "PaCo-FR (ours)", "pretrain_seed": ps})
    for seed in (0, 1):
        add(MAE, "linear", seed, 3.0 + 0.3 * seed, {"method": "mae", "role": "main", "label": "MAE"})
        add("random:vit_tiny@64/8/d2", "linear", seed, -10.0 + 0.3 * seed,
            {"method": "random", "role": "control", "label": "Random init"})
    return store, d


def test_runs_are_one_method_row_and_the_interval_resamples_them(study):
    store, d = study
    df = rows_to_frames(load_rows([store.path]).rows)[0]
    paco = df[df["method"] == "PaCo-FR (ours)"]
    assert len(paco) == 4 and paco["uri"].nunique() == 1 and paco["run"].nunique() == 2
    c = compare(df, paco["uri"].iloc[0], MAE, "expression", "synthface", "linear", 1.0)
    # PaCo-FR: runs at +0 and +6 (mean 3.15 with the seeds), MAE at 3.15: the run spread is in the interval
    assert c.diff.covers.startswith("test items + pre-training runs")
    assert c.word == "not shown" and c.diff.hi - c.diff.lo > 6.0
    out = d / "report"
    build_report([store.path], out, runs_dir=None, profile="smoke", reconstruct=False)
    long = pd.read_csv(out / "main_table_long.csv")
    row = long[(long["method"] == "PaCo-FR (ours)") & (long["column"] == "headline")]
    assert len(row) == 1 and int(row["n_seeds"].iloc[0]) == 4
    assert "pre-training runs" in (out / "SUMMARY.md").read_text()


def test_the_aa_check_compares_the_runs_of_one_method(study):
    store, _ = study
    res = aa_check(load_rows([store.path]).rows, n_boot=300)
    n_runs, false_runs = res.kinds["pre-training runs"]
    assert n_runs == 1  # one cell, two runs
    # the runs really differ by 6 points; with the method's own runs left out of the pools no other
    # method has several runs, so the interval covers items and seeds only and calls them different
    assert false_runs == 1 and "run" in res.lines[-1]
    assert res.kinds["evaluation seeds"][0] == 4  # one seed pair per backbone (2 PaCo runs, MAE, random)
