"""The GPU study in one device call: data, throughput table, pre-training suite, evaluation, report.

    python scripts/device_study.py --out OUT [--profile gpu] [--time-limit 540]
    bash scripts/device_study.sh          # on the lent machine: installs the carried wheels, then the above

Every stage has its share of one wall-clock budget (`--time-limit`, seconds from the start of this
process) and whatever finished is written to OUT, so a slow stage costs its own rows, never the
others'. Stages, in order (each a subprocess, so a crash in one leaves the driver standing):

1. `prepare-data` (background, all CPU cores but one, niced): SynthFace for the pre-training split and
   the evaluation splits of the profile, generated in parallel and cached on the local disk.
   Meanwhile, on the GPU: the eager half of the throughput table (`python -m paco_fr bench-throughput
   --suite`, ViT-B/16 at 224, bf16) and a calibration of the study's own steps (the profile's
   pre-training config, every objective, eager, a few steps).
2. compile warm-up (background, niced): each compiled throughput step is compiled and run twice,
   untimed, so that the timed compiled runs of stage 5 hit inductor's caches.
3. `study`: the pre-training suite (PaCo-FR, MAE, FaRL-style, MCF-style; same backbone, data and
   number of steps: ONE step count for every objective, chosen from the calibration so that the
   suite fits `--pretrain-budget` seconds) and the evaluation of those encoders plus the random-init
   control on all five SynthFace tasks, in priority order (seed 0 of every backbone and task first,
   then further seeds); a cell is not started when the measured time of its task would cross the
   evaluation deadline. Rows go to results/<profile>.jsonl as in any `run`.
4. `python -m bench_tasks report` on those rows (tables, figures, SUMMARY.md).
5. the compiled half of the throughput table, timed alone on the GPU.
6. OUT receives: <profile>.jsonl, reports_<profile>.tar.gz (report + each run's summary/config/log),
   throughput.json, throughput.md, env.json, device_study.log (at most 8 files, as the device tool allows).

`--tiny` runs the same code path at CPU-test size (the `smoke` profile, a tiny ViT, a few steps);
tests/test_toy_study.py runs it (on the runs of a `run --all --pretrain-only`: the suite is reused).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench_tasks, paco_fr

TASKS = ("attributes", "expression", "recognition", "landmarks", "parsing")
# evaluation priority: cheap, informative tasks first, so a deadline cuts the expensive dense cells
TASK_PRIORITY = {t: i for i, t in enumerate(TASKS)}
# floors first (seconds, input-free), then the compared methods (by run name), the random-init
# control and the supervised ceiling
BACKBONE_PRIORITY = ("floor", "paco", "mae", "farl", "mcf", "random", "supervised")
# before a task's first cell has run (its own time is the estimate afterwards): seconds it needs
# left before the evaluation deadline to be started
FIRST_CELL_ESTIMATE_S = {"parsing": 25.0, "landmarks": 25.0, "recognition": 10.0}


# ----------------------------------------------------------------------------- small helpers


class Clock:
    def __init__(self, limit_s: float):
        self.t0 = time.time()
        self.limit = float(limit_s)

    @property
    def deadline(self) -> float:
        return self.t0 + self.limit

    def left(self) -> float:
        return self.deadline - time.time()

    def elapsed(self) -> float:
        return time.time() - self.t0


class Log:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.t0 = time.time()

    def __call__(self, msg: str) -> None:
        line = f"[device-study +{time.time() - self.t0:6.1f}s] {msg}"
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


def _py() -> list[str]:
    return [sys.executable]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PACO_FR_SPLIT_CACHE", "1")  # each process reads a SynthFace split once
    return env


def run_sub(cmd: list[str], log: Log, timeout: float, name: str, nice: int = 0) -> int:
    """Run a stage as a subprocess, its output appended to the log; kill it at `timeout` seconds."""
    if timeout <= 1:
        log(f"{name}: skipped, no time left")
        return 124
    full = (["nice", "-n", str(nice)] if nice and shutil.which("nice") else []) + cmd
    log(f"{name}: {' '.join(cmd)} (timeout {timeout:.0f}s)")
    t = time.time()
    with log.path.open("a") as f:
        p = subprocess.Popen(full, stdout=f, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
        _autogroup_nice(p.pid, nice)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(p)
            rc = 124
    log(f"{name}: rc={rc} in {time.time() - t:.1f}s")
    return rc


def start_bg(cmd: list[str], log: Log, name: str, nice: int = 10):
    full = (["nice", "-n", str(nice)] if nice and shutil.which("nice") else []) + cmd
    log(f"{name} (background): {' '.join(cmd)}")
    f = (log.path.parent / f"{name}.log").open("w")
    p = subprocess.Popen(full, stdout=f, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
    _autogroup_nice(p.pid, nice)
    return p


def _autogroup_nice(pid: int, nice: int) -> None:
    """A new session is its own scheduling autogroup on Linux (sched_autogroup_enabled), where a
    process's nice value counts only inside the group: give the group the same nice value."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError:
        pass


