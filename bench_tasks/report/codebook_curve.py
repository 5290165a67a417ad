"""The codebook-size figure as a result: the masked-region reconstruction error against the
codebook size (log axis), every pre-training run a point, the mean over runs with its 95 % interval,
the pasted tokens' own error (what the decoder starts from) and the decoder's gain over it beside it,
code usage and steps at matched FLOPs in the caption.

The masked region is the set of patches the corruption replaced (where the corrupted image differs
from the original; the visible patches are copied exactly, so an error over all pixels would halve
the effect). Errors are mean squared errors in [0, 1] pixel units over those patches, per run the
mean over its faces (the same SynthFace test faces for every run). Reads each run's
`reconstructions.npz` (or reconstructs, bench_tasks.report.figures.load_reconstructions).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

from . import figures as F
from .frames import RUNS_PREFIX
from .naming import is_full_paco


def masked_errors(original, corrupted, reconstructed, patch: int = 8, tol: float = 1e-3) -> dict | None:
    """{"masked": reconstruction MSE over the replaced patches, "pasted": the corrupted image's MSE
    there, "gain": pasted − masked, "masked_share": share of patches replaced}; arrays (B, 3, H, W) or
    (B, H, W, 3) in [0, 1]. None when no patch was replaced."""
    o, c, r = (F._to_hwc(np.asarray(x, dtype=np.float32)) for x in (original, corrupted, reconstructed))
    b, h, w, _ = o.shape
    gh, gw = h // patch, w // patch
    diff = np.abs(c - o)[:, :gh * patch, :gw * patch].reshape(b, gh, patch, gw, patch, 3)
    replaced = diff.max(axis=(2, 4, 5)) > tol  # (B, gh, gw)
    if not replaced.any():
        return None
    pix = np.repeat(np.repeat(replaced, patch, axis=1), patch, axis=2)  # (B, gh*patch, gw*patch)
    o, c, r = (x[:, :gh * patch, :gw * patch] for x in (o, c, r))
    se_r = ((r - o) ** 2).mean(-1)
    se_c = ((c - o) ** 2).mean(-1)
    masked = float(np.mean([se_r[i][pix[i]].mean() for i in range(b) if pix[i].any()]))
    pasted = float(np.mean([se_c[i][pix[i]].mean() for i in range(b) if pix[i].any()]))
    return {"masked": masked, "pasted": pasted, "gain": pasted - masked, "masked_share": float(replaced.mean())}


def _patch(run_dir: Path) -> int:
    import json

    try:
        cfg = json.loads((run_dir / "summary.json").read_text()).get("config") or {}
        return int((cfg.get("model") or {}).get("patch_size") or 8)
    except (OSError, ValueError, TypeError):
        return 8


def codebook_points(methods: dict, runs_dir, profile: str, image_size: int | None = None) -> tuple[list[dict], list[str]]:
    """One point per pre-training run of the full PaCo-FR or a codebook ablation (every run, not one
    per size) whose folder exists: size, run, errors, code usage, steps; and notes."""
    points, notes = [], []
    for uri, m in sorted(methods.items(), key=lambda kv: str(kv[0])):
        if str(uri).startswith(RUNS_PREFIX) or not m.run or not (m.group == "codebook" or is_full_paco(m)):
            continue
        size = F.codebook_size_of(m)
        try:
            size = int(size)
        except (TypeError, ValueError):
            continue
        rd = next((d for d in (Path(runs_dir) / profile / m.run, Path(runs_dir) / m.run) if d.is_dir()), None)
        if rd is None:
            continue
        data, more = F.load_reconstructions({size: rd}, image_size)
        notes += more
        if size not in data:
            continue
        err = masked_errors(data[size]["original"], data[size]["corrupted"], data[size]["reconstructed"], _patch(rd))
        if err is None:
            notes.append(f"{m.run}: no replaced patch in its reconstructions")
            continue
        points.append({"size": size, "run": m.run, **err, "faces": int(len(data[size]["original"])),
                       "code_usage": (m.diagnostics or {}).get("codebook_usage"),
                       "steps": (m.compute or {}).get("steps")})
    return points, notes


def _summary(vals: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t-interval over runs (the single value twice for one run)."""
    v = np.asarray(vals, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan"), float("nan")
    half = float(student_t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def codebook_curve(points: list[dict], out_path: str | Path) -> tuple[Path | None, str]:
    """Draw the figure and write its CSV beside it; -> (png path or None, caption)."""
    if not points:
        return None, "no PaCo-FR or codebook-ablation run with reconstructions"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_path = Path(out_path)
    sizes = sorted({p["size"] for p in points})
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    rows = []
    for s in sizes:
        ps = [p for p in points if p["size"] == s]
        m, lo, hi = _summary([p["masked"] for p in ps])
        pm, _, _ = _summary([p["pasted"] for p in ps])
        g, glo, ghi = _summary([p["gain"] for p in ps])
        ax.scatter([s] * len(ps), [p["masked"] for p in ps], color="0.6", s=14, zorder=2)
        ax2.scatter([s] * len(ps), [p["gain"] for p in ps], color="0.6", s=14, zorder=2)
        if math.isfinite(lo):
            ax.errorbar([s], [m], yerr=[[m - lo], [hi - m]], fmt="o", color="k", capsize=4, zorder=3)
            ax2.errorbar([s], [g], yerr=[[g - glo], [ghi - g]], fmt="o", color="k", capsize=4, zorder=3)
        else:
            ax.plot([s], [m], "o", color="k", zorder=3)
            ax2.plot([s], [g], "o", color="k", zorder=3)
        ax.plot([s], [pm], "s", mfc="none", color="tab:orange", zorder=3)
        usage = [p["code_usage"] for p in ps if p["code_usage"] is not None]
        steps = [p["steps"] for p in ps if p["steps"] is not None]
        rows.append({"codebook": s, "runs": len(ps), "masked_mse": m, "masked_lo": lo, "masked_hi": hi,
                     "pasted_mse": pm, "decoder_gain": g, "gain_lo": glo, "gain_hi": ghi,
                     "code_usage": float(np.mean(usage)) if usage else None,
                     "steps": int(np.mean(steps)) if steps else None})
    ax.plot([], [], "s", mfc="none", color="tab:orange", label="pasted tokens (no decoder)")
    ax.plot([], [], "o", color="k", label="reconstruction: mean, 95 % interval over runs")
    ax.scatter([], [], color="0.6", s=14, label="one pre-training run")
    for a, title in ((ax, "masked-region MSE"), (ax2, "decoder gain (pasted − reconstruction MSE)")):
        a.set_xscale("log", base=2)
        a.set_xticks(sizes)
        a.set_xticklabels([str(s) for s in sizes])
        a.set_xlabel("codebook size")
        a.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    with open(out_path.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    faces = sorted({p["faces"] for p in points})
    caption = ("Masked-region reconstruction error (MSE over the replaced patches, pixels in [0, 1]) against "
               f"codebook size; grey: each pre-training run (mean over its {'/'.join(map(str, faces))} test faces); "
               "black: mean and 95 % t-interval over runs (none with one run); orange: the pasted tokens' own "
               "error. Per size: " + "; ".join(
                   f"{r['codebook']}: {r['runs']} run(s), code usage "
                   + ("—" if r["code_usage"] is None else f"{100 * r['code_usage']:.0f} %")
                   + ", " + ("—" if r["steps"] is None else f"{r['steps']} steps") for r in rows)
               + " (every run at the same FLOPs).")
    return out_path, caption
