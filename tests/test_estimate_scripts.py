"""The scripts that check the time estimates (scripts/bench_estimates.py: cells run next to their
estimate; scripts/fit_estimates.py: the estimate next to the results files' wall times) keep
working as the harness changes. Their numbers belong to the machine: no timing is asserted."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench_tasks.contracts import Cell

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_estimates_samples_each_kind_and_prints_the_table(tmp_path):
    B = _script("bench_estimates")
    from bench_tasks.plan.floors import FLOOR_URI

    bb = "random:vit_tiny@64/8/d2"
    cells = [Cell(FLOOR_URI, "attributes", "synthface", "floor", profile="smoke"),
             Cell(bb, "attributes", "synthface", "linear", 0.1, profile="smoke"),
             Cell(bb, "attributes", "synthface", "linear", 1.0, profile="smoke"),
             Cell(bb, "parsing", "synthface", "frozen", profile="smoke"),
             Cell(bb, "recognition", "synthface", "cosine", profile="smoke"),
             Cell("supervised:vit_tiny@64/8/d2", "expression", "synthface", "finetune", profile="smoke")]
    assert [B.cell_kind(c) for c in cells] == ["floor", "linear", "linear", "dense", "recognition", "ceiling"]
    assert B.sample(cells, 1) == [cells[0], cells[1], cells[3], cells[4], cells[5]]
    assert B.sample(cells, 2, ("linear",)) == cells[1:3]
    text = B.table([("smoke", "floor", 1.0, 1.2), ("smoke", "floor", 1.0, 1.0), ("cpu", "dense", 10.0, 20.0)])
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["plan", "kind", "cells"] and len(lines) == 3
    assert lines[1].split()[:3] == ["smoke", "floor", "2"] and "outside" not in lines[1]
    assert "outside" in lines[2]
    args = SimpleNamespace(threads=1, ceiling_epochs=2, dense_min_steps=150)
    spec = B.plan_spec("cpu", tmp_path, args)
    assert spec.profile == "cpu" and "ceiling_epochs=2" in spec.set and str(spec.results_path).startswith(str(tmp_path))
    assert B.plan_spec("smoke", tmp_path, args).is_study
    with pytest.raises(SystemExit):
        B.plan_spec("nope", tmp_path, args)


def test_fit_estimates_reads_rows_of_a_results_file(tmp_path, capsys):
    F = _script("fit_estimates")
    src = ROOT / "results" / "paper_cpu.jsonl"
    rows = [json.loads(line) for line in src.read_text().splitlines()[:3]]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert F.main([str(path), "--rows", "--old"]) == 0
    out = capsys.readouterr().out
    assert "ratio" in out and "paper_cpu" in out
    from bench_tasks.plan.cell_costs import Speed

    got = F.estimate_rows([path], Speed(1e11, 1.2e11))
    assert len(got) == 3 and all(r["est"] > 0 and r["took"] > 0 for r in got)


def test_pretraining_images_not_cached_are_a_synthface_stage(tmp_path, monkeypatch):
    from bench_tasks.plan import estimate as E
    from paco_fr.data.synthface.dataset import cache_dir

    monkeypatch.setenv("PACO_FR_DATA", str(tmp_path / "synthface"))
    run = SimpleNamespace(overrides={"data.num_images": 8})
    (split, n, size, seed, root), = E.pretrain_data([run, run], "smoke")
    assert (split, n, seed, root) == ("pretrain", 8, 0, None) and size > 0
    assert list(E.pretrain_data_to_generate([run], "smoke")) == [("pretrain", 8, size)]
    marker = cache_dir(None, split, n, size, seed) / "meta.json"
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    assert E.pretrain_data_to_generate([run], "smoke") == {}


@pytest.mark.slow  # ~2 s alone; it resolves the smoke study and runs a cell
def test_bench_estimates_runs_a_floor(tmp_path, monkeypatch, capsys):
    """The whole script on the smoke plan's floors (seconds; the probe replaced by a fixed speed)."""
    B = _script("bench_estimates")
    from bench_tasks.plan import estimate as E

    monkeypatch.setattr(E, "machine_speed", lambda device="cpu", refresh=None: E.Speed(1e11, 1.2e11))
    monkeypatch.setenv("PACO_FR_CACHE", str(tmp_path / "cache"))  # main sets it; restored afterwards
    threads = torch.get_num_threads()
    try:
        assert B.main(["--plans", "smoke", "--kinds", "floor", "--pretrain-steps", "0", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "(ok)" in out and [ln.split()[:3] for ln in out.splitlines() if ln.startswith("smoke ")] == \
        [["smoke", "floor", "1"]]
