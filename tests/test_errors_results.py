"""Issue 15, results rows: unreadable lines are quarantined to `<file>.rejected`, never deleted; a
near-valid row is never dropped silently; `--dry-run` warns; `report` on a missing / empty file
is an error."""

from __future__ import annotations

import json

import pytest

from bench_tasks.cli.app import main
from bench_tasks.contracts import Cell
from bench_tasks.plan.cell_plan import make_plan
from bench_tasks.run.loop import run_plan
from bench_tasks.run.runner import RunContext
from bench_tasks.store.readers import inspect, load_rows
from bench_tasks.store.results import ResultsStore
from bench_tasks.store.rows import make_row


def _rows(n):
    return [make_row(Cell(f"random:b{i}", "expression", "synthface", "linear"), "ok", headline="acc",
                     result=None, provenance={}) for i in range(n)]


def _file_with_bad_lines(path):
    rows = _rows(6)
    lines = [json.dumps(r) for r in rows]
    near = dict(rows[0])
    near.pop("status")  # a near-valid row: every field but one
    near["key"] = "near-valid"
    lines.insert(2, "{garbage in the middle")
    lines.insert(4, json.dumps(near))
    path.write_text("\n".join(lines) + "\n")
    return lines


def test_quarantine_never_deletes(tmp_path):
    res = tmp_path / "r.jsonl"
    lines = _file_with_bad_lines(res)
    bad = inspect(res)
    assert [no for no, _, _ in bad] == [3, 5]
    assert "not JSON" in bad[0][2] and "'status'" in bad[1][2]
    assert res.read_text().splitlines() == lines  # inspect is read-only
    moved = ResultsStore(res).quarantine()
    assert len(moved) == 2
    kept = res.read_text().splitlines()
    rejected = (tmp_path / "r.jsonl.rejected").read_text().splitlines()
    assert sorted(kept + rejected) == sorted(lines)  # every line is somewhere
    assert rejected == [lines[2], lines[4]] and len(load_rows(res)) == 6
    # a second quarantine appends, it never overwrites
    with open(res, "a") as f:
        f.write("another bad line\n")
    ResultsStore(res).quarantine()
    assert (tmp_path / "r.jsonl.rejected").read_text().splitlines() == [lines[2], lines[4], "another bad line"]


def test_run_warns_with_the_count_and_where(tmp_path):
    res = tmp_path / "r.jsonl"
    _file_with_bad_lines(res)
    msgs = []
    run_plan(make_plan([]), RunContext(res, progress=False), log=msgs.append)
    warn = [m for m in msgs if m.startswith("warning")]
    assert warn and "2 unreadable line(s)" in warn[0] and "r.jsonl.rejected" in warn[0]
    assert "line 3: not JSON" in warn[0] and "line 5" in warn[0]


def test_dry_run_shows_the_warning_and_changes_nothing(tmp_path, capsys):
    res = tmp_path / "r.jsonl"
    _file_with_bad_lines(res)
    before = res.read_bytes()
    rc = main(["run", "--tasks", "expression", "--datasets", "synthface", "--backbones",
               "random:vit_tiny@32/16/d1", "--results", str(res), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "2 unreadable line(s)" in err and "r.jsonl.rejected" in err
    assert res.read_bytes() == before and not (tmp_path / "r.jsonl.rejected").exists()


@pytest.mark.parametrize("content", [None, "", "\n\n"])
def test_report_on_missing_or_empty_results_is_an_error(tmp_path, capsys, content):
    res = tmp_path / "missing.jsonl"
    if content is not None:
        res.write_text(content)
    rc = main(["report", "--results", str(res), "--out", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "missing.jsonl" in err and ("no result rows" in err or "not found" in err)
    assert not (tmp_path / "rep").exists()
