"""Published numbers (bench_tasks/reported/reported_numbers.csv, transcribed from PAPER.md).

They are shown as clearly marked "(reported)" rows: measured on the real data sets with
ViT-B/16 and the authors' protocols, so they are never compared (bolded) against our rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .naming import canon_dataset, lower_is_better

REPORTED_CSV = Path(__file__).resolve().parent.parent / "reported" / "reported_numbers.csv"

# the column metric per (task, dataset) for reported numbers; other metrics of the same
# (task, dataset) are variants shown with a note (e.g. PaCo-FR's LaPa *skin* F1)
PRIMARY_METRIC = {
    ("parsing", "lapa"): "f1",
    ("parsing", "celebamask_hq"): "f1",
    ("landmarks", "aflw19"): "nme_diag",
    ("landmarks", "300w"): "nme_full",
    ("landmarks", "wflw"): "nme",
    ("attributes", "celeba"): "macc",
    ("expression", "rafdb"): "acc",
    ("expression", "affectnet7"): "acc",
}
VARIANT_NOTES = {
    "f1_skin": "skin",
    "nme_diag_frontal": "frontal",
    "nme_challenging": "challenging",
}
VARIANT_TEXT = {
    "f1_skin": "F1 of the skin class only, not the mean F1 over classes",
    "nme_diag_frontal": "NME_diag on the frontal subset only, not the full test set",
    "nme_challenging": "NME on the challenging subset only, not the full set",
}
REPORTED_ORDER = ["FaRL ep16", "FaRL ep64", "FaRL (aggregator)", "FaRL via facer", "MCF", "PaCo-FR"]


def load_reported(path: str | Path | None = None) -> pd.DataFrame:
    """Columns: method, task, dataset (canonical id), metric, value, source, note,
    higher_is_better. Empty frame (same columns) when the file is missing or unreadable."""
    cols = ["method", "task", "dataset", "metric", "value", "source", "note", "higher_is_better"]
    try:
        df = pd.read_csv(path or REPORTED_CSV)
    except (OSError, ValueError):
        return pd.DataFrame(columns=cols)
    df["dataset"] = df["dataset"].map(canon_dataset)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df = df.dropna(subset=["value"])
    df["note"] = [
        None if PRIMARY_METRIC.get((t, d), m) == m else VARIANT_NOTES.get(m, m)
        for t, d, m in zip(df["task"], df["dataset"], df["metric"])
    ]
    df["higher_is_better"] = [not lower_is_better(m) for m in df["metric"]]
    return df[cols].reset_index(drop=True)


def reported_label(method: str) -> str:
    return f"{method} (reported)"
