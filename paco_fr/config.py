"""Pre-training configuration: defaults, bundled YAML configs and dotted overrides.

`load_config("smoke", ["mask.strategy=random", "codebook.k=1"])` returns a plain nested dict:
DEFAULTS <- (the config's `base:` chain) <- the YAML file <- overrides. A config is either a path
to a YAML file or the name of a bundled one in `paco_fr/configs/` (smoke, small, paper, and
per-objective variants such as smoke_mae). Override values are parsed as YAML scalars
(`codebook.num_tokens=256` -> int, `spatial.weight=0` -> int, `data.root=null` -> None).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"

DEFAULTS: dict[str, Any] = {
    "name": None,
    "objective": "paco",  # a registered objective: paco | mae | farl | mcf | simmim (paco_fr.models)
    "seed": 0,
    "model": {
        "arch": "vit_tiny",
        "img_size": 64,
        "patch_size": 8,
        "depth": None,  # override the arch's depth (tiny test/smoke models)
        "drop_path": 0.0,
    },
    "decoder": {"dim": 128, "depth": 2, "heads": 4},
    "mask": {
        "strategy": "region",  # random | block | region
        "ratio": 0.5,
        "fill": "adjacent",  # region/block top-up rule: adjacent | random
        "region_rule": "whole_then_fill",  # whole_then_fill | partial_last
        # region maps: canonical = the canonical map of the aligned face (label-free: the default) |
        # landmarks = each face's own map from the landmarks the data comes with (SynthFace's true
        # 68, a user's 5-point file; supervision, recorded as labels_used; the study's
        # abl_regions_gt), the canonical map where a face has none
        "regions": "canonical",
        # what a selected patch becomes (paco): codebook = a codebook token pasted in pixel space
        # (PaCo-FR) | mask_token = a learned mask token in the encoder's embedding space (control:
        # no codebook, no Belief Predictor, SimMIM-style full sequence)
        "replace": "codebook",
    },
    "codebook": {
        "num_tokens": 512,
        "k": 4,  # candidate tokens per patch
        "candidates": "belief",  # belief (top-k of predictor logits) | nearest (top-k by pixel distance)
        "selection": "mix",  # mix | hard | gumbel
        "temperature": 1.0,
        "gumbel_hard": False,
        "update": "ema",  # ema | grad
        "decay": 0.99,
        "commitment": 0.0,
        "dead_threshold": 0.5,  # EMA cluster size below which a code is dead
        "restart_every": 50,  # steps; 0 disables dead-code restart
        "chunk_size": 2048,
        # space the entries live and are clustered in: norm_pix = per-patch mean/std-normalised
        # patches (the loss target's space), pasted with the replaced patch's own mean/std |
        # pixel = backbone-normalised pixels (tokens are colour clusters)
        "space": "norm_pix",
    },
    # detach_weights: true = the predictor is trained by cross-entropy only (no reconstruction
    # gradient through the mixing weights; the CE-only control)
    "belief": {"hidden": 256, "pos_dim": 32, "detach_weights": False},
    "incubation": {
        "epochs": 1.0,  # first epoch(s): belief predictor supervised by CE to the nearest token
        "steps": None,  # if set, overrides epochs
        "ce_weight": 1.0,
        "after_ce_weight": 0.05,  # small continued CE after incubation
        "detach_recon": True,  # during incubation the predictor gets only the CE gradient
    },
    "spatial": {
        "weight": 0.25,  # 0 disables the spatial consistency term (and the second view unless keep_views)
        "pairing": "split",  # split: B/2 images x 2 views (same cost) | repeat: B images x 2 views
        "keep_views": False,  # True: two views even with weight 0 (same distinct images per step)
        # correspondence: cross-view InfoNCE over standardised region features (docs/pretraining.md)
        # | gram_mse: MSE of cosine relation matrices (the earlier form: inert, zero when collapsed)
        "form": "correspondence",
        "temperature": 0.2,
        "center_batch": False,  # also centre each region's features over the images of the batch
        "stop_grad": False,  # True: view 2 is a stop-grad target
        "layer": -1,  # encoder block whose patch tokens are region-pooled (-1 = final, normed)
    },
    # grad_norms: at log steps, the gradient norm of each loss term w.r.t. the encoder (one extra
    # backward per term: a measured step costs 1.7-2x a plain one; skipped under torch.compile and
    # DDP); grad_every: only at log steps that are multiples of it (0 = every log step), and the last
    "diagnostics": {"grad_norms": True, "grad_every": 0},
    "loss": {"norm_pix": True, "on": "masked", "type": "mse"},  # on: masked | all
    "mae": {"mask_ratio": 0.75},
    "farl": {
        "mask_ratio": 0.4,
        "mim_weight": 1.0,
        "itc_weight": 1.0,
        "embed_dim": 128,
        "text_width": 128,
        "text_depth": 2,
        "text_heads": 4,
        "max_len": 32,
        # FaRL-style captions (paco_fr/data/captions.py): LAION-like alt-text is partial and noisy, so
        # by default a caption names a few attributes (some wrong), is sometimes generic, and often
        # drops or garbles the expression. mode=oracle (every true label, the old template) is a
        # supervised upper bound, never "FaRL-style".
        "captions": {
            "mode": "noisy",  # noisy | oracle
            "max_attributes": 3,  # attributes named per caption: uniform in 0..max_attributes
            "wrong_attribute_prob": 0.25,  # each named attribute is one the face does NOT have
            "generic_prob": 0.2,  # caption is a generic sentence with no label in it
            "expression_drop_prob": 0.5,  # no expression word
            "expression_wrong_prob": 0.2,  # of the kept expression words, a wrong expression
            "gender_wrong_prob": 0.1,  # man <-> woman swapped
            "person_word_prob": 0.3,  # "person" instead of man / woman
        },
    },
    "mcf": {
        # required: path to an exported encoder (.safetensors) / .pth with timm keys, pre-trained on images
        # disjoint from this run's (the study trains `mcf_teacher` on SynthFace's `teacher` split);
        # `random` only for tests / throughput probes
        "teacher": None,
        "teacher_arch": None,
        "teacher_layers": None,  # default: [2,5,8,11] scaled to depth
        "mask_ratio": 0.75,
        "perceptual_weight": 1000.0,
        "pixel_weight": 0.0,
        "contrastive_weight": 1.0,
        "momentum": 0.99,
        "temperature": 0.2,
        "proj_dim": 256,
        "proj_hidden": 1024,
    },
    "data": {
        "source": "synthface",  # synthface | folder | tar | landmarks | wds
        "split": "pretrain",
        "num_images": 2000,
        # the data's own seed (SynthFace: which faces; captions): None = the run's `seed`. Runs of
        # one method with several pre-training seeds set it to one value (the same images)
        "seed": None,
        "root": None,
        "path": None,  # folder / tar glob / image root for landmarks
        "landmarks_file": None,  # lines: relpath x1 y1 ... x5 y5
        "hflip": True,
        "num_workers": 0,
        "shuffle_buffer": 2000,  # data.source=wds: samples per loader worker's shuffle buffer
    },
    "train": {
        "batch_size": 32,  # per process, per micro-batch
        "steps": 300,  # total optimizer steps (if epochs is None)
        "epochs": None,
        "grad_accum": 1,
        "lr": 1.5e-4,
        "min_lr": 1.0e-6,
        "warmup_steps": 20,
        "weight_decay": 0.05,
        "betas": [0.9, 0.95],
        "clip_grad": 3.0,
        "amp": "auto",  # auto (bf16 on cuda) | bf16 | off
        "compile": False,
        "ema": 0.0,  # EMA decay of the whole model; 0 = off
        "log_every": 10,
        "snapshot_every": 100,
        "ckpt_every": 100,
        "progress": True,
        "deterministic": False,
        "device": "auto",
        "threads": None,
        "interrupt_at_step": None,  # testing: raise SIGTERM in-process after this step
        "fsdp": False,
    },
    "export": {"use_ema": True},
}


class ConfigError(ValueError):
    """A pre-training config that cannot be used (the message says what to change)."""


class UnknownConfigKey(ConfigError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigNotFound(ConfigError, FileNotFoundError):
    pass


def flat_keys(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat_keys(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _closest(name: str, choices) -> str:
    import difflib

    m = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {m[0]!r}?)" if m else ""


def deep_update(base: dict, new: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (new or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_config_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.exists():
        return p
    cand = CONFIG_DIR / f"{name_or_path}.yaml"
    if cand.exists():
        return cand
    known = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
    raise ConfigNotFound(f"config {str(name_or_path)!r} is neither a file nor a bundled config"
                         f"{_closest(str(name_or_path), known)}; bundled: {', '.join(known)}")


def _load_yaml_chain(path: Path, depth: int = 0) -> dict:
    if depth > 8:
        raise ValueError("config `base:` chain too deep")
    data = yaml.safe_load(path.read_text()) or {}
    base = data.pop("base", None)
    if base:
        parent = _load_yaml_chain(resolve_config_path(base if Path(base).exists() else base), depth + 1)
        data = deep_update(parent, data)
    return data


def parse_overrides(overrides: list[str] | dict | None) -> dict:
    """["a.b=1", "c=x"] or {"a.b": 1} -> nested dict (string values are parsed as YAML scalars)."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for o in overrides:
            if "=" not in o or not o.split("=", 1)[0].strip():
                raise ConfigError(f"override {o!r} is not key=value (e.g. train.steps=500 or "
                                  "codebook.num_tokens=256; keys: docs/pretraining.md)")
            k, v = o.split("=", 1)
            items.append((k.strip(), yaml.safe_load(v) if v.strip() else None))
    out: dict = {}
    for key, val in items:
        parts = key.split(".")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        if isinstance(val, dict) and isinstance(d.get(parts[-1]), dict):
            d[parts[-1]] = deep_update(d[parts[-1]], val)
        else:
            d[parts[-1]] = val
    return out


