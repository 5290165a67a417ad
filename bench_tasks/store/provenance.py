"""Where a result came from: weights hash, code version, library versions, machine, time.

`collect(backbone_hash, device, started, wall_time_s)` returns the `provenance` dict of a result
row. Git and version look-ups are cached per process.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]

# distribution name -> key in provenance["versions"]
PACKAGES = {
    "torch": "torch",
    "timm": "timm",
    "torchmetrics": "torchmetrics",
    "mmsegmentation": "mmseg",
    "mmengine": "mmengine",
    "mmcv": "mmcv",
    "numpy": "numpy",
    "paco-fr-bench": "paco_fr_bench",
}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# what a run writes into the checkout itself: changes there do not make the code "dirty" (else
# every run after the first, with results/ and reports/ committed, would be marked dirty)
OUTPUT_DIRS = ("results", "reports")


def git_state(repo_dir: str | Path) -> dict:
    """{"git_commit": sha or None, "git_dirty": bool or None} of the checkout at `repo_dir`.
    Dirty means tracked files outside OUTPUT_DIRS differ from HEAD (untracked files are ignored)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        excludes = [f":(exclude){d}" for d in OUTPUT_DIRS]
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", *excludes))
        return {"git_commit": commit, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def git_override(env=None) -> dict | None:
    """The commit a copy of the code says it is, from the environment: `PACO_FR_GIT_COMMIT=<sha>`
    (and `PACO_FR_GIT_DIRTY=0|1`, default 0). For a working tree copied without its history (a
    lent device gets the session's first commit as .git and the later work as changed files, so
    git_state would name the wrong commit, dirty). None when unset."""
    env = os.environ if env is None else env
    sha = (env.get("PACO_FR_GIT_COMMIT") or "").strip()
    if not sha:
        return None
    if not all(c in "0123456789abcdef" for c in sha.lower()) or not 7 <= len(sha) <= 40:
        raise ValueError(f"PACO_FR_GIT_COMMIT={sha!r}: expected a git commit sha (7 to 40 hex digits)")
    dirty = (env.get("PACO_FR_GIT_DIRTY") or "0").strip()
    if dirty not in ("0", "1"):
        raise ValueError(f"PACO_FR_GIT_DIRTY={dirty!r}: expected 0 or 1")
    return {"git_commit": sha.lower(), "git_dirty": dirty == "1", "git_source": "PACO_FR_GIT_COMMIT"}


@functools.lru_cache(maxsize=1)
def git_info() -> dict:
    """git_override() when set, else git_state() of the checkout holding this code."""
    return git_override() or git_state(REPO_DIR)


@functools.lru_cache(maxsize=1)
def versions() -> dict:
    out = {}
    for dist, key in PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    if out.get("paco_fr_bench") is None:  # running from a checkout that is not pip-installed
        try:
            # kept in the try: tomllib is Python 3.11+ (the ImportError is handled)
            import tomllib

            with open(REPO_DIR / "pyproject.toml", "rb") as f:
                out["paco_fr_bench"] = tomllib.load(f)["project"]["version"] + "+checkout"
        except (OSError, KeyError, ImportError, ValueError):
            pass
    out["python"] = platform.python_version()
    return out


def device_name(device) -> str:
    # lazy: this module stays torch-free (git state and package versions need no torch)
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(device)}"
    proc = platform.processor() or platform.machine()
    return f"{device.type}:{proc}" if proc else device.type


def collect(backbone_hash: str | None, device, started: str, wall_time_s: float,
            backbone_source: str | None = None) -> dict:
    prov = {
        "backbone_hash": backbone_hash,
        **git_info(),
        "versions": versions(),
        "device": device_name(device),
        "hostname": socket.gethostname(),
        "started": started,
        "wall_time_s": round(float(wall_time_s), 3),
    }
    if backbone_source:
        prov["backbone_file"] = backbone_source
    return prov
