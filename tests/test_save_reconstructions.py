"""save_reconstructions: a study run's reconstructions.npz, written once, by whichever of the
processes sharing a study gets there; two processes saving the same run at the same moment must
both succeed (they once shared one temporary file, and the second `replace` found it gone)."""

import json
import os

import numpy as np

from bench_tasks.report import figures


def _run_dir(tmp_path, method="paco", role="main"):
    d = tmp_path / "paco"
    d.mkdir()
    (d / "method.json").write_text(json.dumps({"method": method, "role": role}))
    return d


def _fake_load(calls):
    def load(runs, image_size, n_faces):
        calls.append(n_faces)
        rng = np.random.default_rng(0)
        arrays = {k: rng.random((n_faces, 3, 8, 8)) for k in ("original", "corrupted", "reconstructed")}
        return {"run": arrays}, []
    return load


def test_writes_float16_once_and_only_for_runs_the_figures_read(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(figures, "load_reconstructions", _fake_load(calls))
    run = _run_dir(tmp_path)
    assert figures.save_reconstructions(run) is None
    with np.load(run / "reconstructions.npz") as z:
        assert sorted(z.files) == ["corrupted", "original", "reconstructed"]
        assert z["original"].dtype == np.float16 and z["original"].shape == (4, 3, 8, 8)
    assert figures.save_reconstructions(run) is None and len(calls) == 1  # already there: left alone
    mae = tmp_path / "mae"
    mae.mkdir()
    (mae / "method.json").write_text(json.dumps({"method": "mae", "role": "main"}))
    assert figures.save_reconstructions(mae) is None and not (mae / "reconstructions.npz").exists()
    assert not list(tmp_path.rglob("*.tmp.npz"))


def test_two_processes_saving_the_same_run_at_once_both_succeed(tmp_path, monkeypatch):
    """The interleaving that stopped a study process: process A writes its temporary file, process
    B writes and renames its own in the meantime, then A renames. Simulated in one process: A's
    write runs B's whole save (under another pid) before returning."""
    monkeypatch.setattr(figures, "load_reconstructions", _fake_load([]))
    run = _run_dir(tmp_path)
    real_savez = np.savez_compressed
    pid = {"now": 1001}
    monkeypatch.setattr(os, "getpid", lambda: pid["now"])
    nested = []

    def savez_then_other_process(file, **arrays):
        real_savez(file, **arrays)
        if not nested:  # process A, between its write and its rename: process B saves the run
            nested.append(True)
            pid["now"] = 1002
            try:
                assert figures.save_reconstructions(run) is None
            finally:
                pid["now"] = 1001

    monkeypatch.setattr(figures.np, "savez_compressed", savez_then_other_process)
    assert figures.save_reconstructions(run) is None  # A: its own temporary file is still there
    assert nested and (run / "reconstructions.npz").is_file()
    assert not list(run.glob("*.tmp.npz"))