def _kill(p) -> None:
    import signal

    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        p.kill()
    p.wait()


def wait_bg(p, log: Log, name: str, timeout: float) -> int:
    try:
        rc = p.wait(timeout=max(timeout, 0.1))
    except subprocess.TimeoutExpired:
        _kill(p)
        rc = 124
    log(f"{name}: rc={rc}")
    return rc


# ----------------------------------------------------------------------------- sizes


def study_settings(profile_name: str, tiny: bool) -> dict:
    """Sizes of everything the study runs. `tiny`: the CPU-test path (same code, toy sizes)."""
    if tiny:
        return {
            "profile": "smoke", "pretrain_overrides": {"data.num_images": 64, "train.batch_size": 8,
                                                       "train.snapshot_every": 0, "train.ckpt_every": 0,
                                                       "train.log_every": 2, "incubation.steps": 2,
                                                       "model.img_size": 32, "model.depth": 2,
                                                       "codebook.num_tokens": 32, "decoder.dim": 32,
                                                       "decoder.depth": 1},
            "throughput": {"arch": "vit_tiny", "img_size": 32, "patch_size": 8, "depth": 1, "batch": 4,
                           "steps": 2, "warmup": 1, "overrides": ["decoder.dim=32", "decoder.depth=1",
                                                                  "codebook.num_tokens=64"]},
            "calibration": {"batch": 8, "steps": 2, "warmup": 1},
            "min_steps": 4, "max_steps": 6, "tasks": ("attributes", "expression"),
            # the profile's sizes for a rehearsal of the code path (the scores are not read): few images,
            # few epochs, one head learning rate instead of the grid chosen on val
            "profile_set": {"synthface_train": 200, "synthface_val": 60, "synthface_test": 60, "linear_epochs": 2,
                            "finetune_epochs": 1, "linear.lr_grid": [], "concat.lr_grid": [], "frozen.lr_grid": [],
                            "finetune.lr_grid": []},
        }
    return {
        "profile": profile_name, "pretrain_overrides": {},
        "throughput": {"arch": "vit_base", "img_size": 224, "patch_size": 16, "depth": None, "batch": 256,
                       "steps": 10, "warmup": 3, "overrides": []},
        "calibration": {"batch": None, "steps": 5, "warmup": 2},
        "min_steps": 100, "max_steps": 20000, "tasks": TASKS, "profile_set": {},
    }


def pretrain_steps_for_budget(step_s: dict[str, float], budget_s: float, overhead: float = 1.15,
                              fixed_s_per_run: float = 15.0, min_steps: int = 100, max_steps: int = 20000) -> int:
    """One step count for every objective such that the whole suite fits `budget_s`: the sum of the
    measured per-step times times `overhead` (data loading, EMA, logging), plus `fixed_s_per_run`
    for each run (model build, data, export). Measured on an H200 on 2026-11-27: 109 steps per
    objective took 70 s of steps and 150 s in all for 4 runs, on a CPU shared with an mmcv build and
    inductor compiles (docs/throughput.md)."""
    per_step = sum(step_s.values()) * overhead
    if per_step <= 0:
        return min_steps
    left = budget_s - fixed_s_per_run * len(step_s)
    return int(max(min_steps, min(max_steps, int(left / per_step + 1e-9))))


