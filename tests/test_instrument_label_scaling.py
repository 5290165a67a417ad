"""The label-scaling table (bench_tasks/report/label_scaling.py) against hand-made rows."""

from __future__ import annotations

import json

from bench_tasks.report.label_scaling import label_scaling_markdown, points, read_rows


def _row(backbone, task, protocol, n, value, ci, *, key, epochs=None, rec=None, metric="acc", hib=True):
    extra = {"recognition": rec or {"margin": "cosface", "s": 30.0}}
    if epochs is not None:
        extra["ceiling_epochs"] = epochs
    return {"key": key, "settings_hash": f"{key}-{n}-{epochs}-{json.dumps(rec)}", "status": "ok",
            "headline": metric, "higher_is_better": hib,
            "cell": {"backbone": backbone, "task": task, "dataset": "synthface", "protocol": protocol,
                     "fraction": 1.0, "seed": 0, "profile": "cpu"},
            "metrics": {metric: value}, "ci": {metric: list(ci)},
            "config": {"profile": {"synthface_train": n, "extra": extra}, "task": {}},
            "provenance": {"device": "cuda:X"}}


def _rows():
    return [
        _row("floor:input-free", "expression", "floor", 3000, 13.8, (11.6, 16.0), key="f"),
        _row("floor:input-free", "expression", "floor", 10000, 13.8, (11.6, 16.0), key="f"),
        _row("random:vit_tiny@64/8/d4", "expression", "linear", 3000, 14.1, (11.9, 16.4), key="r"),
        _row("supervised:vit_tiny@64/8/d4", "expression", "finetune", 3000, 30.0, (27.0, 32.8), key="s", epochs=30),
        _row("supervised:vit_tiny@64/8/d4", "expression", "finetune", 10000, 81.0, (78.5, 83.4), key="s", epochs=30),
        _row("supervised:vit_tiny@64/8/d4", "expression", "finetune", 30000, 75.3, (72.8, 78.0), key="s",
             epochs={"expression": 10}),
        _row("supervised:vit_tiny@64/8/d4", "recognition", "finetune", 3000, 52.2, (51.0, 53.5), key="c", epochs=30),
        _row("supervised:vit_tiny@64/8/d4", "recognition", "finetune", 3000, 53.3, (52.0, 54.6), key="c", epochs=30,
             rec={"margin": "cosface", "s": 30.0, "m": 0.0}),
        _row("supervised:vit_tiny@64/8/d4", "landmarks", "finetune", 3000, 5.0, (4.9, 5.2), key="l", epochs=30,
             metric="nme", hib=False),
    ]


def test_rows_of_one_cell_at_several_sizes_are_kept_apart():
    pts = points(_rows())
    assert len(pts) == 9
    labels = {(p.task, p.encoder, p.n_train) for p in pts}
    assert ("expression", "ceiling, 30 ep", 10000) in labels
    assert ("expression", "ceiling, 10 ep", 30000) in labels  # per-task ceiling_epochs resolved
    assert ("recognition", "ceiling, 30 ep, cosface m=0.35", 3000) in labels  # CosFace's default margin
    assert ("recognition", "ceiling, 30 ep, normalised softmax (m=0)", 3000) in labels
    assert ("expression", "random-init (linear)", 3000) in labels


def test_table_and_verdicts():
    md = label_scaling_markdown(_rows())
    assert "| task | encoder | 3,000 images | 10,000 images | 30,000 images | ceiling target |" in md
    assert "| expression (acc ↑) | ceiling, 30 ep | 30.00 [27.00, 32.80] | 81.00 [78.50, 83.40] | — | ≥ 80 |" in md
    # the first size at which a ceiling meets the target (80 for expression)
    assert "expression: the target is met with 10,000 labelled images (ceiling, 30 ep)." in md
    # lower is better: NME 5.0 meets <= 8
    assert "landmarks: the target is met with 3,000 labelled images" in md
    assert "recognition: no ceiling here meets the target; the best is 53.30 [52.00, 54.60]" in md
    assert label_scaling_markdown([]) is None


def test_read_rows_keeps_settings_apart_and_names_a_missing_file(tmp_path):
    f = tmp_path / "rows.jsonl"
    rows = _rows()
    f.write_text("\n".join(json.dumps(r) for r in rows + rows[:2]) + "\nnot json\n")
    assert len(read_rows(tmp_path)) == len(rows)  # duplicates of (key, settings hash) once
    try:
        read_rows(tmp_path / "nope.jsonl")
    except FileNotFoundError as e:
        assert "nope.jsonl" in str(e)
    else:
        raise AssertionError("a missing file must be an error")
