"""snapshots/step_XXXXXX.png: original / corrupted / reconstructed rows of fixed faces, drawn
during training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from paco_fr.engine.state import Run


def save_snapshot(rec: dict, path: Path) -> torch.Tensor:
    """PNG grid: rows original / corrupted / reconstructed, one column per face; returns the grid
    (3, H, W) in [0, 1]."""
    rows = [rec["original"], rec["corrupted"], rec["reconstructed"]]
    grid = torch.cat([torch.cat(list(r.float().cpu().clamp(0, 1)), dim=2) for r in rows], dim=1)
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return grid


def snapshot_images(ds) -> torch.Tensor:
    """The fixed faces of the snapshots: up to 8 of the data set's, floats in [0, 1]."""
    return (ds.fixed_images(min(8, len(ds))) if hasattr(ds, "fixed_images")
            else torch.stack([ds[i]["image"] for i in range(min(8, len(ds)))])).float() / 255


def snapshot(run: Run, images: torch.Tensor, step: int) -> torch.Tensor | None:
    """Reconstruct `images` with a fixed seed (the RNG stream of training untouched) and save the
    grid of `step` (FSDP: every rank gathers the weights, rank 0 draws); the grid (main process)."""
    if not run.is_main and not run.fsdp:
        return None
    model, device = run.model, run.device
    with run.full_params():  # FSDP: every rank gathers, rank 0 reconstructs
        if not run.is_main:
            return None
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(1234)
            model.eval()
            with run.autocast():
                rec = model.reconstruct(images.to(device))
            model.train()
    return save_snapshot(rec, run.run_dir / "snapshots" / f"step_{step:06d}.png")
