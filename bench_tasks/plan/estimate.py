"""What a plan costs on this machine, before it runs: `run --dry-run` and `run --status` print one
line per stage and a total, and the end of a run prints the estimate next to the time it took.

  * pre-training: each run's model FLOPs (steps x FLOPs per step, the budget plan's own count)
    and its start-up cost divided by this machine's measured speed; its SynthFace images, when not
    cached yet, in the SynthFace stage beside the cells' splits;
  * cells: a cell that has a row took its recorded wall time; a cell without one takes the mean
    wall time of the rows of the same task, dataset, protocol, fraction and profile (same input
    size) in the results file, scaled by the ratio of the two backbones' FLOPs per image; with no
    such row, its FLOPs by kind of cell (frozen features and a head, fine-tuning, a dense head;
    bench_tasks.plan.cell_costs) divided by the measured speed;
  * the speed: a few-second probe (forward + backward of a small and of a base-width ViT block
    stack), cached in ~/.cache/paco_fr/speed_probe.json ($PACO_FR_CACHE) per host, CPU code path,
    torch version, thread count and device; `PACO_FR_SPEED_PROBE=refresh` measures again.

Estimates are for one worker; they are what this machine measured, not a promise (a shared machine
is slower)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.models.vision_transformer import VisionTransformer

from bench_tasks.backbones.native import ARCH_SHAPES
from bench_tasks.plan.cell_costs import (
    DENSE_TASKS,
    PROBE_SHAPES,
    SYNTHFACE_S_PER_IMAGE,
    Shape,
    Speed,
    backbone_shape,
    cache_path,
    feature_set,
    probe_cell_seconds,
    synthface_to_generate,
    task_size,
    training_runs,
)
from bench_tasks.plan.durations import fmt_duration
from bench_tasks.plan.durations import fmt_seconds as _fmt_s  # noqa: F401 - its old name
from bench_tasks.store.rowfiles import union_latest
from bench_tasks.tasks._ceiling import is_ceiling
from paco_fr.atomic import write_text_atomic

PROBE_VERSION = 1
PROBE_SECONDS = 1.5
# Pre-training runs its model FLOPs at 0.85 x the probe's FLOP/s (data, masking, codebook, optimizer
# and EMA are counted in no FLOP) plus, per run, the FLOP-equivalent of its start (model, data read
# from the SynthFace cache, the FLOP count) and end (export); the images themselves are generated
# once, in the SynthFace stage (pretrain_data_to_generate). Fitted on a 2-core CPU, one thread next
# to other processes: scripts/bench_estimates.py's smoke runs (16 steps 2.2 s, 64 steps 7.2 s at
# ~110 GFLOP/s, data cached) and the paper_cpu runs (30.4 TFLOP, 313-325 s).
# A cell's costs: bench_tasks.plan.cell_costs.
PRETRAIN_EFFICIENCY = 0.85
PRETRAIN_RUN_FLOPS = 7e10


def machine_key(device: str = "cpu") -> str:
    cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
    return (f"{platform.node()}|{platform.machine()}|{cap}|torch {torch.__version__}|"
            f"threads {torch.get_num_threads()}|{device}|probe v{PROBE_VERSION}")


def _probe_shape(dim: int, depth: int, heads: int, size: int, patch: int, batch: int, device: str,
                 seconds: float) -> float:
    """Measured FLOP/s of forward + backward of a ViT block stack (timm's VisionTransformer)."""
    # lazy: the FLOP counter only when the machine probe runs, not on --help/list/status
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


def machine_speed(device: str = "cpu", refresh: bool | None = None) -> Speed:
    """This machine's speed: from the cache when the same host / code path / threads measured it,
    else a probe of about 2 x PROBE_SECONDS (then cached)."""
    key = machine_key(device)
    refresh = os.environ.get("PACO_FR_SPEED_PROBE") == "refresh" if refresh is None else refresh
    # one probe at a time per cache: a concurrent process (a pytest-xdist worker, a second `run`)
    # waits and reads the speed just measured instead of measuring against the other probe
    with _probe_lock(cache_path()):
        return _machine_speed(key, device, refresh)


@contextlib.contextmanager
def _probe_lock(path: Path):
    try:
        import fcntl
    except ImportError:  # no lock (Windows): the cache is still replaced whole
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path.with_name(f".{path.name}.lock"), "a")
    except OSError:  # an unwritable cache folder: measured without a lock (and not cached)
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _machine_speed(key: str, device: str, refresh: bool) -> Speed:
    path = cache_path()
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
        write_text_atomic(path, json.dumps(cache, indent=1))
    except OSError:
        pass  # an unwritable cache: measured again next time
    return Speed(small, large, key, measured)


