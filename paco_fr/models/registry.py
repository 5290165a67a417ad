"""The objective registry: objective name -> model class, filled by `@register_objective` on each
model class (as timm's `@register_model` fills `timm.list_models()`).

    @register_objective("mae", section="mae")
    class MAEModel(PretrainModel):
        @classmethod
        def from_config(cls, cfg, encoder, steps_per_epoch=1, data=None): ...

`section`: the config section only this objective reads (a run of another objective ignores it
when deciding whether a run directory's config changed, paco_fr.rundir). `defaults`: that section's
default values, for an objective whose section paco_fr.defaults.DEFAULTS does not list yet (so a new
objective is one file: its model module, imported by paco_fr/models/__init__.py).

`build_model(cfg)` builds the encoder (paco_fr.backbone) and hands it to the factory of
`cfg["objective"]`; paco_fr.config validates objective names against `list_objectives()`.
"""

from __future__ import annotations

from dataclasses import dataclass

from paco_fr.backbone import encoder_from_config
from paco_fr.defaults import DEFAULTS
from paco_fr.models.base import ObjectiveData, PretrainModel


@dataclass(frozen=True)
class Objective:
    name: str
    model: type[PretrainModel]
    section: str | None  # the config section only this objective reads


_OBJECTIVES: dict[str, Objective] = {}


def register_objective(name: str, section: str | None = None, defaults: dict | None = None):
    """Class decorator: register a PretrainModel subclass as objective `name`."""
    def deco(cls: type[PretrainModel]) -> type[PretrainModel]:
        if name in _OBJECTIVES and _OBJECTIVES[name].model is not cls:
            raise ValueError(f"objective {name!r} is already registered by {_OBJECTIVES[name].model.__qualname__}")
        if not (isinstance(cls, type) and issubclass(cls, PretrainModel)):
            raise TypeError(f"@register_objective({name!r}) decorates a PretrainModel subclass, got {cls!r}")
        if defaults is not None:
            if section is None:
                raise ValueError(f"objective {name!r}: defaults without a section")
            DEFAULTS.setdefault(section, defaults)
        cls.objective = name
        _OBJECTIVES[name] = Objective(name, cls, section)
        return cls

    return deco


def list_objectives() -> list[str]:
    """Registered objective names, in registration order."""
    return list(_OBJECTIVES)


def get_objective(name: str) -> Objective:
    if name not in _OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; known: {', '.join(_OBJECTIVES)}")
    return _OBJECTIVES[name]


def objective_model(cfg: dict) -> type[PretrainModel]:
    """The model class of `cfg["objective"]` (for its class-method hooks)."""
    return get_objective(cfg["objective"]).model


def build_model(cfg: dict, steps_per_epoch: int = 1, data: ObjectiveData | None = None) -> PretrainModel:
    """The pre-training model of `cfg["objective"]` (a full config from paco_fr.config). `data`: the
    objective's ObjectiveData (default: its synthetic_data, e.g. FaRL's 64-word probe vocabulary)."""
    cls = objective_model(cfg)
    if data is None:
        data = cls.synthetic_data(cfg)
    return cls.from_config(cfg, encoder_from_config(cfg), steps_per_epoch=steps_per_epoch, data=data)
