"""Model FLOPs of one training step of any objective, and the `compute` block of a run.

What is counted: `torch.utils.flop_counter.FlopCounterMode` on one eager forward + backward of the
objective's model (`paco_fr.models.build_model(cfg)`) -- matrix products, convolutions and
attention, forward and backward, including everything that runs inside the step: a frozen
teacher's passes (MCF-style), the momentum encoder, the text tower (FaRL-style), the Belief
Predictor and the codebook search (PaCo-FR). Elementwise work (norms, activations, the optimizer,
EMA / momentum updates) is not counted, as in the usual "model FLOPs" convention. One FLOP = one
multiply or one add (a multiply-accumulate is 2 FLOPs).

torch's flop counter has no formula for the CPU flash-attention kernel
(`aten._scaled_dot_product_flash_attention_for_cpu`, what `F.scaled_dot_product_attention` runs on
a CPU), so `count_flops` adds the same formula torch uses for the CUDA kernels: the count does not
depend on the device.

Cost per step is measured on a fresh model (the training model and the global RNG streams are not
touched) at two tiny micro-batches and extrapolated linearly to the run's micro-batch (every
counted product is linear in the batch except the B x B contrastive logits, a negligible term),
times `train.grad_accum` and the number of processes: FLOPs of one optimizer step of the whole
run. PaCo-FR is measured after incubation (the steady-state step; an incubation step skips the
backward through the mixing weights, a little cheaper).
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from paco_fr.models import build_model, objective_model

# micro-batches the per-step cost is measured at (even: PaCo-FR's `split` pairing halves the batch)
PROBE_BATCHES = (2, 4)
STEADY_STATE_STEP = 10**9  # past any incubation



def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


_aten = torch.ops.aten
CPU_ATTENTION_FORMULAS = {  # (FlopCounterMode passes tensor shapes to these)
    _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of everything `fn()` runs (forward and, if fn calls it, backward)."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FORMULAS) as fc:
        fn()
    return int(fc.get_total_flops())


def vit_forward_flops(batch: int, num_patches: int, dim: int, depth: int, patch_pixels: int,
                      prefix_tokens: int = 1, mlp_ratio: float = 4.0) -> int:
    """Closed-form FLOPs of a plain ViT forward (patch embedding + `depth` pre-norm blocks, no head):

        2 * B * [ P * 3p^2 * D                                   (patch embedding, a p x p conv)
                  + L * ( T * (3D^2 + D^2 + 2 * mlp_ratio * D^2)  (qkv, proj, the 2 MLP layers)
                          + 2 * T^2 * D ) ]                       (Q K^T and A V, all heads)

    with T = P + prefix tokens. Each term is 2 x its multiply-accumulates."""
    T = num_patches + prefix_tokens
    per_block = T * (3 * dim * dim + dim * dim + 2 * mlp_ratio * dim * dim) + 2 * T * T * dim
    return int(round(2 * batch * (num_patches * patch_pixels * dim + depth * per_block)))


def distinct_images_per_micro_batch(cfg: dict, batch: int) -> int:
    """Distinct images one micro-batch of `batch` trains on (the objective's `distinct_images` hook:
    PaCo-FR with spatial consistency and `spatial.pairing=split` shows the first B/2 images twice,
    B/2 distinct images; tests/test_fair_budget.py checks the hook against the model's views)."""
    return objective_model(cfg).distinct_images(cfg, batch)


@contextlib.contextmanager
def _untouched_rngs():
    """Run a probe without consuming the global torch / numpy / python random streams (training
    resumed from a checkpoint must see the same numbers as an uninterrupted run)."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _probe_model(cfg: dict, data=None, teacher: str | None = None):
    """(a fresh model in train mode, its ObjectiveData): `data` as the run has it (default: the
    objective's synthetic_data); `teacher` replaces the objective's upstream encoder (with_upstream)."""
    cls = objective_model(cfg)
    cfg = copy.deepcopy(cfg)
    cfg["train"]["device"] = "cpu"
    if teacher is not None:
        cfg = cls.with_upstream(cfg, teacher)
    data = data if data is not None else cls.synthetic_data(cfg)
    with warnings.catch_warnings():  # a probe's random teacher is expected, not news
        warnings.simplefilter("ignore")
        model = build_model(cfg, steps_per_epoch=1, data=data)
    return model.train(), data


def _micro_batch_flops(model, cfg: dict, batch: int, data) -> int:
    img = int(cfg["model"]["img_size"])
    g = torch.Generator().manual_seed(0)
    b = {"image": torch.rand(batch, 3, img, img, generator=g), **data.synthetic_fields(batch, g)}

    def step():
        out = model(b, step=STEADY_STATE_STEP)
        out["loss"].backward()

    flops = count_flops(step)
    model.zero_grad(set_to_none=True)
    return flops


def micro_batch_flops(cfg: dict, batch: int | None = None, data=None, teacher: str | None = None) -> int:
    """FLOPs of one forward + backward of one micro-batch of `batch` (default: train.batch_size)
    images, measured at PROBE_BATCHES and extrapolated linearly (measured directly when
    batch <= the largest probe). `data`: the run's ObjectiveData (FaRL: its tokenizer; default the
    objective's synthetic one). `teacher`: replaces the objective's upstream encoder for the probe
    (MCF's mcf.teacher; `random` when the teacher is not trained yet: its weights do not change the
    count, its architecture does)."""
    batch = int(batch or cfg["train"]["batch_size"])
    with _untouched_rngs():
        model, data = _probe_model(cfg, data, teacher)
        if batch <= PROBE_BATCHES[-1]:
            return _micro_batch_flops(model, cfg, batch, data)
        b1, b2 = PROBE_BATCHES
        f1, f2 = (_micro_batch_flops(model, cfg, b, data) for b in (b1, b2))
    return int(round(f1 + (f2 - f1) * (batch - b1) / (b2 - b1)))


def step_cost(cfg: dict, world: int = 1, data=None, teacher: str | None = None) -> dict:
    """{flops_per_step, images_per_step, batch_per_step} of one optimizer step of the whole run."""
    tc = cfg["train"]
    per_rank_micro = int(tc["batch_size"])
    micro = int(tc["grad_accum"]) * int(world)
    return {
        "flops_per_step": micro_batch_flops(cfg, per_rank_micro, data, teacher) * micro,
        "images_per_step": distinct_images_per_micro_batch(cfg, per_rank_micro) * micro,
        "batch_per_step": per_rank_micro * micro,
    }


def read_compute(run_dir) -> dict | None:
    """The `compute` block of a finished run's summary.json (None if absent)."""
    try:
        s = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    c = s.get("compute") if isinstance(s, dict) else None
    return c if isinstance(c, dict) else None


def compute_block(cost: dict, steps: int, wall_time_s: float, device: str, teacher_path: str | None = None) -> dict:
    """summary.json's `compute`: the run's own FLOPs / images / time, and for a method that uses a
    pre-trained teacher (MCF-style) the teacher's own compute and the sum charged to the method."""
    own = int(cost["flops_per_step"]) * int(steps)
    out = {
        "flops_per_step": int(cost["flops_per_step"]),
        "steps": int(steps),
        "flops_total": own,
        "images_per_step": int(cost["images_per_step"]),
        "batch_per_step": int(cost["batch_per_step"]),
        "images_seen": int(cost["images_per_step"]) * int(steps),
        "wall_time_s": float(wall_time_s),
        "device": device,
        "counter": "torch.utils.flop_counter.FlopCounterMode, forward+backward, model FLOPs (paco_fr/flops.py)",
        "charged_flops_total": own,
        "charged_images_seen": int(cost["images_per_step"]) * int(steps),
    }
    if teacher_path:
        t = read_compute(Path(teacher_path).parent)
        out["teacher"] = {"path": str(teacher_path), **({k: t[k] for k in ("flops_total", "images_seen", "steps",
                                                                            "wall_time_s") if k in t} if t else
                                                         {"note": "no compute block next to the teacher"})}
        if t:
            out["charged_flops_total"] = own + int(t.get("flops_total", 0))
            out["charged_images_seen"] = out["images_seen"] + int(t.get("images_seen", 0))
    return out