# ----------------------------------------------------------------------------- cells


@dataclass
class CellEstimate:
    seconds: float | None
    source: str  # "row" (this cell's own row), "rows", "probe", "none"
    done: bool = False


def _group(cell: dict) -> tuple:
    return (cell.get("profile"), cell.get("task"), cell.get("dataset"), cell.get("protocol"),
            float(cell.get("fraction") or 1.0))


def cell_estimates(cells: Sequence, rows: dict[str, dict], profile, speed: Speed | None,
                   study_arch: str | None = None, done: Iterable[str] | None = None) -> dict[str, CellEstimate]:
    """{cell key: CellEstimate} (see the module docstring for the order of the sources). `done`:
    the keys the plan counts as done (Plan.status: an ok row of the cell's current version); a
    cell with an ok row not among them is estimated from that row's time and counted as to do.
    None: every cell with an ok row is done."""
    done = None if done is None else set(done)
    by_group: dict[tuple, list[tuple[float, str]]] = defaultdict(list)
    for r in rows.values():
        w = (r.get("provenance") or {}).get("wall_time_s")
        if r.get("status") == "ok" and w is not None:
            # a row computed before the head's learning rate was chosen on val trained once: scale
            # it by the grid's runs (cell_costs.training_runs)
            graded = bool(((r.get("config") or {}).get("task") or {}).get("selection"))
            by_group[_group(r.get("cell") or {})].append((float(w), str((r.get("cell") or {}).get("backbone")),
                                                          graded))
    shapes: dict[str, Shape | None] = {}

    def shape(uri: str) -> Shape | None:
        if uri not in shapes:
            shapes[uri] = backbone_shape(uri, study_arch)
        return shapes[uri]

    out = {}
    extracted: set[tuple] = set()  # the feature sets (cell_costs.feature_set) a cell already extracted
    for c in cells:
        k = c.key()
        r = rows.get(k)
        w = (r or {}).get("provenance", {}).get("wall_time_s") if r else None
        if r is not None and r.get("status") == "ok" and w is not None:
            out[k] = CellEstimate(float(w), "row", done=done is None or k in done)
            continue
        same = by_group.get(_group({"profile": c.profile, "task": c.task, "dataset": c.dataset,
                                    "protocol": c.protocol, "fraction": c.fraction}))
        if same:
            size = task_size(c.task, profile)
            mine = shape(c.backbone)
            scaled = []
            for secs, uri, graded in same:
                theirs = shape(uri)
                ratio = (mine.flops_per_image(size) / theirs.flops_per_image(size)) if mine and theirs else 1.0
                scaled.append(secs * ratio * (1.0 if graded else training_runs(c, profile)))
            out[k] = CellEstimate(sum(scaled) / len(scaled), "rows")
            continue
        shared = feature_set(c, profile)
        frozen = c.protocol != "finetune" and c.task not in DENSE_TASKS and not is_ceiling(c.backbone)
        secs = probe_cell_seconds(c, profile, shape(c.backbone), speed, frozen and shared in extracted) \
            if speed is not None else None
        if frozen:
            extracted.add(shared)
        out[k] = CellEstimate(secs, "probe" if secs is not None else "none")
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
    # lazy: keeps paco_fr.flops out of --help/list/status
    from bench_tasks.plan.suite import finished_elsewhere
    from paco_fr.flops import read_compute

    out = []
    for p in plan:
        flops = float(p.cost["flops_per_step"]) * int(p.steps)
        dim = _run_width(p, profile_name)
        secs = (flops / PRETRAIN_EFFICIENCY + PRETRAIN_RUN_FLOPS) / speed.flops_per_s(dim)
        comp = read_compute(p.run_dir)
        enc = Path(p.run_dir) / "encoder.safetensors"  # here, or finished on another machine (its hash recorded)
        done = bool(comp and comp.get("wall_time_s") is not None and (enc.is_file() or finished_elsewhere(enc)))
        out.append(RunEstimate(p.run.name, secs, done, float(comp["wall_time_s"]) if done else None))
    return out


