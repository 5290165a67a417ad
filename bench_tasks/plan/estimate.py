"""What a plan costs on this machine, before it runs: `run --dry-run` and `run --status` print one
line per stage and a total, and the end of a run prints the estimate next to the time it took.

  * pre-training: each run's model FLOPs (steps x FLOPs per step, the budget plan's own count)
    divided by this machine's measured speed;
  * cells: a cell that has a row took its recorded wall time; a cell without one takes the mean
    wall time of the rows of the same task, dataset, protocol, fraction and profile (same input
    size) in the results file, scaled by the ratio of the two backbones' FLOPs per image; with no
    such row, its backbone passes (forward for frozen features, forward + backward for fine-tuning)
    divided by the measured speed, plus a fixed cost per cell;
  * the speed: a few-second probe (forward + backward of a small and of a base-width ViT block
    stack), cached in ~/.cache/paco_fr/speed_probe.json ($PACO_FR_CACHE) per host, CPU code path,
    torch version, thread count and device; `PACO_FR_SPEED_PROBE=refresh` measures again.

Estimates are for one worker; they are what this machine measured, not a promise (a shared machine
is slower)."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench_tasks.backbones.native import ARCH_SHAPES, vit_shape
from bench_tasks.plan.floors import is_floor
from bench_tasks.registry import TASKS
from bench_tasks.store.rowfiles import union_latest
from bench_tasks.tasks._ceiling import ceiling_epochs_for
from bench_tasks.tasks._classification import settings
from bench_tasks.tasks.recognition import settings_for

PROBE_VERSION = 1
# probe shapes: (dim, depth, heads, image size, patch, batch); FLOP/s in between is interpolated in log(dim)
PROBE_SHAPES = {"small": (192, 2, 3, 64, 8, 16), "large": (768, 2, 12, 224, 16, 4)}
PROBE_SECONDS = 1.5
# Fitted to the smoke rows of a 2-core CPU (results/smoke.jsonl, 16 runs and 141 cells): pre-training
# reaches about 40 % of the probe's FLOP/s (data, masking, codebook, optimizer, EMA) plus a few seconds
# per run (its process and data); a cell costs, besides its backbone passes, a fixed time per kind
# (heads on cached features, data, metrics; dense heads train a fixed number of steps) and fine-tuning
# 1.5 x its FLOPs (augmentation, optimizer).
PRETRAIN_EFFICIENCY = 0.4
PRETRAIN_RUN_OVERHEAD_S = 4.0
CELL_OVERHEAD_S = {"floor": 1.0, "cosine": 1.2, "concat": 1.5, "linear": 1.5, "finetune": 5.0,
                   "dense": 40.0, "recognition": 5.0}
# a head on cached features: seconds per training image, epoch and feature value (width x the
# blocks it reads), times a factor per protocol (the concatenated-feature probe converges faster)
HEAD_S = 2.4e-7
HEAD_FACTOR = {"linear": 1.0, "frozen": 1.0, "concat": 0.4}
FINETUNE_FACTOR = 1.5
# SynthFace generation (first use of a split at a size; cached afterwards), seconds per image at
# `size` px with the generator's 2 workers: a + b * size^2, measured on a 2-core CPU (175 img/s at
# 64 px, 45 img/s at 224 px)
SYNTHFACE_S_PER_IMAGE = (4.3e-3, 3.54e-7)
DENSE_TASKS = ("parsing", "landmarks")


def cache_path() -> Path:
    return Path(os.environ.get("PACO_FR_CACHE") or "~/.cache/paco_fr").expanduser() / "speed_probe.json"


def machine_key(device: str = "cpu") -> str:
    import torch

    cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
    return (f"{platform.node()}|{platform.machine()}|{cap}|torch {torch.__version__}|"
            f"threads {torch.get_num_threads()}|{device}|probe v{PROBE_VERSION}")


def _probe_shape(dim: int, depth: int, heads: int, size: int, patch: int, batch: int, device: str,
                 seconds: float) -> float:
    """Measured FLOP/s of forward + backward of a ViT block stack (timm's VisionTransformer)."""
    import torch
    from timm.models.vision_transformer import VisionTransformer
    from torch.utils.flop_counter import FlopCounterMode

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VisionTransformer(img_size=size, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads,
                                  num_classes=0).to(device)
        x = torch.rand(batch, 3, size, size, device=device)

    def step():
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    step()  # warm-up
    n, t0 = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t0 < seconds:
        step()
        n += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return flops * n / (time.perf_counter() - t0)


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


def machine_speed(device: str = "cpu", refresh: bool | None = None) -> Speed:
    """This machine's speed: from the cache when the same host / code path / threads measured it,
    else a probe of about 2 x PROBE_SECONDS (then cached)."""
    key = machine_key(device)
    path = cache_path()
    refresh = os.environ.get("PACO_FR_SPEED_PROBE") == "refresh" if refresh is None else refresh
    cache: dict = {}
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):
        cache = {}
    got = cache.get(key)
    if isinstance(got, dict) and not refresh and got.get("small") and got.get("large"):
        return Speed(float(got["small"]), float(got["large"]), key, str(got.get("measured", "")), cached=True)
    small = _probe_shape(*PROBE_SHAPES["small"], device=device, seconds=PROBE_SECONDS)
    large = _probe_shape(*PROBE_SHAPES["large"], device=device, seconds=PROBE_SECONDS)
    measured = time.strftime("%Y-%m-%dT%H:%M:%S")
    cache[key] = {"small": small, "large": large, "measured": measured}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache: measured again next time
    return Speed(small, large, key, measured)


