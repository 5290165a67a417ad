"""The device study: its pieces against hand-worked values. The whole one-call script end to end on
the CPU at toy size (`--tiny`: the same code path the GPU call runs) is tests/test_toy_study.py, on the
toy study that `run --all`'s checks share."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench_tasks.contracts import Cell
from bench_tasks.plan.profiles import get_profile
from paco_fr.throughput import format_suite_markdown, suite_ratios

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from device_study import order_cells, pretrain_steps_for_budget, study_settings  # noqa: E402


def test_gpu_profile_and_config_agree():
    from paco_fr.config import load_config

    prof = get_profile("gpu")
    cfg = load_config("gpu")
    assert (cfg["model"]["arch"], cfg["model"]["img_size"], cfg["model"]["patch_size"]) == ("vit_small", 112, 16)
    assert prof.image_size == prof.dense_size == cfg["model"]["img_size"]
    assert len(prof.seeds) >= 2
    # a few hundred steps: the exported EMA must not be dominated by the initial weights
    assert cfg["train"]["ema"] <= 0.99


def test_pretrain_steps_for_budget_hand_worked():
    # 4 objectives at 10+20+30+40 ms = 0.1 s per "suite step"; x1.15 overhead = 0.115 s; 120 s minus
    # 4 runs x 15 s of set-up = 60 s -> 521 steps
    steps = pretrain_steps_for_budget({"paco": 0.01, "mae": 0.02, "farl": 0.03, "mcf": 0.04}, 120.0)
    assert steps == 521
    assert pretrain_steps_for_budget({"paco": 0.01, "mae": 0.02, "farl": 0.03, "mcf": 0.04}, 120.0,
                                     overhead=1.0, fixed_s_per_run=0.0) == 1200
    assert pretrain_steps_for_budget({"paco": 10.0}, 5.0, min_steps=100) == 100  # floor
    assert pretrain_steps_for_budget({"paco": 1e-6}, 100.0, max_steps=500) == 500  # cap
    assert pretrain_steps_for_budget({}, 100.0, min_steps=7) == 7  # no calibration -> the minimum


def test_order_cells_seed0_and_cheap_tasks_first():
    bbs = ("supervised:vit_small@112/16", "random:vit_small@112/16", "paco_fr:runs/gpu/mae/encoder.safetensors",
           "paco_fr:runs/gpu/paco/encoder.safetensors", "floor:input-free")
    cells = [Cell(b, t, "synthface", "linear", 1.0, s, "gpu") for s in (1, 0) for t in ("parsing", "attributes")
             for b in bbs]
    out = order_cells(cells)
    assert [c.seed for c in out] == [0] * 10 + [1] * 10
    assert [c.task for c in out[:10]] == ["attributes"] * 4 + ["parsing"] * 4 + ["attributes", "parsing"]
    assert [c.backbone.split(":")[0] if ":runs" not in c.backbone else c.backbone.split("/")[-2]
            for c in out[:4]] == ["floor", "paco", "mae", "random"]
    assert all(c.backbone.startswith("supervised:") for c in out[8:10])


def _row(obj, mode, ips, flops=1e12):
    return {"objective": obj, "mode": mode, "status": "ok", "img_per_s": ips, "step_ms": 1e3 * 256 / ips,
            "flops_per_step": flops, "model_tflops": flops * ips / 256 / 1e12, "mfu": 0.4, "peak_mem_gib": 10.0}


def test_throughput_ratios_and_table():
    res = {"device": "cuda (X)", "torch": "2", "timm": "1", "python": "3.12", "cuda": "13", "arch": "vit_base",
           "img_size": 224, "patch_size": 16, "depth": None, "batch": 256, "steps": 10, "warmup": 3,
           "amp_bf16": True, "peak_bf16_tflops_measured": 800.0,
           "rows": [_row("simmim", "eager", 2000), _row("paco", "eager", 1800),
                    _row("simmim", "compiled", 3000), _row("paco", "compiled", 2700),
                    {"objective": "mcf", "mode": "compiled", "status": "skipped: out of time"}]}
    r = suite_ratios(res)
    assert r["paco/simmim (eager)"] == pytest.approx(0.9)
    assert r["paco/simmim (compiled)"] == pytest.approx(0.9)
    assert r["simmim compiled/eager"] == pytest.approx(1.5)
    md = format_suite_markdown(res)
    assert "skipped: out of time" in md and "0.90" in md and "800 TFLOP/s" in md


def test_tiny_settings_are_the_cpu_path():
    st = study_settings("gpu", tiny=True)
    assert st["profile"] == "smoke" and st["throughput"]["arch"] == "vit_tiny"
    full = study_settings("gpu", tiny=False)
    assert full["profile"] == "gpu" and full["throughput"]["arch"] == "vit_base" and full["throughput"]["batch"] == 256
    # the tiny rehearsal shrinks the profile (few images, one head lr); the GPU call runs the profile as it is
    assert st["profile_set"]["synthface_train"] < get_profile("smoke").synthface_train
    assert full["profile_set"] == {}