def _run_config(p, profile_name: str | None) -> dict | None:
    # lazy: keeps paco_fr's config and objective registry out of --help/list/status
    from paco_fr.config import load_config

    try:
        return load_config(profile_name, p.overrides)
    except Exception:  # noqa: BLE001
        return None


def _run_width(p, profile_name: str | None) -> int | None:
    cfg = _run_config(p, profile_name)
    return ARCH_SHAPES.get(cfg["model"]["arch"], (None,))[0] if cfg else None


def pretrain_data(plan: Iterable, profile_name: str | None = None) -> dict[tuple, tuple]:
    """{(split, images, size, seed, root): the runs' SynthFace pre-training images (data.source
    synthface), generated by the first run that reads them, then cached}."""
    out = {}
    for p in plan:
        cfg = _run_config(p, profile_name)
        d = (cfg or {}).get("data") or {}
        if d.get("source") != "synthface":
            continue
        seed = int(cfg["seed"]) if d.get("seed") is None else int(d["seed"])  # as paco_fr.engine.build
        key = (d.get("split") or "pretrain", int(d["num_images"]), int(cfg["model"]["img_size"]), seed, d.get("root"))
        out.setdefault(key, key)
    return out


def pretrain_data_to_generate(plan: Iterable, profile_name: str | None = None) -> dict[tuple[str, int, int], float]:
    """{(split, images, size): seconds} of the pre-training images not cached yet (the SynthFace
    stage, beside the cells' splits: the first run that reads them generates them)."""
    from paco_fr.data.synthface.dataset import cache_dir

    out = {}
    for split, n, size, seed, root in pretrain_data(plan, profile_name):
        try:
            cached = (cache_dir(root, split, n, size, seed) / "meta.json").exists()
        except Exception:  # noqa: BLE001
            cached = False
        if not cached:
            a, b = SYNTHFACE_S_PER_IMAGE
            out[(split, n, size)] = n * (a + b * size * size)
    return out


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


@dataclass
class PlanEstimate:
    """Seconds per stage: total (every run / cell of the plan) and left (not done yet)."""

    pretrain: list[RunEstimate] = field(default_factory=list)
    cells: dict[str, CellEstimate] = field(default_factory=dict)
    speed: Speed | None = None
    # SynthFace splits to generate (the cells' and the pre-training runs'): {(split, n, size): s}
    data: dict = field(default_factory=dict)

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
                  device: str = "cpu", study_arch: str | None = None, speed: Speed | None = None,
                  done: Iterable[str] | None = None) -> PlanEstimate:
    """The estimate of a plan: its cells (rows of `results` and the probe), and the pre-training runs
    of `pretrain_plan` (PlannedRun list) when the plan pre-trains. `done`: the keys the plan counts
    as done (cell_estimates)."""
    speed = speed or machine_speed(device)
    rows = union_latest(results) if Path(results).exists() else {}
    est = PlanEstimate(cells=cell_estimates(cells, rows, profile, speed, study_arch, done), speed=speed,
                       data=synthface_to_generate([c for c in cells if c.key() not in rows], profile))
    if pretrain_plan:
        pretrain_plan = list(pretrain_plan)
        est.pretrain = pretrain_estimates(pretrain_plan, speed, getattr(profile, "name", None))
        left = [p for p, e in zip(pretrain_plan, est.pretrain) if not e.done]
        est.data.update(pretrain_data_to_generate(left, getattr(profile, "name", None)))
    return est


def actual_line(estimated_left_s: float, actual_s: float) -> str:
    """The end of a run: what was estimated for the work left at its start, and what it took."""
    ratio = f" ({actual_s / estimated_left_s:.2f} x the estimate)" if estimated_left_s > 0 else ""
    return f"estimate vs actual: {fmt_duration(estimated_left_s)} estimated, {fmt_duration(actual_s)} taken{ratio}"