# ----------------------------------------------------------------------------- backbone shapes


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
    if got is None and study_arch and uri.startswith("paco_fr:"):
        got = vit_shape(study_arch)
    return Shape(*got) if got else None


# ----------------------------------------------------------------------------- cells


@dataclass
class CellEstimate:
    seconds: float | None
    source: str  # "row" (this cell's own row), "rows", "probe", "none"
    done: bool = False


def _group(cell: dict) -> tuple:
    return (cell.get("profile"), cell.get("task"), cell.get("dataset"), cell.get("protocol"),
            float(cell.get("fraction") or 1.0))


def split_sizes(profile, task: str, dataset: str) -> tuple[int, int, int] | None:
    """(train, val, test) images of a dataset under a profile: SynthFace's are the profile's; a
    real dataset's are not known before it is read (None)."""
    if dataset != "synthface":
        return None
    n_train = int(profile.synthface_train)
    if task in DENSE_TASKS:
        cap = (profile.extra or {}).get("dense_train_images")
        n_train = min(n_train, int(cap)) if cap else n_train
    return n_train, int(profile.synthface_val), int(profile.synthface_test)


def task_size(task: str, profile) -> int:
    try:
        return int(TASKS.get(task)().image_size(profile))
    except Exception:  # noqa: BLE001
        return int(profile.dense_size if task in DENSE_TASKS else profile.image_size)


def probe_cell_seconds(cell, profile, shape: Shape | None, speed: Speed, features_cached: bool = False) -> float | None:
    """Backbone passes of one cell divided by the measured speed, plus a fixed cost per cell.
    `features_cached`: a frozen-feature cell whose backbone already ran on these images (the
    feature cache is shared by the tasks and protocols of one dataset and size)."""
    if is_floor(cell.backbone):
        return CELL_OVERHEAD_S["floor"]
    sizes = split_sizes(profile, cell.task, cell.dataset)
    if shape is None or sizes is None:
        return None
    n_train, n_val, n_test = sizes
    n_train = max(1, round(n_train * float(cell.fraction)))
    per_image = shape.flops_per_image(task_size(cell.task, profile))
    if cell.protocol == "finetune":
        epochs = {"parsing": profile.dense_epochs, "landmarks": profile.dense_epochs,
                  "recognition": profile.recognition_epochs}.get(cell.task, profile.finetune_epochs)
        if cell.backbone.startswith("supervised:"):
            epochs = ceiling_epochs_for(profile.extra, cell.task) or epochs
        flops = FINETUNE_FACTOR * per_image * (3 * epochs * n_train + epochs * n_val + n_test)
    elif features_cached:
        flops = 0.0
    else:  # frozen features: one forward pass per image, heads on cached features
        flops = per_image * (n_train + n_val + n_test)
    kind = "dense" if cell.task in DENSE_TASKS else cell.protocol
    overhead = CELL_OVERHEAD_S.get(kind, CELL_OVERHEAD_S["linear"])
    if kind in HEAD_FACTOR:
        from paco_fr.backbone import default_dense_layers

        values = shape.dim * len(default_dense_layers(shape.depth))
        overhead += HEAD_FACTOR[kind] * HEAD_S * n_train * head_epochs(cell, profile) * values
        if cell.task == "recognition":
            overhead += CELL_OVERHEAD_S["recognition"]
    return flops / speed.flops_per_s(shape.dim) + overhead


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