def _check_keys(cfg: dict, ref: dict, prefix: str = "") -> None:
    for k, v in cfg.items():
        if k not in ref:
            known = [prefix + x for x in ref] if prefix else list(flat_keys(DEFAULTS)) + list(DEFAULTS)
            raise UnknownConfigKey(f"unknown config key {prefix + k!r}{_closest(prefix + k, known)}; "
                                   f"keys{' under ' + prefix[:-1] if prefix else ''}: "
                                   f"{', '.join(sorted(ref))}")
        if isinstance(ref[k], dict) and isinstance(v, dict):
            _check_keys(v, ref[k], prefix + k + ".")


def load_config(cfg: str | Path | dict | None = None, overrides: list[str] | dict | None = None) -> dict:
    """Resolve a config (bundled name, YAML path, or dict) + overrides to a full nested dict."""
    if cfg is None:
        data = {}
    elif isinstance(cfg, dict):
        data = copy.deepcopy(cfg)
    else:
        data = _load_yaml_chain(resolve_config_path(cfg))
    merged = deep_update(data, parse_overrides(overrides))
    objectives = tuple(objective_names())  # first: registration may add an objective's section to DEFAULTS
    _check_keys(merged, DEFAULTS)
    full = deep_update(DEFAULTS, merged)
    if full["objective"] not in objectives:
        raise ValueError(f"objective must be one of {objectives}, got {full['objective']!r}")
    return full


