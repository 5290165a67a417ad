"""A finished (or checkpointed) run used after training: `load_run_model` rebuilds its model,
`reconstruct` draws original / corrupted / reconstructed images of fixed faces."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from paco_fr.config import load_config
from paco_fr.engine.checkpoint import CKPT_NAME, load_checkpoint
from paco_fr.models import build_model, objective_model


def load_run_model(run_dir, device="cpu"):
    """Rebuild a run's model from config.yaml and its last checkpoint (eval mode)."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    ckpt = load_checkpoint(run_dir / "ckpt" / CKPT_NAME)
    data = objective_model(cfg).prepare_data(cfg, None, ckpt)  # FaRL: the saved vocabulary
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, data=data)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


@torch.no_grad()
def reconstruct(run_or_model, images: torch.Tensor, seed: int = 0, mask: torch.Tensor | None = None) -> dict:
    """Original / corrupted / reconstructed images (B, 3, H, W) in [0, 1] for fixed faces.

    images: uint8 (B, H, W, 3) / (B, 3, H, W) or float in [0, 1]. The masks and (Gumbel) choices
    come from `seed` (or `mask` (B, N) given), without touching the global RNG stream."""
    model = load_run_model(run_or_model) if isinstance(run_or_model, (str, Path)) else run_or_model
    x = torch.as_tensor(images)
    if x.ndim == 4 and x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kw = {"mask": mask.to(dev)} if mask is not None else {}
        out = model.reconstruct(x.to(dev), **kw)
    model.train(was_training)
    return {k: v.cpu() for k, v in out.items()}
