"""Where the bundled profiles are (bench_tasks/configs/<name>.yaml) and their names, read without
loading them (`run --help`)."""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # bench_tasks/configs


def bundled_profile_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
