"""Where the bundled profiles are (bench_tasks/configs/<name>.yaml) and their names, read without
loading them (`run --help`), and the `KEY=VALUE` parser `--set` and `--pretrain-override` share:
what a RunSpec needs, without the tasks' settings (torch) that bench_tasks.plan.profiles loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench_tasks.errors import PlanError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # bench_tasks/configs


class ProfileError(PlanError, ValueError):
    """A profile file or override that cannot be used (the message says which and why)."""


def bundled_profile_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def parse_assignments(items, what: str = "--set") -> dict[str, Any]:
    """["a.b=1", "c=[0, 1]"] -> {"a.b": 1, "c": [0, 1]} (values parsed as YAML; flat keys)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, val = str(item).partition("=")
        if not eq or not key.strip():
            raise ProfileError(f"{what} {item!r} is not KEY=VALUE")
        out[key.strip()] = yaml.safe_load(val) if val.strip() else None
    return out


def dotted_overrides(items: list[str]) -> dict:
    """["train.steps=500", "mask.ratio=0.6"] -> {"train.steps": 500, "mask.ratio": 0.6} (YAML scalars;
    the same parser as `--set`, parse_assignments)."""
    try:
        return parse_assignments(items, "--pretrain-override")
    except ProfileError as err:
        raise PlanError(str(err)) from err
