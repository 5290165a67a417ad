"""PaCo-FR diagnostics: hand-worked copy baseline, perplexity and top-1 values,
gradient norms per loss term, and the `diagnostics` block of a tiny run's summary.json."""

from __future__ import annotations

import json
import math

import pytest
import torch

from paco_fr.config import load_config
from paco_fr.diagnostics import (
    DiagnosticWindow,
    copy_baseline,
    gradient_norms,
    information_free_baseline,
    perplexity_and_usage,
    top1_agreement,
)
from paco_fr.engine import train

TARGET = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
REVERSED = torch.tensor([[4.0, 3.0, 2.0, 1.0]])


def test_copy_baseline_hand_worked():
    # raw pixels: differences (3, 1, -1, -3) -> MSE (9+1+1+9)/4 = 5, L1 (3+1+1+3)/4 = 2
    assert copy_baseline(REVERSED, TARGET, norm_pix_loss=False, kind="mse").item() == pytest.approx(5.0)
    assert copy_baseline(REVERSED, TARGET, norm_pix_loss=False, kind="l1").item() == pytest.approx(2.0)
    # norm_pix: the reversed patch normalises to minus the target's normalisation, so the error is
    # 2 z with mean(z^2) = biased / unbiased variance = 3/4 -> 4 * 3/4 = 3
    assert copy_baseline(REVERSED, TARGET, norm_pix_loss=True, kind="mse").item() == pytest.approx(3.0, rel=1e-5)
    # a token equal to the patch up to brightness / contrast costs nothing in norm_pix space
    assert copy_baseline(TARGET * 2 + 5, TARGET, norm_pix_loss=True, kind="mse").item() == pytest.approx(0.0, abs=1e-6)
    # information-free prediction (the mask-token control): zeros against z -> mean(z^2) = 3/4
    assert information_free_baseline(TARGET, True, "mse").item() == pytest.approx(0.75, rel=1e-5)


def test_perplexity_usage_and_top1_hand_worked():
    assert perplexity_and_usage(torch.tensor([2.0, 2.0, 0.0, 0.0])) == pytest.approx({"perplexity": 2.0, "usage": 0.5})
    assert perplexity_and_usage(torch.ones(4)) == pytest.approx({"perplexity": 4.0, "usage": 1.0})
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert perplexity_and_usage(torch.tensor([3.0, 1.0]))["perplexity"] == pytest.approx(math.exp(h), rel=1e-5)
    assert perplexity_and_usage(torch.zeros(3)) == {"perplexity": 0.0, "usage": 0.0}
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])
    assert top1_agreement(logits, torch.tensor([1, 0, 0, 2])).item() == pytest.approx(0.5)


def test_gradient_norms_and_shares():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    other = torch.nn.Parameter(torch.tensor(1.0))
    parts = {"a": (3 * w).sum(), "b": (w * w).sum(), "c": other * 2}  # grads (3,3), (2,4), none
    g = gradient_norms(parts, [w])
    assert g["gnorm_a"] == pytest.approx(math.sqrt(18)) and g["gnorm_b"] == pytest.approx(math.sqrt(20))
    assert g["gnorm_c"] == 0.0
    assert g["gshare_a"] + g["gshare_b"] == pytest.approx(1.0) and g["gshare_c"] == 0.0
    assert w.grad is None  # nothing accumulated: the training backward comes after


def test_diagnostic_window_averages_and_resets():
    win = DiagnosticWindow(("x", "y"))
    win.add({"x": torch.tensor(1.0)})
    win.add({"x": torch.tensor(3.0)})
    assert win.mean() == {"x": 2.0}  # y never given: left out
    assert win.mean() == {}


TINY = [
    "model.img_size=32", "model.patch_size=8", "model.depth=1", "decoder.dim=32", "decoder.depth=1",
    "codebook.num_tokens=32", "belief.hidden=32", "data.num_images=32", "train.batch_size=8",
    "train.log_every=2", "train.snapshot_every=0", "train.ckpt_every=0", "train.progress=false",
    "train.warmup_steps=1", "train.threads=1", "incubation.steps=2", "train.steps=4",
]


def test_tiny_run_summary_has_the_diagnostics_block(tmp_path):
    # SynthFace (with its landmarks: per-face region maps through the engine's h-flip)
    cfg = load_config(None, [*TINY, "data.source=synthface", f"data.root={tmp_path / 'sf'}"])
    train(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    d = summary["diagnostics"]
    for k in ("rec", "copy_baseline", "belief_top1", "token_patch_mse", "codebook_perplexity", "codebook_usage",
              "spatial", "spatial_grad_share"):
        assert k in d and math.isfinite(d[k]), k
    assert 0.0 < d["spatial_grad_share"] < 1.0 and d["grad_shares"]["rec"] == pytest.approx(1 - d["spatial_grad_share"])
    assert d["window_end_step"] == 4 and d["grad_log_steps"] == [2, 4] and 0.0 <= d["belief_top1"] <= 1.0
    log = [json.loads(ln) for ln in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all("gshare_spatial" in r and "diag_copy_baseline" in r for r in log if "loss" in r)


def test_mask_token_control_summary(tmp_path):
    cfg = load_config(None, [*TINY, "data.source=random", "mask.replace=mask_token", "diagnostics.grad_every=3"])
    train(cfg, tmp_path / "run")
    d = json.loads((tmp_path / "run" / "summary.json").read_text())["diagnostics"]
    assert d["grad_log_steps"] == [4]  # log steps 2 and 4; 2 is not a multiple of 3, 4 is the last
    assert d["copy_baseline_of"].startswith("information-free") and "belief_top1" not in d
    assert "codebook_perplexity" not in d and math.isfinite(d["copy_baseline"])


def test_report_diagnostics_table(tmp_path):
    from bench_tasks.report.diagnostics import diagnostics_frame, write_diagnostics_table
    from bench_tasks.report.naming import method_info
    from bench_tasks.store.method import block

    blocks = {
        "paco": {"rec": 0.40, "copy_baseline": 0.50, "spatial": 0.3, "spatial_grad_share": 0.45, "belief_top1": 0.2,
                 "token_patch_mse": 0.05, "codebook_perplexity": 150.0, "codebook_usage": 0.9, "window_end_step": 100},
        "abl_learned_mask_token": {"rec": 0.60, "copy_baseline": 0.75, "spatial": 0.4, "spatial_grad_share": 0.5},
        "mae": None,  # no diagnostics block: not a row
    }
    methods = {}
    for name, diag in blocks.items():
        role, comp = ("ablation", "replacement") if name.startswith("abl_") else ("main", "")
        b = block("mae" if name == "mae" else "paco", role, comp, label={"paco": "PaCo-FR (ours)"}.get(name, name),
                  run=name, **({"diagnostics": diag} if diag else {}))
        uri = f"paco_fr:runs/cpu/{name}/encoder.safetensors"
        methods[uri] = method_info({"cell": {"backbone": uri}, "method": b})
    df = diagnostics_frame(methods)
    assert list(df["run"]) == ["paco", "abl_learned_mask_token"]
    assert df.set_index("run").loc["paco", "rec_minus_copy"] == pytest.approx(-0.10)
    files = write_diagnostics_table(methods, tmp_path)
    md = (tmp_path / "diagnostics.md").read_text()
    assert files == ["diagnostics.md", "diagnostics.csv"] and "PaCo-FR (ours)" in md and "45.0 %" in md
    assert write_diagnostics_table({}, tmp_path / "x") == []
