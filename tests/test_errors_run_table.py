"""Issue 15: the compact end-of-run table: headline, CI when the row has one, difference to the
floor row when the results hold one, the cause for a failed cell."""

from __future__ import annotations

import json

import pytest
from one_lr import one_lr_set

from bench_tasks.cli.app import main
from bench_tasks.contracts import Cell, CellResult
from bench_tasks.plan.cell_plan import task_version
from bench_tasks.session.run_table import _short_backbone, format_run_table
from bench_tasks.store.rows import make_row


def _row(cell, value, ci=None, status="ok", error=None):
    r = make_row(cell, status, headline="acc", higher_is_better=True, task_version=task_version(cell.task),
                 result=CellResult(metrics={"acc": value}) if status == "ok" else None, error=error)
    if ci is not None:
        r["ci"] = {"acc": ci}
    return r


def test_table_with_ci_floor_and_failure(tmp_path):
    res = tmp_path / "r.jsonl"
    a = Cell("paco_fr:runs/smoke/paco/encoder.safetensors", "expression", "synthface", "linear")
    b = Cell("random:vit_tiny", "expression", "synthface", "linear")
    floor = Cell("floor:input-free", "expression", "synthface", "floor")
    failed = Cell("mae:x.pth", "expression", "synthface", "linear")
    tb = 'Traceback (most recent call last):\n  File "x", line 1\nValueError: broken thing\nlayout line\n'
    c = Cell("mae:m.pth", "expression", "synthface", "linear")
    rows = [_row(a, 40.0, ci=[35.5, 44.25]), _row(b, 10.0), _row(floor, 14.29),
            _row(failed, 0, status="failed", error=tb), _row(c, 16.67, ci=[12.67, 21.33])]
    res.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = format_run_table([a, b, failed, Cell("x:y", "parsing", "lapa", "frozen")], res)
    lines = text.splitlines()
    assert "95% CI" in lines[0] and "vs floor" in lines[0]
    assert "paco/encoder.safetensors" in lines[2] and "acc 40.00" in lines[2] and "[35.50, 44.25]" in lines[2]
    assert "+25.71 (beats the floor)" in lines[2]
    assert "-4.29 (untested: no interval)" in lines[3]
    # above the floor on its sign, but the interval includes it: the report's verdict, not the sign
    assert "+2.38 (does not beat the floor)" in format_run_table([c], res)
    assert "FAILED" in lines[4] and "ValueError: broken thing" in lines[4]
    assert "not run" in lines[5]
    assert "random:vit_tiny@64/8/d2" in format_run_table([Cell("random:vit_tiny@64/8/d2", "expression", "synthface",
                                                                 "linear")], res)


def test_table_without_ci_or_floor_drops_the_columns(tmp_path):
    res = tmp_path / "r.jsonl"
    b = Cell("random:vit_tiny", "expression", "synthface", "linear")
    res.write_text(json.dumps(_row(b, 10.0)) + "\n")
    text = format_run_table([b], res)
    assert "95% CI" not in text and "vs floor" not in text and "acc 10.00" in text


def test_run_prints_the_table(tmp_path, capsys, monkeypatch):
    from bench_tasks.plan.profiles import PROFILES

    monkeypatch.setitem(PROFILES, "smoke", PROFILES["smoke"])  # --set registers a changed smoke: undo it after
    res = tmp_path / "r.jsonl"
    # the floor and one linear cell on a few faces (no ceiling, no probe): the table, not the numbers
    rc = main(["run", "--tasks", "expression", "--datasets", "synthface", "--backbones", "random:vit_tiny@64/8/d1",
               "--fractions", "1", "--results", str(res), "--work-dir", str(tmp_path / "w"), "--no-progress",
               "--no-ceilings", "--no-probes", "--set", "synthface_train=96", "--set", "synthface_val=32",
               "--set", "synthface_test=64", *one_lr_set(("linear.lr_grid",))])
    out = capsys.readouterr().out
    assert rc == 0
    assert "task/dataset" in out and "expression/synthface" in out and "acc " in out
    assert "vs floor" in out and "(floor)" in out


@pytest.mark.parametrize("uri,shown", [
    ("paco_fr:runs/cpu/paco/encoder.safetensors", "paco_fr:paco/encoder.safetensors"),  # folder and name
    ("timm:vit_small_patch16_224:weights/dir/w.pth", "timm:vit_small_patch16_224:dir/w.pth"),  # model kept
    ("timm:vit_small_patch16_224", "timm:vit_small_patch16_224"),
    ("timm:vit_small_patch16_224:w.pth", "timm:vit_small_patch16_224:w.pth"),  # no folder: as is
    ("random:vit_tiny@32/16/d1", "random:vit_tiny@32/16/d1"),  # an architecture, not a file
    ("random:", "random:"),
    ("floor:input-free", "floor:input-free"),
    ("farl:C:/weights/farl.pth", "farl:weights/farl.pth"),
    ("paco_fr:/abs/path/runs/smoke/abl_codebook_2048/encoder.safetensors", "...l_codebook_2048/encoder.safetensors"),
    ("random:vit_tiny_with_an_extremely_long_spec_name_over_width@112/16", "...ly_long_spec_name_over_width@112/16"),
])
def test_backbone_column(uri, shown):
    assert _short_backbone(uri) == shown and len(shown) <= 38
