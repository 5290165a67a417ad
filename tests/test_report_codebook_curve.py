"""The codebook-size result: errors over the replaced patches only, every run a point, a CSV and a
caption with code usage and steps."""

from __future__ import annotations

import numpy as np

from bench_tasks.report.codebook_curve import codebook_curve, masked_errors


def _images(seed: int, recon_noise: float):
    rng = np.random.default_rng(seed)
    orig = (0.7 * rng.random((2, 3, 16, 16))).astype(np.float32)  # + noise stays inside [0, 1]
    corr, recon = orig.copy(), orig.copy()
    corr[:, :, :8, :8] = 0.5  # one patch of four replaced (patch 8)
    recon[:, :, :8, :8] = orig[:, :, :8, :8] + recon_noise
    return orig, corr, recon


def test_errors_are_over_the_replaced_patches_only():
    o, c, r = _images(0, 0.1)
    e = masked_errors(o, c, r, patch=8)
    assert e["masked_share"] == 0.25
    assert abs(e["masked"] - 0.01) < 1e-6  # not diluted by the copied three quarters (0.0025 over all pixels)
    assert e["pasted"] > e["masked"] and abs(e["gain"] - (e["pasted"] - e["masked"])) < 1e-12
    assert masked_errors(o, o, o) is None  # nothing replaced


def test_curve_has_every_run_and_a_caption(tmp_path):
    pts = []
    for i, (size, noise) in enumerate([(64, 0.2), (256, 0.1), (256, 0.12), (256, 0.11)]):
        o, c, r = _images(i, noise)
        pts.append({"size": size, "run": f"r{i}", **masked_errors(o, c, r), "faces": 2,
                    "code_usage": 1.0 if size == 64 else 0.5, "steps": 500 + size})
    p, caption = codebook_curve(pts, tmp_path / "fig.png")
    assert p.is_file()
    rows = (tmp_path / "fig.csv").read_text().splitlines()
    assert rows[0].startswith("codebook,runs,masked_mse,masked_lo") and len(rows) == 3
    assert rows[2].split(",")[1] == "3"  # three runs of size 256, one interval over them
    assert "256: 3 run(s), code usage 50 %, 756 steps" in caption
    assert codebook_curve([], tmp_path / "none.png")[0] is None
