"""Whole-file writes that a reader or a second process never sees half done: write a temporary file
beside the target, named for this process (two processes sharing a study may write the same file
at the same moment; with one shared temporary name the second rename finds it gone), then rename
it over the target (atomic on one file system)."""

from __future__ import annotations

import os
from pathlib import Path


def temp_beside(path: str | Path, suffix: str = ".tmp") -> Path:
    """<path>.<pid><suffix>: this process's temporary file for `path` (suffix last, for writers
    that insist on their own extension, e.g. numpy's ".npz")."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}{suffix}")


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` whole: this process's temporary file, then renamed over `path`."""
    path = Path(path)
    tmp = temp_beside(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_safetensors_atomic(tensors: dict, path: str | Path, metadata: dict[str, str]) -> Path:
    """safetensors' save_file to `path` whole: this process's temporary file, then renamed."""
    from safetensors.torch import save_file  # lazy: torch only for the writers of weights

    path = Path(path)
    tmp = temp_beside(path)
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