def pretrain_config(profile: str, overrides: dict) -> dict:
    from paco_fr.config import load_config

    items = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()]
    return load_config(profile, items)


def profile_assignments(profile_set: dict) -> tuple[str, ...]:
    """`--set` items (KEY=VALUE) of a study's profile values."""
    return tuple(f"{k}={json.dumps(v)}" for k, v in profile_set.items())


def needed_synthface(profile_name: str, pretrain_overrides: dict, tasks,
                     profile_set: dict | None = None) -> list[tuple[str, int, int, int]]:
    """(split, num_images, image_size, seed) of every SynthFace cache the study reads."""
    from bench_tasks.plan.profiles import load_profile
    from bench_tasks.registry import TASKS as TASK_REG
    from bench_tasks.registry import load_all

    load_all()
    prof = load_profile(profile_name, overrides=list(profile_assignments(profile_set or {})))
    cfg = pretrain_config(profile_name, pretrain_overrides)
    out = [("pretrain", int(cfg["data"]["num_images"]), int(cfg["model"]["img_size"]), int(cfg["seed"]))]
    from bench_tasks.plan.suite import suite_runs

    # the runs with their own SynthFace split (MCF-style's teacher: bench_tasks/configs/suite/default.yaml)
    for split in sorted({r.overrides["data.split"] for r in suite_runs(False, profile_name) if "data.split" in r.overrides}):
        out.append((split, int(cfg["data"]["num_images"]), int(cfg["model"]["img_size"]), int(cfg["seed"])))
    sizes = sorted({TASK_REG.get(t)().image_size(prof) for t in tasks})
    for size in sizes:
        for split, n in (("train", prof.synthface_train), ("val", prof.synthface_val), ("test", prof.synthface_test)):
            out.append((split, n, size, 0))
    return out


# ----------------------------------------------------------------------------- stage commands


def cmd_prepare_data(a) -> int:
    from paco_fr.data.synthface import load_synthface

    st = study_settings(a.profile, a.tiny)
    todo = needed_synthface(st["profile"], st["pretrain_overrides"], st["tasks"], st["profile_set"])
    for split, n, size, seed in todo:
        t = time.time()
        load_synthface(split, n, image_size=size, seed=seed, progress=False, workers=a.workers)
        print(f"synthface {split} n={n} {size}px: {time.time() - t:.1f}s", flush=True)
    return 0


def order_cells(cells) -> list:
    """Seed 0 first; within a seed every task's floor, compared methods and random-init control
    (cheap tasks first), then the supervised ceilings (the costliest cells) task by task."""

    def bb_rank(uri: str) -> int:
        scheme, _, rest = uri.partition(":")
        name = Path(rest).parent.name if scheme == "paco_fr" else scheme
        return BACKBONE_PRIORITY.index(name) if name in BACKBONE_PRIORITY else len(BACKBONE_PRIORITY)

    def is_ceiling(uri: str) -> bool:
        return uri.partition(":")[0] == "supervised"

    # per seed: every task's floor, methods and control, then the (costlier) supervised ceilings
    return sorted(cells, key=lambda c: (c.seed, is_ceiling(c.backbone), TASK_PRIORITY.get(c.task, 99),
                                        bb_rank(c.backbone)))


