"""The pre-training compute table: FLOPs, images and wall time of every pre-trained run in the
results, read from the rows' method blocks (`compute`, copied by the runner from the run's
summary.json, written by paco_fr/flops.py), with what the study's
budget matching charged to it (MCF-style: its teacher's pre-training included)."""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from .naming import MethodInfo

COLUMNS = ["Method", "run", "steps", "GFLOP/step", "TFLOP (run)", "TFLOP charged", "images/step",
           "images seen", "images charged", "wall time (s)", "device"]
FOOTNOTE = ("Model FLOPs of one optimizer step (forward + backward, teacher passes and the text tower included; "
            "`torch.utils.flop_counter`), images = distinct images (PaCo-FR's `split` pairing shows B/2 images "
            "twice per step). \"charged\" adds a teacher's own pre-training (MCF-style). The study matches runs "
            "by `--budget-by` (flops by default): runs/<profile>/budget.json has the plan.")


def compute_frame(methods: dict[str, MethodInfo]) -> pd.DataFrame:
    """One row per pre-trained run whose rows carry a compute block, in table order."""
    rows = []
    for info in sorted(methods.values(), key=lambda m: m.order):
        c = info.compute
        if not isinstance(c, dict) or not c:
            continue
        teacher = c.get("teacher") or {}
        rows.append({
            "Method": info.label, "run": info.run or "", "steps": c.get("steps"),
            "GFLOP/step": c.get("flops_per_step", 0) / 1e9, "TFLOP (run)": c.get("flops_total", 0) / 1e12,
            "TFLOP charged": c.get("charged_flops_total", c.get("flops_total", 0)) / 1e12,
            "images/step": c.get("images_per_step"), "images seen": c.get("images_seen"),
            "images charged": c.get("charged_images_seen", c.get("images_seen")),
            "wall time (s)": c.get("wall_time_s"), "device": c.get("device", ""),
            "teacher": teacher.get("path", ""),
        })
    return pd.DataFrame(rows, columns=[*COLUMNS, "teacher"])


def compute_markdown(df: pd.DataFrame, heading_level: int = 2) -> str:
    if df.empty:
        return ""
    shown = df[COLUMNS].copy()
    for col, fmt in (("GFLOP/step", "{:.3f}"), ("TFLOP (run)", "{:.4g}"), ("TFLOP charged", "{:.4g}"),
                     ("wall time (s)", "{:.0f}")):
        shown[col] = [fmt.format(v) if pd.notna(v) else "–" for v in shown[col]]
    lines = ["#" * heading_level + " Pre-training compute", "",
             tabulate(shown.values.tolist(), headers=COLUMNS, tablefmt="github"), "", FOOTNOTE]
    teachers = [f"- {m}: teacher `{t}`" for m, t in zip(df["Method"], df["teacher"]) if t]
    return "\n".join(lines + ([""] + teachers if teachers else [])) + "\n"
