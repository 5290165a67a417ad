"""What one cell costs, from its backbone's shape and the split sizes it reads: the FLOPs of a
backbone per image (`Shape`, `backbone_shape`), a machine's measured FLOP/s (`Speed`), the seconds
of a cell without a row to learn from (`probe_cell_seconds`: its FLOPs by kind of cell, over the
speed), and the SynthFace splits a plan still has to generate. bench_tasks.plan.estimate adds them
up per stage."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench_tasks.backbones.native import vit_shape
from bench_tasks.contracts import uri_scheme
from bench_tasks.plan.dense_costs import OUTPUTS as DENSE_OUTPUTS
from bench_tasks.plan.dense_costs import dense_cell_flops
from bench_tasks.plan.floors import is_floor
from bench_tasks.protocols.selection import grid_of
from bench_tasks.registry import TASKS
from bench_tasks.tasks._ceiling import ceiling_epochs_for, is_ceiling
from bench_tasks.tasks._classification import settings
from bench_tasks.tasks._dense import dense_grid, dense_settings
from bench_tasks.tasks.recognition import settings_for
from paco_fr.backbone import default_dense_layers
from paco_fr.data.synthface.dataset import cache_dir

# the speed probe's shapes (bench_tasks.plan.estimate.machine_speed): (dim, depth, heads, image size,
# patch, batch); FLOP/s in between is interpolated in log(dim)
PROBE_SHAPES = {"small": (192, 2, 3, 64, 8, 16), "large": (768, 2, 12, 224, 16, 4)}


# Every cost below is counted in FLOPs and divided by this machine's measured FLOP/s (the probe, at
# the backbone's width): the backbone's and the dense head's own FLOPs (counted), and the work FLOPs
# do not count (the Python loop, the optimizer, data, pair scoring) as FLOP-equivalents fitted on a
# 2-core CPU (one thread, next to other processes) to the wall times of the committed results files
# (scripts/fit_estimates.py) and to scripts/bench_estimates.py's cells, so that they follow the
# machine's speed too.
FORWARD_EFFICIENCY = 1.1  # frozen-feature extraction (inference) runs at about the probe's FLOP/s
TRAIN_EFFICIENCY = 1.0  # fine-tuning (forward + backward, as the probe)
# once per cell (building the backbone and head, the row, the artifacts)
CELL_FLOPS = {"floor": 5e9, "head": 2e10, "finetune": 6e10, "dense": 1.5e11}
# every cell (a floor too) reads its splits and scores its test items: per pixel of the images of
# the splits it loads (SynthFace's cached PNGs decoded at the task's input size, with their masks)
# and per test item (its per-item score, the bootstrap CI, the items file). Fitted to the floors:
# 0.5-0.6 s for 1200 + 300 images at 64 px (smoke), 1.6-1.8 s for 3000 + 1000 at 64 px (cpu,
# paper_cpu), 3.8 s for 1200 + 300 at 224 px (~0.18 ms a 64-px image, 12 x that at 224 px, ~1.1 ms
# a test item); and to the linear cells' time outside extraction and fitting (~1.8 s in paper_cpu)
DATA_PIXEL_FLOPS = 4.6e3
TEST_ITEM_FLOPS = 1.2e8
# the parsing floor counts the classes of every training-mask pixel: per pixel and class
FLOOR_PIXEL_FLOPS = 480
# a head on cached features, per training run and epoch (the loop, scoring val), and per training
# sample and epoch: a fixed part (batching, the optimizer's share) and a part per feature value it
# reads; fitted to the linear cells of the smoke (2 layers x 192 values) and paper_cpu (4 x 192)
# files at fractions 0.1 and 1 (a fraction's cost is mostly its samples, not its epochs)
HEAD_EPOCH_FLOPS = 5e7
HEAD_SAMPLE_FLOPS = 1.0e6
HEAD_VALUE_FLOPS = 2.2e3
# recognition's head (features -> embedding -> margin classifier), per training sample and epoch
# and weight of its embedding layer (2 x width x emb_dim): fitted to the f=0.1 and f=1 cells of
# the cpu profiles (the per-sample cost grows with the embedding, 512 there, 128 in smoke)
RECOGNITION_WEIGHT_FLOPS = 36.0
# recognition: scoring the val pairs once an epoch (10-fold threshold search), per val image
PAIR_EVAL_FLOPS = 5.7e6
# a training step's fixed cost (optimizer, loader, BatchNorm, loss), per step
STEP_FLOPS = 1.5e9
# a dense head's work per pixel of each image of a training step or a scoring pass that its FLOPs
# do not count (the image loaded and normalised, the frozen backbone cache's key, the logits resized
# to the image, the per-pixel loss, confusion matrix or point metrics): timed on the smoke, timm and
# cpu dense cells at 64 px (train steps 2.9-3.9 GFLOP-eq over the head's FLOPs at batch 8, scoring
# 0.11-0.23 GFLOP-eq an image: ~5e4 a pixel) and a parsing cell at 224 px (~7e4 a pixel)
DENSE_PIXEL_FLOPS = 6e4


# SynthFace generation (first use of a split at a size; cached afterwards), seconds per image at
# `size` px with the generator's 2 workers: a + b * size^2, measured on a 2-core CPU (175 img/s at
# 64 px, 45 img/s at 224 px)
SYNTHFACE_S_PER_IMAGE = (4.3e-3, 3.54e-7)


DENSE_TASKS = ("parsing", "landmarks")


def cache_path() -> Path:
    return Path(os.environ.get("PACO_FR_CACHE") or "~/.cache/paco_fr").expanduser() / "speed_probe.json"


@dataclass
class Speed:
    """Measured FLOP/s of this machine at a small and a base ViT width."""

    small: float
    large: float
    key: str = ""
    measured: str = ""
    cached: bool = False

    def flops_per_s(self, dim: int | None = None) -> float:
        lo, hi = PROBE_SHAPES["small"][0], PROBE_SHAPES["large"][0]
        d = min(max(float(dim or lo), lo), hi)
        w = math.log(d / lo) / math.log(hi / lo)
        return math.exp((1 - w) * math.log(self.small) + w * math.log(self.large))

    def line(self) -> str:
        how = "cached" if self.cached else "measured now"
        return (f"this machine ({how}, {cache_path()}): {self.small / 1e9:.1f} GFLOP/s at ViT width "
                f"{PROBE_SHAPES['small'][0]}, {self.large / 1e9:.1f} at width {PROBE_SHAPES['large'][0]}")


@dataclass(frozen=True)
class Shape:
    """A ViT's width, depth and patch (what its FLOPs per image follow from)."""

    dim: int
    depth: int
    patch: int
    native: int | None = None  # the input size it was made for, when known

    def flops_per_image(self, size: int) -> float:
        """Forward FLOPs (2 per multiply-add) at `size` x `size`: blocks (qkv, projection, MLP x4:
        24 T D^2; attention 4 T^2 D) and the patch embedding."""
        t = (math.ceil(size / self.patch)) ** 2 + 1
        d = self.dim
        return self.depth * (24 * t * d * d + 4 * t * t * d) + 2 * (t - 1) * d * 3 * self.patch ** 2


