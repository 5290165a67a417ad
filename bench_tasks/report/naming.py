"""Display names: tasks, datasets, metrics, and the "method" of a backbone URI.

The study's convention: backbone URIs like ``paco_fr:runs/<profile>/<name>/encoder.safetensors``;
the run folder ``<name>`` gives the method (``paco`` -> "PaCo-FR (ours)", ``abl_*`` -> an
ablation). Unknown names fall back to the URI itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

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

METHOD_NAMES = {
    "paco": "PaCo-FR (ours)",
    "mae": "MAE",
    "farl": "FaRL-style",
    "mcf": "MCF-style",
    "random": "Random init",
}
# order of the main methods in tables (baselines first, ours last, like the paper)
METHOD_ORDER = ["random", "mae", "farl", "mcf", "paco"]

# ablation groups: id -> (title, summary.json config key, setting of the full PaCo-FR when unknown)
ABLATION_GROUPS = {
    "masking": ("Masking strategy", "mask.strategy", "structured"),
    "codebook": ("Codebook size", "codebook.num_tokens", "default"),
    "k": ("Candidates per patch (k)", "codebook.k", "default"),
    "incubation": ("Incubation stage", "incubation", "on"),
    "spatial": ("Spatial consistency", "spatial.weight", "on"),
}
_ABLATION_PATTERNS = [
    (r"^abl_mask_(.+)$", "masking", lambda m: m.group(1)),
    (r"^abl_codebook_(\d+)$", "codebook", lambda m: m.group(1)),
    (r"^abl_k_?(\d+)$", "k", lambda m: m.group(1)),
    (r"^abl_no_incubation$", "incubation", lambda m: "off"),
    (r"^abl_no_spatial$", "spatial", lambda m: "off"),
]
ABLATION_LABELS = {
    "masking": "PaCo-FR, {} masking",
    "codebook": "PaCo-FR, codebook {}",
    "k": "PaCo-FR, k = {}",
    "incubation": "PaCo-FR, incubation {}",
    "spatial": "PaCo-FR, spatial consistency {}",
}


@dataclass
class MethodInfo:
    uri: str
    label: str
    run_name: str | None = None
    kind: str = "main"  # "main" | "ablation" | "other" | "floor" | "ceiling"
    group: str | None = None  # ablation group id
    setting: str | None = None  # ablation setting shown in the ablation table
    run_dir: str | None = None  # where summary.json was found
    summary: dict = field(default_factory=dict)
    order: tuple = ()


def _get_dotted(d: dict, dotted: str):
    """Look `a.b.c` up in a nested dict, also trying `config`/`cfg` sub-dicts and flat keys."""
    for root in (d.get("config"), d.get("cfg"), d):
        if not isinstance(root, dict):
            continue
        if dotted in root:
            return root[dotted]
        cur = root
        ok = True
        for part in dotted.split("."):
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            else:
                ok = False
                break
        if ok:
            return cur
    return None


def summary_setting(summary: dict, group: str):
    """The ablated setting of a run according to its summary.json, as a display string."""
    if not summary:
        return None
    key = ABLATION_GROUPS[group][1]
    val = _get_dotted(summary, key)
    if val is None:
        return None
    if group == "incubation":
        if isinstance(val, dict):
            val = val.get("enabled", val.get("epochs", val))
        if isinstance(val, bool):
            return "on" if val else "off"
        if isinstance(val, (int, float)):
            return "on" if val else "off"
    if group == "spatial":
        if isinstance(val, (int, float)) and not isinstance(val, bool):
            return "off" if val == 0 else f"on (w={val:g})"
    return str(val)


def run_name_of(uri: str) -> tuple[str, str | None, str | None]:
    """(scheme, run folder name, path) of a backbone URI."""
    scheme, _, rest = uri.partition(":")
    if not rest:
        return uri, None, None
    if scheme in ("random", "supervised", "floor"):
        return scheme, None, None
    p = PurePosixPath(rest)
    name = p.parent.name if p.suffix else p.name
    return scheme, name or None, rest


def _find_run_dir(path: str | None, run_name: str | None, runs_dir, profile) -> Path | None:
    cands = []
    if path:
        p = Path(path)
        cands.append(p.parent if p.suffix else p)
    if run_name and runs_dir is not None:
        rd = Path(runs_dir)
        if profile:
            cands.append(rd / profile / run_name)
        cands.append(rd / run_name)
    for c in cands:
        if (c / "summary.json").is_file():
            return c
    for c in cands:
        if c.is_dir():
            return c
    return None


def read_summary(run_dir: Path | None) -> dict:
    if run_dir is None:
        return {}
    f = Path(run_dir) / "summary.json"
    try:
        data = json.loads(f.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


FLOOR_LABEL = "Floor (input-free)"
CEILING_LABEL = "Ceiling (supervised)"


def method_info(uri: str, runs_dir=None, profile: str | None = None) -> MethodInfo:
    scheme, run, path = run_name_of(uri)
    if scheme == "floor":  # bench_tasks.floors: first row of every table
        return MethodInfo(uri, FLOOR_LABEL, "floor", "floor", order=(-1, 0, uri))
    if scheme == "supervised":  # the ceiling: last measured row
        arch = uri.partition(":")[2]
        return MethodInfo(uri, f"{CEILING_LABEL[:-1]}, {arch})" if arch else CEILING_LABEL, "supervised",
                          "ceiling", order=(3, 0, uri))
    if scheme == "random":
        arch = uri.partition(":")[2]
        label = METHOD_NAMES["random"] + (f" ({arch})" if arch and arch != "vit_tiny" else "")
        return MethodInfo(uri, label, "random", "main", order=(0, METHOD_ORDER.index("random"), uri))
    run_dir = _find_run_dir(path, run, runs_dir, profile) if scheme == "paco_fr" or run else None
    summary = read_summary(run_dir)
    info = MethodInfo(uri, uri, run, "other", run_dir=str(run_dir) if run_dir else None,
                      summary=summary, order=(2, 0, uri))
    if run in METHOD_NAMES and scheme == "paco_fr":
        info.label, info.kind = METHOD_NAMES[run], "main"
        info.order = (0, METHOD_ORDER.index(run), uri)
        return info
    if run:
        for pat, group, setting_fn in _ABLATION_PATTERNS:
            m = re.match(pat, run)
            if m:
                setting = summary_setting(summary, group) or setting_fn(m)
                info.kind, info.group, info.setting = "ablation", group, setting
                info.label = ABLATION_LABELS[group].format(setting)
                info.order = (1, list(ABLATION_GROUPS).index(group), _num_or_str(setting))
                return info
        if run.startswith("abl_"):
            info.kind, info.group, info.setting = "ablation", "other", run[4:]
            info.label = f"PaCo-FR, {run[4:].replace('_', ' ')}"
            info.order = (1, len(ABLATION_GROUPS), (1, 0.0, run))
            return info
    if scheme in ("farl", "mcf", "mae", "timm") and path:
        stem = PurePosixPath(path).stem
        info.label = {"farl": "FaRL ckpt", "mcf": "MCF ckpt", "mae": "MAE ckpt", "timm": "timm"}[scheme] + f" ({stem})"
        info.kind = "main"
        info.order = (0, len(METHOD_ORDER), uri)
    return info


def _num_or_str(s):
    try:
        return (0, float(s), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(s))
