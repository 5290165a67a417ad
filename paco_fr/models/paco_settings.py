"""PaCo-FR's typed settings (paco_fr.models.settings.from_section): one frozen dataclass per config
section it owns (`codebook:`, `belief:`, `incubation:`, `spatial:`), the choices their fields
take, and `views_seen`, the distinct images of a micro-batch under the spatial term's pairing."""

from __future__ import annotations

from dataclasses import dataclass

REPLACE_MODES = ("codebook", "mask_token")
CODEBOOK_SPACES = ("pixel", "norm_pix")
SPATIAL_FORMS = ("correspondence", "gram_mse")
REGION_SOURCES = ("landmarks", "canonical")


PAIRINGS = ("split", "repeat")


@dataclass(frozen=True)
class CodebookSettings:
    """`codebook:` the patch codebook (paco_fr.codebook) and how its k candidates become a token."""

    num_tokens: int
    k: int
    candidates: str
    selection: str
    temperature: float
    gumbel_hard: bool
    update: str
    decay: float
    commitment: float
    dead_threshold: float
    restart_every: int
    chunk_size: int
    space: str


@dataclass(frozen=True)
class BeliefSettings:
    """`belief:` the Belief Predictor (paco_fr.belief)."""

    hidden: int
    pos_dim: int
    detach_weights: bool


@dataclass(frozen=True)
class IncubationSettings:
    """`incubation:` the first epochs / steps in which the predictor learns by cross-entropy."""

    epochs: float
    steps: int | None
    ce_weight: float
    after_ce_weight: float
    detach_recon: bool


@dataclass(frozen=True)
class SpatialSettings:
    """`spatial:` the two views and the cross-view region term."""

    weight: float
    pairing: str
    keep_views: bool
    form: str
    temperature: float
    center_batch: bool
    stop_grad: bool
    layer: int

    @property
    def two_views(self) -> bool:
        return self.weight > 0 or self.keep_views


def views_seen(spatial: SpatialSettings, batch: int) -> int:
    """Distinct images of a micro-batch of `batch`: `split` pairing shows the first B/2 twice."""
    return max(1, batch // 2) if spatial.two_views and spatial.pairing == "split" else batch