def backbone_shape(uri: str, study_arch: str | None = None) -> Shape | None:
    """The shape of backbone `uri` without running it: `random:` / `supervised:` specs, a weight
    file's tensor shapes, timm's model definition; a `paco_fr:` file not written yet (the study's
    encoders before pre-training) has `study_arch` (a `random:` URI of the same architecture)."""
    try:
        got = vit_shape(uri)
    except Exception:  # noqa: BLE001 - an estimate never fails a plan; the plan's own checks report it
        got = None
    if got is None and study_arch and uri_scheme(uri) == "paco_fr":
        got = vit_shape(study_arch)
    return Shape(*got) if got else None


def split_images(profile, dataset: str) -> tuple[int, int, int] | None:
    """(train, val, test) images of a dataset's whole splits under a profile (what a cell loads):
    SynthFace's are the profile's; a real dataset's are not known before it is read (None)."""
    if dataset != "synthface":
        return None
    return int(profile.synthface_train), int(profile.synthface_val), int(profile.synthface_test)


def split_sizes(profile, task: str, dataset: str) -> tuple[int, int, int] | None:
    """(train, val, test) images a cell trains and scores on: split_images, the dense tasks'
    training split capped at `dense_train_images`."""
    got = split_images(profile, dataset)
    if got is None:
        return None
    n_train = got[0]
    if task in DENSE_TASKS:
        cap = (profile.extra or {}).get("dense_train_images")
        n_train = min(n_train, int(cap)) if cap else n_train
    return n_train, got[1], got[2]


def task_size(task: str, profile) -> int:
    try:
        return int(TASKS.get(task)().image_size(profile))
    except Exception:  # noqa: BLE001
        return int(profile.dense_size if task in DENSE_TASKS else profile.image_size)


