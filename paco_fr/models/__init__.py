"""Pre-training models and the `build_model(cfg)` registry (objective -> model class)."""

from __future__ import annotations

from paco_fr.backbone import encoder_from_config as build_encoder
from paco_fr.models.base import PretrainModel
from paco_fr.models.farl import FaRLModel
from paco_fr.models.mae import MAEModel
from paco_fr.models.mcf import MCFModel
from paco_fr.models.paco import PaCoModel
from paco_fr.models.simmim import SimMIMModel

MODELS: dict[str, type[PretrainModel]] = {
    "paco": PaCoModel,
    "mae": MAEModel,
    "farl": FaRLModel,
    "mcf": MCFModel,
    "simmim": SimMIMModel,
}


def build_model(cfg: dict, steps_per_epoch: int = 1, vocab_size: int | None = None) -> PretrainModel:
    """Build the pre-training model of `cfg["objective"]` (a full config from paco_fr.config)."""
    obj = cfg["objective"]
    if obj not in MODELS:
        raise ValueError(f"unknown objective {obj!r}; known: {sorted(MODELS)}")
    encoder = build_encoder(cfg)
    if obj == "farl":
        return FaRLModel(cfg, encoder, steps_per_epoch, vocab_size=vocab_size or 8)
    if obj == "mcf":
        return MCFModel(cfg, encoder, steps_per_epoch)
    return MODELS[obj](cfg, encoder, steps_per_epoch)


__all__ = ["MODELS", "PretrainModel", "build_encoder", "build_model"]
