"""What a backbone is: the `method` block every result row carries, in one vocabulary from the
study (bench_tasks.plan.study) to the report (bench_tasks.report).

    {"method": "paco",            # objective / scheme: paco, mae, farl, mcf, random, supervised,
                                  #   floor, timm, ... (the report orders main rows by METHOD_ORDER)
     "role": "ablation",          # one of ROLES
     "component": "codebook",     # ablations: one of COMPONENTS ("" otherwise)
     "setting": "512",            # ablations: the ablated value as shown in tables ("" otherwise)
     "label": "PaCo-FR, codebook 512",   # the row's name in every table and figure
     "run": "abl_codebook_512",   # study runs: the run folder name (never parsed)
     "settings": {"masking": "region", "codebook": "512", ...},  # study runs: every component's value
     "labels_used": "none",       # study runs: what supervision pre-training used (LABELS_USED)
     "pretrain_seed": 0,          # study runs: the pre-training seed (runs of one method share its label)
     "compute": {...}, "diagnostics": {...}}   # copied from the run's summary.json when present

Where a block comes from (`identity_for`, called by the runner for every row):
  1. the study writes `method.json` into each run folder before pre-training
     (`write_run_identity`); paco_fr.export copies it into the encoder's safetensors metadata
     (key `method`), and the study merges it into the run's summary.json;
  2. for any other weights file: `method.json` beside it, else the safetensors metadata `method`;
  3. else it is derived from the URI (`derive_from_uri`: scheme, model and file name, e.g.
     "timm resnet50 (my_run)", "HF dinov2-base", "ArcFace iResNet (ms1mv3_arcface_r100)": a generic
     file name such as arcface_torch's `backbone.pth` is named by its folder; no run-folder conventions);
  4. `python -m bench_tasks run --label NAME` (or `--label URI=NAME`) replaces the label.
Rows written before method blocks existed get theirs from `method_of_row` (`legacy_identity`:
the study's own run list, looked up by run name, see below).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from safetensors import safe_open

from bench_tasks.backbones.base import weights_file
from bench_tasks.contracts import uri_parts

ROLES = ("main", "control", "ablation", "teacher", "floor", "ceiling")


@dataclass(frozen=True)
class Component:
    """An ablated component of PaCo-FR: its table title, the pre-training config key it changes
    and the label of an ablation run (`{}` = the setting)."""

    title: str
    config_key: str
    label: str


COMPONENTS: dict[str, Component] = {
    "masking": Component("Masking strategy", "mask.strategy", "PaCo-FR, {} masking"),
    "codebook": Component("Codebook size", "codebook.num_tokens", "PaCo-FR, codebook {}"),
    "candidates": Component("Candidates per patch (k)", "codebook.k", "PaCo-FR, k = {}"),
    "incubation": Component("Incubation stage", "incubation.epochs", "PaCo-FR, incubation {}"),
    "spatial": Component("Spatial consistency", "spatial.weight", "PaCo-FR, spatial consistency {}"),
    # controls: what replaces a selected patch, and how the Belief Predictor learns
    "replacement": Component("Replacement of masked patches", "mask.replace", "PaCo-FR, replaced by {}"),
    "belief": Component("Belief Predictor training", "belief.detach_weights", "PaCo-FR, belief trained by {}"),
    # where the region map comes from: the canonical map of the aligned face (default, label-free) or
    # each face's ground-truth landmarks (supervision: the ablation abl_regions_gt measures what it adds)
    "regions": Component("Region map", "mask.regions", "PaCo-FR, regions from {}"),
}

METHOD_LABELS = {"paco": "PaCo-FR (ours)", "mae": "MAE", "farl": "FaRL-style", "mcf": "MCF-style",
                 "random": "Random init"}
# order of the main methods in tables (baselines first, ours last, like the paper)
METHOD_ORDER = ["random", "mae", "farl", "mcf", "paco"]
FLOOR_LABEL = "Floor (input-free)"
CEILING_LABEL = "Ceiling (supervised)"
# blocks of a run's summary.json copied into the row's method block when present
PASSED_THROUGH = ("compute", "diagnostics")
# `<scheme>:<file>` URIs: "<name> (<file tag>)"
_CHECKPOINT_LABELS = {"farl": "FaRL ckpt", "mcf": "MCF ckpt", "mae": "MAE ckpt", "arcface": "ArcFace iResNet"}
# `<scheme>:<model>[:<file>]` URIs: "<name> <model> (<file tag>)"
_MODEL_LABELS = {"timm": "timm", "open_clip": "OpenCLIP"}
# file names that say nothing of the weights (arcface_torch's `backbone.pth`, a run's `encoder`):
# the folder names them instead
_GENERIC_STEMS = {"backbone", "model", "encoder", "weights", "checkpoint", "pytorch_model", "open_clip_model",
                  "open_clip_pytorch_model", "state_dict", "ckpt"}


def block(method: str, role: str, component: str = "", setting: str = "", label: str = "", **more) -> dict:
    """One method block (see the module docstring); raises for a role outside ROLES."""
    if role not in ROLES:
        raise ValueError(f"method role {role!r} is not one of {ROLES}")
    if component and component not in COMPONENTS:
        raise ValueError(f"ablation component {component!r} is not one of {sorted(COMPONENTS)}")
    return {"method": method, "role": role, "component": component, "setting": str(setting),
            "label": label or method, **more}


def setting_text(component: str, value) -> str:
    """The display text of a component's config value: incubation epochs 0 -> "off" (else "on"),
    spatial weight 0 -> "off" (else "on (w=<weight>)"), anything else as written."""
    if component == "incubation":
        if isinstance(value, dict):
            value = value.get("enabled", value.get("epochs", value))
        if isinstance(value, (bool, int, float)):
            return "on" if value else "off"
    if component == "spatial" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return "off" if value == 0 else f"on (w={value:g})"
    if component == "replacement":
        return {"mask_token": "learned mask token", "codebook": "codebook tokens"}.get(str(value), str(value))
    if component == "belief":
        return "cross-entropy only" if value else "cross-entropy + reconstruction"
    if component == "regions":
        return {"canonical": "the canonical map", "landmarks": "per-face landmarks"}.get(str(value), str(value))
    return str(value)


def dotted_value(cfg: dict, key: str):
    """cfg['a']['b'] for key 'a.b'; None when a part is missing."""
    cur = cfg
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


# What supervision a pre-training run used (`labels_used` of its method block; the report prints it
# beside every method and calls a comparison of different kinds unequal: bench_tasks.report.supervision).
# The kind is the text before " (".
LABELS_USED = ("none", "captions (noisy)", "captions (oracle)", "landmarks (ground truth)", "landmarks (detected)",
               "landmarks (user file)", "teacher (<which>)")


def labels_used(cfg: dict, teacher: str | None = None) -> str:
    """The `labels_used` text of a pre-training config (paco_fr.config.load_config's full dict):
    PaCo-FR with per-face region maps (`mask.regions: landmarks`, region masking) uses landmarks:
    SynthFace's are its ground truth, a `data.landmarks_file` is a user file (a detector's output
    given as a file is a user file too: its origin is not guessed); FaRL-style uses its captions;
    MCF-style its teacher (`teacher`: the teacher run's name, else the configured path); the
    canonical map of the aligned face, MAE and the rest use none."""
    obj = str(cfg.get("objective"))
    data = cfg.get("data") or {}
    if obj == "farl":
        mode = ((cfg.get("farl") or {}).get("captions") or {}).get("mode", "noisy")
        return f"captions ({mode})"
    if obj == "mcf":
        which = teacher or str((cfg.get("mcf") or {}).get("teacher") or "?")
        return f"teacher ({which})"
    mask = cfg.get("mask") or {}
    if obj == "paco" and mask.get("regions") == "landmarks" and mask.get("strategy", "region") == "region":
        src = data.get("source")
        if src == "synthface":
            return "landmarks (ground truth)"
        if src == "landmarks" or (src == "folder" and data.get("landmarks_file")):
            return "landmarks (user file)"
    return "none"


def supervision_kind(labels: str | None) -> str:
    """"teacher (mcf_teacher)" -> "teacher"; None / "" -> "not recorded"."""
    return str(labels).split(" (", 1)[0] if labels else "not recorded"


def suite_identity(run_name: str, objective: str, role: str, component: str, resolved_config: dict,
                   teacher: str | None = None, pretrain_seed: int | None = None) -> dict:
    """The block of one run of the study's pre-training suite. `resolved_config`: the run's full
    pre-training config (paco_fr.config.load_config), from which every component's setting and
    the supervision (`labels_used`) are read; `teacher`: the run whose encoder is its teacher.
    Runs of one method with other pre-training seeds keep the method's label (their rows differ
    by backbone URI; the statistics pool them by label)."""
    settings = {c: setting_text(c, dotted_value(resolved_config, comp.config_key)) for c, comp in COMPONENTS.items()}
    if role == "ablation":
        setting = settings[component]
        label = COMPONENTS[component].label.format(setting)
    else:
        setting, label = "", METHOD_LABELS.get(objective, objective)
    seed = int(resolved_config.get("seed", 0)) if pretrain_seed is None else int(pretrain_seed)
    return block(objective, role, component, setting, label, run=run_name, settings=settings,
                 labels_used=labels_used(resolved_config, teacher), pretrain_seed=seed)


def derive_from_uri(uri: str) -> dict:
    """The block of a backbone that recorded nothing: from its URI scheme and file name only."""
    scheme, rest = uri_parts(uri)
    if scheme == "floor":
        return block("floor", "floor", label=FLOOR_LABEL)
    if scheme == "supervised":
        return block("supervised", "ceiling", label=f"{CEILING_LABEL[:-1]}, {rest})" if rest else CEILING_LABEL,
                     labels_used="task labels")
    if scheme == "random":
        return block("random", "control",
                     label=METHOD_LABELS["random"] + (f" ({rest})" if rest and rest != "vit_tiny" else ""),
                     labels_used="none")
    if scheme in _CHECKPOINT_LABELS and rest:
        return block(scheme, "main", label=f"{_CHECKPOINT_LABELS[scheme]} ({file_tag(rest)})")
    if scheme in _MODEL_LABELS and rest:
        model, _, file = rest.partition(":")
        name = f"{_MODEL_LABELS[scheme]} {model}"
        if not file:
            return block(scheme, "main", label=f"{name} (pretrained)" if scheme == "timm" else name)
        tag = file_tag(file)
        return block(scheme, "main", label=name if tag == model.split(".")[0] else f"{name} ({tag})")
    if scheme == "hf" and rest:
        return block(scheme, "main", label=f"HF {file_tag(rest)}")
    return block(scheme or uri, "main", label=uri)


def file_tag(path: str) -> str:
    """What names a weight file in a label: its stem, or its folder's name when the stem is generic
    (`ms1mv3_arcface_r100/backbone.pth` -> `ms1mv3_arcface_r100`); a folder (`hf:`): its name."""
    p = PurePosixPath(str(path).rstrip("/"))
    if p.suffix and p.stem.lower() in _GENERIC_STEMS and p.parent.name:
        return p.parent.name
    return p.stem if p.suffix in (".safetensors", ".pth", ".pt", ".bin", ".ckpt") else p.name


def _weights_path(uri: str) -> Path | None:
    try:
        return weights_file(uri)
    except Exception:  # noqa: BLE001 - an unknown scheme has no file
        return None


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def recorded_identity(uri: str) -> dict | None:
    """The block a weights file recorded: `method.json` beside it, else its safetensors metadata
    `method`. None when the URI has no file or the file recorded nothing."""
    f = _weights_path(uri)
    if f is None or not f.is_file():
        return None
    ident = _read_json(f.parent / "method.json")
    if ident is None and f.suffix == ".safetensors":
        try:
            with safe_open(str(f), framework="pt") as fh:
                raw = (fh.metadata() or {}).get("method")
            ident = json.loads(raw) if raw else None
        except Exception:  # noqa: BLE001 - unreadable metadata: the URI decides
            ident = None
    return ident if isinstance(ident, dict) else None


def identity_for(uri: str, label: str | None = None) -> dict:
    """The method block the runner writes into a row of backbone `uri` (see the module docstring),
    with the `compute` / `diagnostics` blocks of a summary.json beside the weights file."""
    ident = dict(recorded_identity(uri) or derive_from_uri(uri))
    f = _weights_path(uri)
    summary = (_read_json(f.parent / "summary.json") if f is not None else None) or {}
    for k in PASSED_THROUGH:
        if isinstance(summary.get(k), dict):
            ident[k] = summary[k]
    if label:
        ident["label"] = label
    return ident


def parse_labels(items, backbones) -> dict[str, str]:
    """`--label` values -> {uri: label}: `URI=NAME` names that backbone; a bare `NAME` is allowed
    when exactly one backbone is given. Raises ValueError naming the problem."""
    out: dict[str, str] = {}
    backbones = list(backbones or [])
    for item in items or []:
        uri, eq, name = item.rpartition("=")
        if eq and uri in backbones:
            out[uri] = name.strip()
        elif len(backbones) == 1 and not (eq and uri):
            out[backbones[0]] = item.strip()
        else:
            raise ValueError(f"--label {item!r}: use URI=NAME with a URI given to --backbones "
                             f"({', '.join(backbones) or 'none given'}); a bare NAME needs exactly one backbone")
    return out


# ----------------------------------------------------------------------------- rows written before method blocks