def probe_cell_seconds(cell, profile, shape: Shape | None, speed: Speed, features_cached: bool = False) -> float | None:
    """The FLOPs of one cell (and the FLOP-equivalents of what FLOPs do not count) divided by the
    measured speed at the backbone's width: frozen features and a head trained on them, fine-tuning,
    or a dense head (bench_tasks.plan.dense_costs). `features_cached`: a frozen-feature cell whose
    backbone already ran on these images (the feature cache is shared by the tasks and protocols
    of one data set, size and set of layers)."""
    if is_floor(cell.backbone):
        return floor_flops(cell, profile) / speed.flops_per_s()
    sizes = split_sizes(profile, cell.task, cell.dataset)
    if shape is None or sizes is None:
        return None
    data = data_flops(cell, profile)
    if cell.task in DENSE_TASKS:
        flops = dense_cell_flops(cell, profile, shape, sizes, TRAIN_EFFICIENCY, FORWARD_EFFICIENCY, STEP_FLOPS,
                                 DENSE_PIXEL_FLOPS)
        return (flops + data + CELL_FLOPS["dense"]) / speed.flops_per_s(shape.dim)
    if cell.protocol == "finetune" or is_ceiling(cell.backbone):
        return (finetune_flops(cell, profile, shape, sizes) + data + CELL_FLOPS["finetune"]) / \
            speed.flops_per_s(shape.dim)
    flops = 0.0 if features_cached else extraction_flops(cell, profile, shape, sizes) / FORWARD_EFFICIENCY
    return (flops + head_flops(cell, profile, shape, sizes) + data + CELL_FLOPS["head"]) / speed.flops_per_s(shape.dim)


def data_flops(cell, profile) -> float:
    """Reading a cell's splits (DATA_PIXEL_FLOPS per pixel of each image at the task's input size:
    the whole train, val and test splits; a fraction, the dense tasks' cap are subsets taken
    afterwards; a floor reads train and test, recognition's val too, its pairs are built with the
    splits) and scoring its test items (TEST_ITEM_FLOPS per test image). A real dataset's size is
    not known before it is read: the cpu profile's SynthFace (3000, 500, 1000)."""
    n_train, n_val, n_test = split_images(profile, cell.dataset) or (3000, 500, 1000)
    if is_floor(cell.backbone) and cell.task != "recognition":
        n_val = 0
    size = task_size(cell.task, profile)
    return DATA_PIXEL_FLOPS * size * size * (n_train + n_val + n_test) + TEST_ITEM_FLOPS * n_test


def floor_flops(cell, profile) -> float:
    """A floor: its data (data_flops) and, for parsing, the class counts of every training-mask
    pixel (the per-pixel prior)."""
    flops = CELL_FLOPS["floor"] + data_flops(cell, profile)
    if cell.task == "parsing":
        n_train = (split_images(profile, cell.dataset) or (3000,))[0]
        size = task_size(cell.task, profile)
        flops += FLOOR_PIXEL_FLOPS * n_train * size * size * DENSE_OUTPUTS["parsing"]
    return flops


def _flip(profile) -> int:
    try:
        return 2 if settings_for(profile).get("flip", True) else 1
    except Exception:  # noqa: BLE001
        return 2


def extraction_flops(cell, profile, shape: Shape, sizes: tuple[int, int, int]) -> float:
    """Frozen features: one forward pass per image of the whole training split (the cache holds the
    split; a fraction is a subset of it), val and test; recognition scores flipped val / test
    images too (and the cosine probe reads no val)."""
    n_train, n_val, n_test = sizes
    if cell.task == "recognition":
        flip = _flip(profile)
        images = n_train + flip * ((0 if cell.protocol == "cosine" else n_val) + n_test)
    else:
        images = n_train + n_val + n_test
    return images * shape.flops_per_image(task_size(cell.task, profile))


def feature_set(cell, profile) -> tuple:
    """What a frozen-feature cell's cache is keyed by: backbone, data set, size and the layers read
    (recognition reads the last block, the other tasks the probe layers)."""
    return (cell.backbone, cell.dataset, task_size(cell.task, profile), cell.task == "recognition")


def _emb_dim(profile) -> int:
    try:
        return int(settings_for(profile)["emb_dim"])
    except Exception:  # noqa: BLE001
        return 512