def cell_estimates(cells: Sequence, rows: dict[str, dict], profile, speed: Speed | None,
                   study_arch: str | None = None) -> dict[str, CellEstimate]:
    """{cell key: CellEstimate} (see the module docstring for the order of the sources)."""
    by_group: dict[tuple, list[tuple[float, str]]] = defaultdict(list)
    for r in rows.values():
        w = (r.get("provenance") or {}).get("wall_time_s")
        if r.get("status") == "ok" and w is not None:
            by_group[_group(r.get("cell") or {})].append((float(w), str((r.get("cell") or {}).get("backbone"))))
    shapes: dict[str, Shape | None] = {}

    def shape(uri: str) -> Shape | None:
        if uri not in shapes:
            shapes[uri] = backbone_shape(uri, study_arch)
        return shapes[uri]

    out = {}
    extracted: set[tuple] = set()  # (backbone, dataset, size) whose frozen features a cell extracts
    for c in cells:
        k = c.key()
        r = rows.get(k)
        w = (r or {}).get("provenance", {}).get("wall_time_s") if r else None
        if r is not None and r.get("status") == "ok" and w is not None:
            out[k] = CellEstimate(float(w), "row", done=True)
            continue
        same = by_group.get(_group({"profile": c.profile, "task": c.task, "dataset": c.dataset,
                                    "protocol": c.protocol, "fraction": c.fraction}))
        if same:
            size = task_size(c.task, profile)
            mine = shape(c.backbone)
            scaled = []
            for secs, uri in same:
                theirs = shape(uri)
                ratio = (mine.flops_per_image(size) / theirs.flops_per_image(size)) if mine and theirs else 1.0
                scaled.append(secs * ratio)
            out[k] = CellEstimate(sum(scaled) / len(scaled), "rows")
            continue
        shared = (c.backbone, c.dataset, task_size(c.task, profile))
        cached = c.protocol != "finetune" and c.task not in DENSE_TASKS and shared in extracted
        secs = probe_cell_seconds(c, profile, shape(c.backbone), speed, cached) if speed is not None else None
        if c.protocol != "finetune" and c.task not in DENSE_TASKS:
            extracted.add(shared)
        out[k] = CellEstimate(secs, "probe" if secs is not None else "none")
    return out


def synthface_to_generate(cells: Sequence, profile) -> dict[tuple[str, int, int], float]:
    """{(split, images, size): seconds} of the SynthFace splits the plan reads that are not cached yet."""
    from paco_fr.data.synthface.dataset import cache_dir

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


# ----------------------------------------------------------------------------- pre-training


@dataclass
class RunEstimate:
    name: str
    seconds: float
    done: bool
    actual_s: float | None = None


def pretrain_estimates(plan: Iterable, speed: Speed, profile_name: str | None = None) -> list[RunEstimate]:
    """One RunEstimate per PlannedRun of the suite (bench_tasks.plan.study.plan_suite): steps x FLOPs
    per step / the measured speed at the run's width; a finished run keeps its recorded time."""
    from paco_fr.flops import read_compute

    out = []
    for p in plan:
        flops = float(p.cost["flops_per_step"]) * int(p.steps)
        dim = _run_width(p, profile_name)
        secs = flops / (PRETRAIN_EFFICIENCY * speed.flops_per_s(dim)) + PRETRAIN_RUN_OVERHEAD_S
        comp = read_compute(p.run_dir)
        done = bool(comp and comp.get("wall_time_s") is not None and (Path(p.run_dir) / "encoder.safetensors").is_file())
        out.append(RunEstimate(p.run.name, secs, done, float(comp["wall_time_s"]) if done else None))
    return out


def _run_width(p, profile_name: str | None) -> int | None:
    from paco_fr.config import load_config

    try:
        arch = load_config(profile_name, p.overrides)["model"]["arch"]
    except Exception:  # noqa: BLE001
        return None
    return ARCH_SHAPES.get(arch, (None,))[0]


# ----------------------------------------------------------------------------- the lines


