"""The report puts a measured real-data number next to FaRL's "(reported)" one only when the
row ran FaRL's protocol exactly (config.task.farl.farl_exact); otherwise the published numbers
stay in a column of their own."""

from bench_tasks.report.reported import load_reported
from bench_tasks.report.tables import build_main_table, rows_to_frames


def _row(protocol, exact, value=90.0, seed=0, dataset="lapa"):
    farl = {"farl_exact": exact, "overrides": {} if exact else {"epochs": 2}} if protocol.startswith("farl") else None
    return {"key": f"{protocol}{exact}{seed}{dataset}", "status": "ok", "headline": "f1_mean", "higher_is_better": True,
            "cell": {"backbone": "farl:FaRL-Base-Patch16-LAIONFace20M-ep64.pth", "task": "parsing", "dataset": dataset,
                     "protocol": protocol, "fraction": 1.0, "seed": seed, "profile": "paper"},
            "metrics": {"f1_mean": value}, "config": {"task": {"farl": farl} if farl else {}}, "provenance": {}}


def _table(rows, protocol):
    df, _, methods, problems = rows_to_frames(rows)
    assert not problems
    return build_main_table(df, methods, load_reported(), protocol, 1.0)


def test_exact_farl_rows_share_the_column_with_farls_number():
    t = _table([_row("farl-refine", True, 94.0)], "farl-refine")
    lapa = [c for c in t.cols if c.task == "parsing" and c.dataset.startswith("lapa")]
    assert [c.dataset for c in lapa] == ["lapa"]
    assert t.cells[("FaRL ep64 (reported)", ("parsing", "lapa", ""))].mean == 94.04
    assert any("ran FaRL's downstream protocol exactly" in n for n in t.footnotes)


def test_other_protocols_or_overrides_keep_the_published_numbers_apart():
    for rows, proto in (([_row("frozen", False)], "frozen"), ([_row("farl-refine", False)], "farl-refine"),
                        ([_row("farl-refine", True), _row("farl-refine", False, seed=1)], "farl-refine")):
        t = _table(rows, proto)
        lapa = sorted(c.dataset for c in t.cols if c.task == "parsing" and c.dataset.startswith("lapa"))
        assert lapa == ["lapa", "lapa (reported)"], (proto, lapa)
        assert ("FaRL ep64 (reported)", ("parsing", "lapa", "")) not in t.cells
        assert t.cells[("FaRL ep64 (reported)", ("parsing", "lapa (reported)", ""))].mean == 94.04
        assert any("stay apart" in n for n in t.footnotes)
    # a data set without measured rows keeps its single published column, as before
    t = _table([_row("frozen", False)], "frozen")
    assert ("FaRL ep64 (reported)", ("landmarks", "300w", "")) in t.cells
