"""Rows made with different settings are never pooled into one number: the report keeps one
setting per cell group and says so, the end-of-run table shows only the plan's settings, `run`
refuses to add seeds next to rows made with other settings unless --force; rows whose metrics are
not numbers are quarantined like torn lines."""

from __future__ import annotations

import json

from bench_tasks.cli.app import main
from bench_tasks.contracts import Cell, CellResult
from bench_tasks.plan.cell_plan import cell_version, make_plan, task_version
from bench_tasks.report.load import load_rows
from bench_tasks.session.run_table import format_run_table
from bench_tasks.store.readers import inspect
from bench_tasks.store.results import ResultsStore
from bench_tasks.store.rows import make_row

URI = "random:vit_tiny@64/8/d1"
SMALL = ["--set", "synthface_train=96", "--set", "synthface_val=32", "--set", "synthface_test=64"]


def _row(cell, value, settings, finished="2026-01-01T00:00:00"):
    return make_row(cell, "ok", headline="acc", result=CellResult(metrics={"acc": value}), settings_hash=settings,
                    task_version=task_version(cell.task),
                    provenance={"finished": finished})


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_two_settings_in_one_group_are_never_pooled(tmp_path):
    res = tmp_path / "r.jsonl"
    s0, s1 = Cell(URI, "attributes", "synthface", "linear", seed=0), Cell(URI, "attributes", "synthface", "linear", seed=1)
    _write(res, [_row(s0, 50.0, "aaaa", "2026-01-01T00:00:00"), _row(s1, 60.0, "bbbb", "2026-01-02T00:00:00")])
    got = load_rows([res], prefer=None)
    assert [r["metrics"]["acc"] for r in got.rows] == [60.0]  # the row finished last decides
    assert len(got.set_aside) == 1 and len(got.settings_notes) == 1
    assert "settings aaaa" in got.settings_notes[0] and "not pooled" in got.settings_notes[0]
    # the current settings win over a later row
    got = load_rows([res], prefer=lambda r: r.get("settings_hash") == "aaaa")
    assert [r["metrics"]["acc"] for r in got.rows] == [50.0]


def test_one_key_two_settings_does_not_depend_on_line_order(tmp_path):
    c = Cell(URI, "attributes", "synthface", "linear")
    a, b = _row(c, 56.3, "aaaa"), _row(c, 56.1, "bbbb")
    picks = []
    for order in ([a, b], [b, a]):
        res = tmp_path / "r.jsonl"
        _write(res, order)
        got = load_rows([res], prefer=lambda r: r.get("settings_hash") == "aaaa")
        picks.append([r["metrics"]["acc"] for r in got.rows])
        assert got.settings_notes
    assert picks == [[56.3], [56.3]]


def test_report_warns_in_summary(tmp_path):
    from bench_tasks.report.build import build_report

    res = tmp_path / "r.jsonl"
    cells = [Cell(URI, "attributes", "synthface", "linear", seed=s) for s in (0, 1)]
    _write(res, [_row(cells[0], 50.0, "aaaa"), _row(cells[1], 60.0, "bbbb", "2026-01-03T00:00:00")])
    out = build_report([res], tmp_path / "rep", runs_dir=None, profile="smoke", reconstruct=False)
    text = (tmp_path / "rep" / "SUMMARY.md").read_text()
    assert "settings differ" in text and "settings aaaa" in text
    assert any("settings differ" in n for n in out["notes"])


