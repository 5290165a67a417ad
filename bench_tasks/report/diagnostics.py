"""The PaCo-FR diagnostics table: for PaCo-FR and its controls / ablations, the
copy baseline (the loss of pasting the token itself as the prediction) next to the final
reconstruction loss, the spatial term and its share of the encoder's gradient norm, the Belief
Predictor's top-1 agreement with the nearest code and the codebook's perplexity and usage.

Read from result rows only: the `diagnostics` block of each row's method block (copied by the
runner from the run's summary.json, written by paco_fr.engine; values averaged over the last log
window). `write_diagnostics_table(methods, out_dir)` -> the files written (diagnostics.md,
diagnostics.csv), [] when no evaluated run has the block.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .naming import MethodInfo, is_full_paco

COLUMNS = [  # (summary key, column title)
    ("copy_baseline", "Copy baseline"),
    ("rec", "Final rec."),
    ("rec_minus_copy", "Rec. − copy"),
    ("spatial", "Spatial term"),
    ("spatial_grad_share", "Spatial grad share"),
    ("belief_top1", "Belief top-1"),
    ("token_patch_mse", "Token–patch MSE"),
    ("codebook_perplexity", "Perplexity"),
    ("codebook_usage", "Usage"),
]


def diagnostics_frame(methods: dict[str, MethodInfo]) -> pd.DataFrame:
    """One row per evaluated encoder whose rows carry a `diagnostics` block, in table order
    (PaCo-FR first, then its ablations and controls)."""
    recs = []
    for info in sorted(methods.values(), key=lambda m: (not is_full_paco(m), m.order)):
        diag = info.diagnostics
        if not isinstance(diag, dict) or not diag:
            continue
        row = {"run": info.run or "", "method": info.label, "step": diag.get("window_end_step"),
               "copy_baseline_of": diag.get("copy_baseline_of", "")}
        for k, _ in COLUMNS:
            row[k] = diag.get(k)
        if isinstance(row["rec"], (int, float)) and isinstance(row["copy_baseline"], (int, float)):
            row["rec_minus_copy"] = row["rec"] - row["copy_baseline"]
        recs.append(row)
    return pd.DataFrame(recs)


def _fmt(v, key: str) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    if key in ("spatial_grad_share", "belief_top1", "codebook_usage"):
        return f"{100 * v:.1f} %"
    if key == "codebook_perplexity":
        return f"{v:.1f}"
    return f"{v:.4f}"


def to_markdown(df: pd.DataFrame) -> str:
    lines = ["## PaCo-FR diagnostics (each pre-training run's summary.json, carried by its rows; last log window)", "",
             "| Run | Method | " + " | ".join(t for _, t in COLUMNS) + " |",
             "|:--|:--|" + "--:|" * len(COLUMNS)]
    for _, r in df.iterrows():
        lines.append(f"| `{r['run']}` | {r['method']} | " + " | ".join(_fmt(r[k], k) for k, _ in COLUMNS) + " |")
    lines += ["", "Copy baseline: the reconstruction loss obtained by pasting the replaced patch's token as its "
              "prediction, in the loss's own space (for the learned-mask-token control, whose token says "
              "nothing about the patch: the information-free prediction). A final reconstruction loss at or "
              "above it means the decoder does no better than copying the token. Spatial grad share: the "
              "spatial term's gradient norm w.r.t. the encoder over the sum of the terms' norms, averaged "
              "over the last 5 log steps. Belief top-1: predictor's argmax = nearest code. Perplexity / usage: codebook codes "
              "chosen in the last window (exp entropy / fraction used).", ""]
    return "\n".join(lines)


def write_diagnostics_table(methods: dict[str, MethodInfo], out_dir) -> list[str]:
    df = diagnostics_frame(methods)
    if df.empty:
        return []
    out_dir = Path(out_dir)
    (out_dir / "diagnostics.md").write_text(to_markdown(df))
    df.to_csv(out_dir / "diagnostics.csv", index=False)
    return ["diagnostics.md", "diagnostics.csv"]
