"""Pre-training models and the objective registry (paco_fr.models.registry).

Importing this package registers every bundled objective: each model module registers itself with
`@register_objective`, and BUNDLED lists the modules in the order errors and docs list them. A new
objective is one module, added to BUNDLED (or imported by the user before load_config).
"""

from __future__ import annotations

import importlib

from paco_fr.backbone import encoder_from_config as build_encoder
from paco_fr.models.base import ObjectiveData, PretrainModel
from paco_fr.models.registry import (
    build_model,
    get_objective,
    list_objectives,
    objective_model,
    register_objective,
)

BUNDLED = ("paco", "mae", "farl", "mcf", "simmim")  # modules of paco_fr.models, in registration order
for _module in BUNDLED:
    importlib.import_module(f"paco_fr.models.{_module}")

MODELS: dict[str, type[PretrainModel]] = {name: get_objective(name).model for name in list_objectives()}

__all__ = ["BUNDLED", "MODELS", "ObjectiveData", "PretrainModel", "build_encoder", "build_model", "get_objective",
           "list_objectives", "objective_model", "register_objective"]
