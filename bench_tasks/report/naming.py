"""Display names: tasks, datasets, metrics, and the method of a result row.

What a row's backbone is comes from the row itself: its `method` block (bench_tasks.store.method,
written by the runner), never from folder names. `method_info(row)` turns that block into the
report's MethodInfo (label, kind, ablation component and setting, order in tables).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bench_tasks.plan.suite import method_of_row
from bench_tasks.store.method import CEILING_LABEL, COMPONENTS, FLOOR_LABEL, METHOD_LABELS, METHOD_ORDER

TASK_ORDER = ["parsing", "landmarks", "attributes", "expression", "recognition"]
TASK_NAMES = {"parsing": "Parsing", "landmarks": "Landmarks", "attributes": "Attributes",
              "expression": "Expression", "recognition": "Recognition"}

# canonical dataset id -> display name; order = column order within a task
DATASET_NAMES = {
    "synthface": "SynthFace", "lapa": "LaPa", "celebamask_hq": "CelebAMask-HQ", "300w": "300W",
    "wflw": "WFLW", "aflw19": "AFLW-19", "celeba": "CelebA", "rafdb": "RAF-DB",
    "affectnet7": "AffectNet-7", "lfw": "LFW",
}
_DATASET_ALIASES = {
    "celebamaskhq": "celebamask_hq", "celebahqmask": "celebamask_hq", "aflw": "aflw19",
    "aflw19": "aflw19", "ibug300w": "300w", "w300": "300w", "300w": "300w", "rafdb": "rafdb",
    "raf": "rafdb", "affectnet": "affectnet7", "affectnet7": "affectnet7", "synthface": "synthface",
    "lapa": "lapa", "wflw": "wflw", "celeba": "celeba", "lfw": "lfw",
}


def canon_dataset(name: str) -> str:
    squashed = re.sub(r"[^a-z0-9]", "", str(name).lower())
    return _DATASET_ALIASES.get(squashed, str(name).lower())


REPORTED_APART = " (reported)"  # suffix of a column holding published numbers kept apart from ours


def dataset_name(ds: str) -> str:
    if ds.endswith(REPORTED_APART):
        return dataset_name(ds[: -len(REPORTED_APART)]) + REPORTED_APART
    return DATASET_NAMES.get(canon_dataset(ds), ds)


def task_name(task: str) -> str:
    return TASK_NAMES.get(task, task.capitalize())


_METRIC_NAMES = [
    (r"^nme_?diag", "NME_diag"), (r"^nme_?box", "NME_box"), (r"^nme", "NME"), (r"^fr", "FR"),
    (r"^auc", "AUC"), (r"^(f1|mean_?f1|f1_?mean|mf1)", "F1"), (r"^miou", "mIoU"),
    (r"^(macc|mean_?acc|acc_?mean|mean_accuracy)", "mAcc"), (r"^(acc|accuracy|top1)", "Acc"),
    (r"^tar", "TAR"), (r"^eer", "EER"), (r"^balanced_?acc", "bAcc"),
]


def metric_name(metric: str) -> str:
    m = str(metric).lower()
    for pat, disp in _METRIC_NAMES:
        if re.match(pat, m):
            return disp
    return metric


def lower_is_better(metric: str) -> bool:
    m = str(metric).lower()
    return m.startswith(("nme", "fr", "eer", "loss", "mse", "err"))


def task_sort_key(task: str):
    return (TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER), task)


def dataset_sort_key(ds: str):
    if ds.endswith(REPORTED_APART):
        return (*dataset_sort_key(ds[: -len(REPORTED_APART)]), 1)
    order = list(DATASET_NAMES)
    c = canon_dataset(ds)
    return (order.index(c) if c in order else len(order), c)


# ----------------------------------------------------------------------------- methods

__all__ = ["CEILING_LABEL", "COMPONENTS", "FLOOR_LABEL", "METHOD_LABELS", "METHOD_ORDER", "MethodInfo",
           "method_info"]
_KIND_OF_ROLE = {"main": "main", "control": "main", "ablation": "ablation", "floor": "floor", "ceiling": "ceiling"}


@dataclass
class MethodInfo:
    uri: str
    label: str
    method: str = ""  # the block's `method`: paco, mae, farl, mcf, random, supervised, floor, timm, ...
    kind: str = "main"  # "main" | "ablation" | "floor" | "ceiling" (from the block's role)
    group: str | None = None  # ablation component (bench_tasks.store.method.COMPONENTS)
    setting: str | None = None  # ablation setting shown in the ablation table
    run: str | None = None  # the study run the encoder came from (its folder under runs/<profile>/)
    settings: dict = field(default_factory=dict)  # study runs: every component's setting
    compute: dict = field(default_factory=dict)  # the run's summary.json `compute` block (paco_fr/flops.py)
    diagnostics: dict = field(default_factory=dict)  # the run's summary.json `diagnostics` block
    order: tuple = ()


def method_info(row: dict) -> MethodInfo:
    """The MethodInfo of a result row, from its `method` block (bench_tasks.plan.suite.method_of_row
    derives one for rows written before blocks existed)."""
    uri = str((row.get("cell") or {}).get("backbone", "?"))
    b = method_of_row(row)
    method, role = str(b.get("method", "")), str(b.get("role", "main"))
    kind = _KIND_OF_ROLE.get(role, "main")
    info = MethodInfo(uri, str(b.get("label") or uri), method, kind, run=b.get("run"),
                      settings=dict(b.get("settings") or {}), compute=dict(b.get("compute") or {}),
                      diagnostics=dict(b.get("diagnostics") or {}))
    if kind == "floor":
        info.order = (-1, 0, uri)
    elif kind == "ceiling":
        info.order = (3, 0, uri)
    elif kind == "ablation":
        comp = str(b.get("component") or "other")
        info.group, info.setting = comp, str(b.get("setting", ""))
        info.order = (1, list(COMPONENTS).index(comp) if comp in COMPONENTS else len(COMPONENTS),
                      _num_or_str(info.setting))
    else:
        info.order = (0, METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), uri)
    return info


def is_full_paco(info: MethodInfo) -> bool:
    """The full PaCo-FR row the ablation tables compare against."""
    return info.method == "paco" and info.kind == "main"


def _num_or_str(s):
    try:
        return (0, float(s), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(s))
