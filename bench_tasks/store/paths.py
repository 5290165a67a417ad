"""Can a results file or a work folder be written? Checked before any work starts (and in
`--dry-run`), so a run never computes a cell it cannot store.

    writable_file_problems(path, what) -> [str]     a file to create or append to
    writable_folder_problems(path, what) -> [str]   a folder to create or write into
"""

from __future__ import annotations

import os
from pathlib import Path


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute().parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _ancestor_problem(path: Path, what: str) -> str | None:
    """The folder `path` would be created in: its nearest existing ancestor must be a folder that
    this user can write."""
    anc = _existing_ancestor(path)
    if not anc.is_dir():
        return f"{what} {path}: {anc} is a file, not a folder, so {path} cannot be created there"
    if not os.access(anc, os.W_OK | os.X_OK):
        return f"{what} {path}: the folder {anc} is not writable for this user"
    return None


def writable_file_problems(path: str | Path, what: str = "results file") -> list[str]:
    """Problems that would stop `path` from being created or appended to: it is a folder, a
    folder above it is a file, or it (or the folder it goes in) is not writable."""
    path = Path(path)
    if path.is_dir():
        return [f"{what} {path} is a folder; expected a .jsonl file (e.g. {path / 'results.jsonl'})"]
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            return [f"{what} {path} is not readable and writable for this user"]
        return []
    problem = _ancestor_problem(path, what)
    return [problem] if problem else []


def writable_folder_problems(path: str | Path, what: str = "folder") -> list[str]:
    """Problems that would stop files being written under the folder `path`."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            return [f"{what} {path} is a file; expected a folder"]
        if not os.access(path, os.W_OK | os.X_OK):
            return [f"{what} {path} is not writable for this user"]
        return []
    problem = _ancestor_problem(path, what)
    return [problem] if problem else []
