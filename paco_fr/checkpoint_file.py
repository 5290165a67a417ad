"""Reading a training checkpoint (`runs/<run>/ckpt/last.pt`) with a message a user can act on.

A checkpoint is a `torch.save` zip written atomically (tmp file + rename), so a damaged one comes
from outside the run: a full disk, a copy cut short, a file truncated or emptied by hand. Such a
file is named with what is wrong with it and what to do (`--fresh` starts the run directory over;
nothing older is kept to fall back to), never torch's raw traceback.

    checkpoint_problem(path) -> str | None   a quick check (size, zip directory), no tensors read
    read_checkpoint(path) -> dict            torch.load(weights_only=True), or CheckpointUnreadable
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

FRESH_HINT = ("the run cannot resume from it. Pass --fresh to start this run directory over (its checkpoint, "
              "log and summary are replaced), or put back a good copy of the file")


class CheckpointUnreadable(ValueError):
    """A checkpoint file that cannot be read (the message names it, says why and what to do)."""


def checkpoint_problem(path) -> str | None:
    """What is wrong with the checkpoint file `path` at a glance (missing, empty, not a complete
    zip: truncated), or None. Reads only the zip's directory at the end of the file."""
    path = Path(path)
    if not path.is_file():
        return f"{path} is not a file" if path.exists() else f"{path} does not exist"
    size = path.stat().st_size
    if size == 0:
        return f"{path} is empty (0 bytes: a save that never finished, or an emptied file)"
    if not zipfile.is_zipfile(path):
        return (f"{path} ({size} bytes) is truncated or damaged: it is not a complete torch.save file "
                "(no zip directory at its end)")
    return None


def read_checkpoint(path) -> dict:
    """The checkpoint at `path` (tensors and plain values only: weights_only=True). Raises
    CheckpointUnreadable naming the file, the cause and `--fresh`."""
    path = Path(path)
    problem = checkpoint_problem(path)
    if problem is None:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
            first = (str(err).strip().splitlines() or [""])[0][:200]
            problem = f"{path} cannot be read ({type(err).__name__}: {first})"
        else:
            if isinstance(ckpt, dict) and "model" in ckpt:
                return ckpt
            problem = f"{path} is not a training checkpoint (no `model` entry)"
    raise CheckpointUnreadable(f"{problem}; {FRESH_HINT}")
