"""How far the time estimates (bench_tasks.plan.estimate) are from the time cells and pre-training
runs take on this machine: a benchmark, not a test (it takes minutes and its numbers belong to the
machine it ran on).

For each plan it resolves the plan as `run` does, picks a sample of its cells of each kind (linear
heads, dense heads, recognition, ceiling, floor), estimates the sample from the speed probe alone
(a fresh results file: no row to learn from, every cell estimated as a new user's first run would
be), runs the sample one cell after the other in this process, and prints one line per kind:
cells, estimated s, measured s, measured / estimated. A study plan also pre-trains one of its runs
for a few steps next to that run's estimate.

    OMP_NUM_THREADS=1 python scripts/bench_estimates.py                  # smoke, timm224, cpu
    python scripts/bench_estimates.py --plans smoke --per-kind 2 --pretrain-steps 16

Plans:
  smoke   the smoke main job (`run --spec smoke`); the study's encoders (not pre-trained here) are
          measured as the random-init control of the same architecture (the same FLOPs);
  timm224 a 224-px `timm:vit_tiny_patch16_224:<file>` checkpoint (random weights written to a
          safetensors file) on all five tasks, smoke profile: its cells run at the profile's 64 px
          (the backbone resized to a 4 x 4 grid, as `run --profile smoke` runs it);
  native224 the same checkpoint at its own 224 px (`--set native_size=true`: the smoke profile's
          splits and epochs, 224-px images); not in the default plans: one cell of each kind took
          ~25 min on 2 shared cores, 16 of them the ceiling (fine-tuning ViT-Ti/16 at 224 px, ~5 x
          its estimate: training at 197 tokens runs far below the probe's FLOP/s there);
  cpu     the `cpu` profile on all five tasks with the same random-init ViT as its study; its
          ceiling cells (30 epochs, tens of minutes) are measured at `--ceiling-epochs` epochs and
          its dense cells at `--dense-min-steps` steps (600: ~20 min a cell on 2 shared cores), and
          estimated at the same, so the table checks the per-epoch and per-step rates the estimate
          uses.

Everything goes to work_dirs/bench_estimates/ (git-ignored); SynthFace splits (the cells' and the
pre-training images) are generated before the clock starts (the estimate counts them as their own
stage).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("linear", "dense", "recognition", "ceiling", "floor")
TASKS_ALL = ("attributes", "expression", "parsing", "landmarks", "recognition")


def cell_kind(cell) -> str:
    from bench_tasks.plan.cell_costs import DENSE_TASKS
    from bench_tasks.plan.floors import is_floor
    from bench_tasks.tasks._ceiling import is_ceiling

    if is_floor(cell.backbone):
        return "floor"
    if is_ceiling(cell.backbone):
        return "ceiling"
    if cell.task in DENSE_TASKS:
        return "dense"
    return "recognition" if cell.task == "recognition" else "linear"


def random_checkpoint(out: Path) -> Path:
    """A timm vit_tiny_patch16_224 with random weights, as a safetensors file."""
    import timm
    import torch
    from safetensors.torch import save_file

    path = out / "vit_tiny_patch16_224_random.safetensors"
    if not path.is_file():
        torch.manual_seed(0)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def plan_spec(name: str, out: Path, args):
    from bench_tasks.run.spec import RunSpec

    common = dict(results=str(out / f"{name}.jsonl"), work_dir=str(out / f"wd_{name}"), runs=str(out / "runs"),
                  no_progress=True, threads=args.threads)
    if name == "smoke":
        return RunSpec.from_yaml("smoke").replace(**common)
    if name in ("timm224", "native224"):
        ckpt = random_checkpoint(out)
        native = {"set": ("native_size=true",)} if name == "native224" else {}
        return RunSpec(profile="smoke", tasks=TASKS_ALL, backbones=(f"timm:vit_tiny_patch16_224:{ckpt}",), **native,
                       **common)
    if name == "cpu":
        from bench_tasks.plan.suite import random_control

        return RunSpec(profile="cpu", tasks=TASKS_ALL, backbones=(random_control("cpu"),), seeds=("0",),
                       set=(f"ceiling_epochs={args.ceiling_epochs}", f"dense_min_steps={args.dense_min_steps}"),
                       **common)
    raise SystemExit(f"unknown plan {name!r}; expected smoke, timm224, native224 or cpu")


def sample(cells, per_kind: int, kinds=KINDS) -> list:
    """Up to `per_kind` cells of each kind, the plan's order kept; different tasks / protocols /
    fractions first (the dense kind: a parsing and a landmarks cell)."""
    picked: dict[str, list] = defaultdict(list)
    seen: dict[str, set] = defaultdict(set)
    for c in cells:
        kind = cell_kind(c)
        if kind not in kinds:
            continue
        what = (c.task, c.protocol, c.fraction)
        if len(picked[kind]) < per_kind and what not in seen[kind]:
            picked[kind].append(c)
            seen[kind].add(what)
    keep = {id(c) for cs in picked.values() for c in cs}
    return [c for c in cells if id(c) in keep]


def warm_synthface(cells, profile_of) -> None:
    """Generate the SynthFace splits the sample reads (the estimate's own stage), before timing."""
    from bench_tasks.plan.cell_costs import task_size
    from bench_tasks.registry import DATASETS

    done = set()
    for c in cells:
        if c.dataset != "synthface":
            continue
        profile = profile_of(c)
        size = task_size(c.task, profile)
        for split in ("train", "val", "test"):
            if (c.task, split, size, profile.name) not in done:
                DATASETS.get("synthface")().load(c.task, split, None, profile, size)
                done.add((c.task, split, size, profile.name))


def warm_pretrain_data(plan, profile_name: str) -> None:
    """Generate the runs' SynthFace pre-training images (the estimate's SynthFace stage), before timing."""
    from bench_tasks.plan.estimate import pretrain_data
    from paco_fr.data.synthface.dataset import load_synthface

    for split, n, size, seed, root in pretrain_data(plan, profile_name):
        load_synthface(split, n, image_size=size, seed=seed, root=root, progress=False)


def measure_plan(name: str, out: Path, args) -> list[tuple]:
    from bench_tasks.plan.cell_costs import backbone_shape
    from bench_tasks.plan.cell_plan import cell_version
    from bench_tasks.plan.estimate import cell_estimates, machine_speed
    from bench_tasks.plan.suite import random_control
    from bench_tasks.run.runner import BackboneCache, RunContext, run_cell
    from bench_tasks.session.experiment import resolve

    spec = plan_spec(name, out, args)
    if "dense" not in args.kinds.split(","):  # the same plan's other cells (and no mmcv needed)
        spec = spec.replace(tasks=tuple(t for t in TASKS_ALL if t not in ("parsing", "landmarks")))
    # a fresh results file and work folder: no row to learn from, no feature cached
    Path(spec.results_path).unlink(missing_ok=True)
    shutil.rmtree(spec.work_dir, ignore_errors=True)
    exp = resolve(spec, log=lambda _line: None)
    profile = exp.profile
    study_arch = random_control(profile.name) if spec.is_study else None
    cells = sample(exp.plan.cells, args.per_kind, args.kinds.split(","))
    warm_synthface(cells, exp.plan.profile_of)
    cache = BackboneCache()
    lines = []
    for c in cells:
        run_as = c
        if c.backbone.startswith("paco_fr:") and study_arch:  # not pre-trained here: same shape, same FLOPs
            run_as = dataclasses.replace(c, backbone=study_arch)
        before = machine_speed("cpu", refresh=True)
        t0 = time.perf_counter()
        prof = exp.plan.profile_of(c)
        ctx = RunContext(results=Path(spec.results_path), work_dir=Path(spec.work_dir), device="cpu", progress=False)
        row = run_cell(run_as, ctx, cell_version(run_as, prof), prof, backbones=cache)
        took = time.perf_counter() - t0
        speed = shared_speed(before, machine_speed("cpu", refresh=True))
        # the sample's estimate in the order it runs (the first cell of a feature set extracts it,
        # the next ones read it), at the speed measured around this cell
        e = cell_estimates(cells, {}, profile, speed, study_arch=study_arch)[c.key()].seconds
        shape = backbone_shape(run_as.backbone, study_arch)
        print(f"  {name:8} {cell_kind(c):12} {c.task:11} {c.protocol:9} f={c.fraction:<4g} "
              f"{(shape.dim, shape.depth, shape.patch) if shape else '?'} at {speed.small / 1e9:.1f} GFLOP/s: "
              f"est {e if e is None else round(e, 1)} s, took {took:.1f} s ({row['status']}){parts(row)}", flush=True)
        if row["status"] != "ok":
            print(row.get("error", "")[-2000:], flush=True)
        lines.append((name, cell_kind(c), e or 0.0, took))
    if spec.is_study and args.pretrain_steps:
        lines.append(measure_pretrain(exp, out, args.pretrain_steps))
    return lines


def parts(row: dict) -> str:
    """The cell's own timings (features, fit, data), where its task records them."""
    t = (row.get("provenance") or {}).get("timings") or {}
    got = {k.removesuffix("_seconds").removesuffix("_s"): v for k, v in t.items()
           if k in ("features_extract_s", "features_load_s", "fit_s", "data_seconds", "feature_seconds",
                    "fit_seconds") and isinstance(v, (int, float))}
    return "; " + ", ".join(f"{k} {v:.1f} s" for k, v in got.items()) if got else ""


def shared_speed(a, b):
    """The machine's speed over a cell: the geometric mean of the probes before and after it (the
    machine is shared: its speed moves with the other processes' load)."""
    from bench_tasks.plan.cell_costs import Speed

    return Speed((a.small * b.small) ** 0.5, (a.large * b.large) ** 0.5)


def measure_pretrain(exp, out: Path, steps: int) -> tuple:
    """The study's first run pre-trained for `steps` steps next to its estimate at that length."""
    from bench_tasks.plan.estimate import machine_speed, pretrain_estimates
    from bench_tasks.plan.study import plan_suite
    from bench_tasks.run.pretrain import _pretrain_one

    first = plan_suite(exp.profile.name, out / "runs_est", False, exp.spec.overrides)[0]
    short = dataclasses.replace(first, steps=steps, overrides={**first.overrides, "train.steps": steps},
                                run_dir=out / "runs_bench" / f"{first.run.name}_{steps}")
    shutil.rmtree(short.run_dir, ignore_errors=True)
    warm_pretrain_data([short], exp.profile.name)
    before = machine_speed("cpu", refresh=True)
    t0 = time.perf_counter()
    _pretrain_one(short.run, dict(short.overrides), str(short.run_dir), exp.profile.name, progress=False,
                  threads=int(os.environ.get("OMP_NUM_THREADS") or 1))
    took = time.perf_counter() - t0
    (est,) = pretrain_estimates([short], shared_speed(before, machine_speed("cpu", refresh=True)), exp.profile.name)
    print(f"  {exp.profile.name:8} pre-training {short.run.name} {steps} steps: est {est.seconds:.1f} s, "
          f"took {took:.1f} s", flush=True)
    return (exp.spec.profile, "pre-training", est.seconds, took)


def table(lines: list[tuple]) -> str:
    agg: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for plan, kind, est, took in lines:
        a = agg[(plan, kind)]
        a[0] += 1
        a[1] += est
        a[2] += took
    out = [f"{'plan':9} {'kind':13} {'cells':>5} {'estimated s':>12} {'measured s':>11} {'ratio':>6}"]
    for (plan, kind), (n, est, took) in agg.items():
        ratio = took / est if est else float("inf")
        flag = "" if 0.67 <= ratio <= 1.5 else "  <- outside [0.67, 1.5]"
        out.append(f"{plan:9} {kind:13} {n:5d} {est:12.1f} {took:11.1f} {ratio:6.2f}{flag}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plans", default="smoke,timm224,cpu")
    ap.add_argument("--per-kind", type=int, default=1, help="cells of each kind per plan")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pretrain-steps", type=int, default=16, help="0: no pre-training run")
    ap.add_argument("--ceiling-epochs", type=int, default=2, help="the cpu plan's ceiling epochs (profile: 30)")
    ap.add_argument("--dense-min-steps", type=int, default=150, help="the cpu plan's dense_min_steps (profile: 600)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="only these kinds of cells")
    ap.add_argument("--out", default=str(ROOT / "work_dirs" / "bench_estimates"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ["PACO_FR_CACHE"] = str(Path(args.out) / "cache")  # not the user's probe cache
    import torch

    torch.set_num_threads(args.threads)
    from bench_tasks.registry import load_registries

    load_registries()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in args.plans.split(","):
        print(f"[{name}]", flush=True)
        lines += measure_plan(name, out, args)
    print()
    print(table(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