def study_spec(a, st: dict):
    """The device study as a RunSpec: the suite without ablations, pre-trained for `a.steps` steps,
    evaluated on SynthFace at fraction 1 (seed 0 only with --tiny). The same value `run --all`
    would be given (`python -m bench_tasks run --spec FILE` with its to_dict())."""
    from bench_tasks.run.spec import RunSpec

    ov = {**st["pretrain_overrides"], "train.steps": int(a.steps)}
    # PaCo-FR's incubation (Belief Predictor supervised first) is "the first epoch" in the configs;
    # a budget of a few hundred steps can be shorter than an epoch, so here it is the first quarter
    ov.setdefault("incubation.steps", max(1, int(a.steps) // 4))
    if a.tiny:
        ov["train.progress"] = False
    return RunSpec(profile=st["profile"], all=True, no_ablations=True, tasks=tuple(st["tasks"]), datasets=("synthface",),
                   fractions=("1",), seeds=("0",) if a.tiny else None, runs=str(a.runs), results=str(a.results),
                   work_dir=str(a.work_dir), device=a.device, threads=a.threads or None, no_progress=True,
                   no_report=True, pretrain_override=tuple(f"{k}={v}" for k, v in ov.items()),
                   set=profile_assignments(st["profile_set"]))


def cmd_study(a) -> int:
    """Pre-train the suite at the given step count (the study's stage 1, as `run --all` runs it),
    then evaluate its plan in priority order until the deadline."""
    from bench_tasks.plan.cell_plan import make_plan
    from bench_tasks.run.loop import run_plan
    from bench_tasks.run.runner import RunContext
    from bench_tasks.session.execute import pretrain_stage
    from bench_tasks.session.experiment import resolve
    from bench_tasks.session.process import apply_threads

    spec = study_spec(a, study_settings(a.profile, a.tiny))
    log = lambda m: print(f"[study] {m}", flush=True)  # noqa: E731
    planned = resolve(spec, log=log)
    apply_threads(spec.threads, planned.profile.name)
    print(f"[study] pre-training overrides for every objective: {spec.overrides}", flush=True)
    t = time.time()
    planned = pretrain_stage(planned, log=log)
    print(f"[study] pre-training suite: {len(planned.study.encoders)} runs in {time.time() - t:.1f}s", flush=True)
    cells = order_cells(planned.plan.cells)
    spent: dict[str, list[float]] = {}
    skipped: list[str] = []
    waited = []

    def kind(cell) -> str:
        return cell.task + ("/ceiling" if cell.backbone.startswith("supervised:") else "")

    def should_start(cell) -> bool:
        if a.wait_for and not waited and cell.task in ("parsing", "landmarks"):
            waited.append(True)
            t = time.time()
            while not Path(a.wait_for).exists() and time.time() < a.deadline - 30:
                time.sleep(2)
            import importlib

            importlib.invalidate_caches()  # mmcv may have been installed into a folder on sys.path meanwhile
            print(f"[study] waited {time.time() - t:.0f}s for {a.wait_for} "
                  f"({Path(a.wait_for).read_text().strip() if Path(a.wait_for).exists() else 'absent'})", flush=True)
        k = kind(cell)
        first = FIRST_CELL_ESTIMATE_S.get(cell.task, 5.0) * (3 if k.endswith("/ceiling") else 1)
        est = max(spent.get(k, [first if not a.tiny else 0.0]))
        left = a.deadline - time.time()
        if left < est * 1.1 + 2:
            skipped.append(cell.key())
            print(f"[study] skip {cell.label()}: {left:.0f}s left, this task took {est:.0f}s", flush=True)
            return False
        return True

    def on_row(row: dict) -> None:  # a task's measured cell time is the estimate for its next cells
        from bench_tasks.contracts import Cell

        spent.setdefault(kind(Cell(**row["cell"])), []).append(float((row.get("provenance") or {}).get("wall_time_s") or 0.0))

    ctx = RunContext(results=spec.results_path, work_dir=spec.work_dir, data_roots=planned.roots, device=spec.device,
                     progress=False)
    s = run_plan(make_plan(cells, references=False, profiles=planned.plan.profiles), ctx,
                 log=lambda m: print(m, flush=True), should_start=should_start, on_row=on_row)
    n_failed = s.failed
    print(f"[study] cells: {s.ok} ok ({s.skipped} done before), {s.failed} failed, {len(skipped)} not started "
          "(deadline)", flush=True)
    return 0 if n_failed == 0 else 1


# ----------------------------------------------------------------------------- the driver


def _throughput_cmd(tp: dict, modes: str, json_out: Path, objectives: str, extra: list[str]) -> list[str]:
    cmd = _py() + ["-m", "paco_fr", "bench-throughput", "--suite", "--arch", tp["arch"], "--img-size",
                   str(tp["img_size"]), "--patch-size", str(tp["patch_size"]), "--batch", str(tp["batch"]),
                   "--steps", str(tp["steps"]), "--warmup", str(tp["warmup"]), "--modes", modes,
                   "--objectives", objectives, "--json", str(json_out)]
    if tp.get("depth"):
        cmd += ["--depth", str(tp["depth"])]
    if tp.get("config"):
        cmd += ["--config", tp["config"]]
    return cmd + extra + list(tp.get("overrides") or [])


def _read_json(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def env_report() -> dict:
    import platform

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cpu_count": os.cpu_count(), "hostname": platform.node(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    for mod in ("timm", "torchmetrics", "mmcv", "mmengine", "mmseg", "pandas", "numpy"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except Exception as err:  # noqa: BLE001 - an optional dependency may be missing or broken
            info[mod] = f"unavailable ({type(err).__name__}: {err})"
    info["g++"] = shutil.which("g++")
    info["ninja"] = shutil.which("ninja", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    try:
        from mmcv.ops import point_sample  # noqa: F401

        info["mmcv_ops"] = "ok"
    except Exception as err:  # noqa: BLE001
        info["mmcv_ops"] = f"unavailable ({type(err).__name__})"
    return info


def _row_artifacts(results: Path) -> set[str]:
    """Artifact paths (relative to the results folder) that the rows of `results` refer to."""
    out: set[str] = set()
    if not results.exists():
        return out
    for line in results.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        for v in ((row.get("result") or {}).get("artifacts") or row.get("artifacts") or {}).values():
            if isinstance(v, str) and not Path(v).is_absolute():
                out.add(v)
    return out


def driver(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.scratch)
    work.mkdir(parents=True, exist_ok=True)
    log = Log(work / "device_study.log")
    clock = Clock(a.time_limit)
    st = study_settings(a.profile, a.tiny)
    profile = st["profile"]
    results = Path(a.results or f"results/{profile}.jsonl")
    runs = Path(a.runs)
    reports = Path(a.reports)
    workers = a.workers or max(1, (os.cpu_count() or 2) - 1)
    env = env_report()
    (out / "env.json").write_text(json.dumps(env, indent=2))
    log(f"env: {json.dumps(env)}")
    log(f"profile {profile}, time limit {a.time_limit:.0f}s, {workers} data workers")
    common = ["--profile", a.profile] + (["--tiny"] if a.tiny else [])

    # 1. data in the background (all cores but one); the calibration of the study's steps on the GPU
    #    meanwhile; then, where mmcv's ops are missing, an mmcv build from the carried sdist
    data_p = start_bg(_py() + [__file__, "prepare-data", "--workers", str(workers)] + common,
                      log, "prepare_data", nice=0)
    tp = dict(st["throughput"])
    thr_json, calib_json = work / "throughput.json", work / "calibration.json"
    cfg = pretrain_config(profile, st["pretrain_overrides"])
    cal = st["calibration"]
    calib = {"arch": cfg["model"]["arch"], "img_size": cfg["model"]["img_size"],
             "patch_size": cfg["model"]["patch_size"], "depth": cfg["model"].get("depth"),
             "batch": cal["batch"] or cfg["train"]["batch_size"], "steps": cal["steps"], "warmup": cal["warmup"],
             "config": profile, "overrides": [f"{k}={v}" for k, v in st["pretrain_overrides"].items()
                                              if not k.startswith("model.")]}
    run_sub(_throughput_cmd(calib, "eager", calib_json, "paco,mae,farl,mcf", ["--time-limit", "60"]), log,
            max(min(120, clock.left() - 380), 30) if not a.tiny else 600, "calibration")
    cj = _read_json(calib_json) or {}
    step_s = {r["objective"]: r["step_ms"] / 1e3 for r in cj.get("rows", []) if r.get("status") == "ok"}
    steps = pretrain_steps_for_budget(step_s, a.pretrain_budget, min_steps=st["min_steps"], max_steps=st["max_steps"])
    if a.steps:
        steps = a.steps
    log(f"calibration step times (s): {json.dumps({k: round(v, 4) for k, v in step_s.items()})} -> "
        f"{steps} pre-training steps for every objective (budget {a.pretrain_budget:.0f}s for the suite)")
    wait_bg(data_p, log, "prepare_data", timeout=max(min(clock.left() - 300, 240), 5) if not a.tiny else 600)

    # mmcv after the data: measured on an H200 (2026-11-27), building it with 12 jobs while the data
    # was generated took 259 s and slowed the generation of 41k images to 122 s
    mmcv_p, mmcv_done = None, work / "mmcv_build.rc"
    if a.mmcv_sdist and env.get("mmcv_ops") != "ok" and not a.tiny:  # tiny: minutes of CPU compile
        if Path(a.mmcv_sdist).exists():
            t_build = time.time()
            mmcv_p = start_bg(_py() + ["scripts/ensure_mmcv.py", "--offline", "--sdist", a.mmcv_sdist, "--jobs",
                                       str(a.mmcv_jobs or max(1, (os.cpu_count() or 2) * 3 // 4)), "--cpu-only"]
                              + (["--install-target", a.mmcv_target] if a.mmcv_target else []),
                              log, "mmcv_build", nice=10)
        else:
            log(f"mmcv ops missing and no sdist at {a.mmcv_sdist}: the dense cells will fail")

    # 2. compile warm-up in the background (fills inductor's caches for the timed run of stage 5)
    warm_p = None
    if not a.no_throughput and not a.no_compile:
        warm_p = start_bg(_throughput_cmd(tp, "compiled", work / "throughput_warm.json", a.objectives,
                                          ["--warm-only"]), log, "compile_warm", nice=15)

    # 3. the study (dense cells wait for the mmcv build)
    eval_deadline = clock.deadline - a.reserve_end
    wait = ["--wait-for", str(mmcv_done)] if mmcv_p is not None else []
    if mmcv_p is not None:
        import threading

        def _watch():
            rc = mmcv_p.wait()
            mmcv_done.write_text(str(rc))
            log(f"mmcv_build: rc={rc} after {time.time() - t_build:.0f}s (log: mmcv_build.log)")

        threading.Thread(target=_watch, daemon=True).start()
    run_sub(_py() + [__file__, "study", "--steps", str(steps), "--deadline",
                     str(eval_deadline), "--results", str(results), "--runs", str(runs), "--work-dir",
                     str(a.work_dir), "--device", a.device] + wait
            + (["--threads", str(a.threads)] if a.threads else []) + common, log,
            eval_deadline - time.time() + 30, "study")

    # 4. the report
    run_sub(_py() + ["-m", "bench_tasks", "report", "--results", str(results), "--out", str(reports / profile),
                     "--runs", str(runs), "--profile", profile], log,
            max(clock.left() - (a.reserve_end - 40 if not a.no_throughput else 5), 20), "report")

    # 5. the throughput table: eager and compiled side by side in one process, alone on the GPU
    if warm_p is not None:
        wait_bg(warm_p, log, "compile_warm", timeout=max(min(clock.left() - 100, 30), 1))
    if mmcv_p is not None and mmcv_p.poll() is None:
        _kill(mmcv_p)
        log("mmcv_build: killed (out of time)")
    if not a.no_throughput:
        modes = "eager" if a.no_compile else "eager,compiled"
        run_sub(_throughput_cmd(tp, modes, thr_json, a.objectives,
                                ["--time-limit", str(max(int(clock.left() - 40), 5))]), log,
                clock.left() - 10, "throughput")

    # 6. pack
    thr = _read_json(thr_json)
    if thr:
        from paco_fr.throughput import format_suite_markdown

        thr["calibration"] = cj or None
        thr["pretrain_steps"] = steps
        (out / "throughput.json").write_text(json.dumps(thr, indent=2))
        md = format_suite_markdown(thr)
        (out / "throughput.md").write_text(md)
        log("throughput table:\n" + md)
    if results.exists():
        shutil.copy(results, out / results.name)
    with tarfile.open(out / f"reports_{profile}.tar.gz", "w:gz") as tar:
        if (reports / profile).exists():
            tar.add(reports / profile, arcname=f"reports/{profile}")
        for extra in ("mmcv_build.log", "compile_warm.log", "prepare_data.log"):
            if (work / extra).exists():
                tar.add(work / extra, arcname=f"logs/{extra}")
        for run_dir in sorted((runs / profile).glob("*")):
            for name in ("summary.json", "config.yaml", "log.jsonl"):
                if (run_dir / name).exists():
                    tar.add(run_dir / name, arcname=f"runs/{profile}/{run_dir.name}/{name}")
        for rel in sorted(_row_artifacts(results)):  # this study's cell artifacts only
            if (results.parent / rel).exists():
                tar.add(results.parent / rel, arcname=f"results/{rel}")
    log(f"done in {clock.elapsed():.0f}s; outputs in {out}: {sorted(p.name for p in out.iterdir())}")
    shutil.copy(log.path, out / "device_study.log")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python scripts/device_study.py", description=__doc__.split("\n")[0])
    ap.add_argument("verb", nargs="?", default="all", choices=["all", "prepare-data", "study"])
    ap.add_argument("--out", default=os.environ.get("OUT", "device_out"), help="where the outputs go ($OUT)")
    ap.add_argument("--profile", default="gpu")
    ap.add_argument("--tiny", action="store_true", help="CPU-test sizes on the same code path")
    ap.add_argument("--time-limit", type=float, default=560.0, help="seconds for the whole driver")
    ap.add_argument("--pretrain-budget", type=float, default=120.0,
                    help="seconds for the whole pre-training suite (steps x measured step time + per-run set-up)")
    ap.add_argument("--reserve-end", type=float, default=200.0,
                    help="seconds kept after the evaluation deadline (report, compiled throughput, packing)")
    # the goal's pair (plain step, PaCo-FR step) first: a deadline cuts the last ones
    ap.add_argument("--objectives", default="simmim,paco,mae,infer,farl,mcf", help="throughput steps")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--workers", type=int, default=None, help="data generation processes (default: cores - 1)")
    ap.add_argument("--steps", type=int, default=None, help="pre-training steps (default: from the calibration)")
    ap.add_argument("--deadline", type=float, default=None, help="study: epoch seconds after which no cell starts")
    ap.add_argument("--results", default=None)
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--reports", default="reports")
    ap.add_argument("--work-dir", default="work_dirs")
    ap.add_argument("--scratch", default="device_scratch", help="logs and intermediate JSON")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--mmcv-sdist", default=".whl/src/mmcv-2.1.0.tar.gz",
                    help="where mmcv's ops are missing, build this sdist in the background (CPU ops only)")
    ap.add_argument("--mmcv-target", default=os.environ.get("PACO_FR_SITE"),
                    help="install the built mmcv there (a folder on PYTHONPATH); default: the environment")
    ap.add_argument("--mmcv-jobs", type=int, default=None, help="compile jobs (default: 3/4 of the cores)")
    ap.add_argument("--wait-for", default=None,
                    help="study: before the first dense cell, wait (until the deadline) for this file to exist")
    a = ap.parse_args(argv)
    if a.verb == "prepare-data":
        return cmd_prepare_data(a)
    if a.verb == "study":
        st = study_settings(a.profile, a.tiny)
        a.results = a.results or f"results/{st['profile']}.jsonl"
        a.deadline = a.deadline or (time.time() + 3600)
        return cmd_study(a)
    return driver(a)


if __name__ == "__main__":
    raise SystemExit(main())
