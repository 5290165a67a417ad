"""Typed settings of the pre-training models, made from the sections of a config.

Every model's constructor takes its settings as typed arguments (frozen dataclasses, one per config
section: `MaskSettings` from `mask:`, `DecoderSettings` from `decoder:`, ...), resolved once when
the model is built, never re-read from the config dict in a step. `from_section` builds one from a
section dict: every field must be in the section and every key of the section must be a field
(a mismatch is an error naming the section), and plain int / float / bool fields are converted
(a YAML `weight: 0` becomes 0.0).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
_CONVERT = {int: int, float: float, bool: bool}


def from_section(cls: type[T], section: dict[str, Any], name: str) -> T:
    """`cls(**section)` with plain int / float / bool fields converted; `name` is the config
    section (for the error message)."""
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    missing = [f for f in fields if f not in section]
    unknown = [k for k in section if k not in fields]
    if missing or unknown:
        raise ValueError(f"config section {name!r} does not match {cls.__name__}: "
                         f"missing {missing or 'nothing'}, unknown {unknown or 'nothing'}")
    kw = {}
    for f in fields:
        v = section[f]
        conv = _CONVERT.get(hints[f])
        kw[f] = conv(v) if conv is not None and v is not None else v
    return cls(**kw)


def check_choice(value: str, choices, key: str) -> str:
    if value not in choices:
        raise ValueError(f"config {key}={value!r}: expected one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class DecoderSettings:
    """`decoder:` the light pixel decoder (paco_fr.models.decoder.PixelDecoder)."""

    dim: int
    depth: int
    heads: int


@dataclass(frozen=True)
class LossSettings:
    """`loss:` the pixel reconstruction loss: norm_pix target, on masked patches or all, mse / l1."""

    norm_pix: bool
    on: str
    type: str


@dataclass(frozen=True)
class MaskSettings:
    """`mask:` which patches are selected (paco_fr.masking) and, for PaCo-FR, what they become."""

    strategy: str
    ratio: float
    fill: str
    region_rule: str
    regions: str
    replace: str


@dataclass(frozen=True)
class ModelSettings:
    """`model:` the encoder's architecture (also the default of a teacher's)."""

    arch: str
    img_size: int
    patch_size: int
    depth: int | None
    drop_path: float
