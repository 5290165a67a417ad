"""Issue 15: the console shows the cause of a failed cell (exception type + its first line), the full
text stays in the row."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bench_tasks.contracts import Cell
from bench_tasks.errors import cause_line
from bench_tasks.plan.cell_plan import make_plan
from bench_tasks.plan.cells import DataRoots
from bench_tasks.run.loop import run_plan
from bench_tasks.run.runner import RunContext
from bench_tasks.store.readers import load_rows


def test_cause_line_of_a_traceback_is_the_last_exception_first_line():
    try:
        try:
            raise OSError("inner")
        except OSError as e:
            raise KeyError("outer") from e
    except KeyError:
        import traceback

        tb = traceback.format_exc()
    assert cause_line(tb) == "KeyError: 'outer'"
    text = ('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n    f()\n'
            'safetensors_rust.SafetensorError: Error while deserializing header: header too large\n'
            'more details\n')
    assert cause_line(text) == "SafetensorError: Error while deserializing header: header too large"
    assert cause_line(ValueError("first\nsecond")) == "ValueError: first"


def test_failed_cell_console_line_shows_the_cause(tmp_path):
    root = tmp_path / "celeba"
    files = [f"{i:06d}.jpg" for i in range(1, 4)]
    root.mkdir()
    (root / "list_attr_celeba.txt").write_text("3\nSmiling\n" + "".join(f"{f} 1\n" for f in files))
    (root / "list_landmarks_align_celeba.txt").write_text("3\nlefteye_x lefteye_y\n")
    (root / "img_align_celeba").mkdir()
    for f in files:
        Image.fromarray(np.zeros((218, 178, 3), np.uint8)).save(root / "img_align_celeba" / f)
    cell = Cell("random:vit_tiny@32/16/d1", "attributes", "celeba", "linear", 1.0, 0, "smoke")
    lines = []
    res = tmp_path / "r.jsonl"
    s = run_plan(make_plan([cell]), RunContext(res, tmp_path / "w", DataRoots.parse([str(tmp_path)]), progress=False),
                 log=lines.append)
    assert s.failed == 2  # the cell and its task's floor (run_plan adds it), both read the splits
    failed = [ln for ln in lines if ln.startswith("FAILED")]
    assert len(failed) == 2
    for line in failed:
        assert "DatasetLayoutError: celeba: missing list_eval_partition.txt" in line
        assert "list_landmarks_align_celeba" not in line  # the layout's last line is not the cause
    row = load_rows(res)[0]
    assert "expected layout" in row["error"] and "list_landmarks_align_celeba" in row["error"]