def head_flops(cell, profile, shape: Shape, sizes: tuple[int, int, int]) -> float:
    """A head trained on cached features: every run of the learning-rate grid, every epoch (the loop
    and val scored), every training sample; recognition scores its val pairs each epoch."""
    n_train, n_val, n_test = sizes
    n_sub = max(1, round(n_train * float(cell.fraction)))
    if cell.protocol == "cosine":  # no training: the test pairs scored once
        return PAIR_EVAL_FLOPS * n_test
    if cell.task == "recognition":  # an embedding layer on [CLS ; mean patch token], a margin classifier
        weights = 2 * shape.dim * _emb_dim(profile)
        per_epoch = HEAD_EPOCH_FLOPS + RECOGNITION_WEIGHT_FLOPS * weights * n_sub + PAIR_EVAL_FLOPS * n_val
    else:
        values = shape.dim * len(default_dense_layers(shape.depth))
        per_epoch = HEAD_EPOCH_FLOPS + (HEAD_SAMPLE_FLOPS + HEAD_VALUE_FLOPS * values) * n_sub
    return training_runs(cell, profile) * head_epochs(cell, profile) * per_epoch


def finetune_flops(cell, profile, shape: Shape, sizes: tuple[int, int, int]) -> float:
    """Fine-tuning (and the ceiling, trained from scratch): forward + backward of every training image
    each epoch, val scored each epoch, test once; each run of the grid; a fixed cost per step."""
    n_train, n_val, n_test = sizes
    n_sub = max(1, round(n_train * float(cell.fraction)))
    try:
        epochs = int(settings_for(profile)["epochs"] or profile.recognition_epochs) if cell.task == "recognition" \
            else int(settings(profile, "finetune")["epochs"])
    except Exception:  # noqa: BLE001 - a task without these settings: the profile's epochs
        epochs = profile.finetune_epochs
    if is_ceiling(cell.backbone):
        epochs = ceiling_epochs_for(profile.extra, cell.task) or epochs
    per_image = shape.flops_per_image(task_size(cell.task, profile))
    flip = _flip(profile) if cell.task == "recognition" else 1
    steps = epochs * math.ceil(n_sub / max(1, int(profile.batch_size)))
    per_run = (3 * epochs * n_sub * per_image / TRAIN_EFFICIENCY + steps * STEP_FLOPS
               + epochs * flip * n_val * per_image / FORWARD_EFFICIENCY)
    return training_runs(cell, profile) * per_run + flip * n_test * per_image / FORWARD_EFFICIENCY


def training_runs(cell, profile) -> float:
    """How many full trainings a cell costs with the head's learning-rate grid chosen on val
    (bench_tasks.protocols.selection): a grid of k values trains k runs on val and the chosen one
    again with test (k + 1); the dense heads' k pilots train `pilot_frac` of the budget each
    (1 + k * pilot_frac); one value, a ceiling, a floor or the cosine probe: 1."""
    if is_floor(cell.backbone) or is_ceiling(cell.backbone) or cell.protocol in ("cosine", "floor") \
            or cell.protocol.startswith("farl-"):
        return 1.0
    try:
        if cell.task in DENSE_TASKS:
            st = dense_settings(profile)
            k = len(dense_grid(st))
            return 1.0 + k * float(st["pilot_frac"]) if k > 1 else 1.0
        if cell.task == "recognition":
            s = settings_for(profile)
            k = len(grid_of(s.get("lr_grid"), s["lr_head"]))
        else:
            s = settings(profile, cell.protocol)
            k = len(grid_of(s.get("lr_grid"), s["lr_head"]))
    except Exception:  # noqa: BLE001 - an unknown task or protocol: no grid known
        return 1.0
    return float(k + 1) if k > 1 else 1.0


def head_epochs(cell, profile) -> int:
    """Epochs of a head on cached features, as the task computes them."""
    try:
        if cell.task == "recognition":
            s = settings_for(profile)
            return int((s["linear_epochs"] or profile.linear_epochs) if cell.protocol == "linear"
                       else (s["epochs"] or profile.recognition_epochs))

        return int(settings(profile, cell.protocol)["epochs"])
    except Exception:  # noqa: BLE001
        return int(profile.linear_epochs)


def synthface_to_generate(cells: Sequence, profile) -> dict[tuple[str, int, int], float]:
    """{(split, images, size): seconds} of the SynthFace splits the plan reads that are not cached yet."""
    out = {}
    for c in cells:
        if c.dataset != "synthface":
            continue
        size = task_size(c.task, profile)
        for split, n in (("train", profile.synthface_train), ("val", profile.synthface_val),
                         ("test", profile.synthface_test)):
            key = (split, int(n), size)
            if key in out:
                continue
            try:
                cached = (cache_dir(None, split, int(n), size, 0) / "meta.json").exists()
            except Exception:  # noqa: BLE001
                cached = False
            if not cached:
                a, b = SYNTHFACE_S_PER_IMAGE
                out[key] = int(n) * (a + b * size * size)
    return out

