"""Pre-training configuration: defaults, bundled YAML configs and dotted overrides.

`load_config("smoke", ["mask.strategy=random", "codebook.k=1"])` returns a plain nested dict:
DEFAULTS <- (the config's `base:` chain) <- the YAML file <- overrides. A config is either a path
to a YAML file or the name of a bundled one in `paco_fr/configs/` (smoke, small, paper, and
per-objective variants such as smoke_mae). Override values are parsed as YAML scalars
(`codebook.num_tokens=256` -> int, `spatial.weight=0` -> int, `data.root=null` -> None).
"""

from __future__ import annotations

import copy
import difflib
import glob
from pathlib import Path
from typing import Any

import yaml

from paco_fr.data.shards import read_manifest
from paco_fr.defaults import DEFAULTS
from paco_fr.models import list_objectives  # importing paco_fr.models registers the bundled objectives

CONFIG_DIR = Path(__file__).parent / "configs"


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
    return list_objectives()


DATA_SOURCES = ("synthface", "random", "folder", "tar", "landmarks", "wds")


def check_data_config(cfg: dict) -> None:
    """Raise ConfigError before anything is written when the data section cannot work: an unknown
    source, or a folder / tar / landmarks source without an existing `data.path`."""
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
