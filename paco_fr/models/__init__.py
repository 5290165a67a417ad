"""Pre-training models and the objective registry (paco_fr.models.registry).

Importing this package registers every bundled objective: each model module registers itself with
`@register_objective`. BUNDLED fixes the order errors and docs list the bundled objectives in; any
other module of this package is imported after them (sorted by name), so a new objective is one
module dropped into paco_fr/models/ (or a module of the user's, imported before load_config).
"""

from __future__ import annotations

import importlib
import pkgutil

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
# helpers that define no objective
_NOT_OBJECTIVES = {"base", "registry", "settings", "paco_settings", "common", "decoder", "text"}
for _module in (*BUNDLED, *sorted(m.name for m in pkgutil.iter_modules(__path__)
                                  if m.name not in BUNDLED and m.name not in _NOT_OBJECTIVES)):
    importlib.import_module(f"paco_fr.models.{_module}")

MODELS: dict[str, type[PretrainModel]] = {name: get_objective(name).model for name in list_objectives()}

__all__ = ["BUNDLED", "MODELS", "ObjectiveData", "PretrainModel", "build_encoder", "build_model", "get_objective",
           "list_objectives", "objective_model", "register_objective"]