def objective_names() -> list[str]:
    """The registered objectives (paco_fr.models.registry; importing paco_fr.models registers the
    bundled ones and may add a new objective's config section to DEFAULTS)."""
    from paco_fr.models import list_objectives

    return list_objectives()


DATA_SOURCES = ("synthface", "random", "folder", "tar", "landmarks", "wds")


def check_data_config(cfg: dict) -> None:
    """Raise ConfigError before anything is written when the data section cannot work: an unknown
    source, or a folder / tar / landmarks source without an existing `data.path`."""
    import glob

    d = cfg["data"]
    src = d.get("source")
    if src not in DATA_SOURCES:
        raise ConfigError(f"data.source {src!r} is not one of {', '.join(DATA_SOURCES)}{_closest(str(src), DATA_SOURCES)}")
    path = d.get("path")
    if src == "folder":
        if not path:
            raise ConfigError("data.source=folder needs data.path=<folder of aligned face images>")
        if not Path(str(path)).expanduser().is_dir():
            raise ConfigError(f"data.path {path!r}: folder not found (data.source=folder)")
        lm = d.get("landmarks_file")
        if lm and not Path(str(lm)).expanduser().is_file():
            raise ConfigError(f"data.landmarks_file {lm!r}: file not found (data.source=folder reads optional lines "
                              "'relpath x1 y1 ... x5 y5' or 68 points, for per-face region maps)")
    elif src == "tar":
        if not path:
            raise ConfigError("data.source=tar needs data.path='<shards>/*.tar' (a glob of tar shards of aligned "
                              f"faces){' (the ' + str(cfg.get('name')) + ' config leaves it to you)' if cfg.get('name') else ''}; "
                              "or use data.source=folder data.path=<folder>")
        if not glob.glob(str(Path(str(path)).expanduser())):
            raise ConfigError(f"data.path {path!r}: no tar shard matches (data.source=tar)")
    elif src == "wds":
        if not path:
            raise ConfigError("data.source=wds needs data.path=<folder of shards with manifest.json> (made by "
                              "`python -m paco_fr prepare`), or a glob of its .tar shards")
        from paco_fr.data.shards import read_manifest

        try:
            read_manifest(path)
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(str(err)) from None
    elif src == "landmarks":
        lm = d.get("landmarks_file")
        if not lm:
            raise ConfigError("data.source=landmarks needs data.landmarks_file=<file of lines 'relpath x1 y1 ... x5 y5'> "
                              "(the key data.landmarks_file is not set)")
        if not Path(str(lm)).expanduser().is_file():
            raise ConfigError(f"data.landmarks_file {lm!r}: file not found (data.source=landmarks needs lines "
                              "'relpath x1 y1 ... x5 y5')")
        if path and not Path(str(path)).expanduser().is_dir():
            raise ConfigError(f"data.path {path!r}: image folder not found (data.source=landmarks)")


def dump_config(cfg: dict, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
