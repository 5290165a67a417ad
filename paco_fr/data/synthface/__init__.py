"""SynthFace: the embedded procedural face data set (see docs/synthface.md)."""

from .dataset import (
    SynthFaceSplit,
    cache_dir,
    default_root,
    generate_arrays,
    generate_one,
    identities_for,
    load_synthface,
)
from .spec import ATTRIBUTES, EXPRESSIONS, GENERATOR_VERSION, NUISANCE_KEYS, PARSING_CLASSES, SPLITS

__all__ = [
    "ATTRIBUTES", "EXPRESSIONS", "GENERATOR_VERSION", "NUISANCE_KEYS", "PARSING_CLASSES", "SPLITS",
    "SynthFaceSplit", "cache_dir", "default_root", "generate_arrays", "generate_one", "identities_for",
    "load_synthface",
]
