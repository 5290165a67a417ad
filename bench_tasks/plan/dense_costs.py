"""What one dense cell (face parsing, landmarks) costs in FLOPs, as `_dense.fit_dense` trains it:
the FPN + UPerHead's FLOPs per image (counted from its layers: the token grid, the backbone's width,
the head's channels), the optimiser steps of each run of the learning-rate grid (pilots at
`pilot_frac` of the budget, the chosen value the whole budget; `min_steps` raises the epochs of a
small training set), val scored `evals` times a run, test with the chosen run; the frozen backbone
runs once per image (its token maps are cached), a fine-tuned one (and the ceiling, trained from
scratch) forward and backward every step; every image a step or a scoring pass reads costs an
amount per pixel besides (loading and normalising it, the frozen cache's key, the logits resized to
it, its loss or metrics).
bench_tasks.plan.cell_costs divides by the speed."""

from __future__ import annotations

import math

from bench_tasks.heads.dense import FARL_SCALES
from bench_tasks.tasks._ceiling import ceiling_epochs_for, is_ceiling
from bench_tasks.tasks._dense import dense_grid, dense_settings, pilot_settings, resolve_protocol, step_budget
from paco_fr.backbone import default_dense_layers

# the head's outputs (SynthFace: 68 points, 11 parsing classes); their 1x1 convolution is a small
# part of the head, so a real data set's count (known once it is read) changes little
OUTPUTS = {"landmarks": 68, "parsing": 11}
POOL_SCALES = (1, 2, 3, 6)


def head_flops_per_image(task: str, dim: int, depth: int, patch: int, size: int, channels: int) -> float:
    """Forward FLOPs (2 per multiply-add) of the simple FPN + UPerHead on one image: transposed
    convolutions to x4 / x2 of the token grid, lateral 1x1 and 3x3 FPN convolutions, the pyramid
    pooling module on the coarsest level, the 3x3 bottleneck over the concatenated levels at x4,
    and the classifier."""
    g = math.ceil(size / patch)
    levels = FARL_SCALES[:len(default_dense_layers(depth))]
    d, c = dim, channels
    area = [(s * g) ** 2 for s in levels]
    macs = 0.0
    for s in levels:  # simple FPN: x4 = two 2x2 stride-2 transposed convs, x2 = one
        if s >= 2:
            macs += (2 * g) ** 2 * d * d
        if s >= 4:
            macs += (4 * g) ** 2 * d * d
    macs += sum(a * d * c for a in area[:-1])  # laterals
    macs += sum(a * 9 * c * c for a in area[:-1])  # FPN 3x3 convolutions
    macs += sum(p * p * d * c for p in POOL_SCALES) + area[-1] * 9 * (d + len(POOL_SCALES) * c) * c  # PPM
    macs += area[0] * 9 * len(levels) * c * c  # the bottleneck at x4
    macs += area[0] * c * OUTPUTS.get(task, 32)  # the classifier
    return 2 * macs


def dense_cell_flops(cell, profile, shape, sizes: tuple[int, int, int], train_efficiency: float,
                     forward_efficiency: float, step_flops: float, pixel_flops: float = 0.0) -> float:
    """The FLOPs (forward + backward counted 3 x forward, divided by the efficiencies), the steps'
    fixed cost and `pixel_flops` per pixel of each image a step or a scoring pass reads (the module
    docstring)."""
    st = dense_settings(profile)
    n_train, n_val, n_test = sizes
    n_sub = max(2, round(n_train * float(cell.fraction)))
    bs = max(2, min(int(st["batch_size"]), n_sub))
    steps_per_epoch = n_sub // bs if n_sub > bs else 1
    size = int(st["size"])
    head = head_flops_per_image(cell.task, shape.dim, shape.depth, shape.patch, size, int(st["channels"]))
    backbone = shape.flops_per_image(size)
    ceiling = is_ceiling(cell.backbone)
    tuned = ceiling or resolve_protocol(cell.protocol) == "finetune"
    # a step: forward + backward of the head (and of the backbone when it trains) on a batch
    per_image_step = 3 * (head + (backbone if tuned else 0.0)) / train_efficiency + pixel_flops * size * size
    per_image_eval = (head + (backbone if tuned else 0.0)) / forward_efficiency + pixel_flops * size * size
    grid = [st["lr_head"]] if ceiling else dense_grid(st)

    def run(settings: dict, with_test: bool) -> float:
        epochs, eval_every = step_budget(steps_per_epoch, settings)
        if ceiling:
            epochs = ceiling_epochs_for(profile.extra, cell.task) or epochs
        evals = math.ceil(epochs / eval_every)
        steps = epochs * steps_per_epoch
        scored = evals * (n_val + (n_test if with_test else 0))
        return steps * (bs * per_image_step + step_flops) + scored * per_image_eval

    total = run(st, True) + (len(grid) * run(pilot_settings(st), False) if len(grid) > 1 else 0.0)
    total += n_test * per_image_eval  # the selected weights scored again (slices, items, previews)
    if not tuned:  # the frozen backbone's token maps, once per image
        total += (n_sub + n_val + n_test) * backbone / forward_efficiency
    return total