def busy_line() -> str | None:
    """A warning when other processes share the CPU now (the estimate assumes they do not)."""
    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except (AttributeError, OSError):
        return None
    if load <= cores * 1.2:
        return None
    return (f"the CPU is shared now (load average {load:.1f} on {cores} cores): expect up to "
            f"{load / cores:.1f} x longer")


def fmt_duration(s: float | None) -> str:
    """`42s`, `26min`, `5.8h` (as `status` writes times); `?` for no estimate."""
    return "?" if s is None else _fmt_s(s)


@dataclass
class PlanEstimate:
    """Seconds per stage: total (every run / cell of the plan) and left (not done yet)."""

    pretrain: list[RunEstimate] = field(default_factory=list)
    cells: dict[str, CellEstimate] = field(default_factory=dict)
    speed: Speed | None = None
    data: dict = field(default_factory=dict)  # SynthFace splits to generate: {(split, n, size): s}

    def stage_seconds(self) -> dict[str, tuple[float, float, int, int]]:
        """{stage: (total s, left s, items, items left)}"""
        out = {}
        if self.data:
            secs = sum(self.data.values())
            out["SynthFace"] = (secs, secs, len(self.data), len(self.data))
        if self.pretrain:
            out["pre-training"] = (sum(r.actual_s if r.done else r.seconds for r in self.pretrain),
                                   sum(r.seconds for r in self.pretrain if not r.done),
                                   len(self.pretrain), sum(not r.done for r in self.pretrain))
        known = [e for e in self.cells.values() if e.seconds is not None]
        out["cells"] = (sum(e.seconds for e in known), sum(e.seconds for e in known if not e.done),
                        len(self.cells), sum(not e.done for e in self.cells.values()))
        return out

    @property
    def total_s(self) -> float:
        return sum(v[0] for v in self.stage_seconds().values())

    @property
    def left_s(self) -> float:
        return sum(v[1] for v in self.stage_seconds().values())

    def lines(self) -> list[str]:
        out = []
        src = defaultdict(int)
        for e in self.cells.values():
            if not e.done:
                src[e.source] += 1
        for stage, (tot, left, n, n_left) in self.stage_seconds().items():
            what = {"pre-training": "runs", "SynthFace": "splits"}.get(stage, "cells")
            how = ("model FLOPs / the measured speed" if stage == "pre-training" else
                   "generated on first use, then cached" if stage == "SynthFace" else
                   ", ".join(f"{n_s} from {dict(row='their rows', rows='rows of the same task and size', probe='the speed probe', none='nothing (not counted)')[s]}"
                             for s, n_s in sorted(src.items())) or "every cell has a row")
            out.append(f"estimate: {stage:<12} {fmt_duration(tot):>7} for {n} {what}; {fmt_duration(left)} for the "
                       f"{n_left} not done ({how})")
        out.append(f"estimate: {'total':<12} {fmt_duration(self.total_s):>7}; left: {fmt_duration(self.left_s)} "
                   "(one worker on this machine)")
        if self.speed is not None:
            out.append(f"estimate: {self.speed.line()}")
        busy = busy_line()
        if busy:
            out.append(f"estimate: {busy}")
        return out


def estimate_plan(cells: Sequence, results: str | Path, profile, pretrain_plan: Iterable | None = None,
                  device: str = "cpu", study_arch: str | None = None, speed: Speed | None = None) -> PlanEstimate:
    """The estimate of a plan: its cells (rows of `results` and the probe), and the pre-training runs
    of `pretrain_plan` (PlannedRun list) when the plan pre-trains."""
    speed = speed or machine_speed(device)
    rows = union_latest(results) if Path(results).exists() else {}
    est = PlanEstimate(cells=cell_estimates(cells, rows, profile, speed, study_arch), speed=speed,
                       data=synthface_to_generate([c for c in cells if c.key() not in rows], profile))
    if pretrain_plan:
        est.pretrain = pretrain_estimates(pretrain_plan, speed, getattr(profile, "name", None))
    return est


def actual_line(estimated_left_s: float, actual_s: float) -> str:
    """The end of a run: what was estimated for the work left at its start, and what it took."""
    ratio = f" ({actual_s / estimated_left_s:.2f} x the estimate)" if estimated_left_s > 0 else ""
    return f"estimate vs actual: {fmt_duration(estimated_left_s)} estimated, {fmt_duration(actual_s)} taken{ratio}"


def _fmt_s(s: float) -> str:
    s = max(0.0, float(s))
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}min"
    return f"{s / 3600:.1f}h"
