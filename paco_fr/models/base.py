"""Base class of the pre-training models: one `forward(batch, step) -> {"loss", "terms"}` per
objective, sharing the ViT encoder (`.encoder`, a paco_fr.backbone.ViTBackbone).

A model is everything objective-specific the engine (paco_fr.engine) needs; the engine itself
never asks which objective it runs. The hooks, all with do-nothing defaults here:

built from a config (class methods, before the model exists)
  `from_config(cfg, encoder, steps_per_epoch, data)`  the registered factory: reads the model's own
                                 config sections into typed constructor arguments
  `dataset_options(cfg)`        keyword arguments of build_pretrain_dataset (FaRL: caption noise)
  `prepare_data(cfg, dataset, checkpoint)`  an ObjectiveData: what the objective adds to the data
                                 (FaRL: the caption tokenizer, restored from a checkpoint's vocab;
                                 dataset=None when only a checkpoint's model is rebuilt)
  `synthetic_data(cfg)`         the same for probes without a dataset (FLOP counts, throughput)
  `with_upstream(cfg, spec)`    cfg with the objective's pre-trained upstream encoder replaced
                                 (MCF: mcf.teacher=random for probes); others: cfg unchanged
  `distinct_images(cfg, batch)` distinct images one micro-batch of `batch` trains on

during a run (on the built model)
  `start_events()`              log records written once at the start (warnings, MCF's teacher)
  `on_step_end(step)`           after every optimizer step (codebook EMA, momentum encoders)
  `extra_stats()`               values added to every log record
  `gradient_diagnostics(out)`   gradient norm of each loss term at log steps
  `diagnostics_summary(records)` summary.json's `diagnostics` block
  `upstream_encoder()`          path of a pre-trained encoder whose compute is charged to this run
"""

from __future__ import annotations

import torch
from torch import nn

from paco_fr.backbone import ViTBackbone
from paco_fr.diagnostics import gradient_norms
from paco_fr.losses import norm_pix
from paco_fr.models.common import patchify, unpatchify


class ObjectiveData:
    """What an objective adds to the shared data pipeline; this default adds nothing."""

    def batch_fields(self, index: torch.Tensor, device) -> dict[str, torch.Tensor]:
        """Extra entries of a training batch for the dataset rows `index`."""
        return {}

    def synthetic_fields(self, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Extra entries of a random probe batch of `batch` images."""
        return {}

    def checkpoint_state(self) -> dict:
        """Entries saved in ckpt/last.pt and handed back to prepare_data on resume. `vocab` is a key
        every checkpoint has had (None: no tokenizer)."""
        return {"vocab": None}


class PretrainModel(nn.Module):
    objective = "base"  # set by paco_fr.models.registry.register_objective
    encoder: ViTBackbone

    def __init__(self, encoder: ViTBackbone):
        super().__init__()
        self.encoder = encoder
        self.p = encoder.patch_size
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ building (class methods)
    @classmethod
    def from_config(cls, cfg: dict, encoder: ViTBackbone, steps_per_epoch: int = 1,
                    data: ObjectiveData | None = None) -> PretrainModel:
        raise NotImplementedError(f"{cls.__name__}.from_config")

    @classmethod
    def dataset_options(cls, cfg: dict) -> dict:
        return {}

    @classmethod
    def prepare_data(cls, cfg: dict, dataset, checkpoint: dict | None) -> ObjectiveData:
        return ObjectiveData()

    @classmethod
    def synthetic_data(cls, cfg: dict) -> ObjectiveData:
        return ObjectiveData()

    @classmethod
    def with_upstream(cls, cfg: dict, spec: str) -> dict:
        return cfg

    @classmethod
    def distinct_images(cls, cfg: dict, batch: int) -> int:
        return batch

    # ------------------------------------------------------------------ helpers
    def grid(self, x: torch.Tensor) -> tuple[int, int]:
        return x.shape[-2] // self.p, x.shape[-1] // self.p

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        return patchify(x, self.p)

    def unpatchify(self, x: torch.Tensor, grid) -> torch.Tensor:
        return unpatchify(x, self.p, grid)

    def to_image01(self, xn: torch.Tensor) -> torch.Tensor:
        return (xn * self.encoder.std + self.encoder.mean).clamp(0, 1)

    def masked_reconstruction(self, x01: torch.Tensor, mask: torch.Tensor, patches: torch.Tensor,
                              pred: torch.Tensor, grid) -> dict:
        """reconstruct()'s output for masked-token objectives: masked patches shown as the
        normalised zero (mean colour) in `corrupted`, filled with the prediction in `reconstructed`."""
        m = mask[..., None]
        return {
            "original": x01,
            "corrupted": self.to_image01(self.unpatchify(torch.where(m, torch.zeros_like(patches), patches), grid)),
            "reconstructed": self.to_image01(self.unpatchify(torch.where(m, pred.to(patches.dtype), patches), grid)),
            "mask": mask,
        }

    def pred_to_pixels(self, pred: torch.Tensor, target: torch.Tensor, normed: bool) -> torch.Tensor:
        """Undo the per-patch normalisation of norm_pix predictions using the target's statistics."""
        if not normed:
            return pred
        mean = target.mean(-1, keepdim=True)
        std = (target.var(-1, keepdim=True) + 1e-6).sqrt()
        return pred * std + mean

    # ------------------------------------------------------------------ run hooks
    def start_events(self) -> list[dict]:
        """Log records (without `step`) written once when a run starts: one per warning."""
        return [{"event": "warning", "message": w} for w in self.warnings]

    def on_step_end(self, step: int) -> None:
        """Called after every optimizer step (momentum encoders etc.)."""

    def extra_stats(self) -> dict[str, float]:
        """Values added to every log record (averaged since the previous record where it applies)."""
        return {}

    def gradient_diagnostics(self, out: dict) -> dict[str, float]:
        """Gradient norm of each weighted loss term in `out["parts"]` w.r.t. the encoder's parameters
        (paco_fr.diagnostics.gradient_norms); {} for objectives that return no parts. Called by the
        engine at log steps, before the training backward (the graph is kept)."""
        parts = out.get("parts")
        if not parts:
            return {}
        return gradient_norms(parts, list(self.encoder.parameters()))

    def diagnostics_summary(self, records: list[dict]) -> dict:
        """summary.json's `diagnostics` block from the last log records, oldest first ({} = none)."""
        return {}

    def upstream_encoder(self) -> str | None:
        """Path of a pre-trained encoder this objective trains with (its compute is charged to the
        run's: paco_fr.flops.compute_block), or None."""
        return None

    @torch.no_grad()
    def reconstruct(self, x01: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


__all__ = ["ObjectiveData", "PretrainModel", "norm_pix"]