def test_report_lists_many_left_out_groups_in_a_file(tmp_path):
    """After an instrument change most cells have an older row: one SUMMARY line, the list in a file."""
    from bench_tasks.report.build import SETTINGS_NOTES_INLINE, build_report

    res = tmp_path / "r.jsonl"
    rows = []
    for i in range(SETTINGS_NOTES_INLINE + 1):
        uri = f"random:vit_tiny@64/8/d{i + 1}"
        cells = [Cell(uri, "attributes", "synthface", "linear", seed=s) for s in (0, 1)]
        rows += [_row(cells[0], 50.0, "aaaa"), _row(cells[1], 60.0, "bbbb", "2026-01-03T00:00:00")]
    _write(res, rows)
    build_report([res], tmp_path / "rep", runs_dir=None, profile="smoke", reconstruct=False)
    text = (tmp_path / "rep" / "SUMMARY.md").read_text()
    assert text.count("settings differ") == 1 and "settings_left_out.md" in text
    listed = (tmp_path / "rep" / "settings_left_out.md").read_text()
    assert listed.count("settings aaaa") == SETTINGS_NOTES_INLINE + 1


def test_run_table_shows_only_this_plans_settings(tmp_path):
    res = tmp_path / "r.jsonl"
    c = Cell(URI, "expression", "synthface", "linear")
    _write(res, [_row(c, 33.0, "not-this-plan")])
    text = format_run_table([c], res)
    assert "other settings" in text and "33.00" not in text
    _write(res, [_row(c, 33.0, cell_version(c).settings), _row(c, 44.0, "not-this-plan")])
    text = format_run_table([c], res)  # its own row, although another run's row came later
    assert "33.00" in text and "44.00" not in text


def test_plan_reports_other_seeds_made_with_other_settings():
    c0, c1 = Cell(URI, "expression", "synthface", "linear", seed=0), Cell(URI, "expression", "synthface", "linear", seed=1)
    plan = make_plan([c1], references=False)
    old = _row(c0, 30.0, "other-hash")
    problems = plan.mixed_settings({old["key"]: old})
    assert len(problems) == 1 and "--force" in problems[0] and "seed(s) [0]" in problems[0]
    same = _row(c0, 30.0, cell_version(c0).settings)
    assert plan.mixed_settings({same["key"]: same}) == []
    # the plan recomputes seed 0 itself: no mixing
    assert make_plan([c0, c1], references=False).mixed_settings({old["key"]: old}) == []


def test_run_refuses_to_mix_settings_unless_forced(tmp_path, capsys, monkeypatch):
    from bench_tasks.plan.profiles import PROFILES

    monkeypatch.setitem(PROFILES, "smoke", PROFILES["smoke"])  # --set registers a changed smoke: undo it after
    res = tmp_path / "r.jsonl"
    old = _row(Cell(URI, "expression", "synthface", "linear", seed=0), 30.0, "made-with-other-settings")
    _write(res, [old])
    args = ["run", "--tasks", "expression", "--datasets", "synthface", "--backbones", URI, "--protocols", "linear",
            "--fractions", "1", "--seeds", "1", "--results", str(res), "--work-dir", str(tmp_path / "w"),
            "--no-progress", "--no-ceilings", "--no-probes", *SMALL]
    for extra in ([], ["--dry-run"]):
        assert main(args + extra) == 2
        err = capsys.readouterr().err
        assert "other settings" in err and "--force" in err and "nothing was run or written" in err
    assert [json.loads(x)["key"] for x in res.read_text().splitlines()] == [old["key"]]  # nothing written
    assert main(args + ["--dry-run", "--force"]) == 0


def test_non_numeric_metric_is_quarantined(tmp_path):
    res = tmp_path / "r.jsonl"
    c = Cell(URI, "expression", "synthface", "linear")
    good, bad = _row(c, 30.0, "x"), _row(Cell(URI, "expression", "synthface", "linear", seed=1), 1.0, "x")
    bad["metrics"]["acc"] = "56.5%"
    _write(res, [good, bad])
    assert [why for _, _, why in inspect(res)] == ["metrics.acc is '56.5%', not a number"]
    assert load_rows([res]).skipped_lines == 1
    moved = ResultsStore(res).quarantine()
    assert len(moved) == 1 and len(res.read_text().splitlines()) == 1
    assert "56.5%" in (tmp_path / "r.jsonl.rejected").read_text()
