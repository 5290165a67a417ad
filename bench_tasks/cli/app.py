"""`python -m bench_tasks {list,run,preview,report}`.

    python -m bench_tasks list
    python -m bench_tasks run --tasks attributes,expression --backbones random:vit_tiny
    python -m bench_tasks run --all --profile small --data-root /data --dry-run
    python -m bench_tasks run --tasks attributes --datasets celeba --data-root celeba=/d/CelebA \\
        --backbones farl:FaRL-Base-Patch16-LAIONFace20M-ep64.pth --protocols linear,finetune
    python -m bench_tasks preview synthface --out grid.png --n 16 --size 128
    python -m bench_tasks preview --datasets 300w --data-root 300w=data/300w
    python -m bench_tasks report ...

Extra registry modules (your own dataset readers, tasks, backbone schemes) can be imported with
the environment variable BENCH_TASKS_PLUGINS=module1,module2 (they register on import).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from pathlib import Path

from bench_tasks.errors import PlanError
from bench_tasks.plan.profiles import PROFILES, dotted_overrides, get_profile
from bench_tasks.registry import load_registries

SYNTHFACE = "synthface"


def _csv(s: str | None) -> list[str] | None:
    if s is None:
        return None
    return [x.strip() for x in s.split(",") if x.strip()]


# ----------------------------------------------------------------------------- list


def _first_line(obj) -> str:
    """The first sentence of a docstring's first paragraph (joined across its wrapped lines, so a
    description is never cut mid-sentence)."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    if not doc:
        return ""
    para = " ".join(ln.strip() for ln in doc.split("\n\n")[0].splitlines())
    return para.split(". ")[0] + "." if ". " in para else para


def backbone_schemes_help() -> str:
    """The backbone URI schemes, one line each (for every verb's --help)."""
    from bench_tasks.registry import BACKBONES

    try:
        items = BACKBONES.items()
    except Exception:  # noqa: BLE001 - help must print even when a registry module is broken
        return ""
    lines = ["backbone URIs (--backbones, comma list; `python -m bench_tasks list` for more):"]
    for name, fn in items:
        lines.append(f"  {_first_line(sys.modules.get(getattr(fn, '__module__', ''), None)) or _first_line(fn) or name}")
    return "\n".join(lines)


def cmd_list(args) -> int:
    from tabulate import tabulate

    from bench_tasks.registry import BACKBONES, DATASETS, HEADS, TASKS

    print("Tasks")
    rows = []
    for name, task in TASKS.items():
        ds = list(task.default_datasets)
        if SYNTHFACE in DATASETS and name in getattr(DATASETS.get(SYNTHFACE), "tasks", ()):
            ds.append(SYNTHFACE)
        aliases = "".join(f" ({a} = {b})" for a, b in getattr(task, "protocol_aliases", {}).items())
        rows.append([name, ", ".join(ds), ", ".join(task.protocols) + aliases,
                     f"{task.headline} ({'higher' if task.higher_is_better else 'lower'} is better)"])
    print(tabulate(rows, headers=["task", "default datasets", "protocols", "headline"]))
    print("\nDatasets")
    rows = []
    for name, spec in DATASETS.items():
        needs = getattr(spec, "needs_root", True)
        folder = getattr(spec, "folder", None) or name
        rows.append([name, ", ".join(getattr(spec, "tasks", ())),
                     f"yes (<data-root>/{folder}/)" if needs else "no (embedded)"])
    print(tabulate(rows, headers=["dataset", "tasks", "needs a root"]))
    print("\nBackbone schemes (URI scheme:spec)")
    rows = [[name, _first_line(sys.modules.get(getattr(fn, "__module__", ""), None)) or _first_line(fn)]
            for name, fn in BACKBONES.items()]
    print(tabulate(rows, headers=["scheme", "what"]))
    print("\nHeads")
    print(tabulate([[name, _first_line(h) or _first_line(sys.modules.get(h.__module__))] for name, h in HEADS.items()],
                   headers=["head", "what"]))
    print("\nProfiles")
    keys = ["image_size", "dense_size", "synthface_train", "synthface_val", "synthface_test", "batch_size",
            "linear_epochs", "finetune_epochs", "dense_epochs", "recognition_epochs", "seeds", "fractions",
            "protocols"]
    rows = []
    for name, p in PROFILES.items():
        d = dataclasses.asdict(p)
        rows.append([name] + [",".join(map(str, d[k])) if isinstance(d[k], tuple) else d[k] for k in keys])
    print(tabulate(rows, headers=["profile"] + keys))
    if args.layouts:
        print("\nDataset layouts")
        for name, spec in DATASETS.items():
            if getattr(spec, "layout", ""):
                print(f"\n[{name}]\n{spec.layout}")
    return 0


# ----------------------------------------------------------------------------- run


def build_backbone_list(args) -> list[str]:
    """The backbone URIs of a run. Hook for the pre-training suite: a later `run --all` may
    pre-train encoders first and return their `paco_fr:<runs/.../encoder.safetensors>` URIs here
    (plus baselines). Default: ["random:vit_tiny"]."""
    given = _csv(getattr(args, "backbones", None))
    if given:
        return given
    return ["random:vit_tiny"]


class StageFailed(RuntimeError):
    """A stage of `run --all` failed as a whole (exit code 1)."""


class PretrainOnlyDone(Exception):
    """`run --all --pretrain-only`: stage 1 is done, nothing is evaluated."""

    def __init__(self, encoders: dict, failed: list):
        super().__init__("pre-training only")
        self.encoders, self.failed = encoders, failed


def build_task_datasets(args, roots, log=print) -> dict[str, list[str]]:
    """{task: [datasets]} after checking the data roots. Datasets named with --datasets must
    exist (an error shows the expected layout); implicitly chosen ones whose root is missing are
    skipped with a message."""
    from bench_tasks.plan.cells import missing_root_error
    from bench_tasks.registry import DATASETS, TASKS

    tasks = _csv(args.tasks)
    if args.all or not tasks:
        if not args.all and not tasks:
            raise PlanError("choose --tasks <t1,t2> or --all (see `python -m bench_tasks list`)")
        tasks = tasks or TASKS.names()
    for t in tasks:
        if t not in TASKS:
            raise PlanError(f"unknown task {t!r}; registered: {', '.join(TASKS.names())}")
    explicit = _csv(args.datasets)
    out: dict[str, list[str]] = {}
    if explicit:
        for d in explicit:
            if d not in DATASETS:
                raise PlanError(f"unknown dataset {d!r}; registered: {', '.join(DATASETS.names())}")
            spec = DATASETS.get(d)
            if getattr(spec, "needs_root", True) and roots.get(d) is None:
                raise PlanError(f"error: {missing_root_error(d, roots)}")
        unused = [d for d in explicit if not any(t in getattr(DATASETS.get(d), "tasks", ()) for t in tasks)]
        if unused:
            raise PlanError(f"dataset(s) {unused} serve none of the tasks {tasks}")
        for t in tasks:
            out[t] = [d for d in explicit if t in getattr(DATASETS.get(d), "tasks", ())]
        return {t: ds for t, ds in out.items() if ds}
    for t in tasks:
        task = TASKS.get(t)
        cands = list(task.default_datasets)
        if SYNTHFACE in DATASETS and t in getattr(DATASETS.get(SYNTHFACE), "tasks", ()):
            cands.append(SYNTHFACE)
        chosen = []
        for d in cands:
            if d not in DATASETS:
                log(f"skip {t}/{d}: no reader registered for {d!r}")
                continue
            spec = DATASETS.get(d)
            if getattr(spec, "needs_root", True) and roots.get(d) is None:
                log(f"skip {t}/{d}: no data root (expected {roots.expected(d)}; "
                    f"see `python -m bench_tasks list --layouts`)")
                continue
            chosen.append(d)
        if chosen:
            out[t] = chosen
        else:
            log(f"skip task {t}: none of its datasets is available")
    return out


def build_plan(args, log=print, problems: list[str] | None = None):
    """(cells, roots) for the parsed `run` arguments. `run --all` with no --backbones is the whole
    study: the pre-training suite runs first (bench_tasks.plan.study) and its encoders are evaluated.
    Every problem found (plus `problems` found earlier by bench_tasks.plan.validate.check_args) is raised
    together as one PlanInvalid before anything runs."""
    from bench_tasks.plan.cells import DataRoots, plan_cells
    from bench_tasks.registry import TASKS

    profile = get_profile(args.profile)
    roots = DataRoots.parse(args.data_root)
    task_ds = build_task_datasets(args, roots, log=log)
    protocols = _csv(args.protocols)
    problems = list(problems or [])
    if protocols:
        for t in task_ds:
            task = TASKS.get(t)
            plan = getattr(task, "plan_protocol", None) or (lambda p, k=task: p if p in k.protocols else None)
            bad = [p for p in protocols if plan(p) is None]
            if bad and len(task_ds) == 1 and not any(p.startswith("--protocols") for p in problems):
                problems.append(f"--protocols: task {t} does not support protocol(s) {bad}; it has "
                                f"{', '.join(TASKS.get(t).protocols)}")
    from bench_tasks.plan.validate import (
        PlanInvalid,
        check_backbones,
        check_data,
        parse_fractions,
        parse_seeds,
    )

    seeds, bad = parse_seeds(args.seeds)
    fractions, bad2 = parse_fractions(args.fractions)
    problems += [p for p in bad + bad2 if p not in problems]
    problems += check_data(task_ds, roots, profile)
    if not is_study(args):  # the study's encoders are checked once stage 1 has written them
        problems += check_backbones(build_backbone_list(args), task_ds, profile, args.device)
    if problems:
        raise PlanInvalid(problems)
    if is_study(args):
        from bench_tasks.plan.study import study_cells
        from bench_tasks.plan.suite import expand_seeds, study_seeds, suite_encoders, suite_runs
        from bench_tasks.run.pretrain import pretrain_suite

        budget_by = getattr(args, "budget_by", "flops")
        try:
            pseeds = study_seeds(args, profile)  # --pretrain-seeds / the profile's pretrain_seeds
            expand_seeds(suite_runs(not args.no_ablations, profile.name), pseeds)
        except ValueError as err:
            raise PlanInvalid([f"--pretrain-seeds: {err}"]) from err
        # --status only reads: it plans like a dry run (the suite's encoder paths), never pre-trains
        if args.dry_run or getattr(args, "status", False) or getattr(args, "launcher", "local") != "local":
            names = ", ".join(r.name for r in expand_seeds(suite_runs(not args.no_ablations, profile.name), pseeds))
            verb = ("would run or reuse" if args.dry_run or getattr(args, "status", False)
                    else "runs as cluster jobs (finished runs are reused)")
            log(f"stage 1 (pre-training, {args.profile} config) {verb}: {names}")
            if args.dry_run:  # the budget plan (cost per step measured on tiny batches: seconds)
                from bench_tasks.plan.study import plan_suite

                args.suite_plan = plan_suite(profile.name, args.runs, not args.no_ablations,
                                             dotted_overrides(args.pretrain_override or []), budget_by, log=log,
                                             pretrain_seeds=pseeds)
            encoders = suite_encoders(args.runs, profile.name, not args.no_ablations, pseeds)
        elif getattr(args, "eval_only", False):
            from bench_tasks.run.launch import _finished

            encoders = {}
            for name, enc in suite_encoders(args.runs, profile.name, not args.no_ablations, pseeds).items():
                if _finished(enc):
                    encoders[name] = enc
                else:
                    log(f"--eval-only: {name} has not finished pre-training ({enc.parent}); left out")
            if not encoders:
                raise StageFailed(f"--eval-only: no finished pre-training run under {Path(args.runs) / profile.name}")
        else:
            failed: list[tuple[str, str]] = []
            args.pretrain_failed = failed
            encoders = pretrain_suite(profile, args.runs, include_ablations=not args.no_ablations, log=log,
                                      progress=not args.no_progress,
                                      overrides=dotted_overrides(args.pretrain_override or []), failed=failed,
                                      budget_by=budget_by, jobs=max(1, int(getattr(args, "pretrain_jobs", 1) or 1)),
                                      pretrain_seeds=pseeds)
            if failed and not encoders:
                raise StageFailed(f"every pre-training run failed ({len(failed)}); nothing to evaluate or "
                                  "report:\n" + "\n".join(f"  {n}: {c}" for n, c in failed))
            if getattr(args, "pretrain_only", False):
                raise PretrainOnlyDone(encoders, failed)
        cells = study_cells(profile, encoders, task_ds, protocols=protocols, seeds=seeds, fractions=fractions,
                            ceilings=not getattr(args, "no_ceilings", False),
                            probes=not getattr(args, "no_probes", False))
        problems = check_backbones(dict.fromkeys(c.backbone for c in cells), task_ds, profile, args.device,
                                   # a dry run skips encoders not written yet; with a cluster launcher the
                                   # pre-training jobs (re)write them, and each evaluation job checks its own
                                   skip_missing=lambda uri: uri.startswith("paco_fr:") and bool(
                                       getattr(args, "launcher", "local") != "local"
                                       or ((args.dry_run or getattr(args, "status", False))
                                           and not Path(uri[len("paco_fr:"):]).is_file())))
        if problems:
            raise PlanInvalid(problems)
        return cells, roots
    cells = plan_cells(build_backbone_list(args), task_ds, protocols=protocols, seeds=seeds,
                       fractions=fractions, profile=profile.name)
    from bench_tasks.plan.references import with_references  # floors, ceilings, cosine probes

    cells = with_references(cells, ceilings=None if getattr(args, "no_ceilings", False) else "auto",
                            probes=not getattr(args, "no_probes", False))
    return cells, roots


def is_study(args) -> bool:
    """`run --all` without --backbones: pre-train the compared backbones, then evaluate them."""
    return bool(args.all and not args.backbones)


def set_threads(args) -> None:
    apply_threads(args.threads, args.profile)


def apply_threads(threads: int | None, profile_name: str) -> None:
    """torch's CPU threads: `threads`, else 1 under the smoke profile (two threads on a 2-core CPU
    stall whenever another process runs), else torch's default. The CLI and the Python API
    (bench_tasks.api.evaluate) share it."""
    import torch

    n = threads if threads is not None else (1 if profile_name == "smoke" else None)
    if n:
        torch.set_num_threads(n)


# ----------------------------------------------------------------------------- run: what the plan means


def native_profile(args, profile):
    """A `native_size` profile (bench_tasks/configs/native.yaml) at the input size of the plan's
    backbones, registered for this process; its line goes into the plan notes."""
    from bench_tasks.plan.profiles import PROFILES, parse_assignments, resolve_native_size

    uris = build_backbone_list(args) if getattr(args, "backbones", None) else []
    given = parse_assignments(getattr(args, "set", None) or [])
    resolved, lines = resolve_native_size(profile, uris, {k.removeprefix("extra.") for k in given})
    if resolved is not profile:
        PROFILES[resolved.name] = resolved
    args.native_lines = lines
    return resolved


def resolution_lines(cells, profile) -> list[str]:
    """One line per encoder that runs at another input size than its own (its position embedding
    is resampled): `timm:vit_base_patch16_224:w.safetensors: 224 -> 64 px ...`."""
    from bench_tasks.backbones.native import native_size
    from bench_tasks.plan.estimate import task_size
    from bench_tasks.plan.references import is_reference

    sizes: dict[str, set[int]] = {}
    for c in cells:
        if not is_reference(c.backbone):
            sizes.setdefault(c.backbone, set()).add(task_size(c.task, profile))
    out = []
    for uri, used in sizes.items():
        try:
            own = native_size(uri)
        except Exception:  # noqa: BLE001 - the plan's backbone check reports a file that cannot be read
            own = None
        other = sorted(n for n in used if n != own)
        if own and other:
            out.append(f"input size: {uri}: {own} -> {'/'.join(map(str, other))} px, position embedding resampled "
                       f"(profile {profile.name}; keep {own} px with --profile native or "
                       f"--set image_size={own} --set dense_size={own})")
    return out


def verification_lines(cells, roots, profile) -> list[str]:
    """What a real verification set's number means: its head trains on SynthFace identities when
    no training faces are given; LFW's images are centre-cropped, not aligned."""
    from bench_tasks.registry import DATASETS

    out = []
    for ds in dict.fromkeys(c.dataset for c in cells if c.task == "recognition"):
        if ds not in DATASETS or not getattr(DATASETS.get(ds), "test_only", False):
            continue
        from bench_tasks.tasks.recognition import settings_for

        train_root = settings_for(profile).get("train_root")
        root = roots.get(ds)
        cand = Path(root).resolve().parent / "train_faces" if root else None
        if not train_root and not (cand is not None and cand.is_dir()):
            where = cand if cand is not None else "<data-root>/train_faces"
            out.append(f"recognition/{ds}: the head trains on SynthFace identities (no {where} folder; give one, or "
                       "--set recognition.train_root=<face folder>): the number measures transfer from SynthFace")
        if ds == "lfw":
            from bench_tasks.datasets.lfw import CROP_FRAC

            out.append(f"recognition/lfw: images are centre-cropped (the centred {CROP_FRAC:.0%} square), not aligned; "
                       "an aligned copy of LFW in the same layout gives comparable numbers")
    return out


def print_plan_notes(args, cells, roots, profile) -> None:
    """Lines that say what the plan's numbers mean: native size, resized backbones, ceilings,
    verification sets' training faces and crops."""
    from bench_tasks.plan.references import ceiling_lines

    lines = list(getattr(args, "native_lines", None) or [])
    for fn in (lambda: resolution_lines(cells, profile),
               lambda: ceiling_lines(cells, enabled=not getattr(args, "no_ceilings", False)),
               lambda: verification_lines(cells, roots, profile)):
        try:
            lines += fn()
        except Exception as err:  # noqa: BLE001 - a note never stops a plan
            lines.append(f"(a plan note could not be made: {type(err).__name__}: {err})")
    for line in lines:
        print(line)


# ----------------------------------------------------------------------------- run: estimate, interrupt, progress


def quiet_progress(args) -> bool:
    """Whether this run draws no progress bar: --no-progress, or stderr is not a terminal (a log file)."""
    if not sys.stderr.isatty():
        args.no_progress = True
    return bool(args.no_progress)


@contextlib.contextmanager
def progress_bars_off(off: bool = True):
    """Every tqdm bar off unless its caller asks for it, for the duration (then as before):
    TQDM_DISABLE for the processes started meanwhile (tqdm reads it when it is imported), tqdm's
    default `disable=True` in this one (SynthFace generation, pre-training, feature extraction)."""
    if not off:
        yield
        return
    import functools

    import tqdm.std

    cls = tqdm.std.tqdm
    init, env, outer = cls.__dict__["__init__"], os.environ.get("TQDM_DISABLE"), "_bench_tasks_quiet" in cls.__dict__
    os.environ["TQDM_DISABLE"] = "1"
    if not outer:
        cls.__init__ = functools.partialmethod(init, disable=True)
        cls._bench_tasks_quiet = True
    try:
        yield
    finally:
        if not outer:
            cls.__init__ = init
            del cls._bench_tasks_quiet
        if env is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = env


def fmt_elapsed(s: float) -> str:
    from bench_tasks.plan.estimate import fmt_duration

    return fmt_duration(s)


def rows_kept(args) -> int:
    """The result rows (ok or failed) in this run's results file and its worker files."""
    try:
        from bench_tasks.store.rowfiles import union_latest

        results = Path(args.results or f"results/{args.profile}.jsonl")
        return len(union_latest(results)) if results.exists() or results.with_suffix(".d").exists() else 0
    except Exception:  # noqa: BLE001 - the interrupt message must print
        return 0


def plan_estimate(args, cells, results, profile, pretrain_plan=None):
    """The plan's PlanEstimate (bench_tasks.plan.estimate), or None when it cannot be made (said once)."""
    try:
        from bench_tasks.backbones.base import resolve_device
        from bench_tasks.plan.estimate import estimate_plan

        study_arch = None
        if is_study(args):
            from bench_tasks.plan.suite import random_control

            study_arch = random_control(profile.name)
        device = str(resolve_device(args.device))
        return estimate_plan(cells, results, profile, pretrain_plan, device=device, study_arch=study_arch)
    except Exception as err:  # noqa: BLE001 - an estimate never stops a plan
        print(f"estimate: none ({type(err).__name__}: {err})")
        return None


def suite_plan(args, profile):
    """The study's pre-training plan (bench_tasks.plan.study.plan_suite) for the estimate: the one the dry
    run printed, else planned here (no log)."""
    if not is_study(args) or getattr(args, "eval_only", False):
        return None
    got = getattr(args, "suite_plan", None)
    if got is None:
        from bench_tasks.plan.study import plan_suite

        got = plan_suite(profile.name, args.runs, not args.no_ablations,
                         dotted_overrides(args.pretrain_override or []), getattr(args, "budget_by", "flops"))
    return got


def print_plan_estimate(args, cells, results, profile) -> None:
    """`--dry-run` / `--status`: seconds per stage and in total (bench_tasks.plan.estimate)."""
    try:
        plan = suite_plan(args, profile)
    except Exception as err:  # noqa: BLE001
        print(f"estimate: no pre-training estimate ({type(err).__name__}: {err})")
        plan = None
    est = plan_estimate(args, cells, results, profile, plan)
    if est is not None:
        print()
        for line in est.lines():
            print(line)


def pretrain_estimate_before(args, profile):
    """Seconds the study's pre-training runs not finished yet should take (a local run that
    pre-trains; None otherwise), for the estimate-vs-actual line at the end."""
    if args.dry_run or args.status or not is_study(args) or getattr(args, "launcher", "local") != "local":
        return None
    try:
        plan = suite_plan(args, profile)
        est = plan_estimate(args, [], Path("/nonexistent"), profile, plan)
        return None if est is None else sum(r.seconds for r in est.pretrain if not r.done)
    except Exception:  # noqa: BLE001
        return None


def print_estimate_vs_actual(pretrain_est, pretrain_taken, cells_est, cells_taken) -> None:
    from bench_tasks.plan.estimate import actual_line

    if pretrain_est:
        print("pre-training " + actual_line(pretrain_est, pretrain_taken))
    if cells_est is not None:
        print("cells " + actual_line(cells_est.stage_seconds()["cells"][1], cells_taken))


def cmd_run(args) -> int:
    """`run`, with Ctrl-C answered in one line (exit 130) and no progress bars off a terminal."""
    t0 = time.monotonic()
    try:
        with progress_bars_off(quiet_progress(args)):
            return run_plan_command(args)
    except KeyboardInterrupt:
        print(f"\ninterrupted after {fmt_elapsed(time.monotonic() - t0)}; {rows_kept(args)} rows kept; run the same "
              "command to resume", file=sys.stderr)
        return 130


def run_plan_command(args) -> int:
    from tabulate import tabulate

    from bench_tasks.plan.profiles import ProfileError, effective_settings, format_settings, load_profile

    try:  # a bundled name or a YAML file, with --set overrides; registered for this process's runner
        profile = load_profile(args.profile, getattr(args, "set", None))
        profile = native_profile(args, profile)
    except ProfileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.profile = profile.name
    set_threads(args)
    from bench_tasks.plan.validate import PlanInvalid, check_args, format_problems
    from bench_tasks.run.runner import cell_status

    results = Path(args.results or f"results/{args.profile}.jsonl")
    problems = check_args(args)
    pretrain_before = pretrain_estimate_before(args, profile) if not problems else None
    t_plan = time.monotonic()
    try:
        cells, roots = build_plan(args, problems=problems)
    except PlanInvalid as err:
        print(err, file=sys.stderr)
        return 2
    except PlanError as err:
        msg = str(err.code)
        if problems:  # unknown names are already among them; anything else is added
            covered = msg.startswith(("unknown task", "unknown dataset", "choose --tasks"))
            print(format_problems(problems + ([] if covered else [msg])), file=sys.stderr)
        else:
            print(msg, file=sys.stderr)
        return 2
    except StageFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except PretrainOnlyDone as done:
        for name, enc in done.encoders.items():
            print(f"  {name}: {enc}")
        for name, cause in done.failed:
            print(f"  {name}: FAILED ({cause})", file=sys.stderr)
        print(f"--pretrain-only: {len(done.encoders)} run(s) ready, {len(done.failed)} failed; evaluate them with "
              "the same command without --pretrain-only")
        return 1 if done.failed else 0
    if not cells:
        print("nothing to run: the plan is empty", file=sys.stderr)
        return 2
    print_plan_notes(args, cells, roots, get_profile(args.profile))
    from bench_tasks.store.method import parse_labels

    try:
        args.labels = parse_labels(getattr(args, "label", None), build_backbone_list(args) if args.backbones else [])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from bench_tasks.store.readers import describe_rejected, inspect, rejected_path

    rejected = inspect(results) if args.dry_run else []  # a run moves them (run_plan says so)
    if rejected:
        print(f"warning: {describe_rejected(results, rejected)}; a run would move them to "
              f"{rejected_path(results)} (they are not counted as done)", file=sys.stderr)

    from bench_tasks.run import launch

    cells = launch.select_shard(args, cells)  # --num-shards N --shard-index i
    if args.status:
        from bench_tasks.run.status import print_status

        code = print_status(results, cells)
        print_plan_estimate(args, cells, results, profile)
        return code
    if args.launcher != "local" and not args.dry_run:
        study = launch.study_runs(args, get_profile(args.profile)) if is_study(args) else None
        code = launch.launch(args, cells, results, study_runs=study)
        if code == 0 and study and args.launcher == "submitit-local" and not args.no_wait and not args.no_report:
            from bench_tasks.report.build import build_report

            res = build_report([results], Path(args.reports) / args.profile, Path(args.runs) / args.profile,
                               args.profile, command="python -m bench_tasks " + " ".join(sys.argv[1:]))
            print(f"report written to {res['out_dir']}; read first: {res['summary']}")
        return code
    status = cell_status(cells, results)
    n_done = sum(v == "done" for v in status.values())
    n_failed = sum(v == "failed" for v in status.values())
    if args.dry_run:
        print(f"effective settings ({args.profile} profile; change with --set KEY=VALUE):")
        print(format_settings(effective_settings(profile)))
        rows = [[i, c.backbone, c.task, c.dataset, c.protocol, f"{c.fraction:g}", c.seed, c.key(),
                 "redo (--force)" if args.force and status[c.key()] == "done" else status[c.key()]]
                for i, c in enumerate(cells)]
        print(tabulate(rows, headers=["#", "backbone", "task", "dataset", "protocol", "fraction", "seed",
                                      "key", "status"]))
        print(f"\n{len(cells)} cells in the plan ({args.profile} profile): {n_done} already done, "
              f"{n_failed} failed before (will be retried), {len(cells) - n_done - n_failed} to do; "
              f"results -> {results}")
        print_plan_estimate(args, cells, results, profile)
        return 0
    print(f"plan: {len(cells)} cells ({n_done} already done{', recomputed with --force' if args.force else ''}); "
          f"results -> {results}")
    pretrain_taken = time.monotonic() - t_plan
    cells_before = plan_estimate(args, cells, results, profile)
    t_cells = time.monotonic()
    summary = launch.run_here(args, cells, roots, results)  # claims each cell (bench_tasks.run.worker)
    from bench_tasks.cli.run_table import format_run_table

    print("\n" + format_run_table(cells, results) + "\n")
    print(summary.line())
    print_estimate_vs_actual(pretrain_before, pretrain_taken, cells_before, time.monotonic() - t_cells)
    pretrain_failed = getattr(args, "pretrain_failed", None) or []
    if pretrain_failed:
        print(f"{len(pretrain_failed)} pre-training run(s) FAILED and were left out of the study:\n"
              + "\n".join(f"  {n}: {c}" for n, c in pretrain_failed), file=sys.stderr)
    if summary.failed:
        print(f"{summary.failed} cell(s) FAILED (the full traceback is in each failed row of {results}); "
              "re-running retries them", file=sys.stderr)
    if is_study(args) and not args.no_report:
        from bench_tasks.report.build import build_report

        print("[stage 3: report]")
        res = build_report([results], Path(args.reports) / args.profile, Path(args.runs) / args.profile, args.profile,
                           command="python -m bench_tasks " + " ".join(sys.argv[1:]))
        print(f"report written to {res['out_dir']}; read first: {res['summary']}")
    return 1 if summary.failed or pretrain_failed else 0


# ----------------------------------------------------------------------------- preview / report


def check_report_inputs(args) -> list[str]:
    """`report` on a missing or empty results file is an error (an empty report would look like a
    finished study)."""
    from bench_tasks.store.readers import describe_rejected, inspect, load_rows

    paths = args.results or [Path("results") / f"{args.profile or 'smoke'}.jsonl"]
    problems = []
    for p in map(Path, paths):
        if not p.is_file():
            near = sorted(q.name for q in p.parent.glob("*.jsonl")) if p.parent.is_dir() else []
            problems.append(f"results file {p} not found" + (f"; files there: {', '.join(near)}" if near else "")
                            + " (run `python -m bench_tasks run ...` first, or pass --results <file.jsonl>)")
        elif not load_rows(p):
            bad = inspect(p)
            problems.append(f"results file {p} has no result rows"
                            + (f": {describe_rejected(p, bad)}" if bad else " (it is empty)"))
    return problems


def cmd_report(args) -> int:
    from bench_tasks.report.build import run_from_args

    problems = check_report_inputs(args)
    if problems:
        print("report: " + "\n".join(problems), file=sys.stderr)
        return 2

    return int(run_from_args(args, sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "report" else None) or 0)


# ----------------------------------------------------------------------------- parser


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench_tasks",
                                description="Benchmark any pre-trained ViT backbone on face parsing, landmarks, "
                                            "attributes, expression and recognition (FaRL protocol).")
    sub = p.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("list", help="tasks, datasets, backbone schemes, heads, profiles")
    pl.add_argument("--layouts", action="store_true", help="also print the folder layout each reader expects")
    pl.set_defaults(func=cmd_list)

    pr = sub.add_parser("run", help="run (or resume) a plan of cells",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="Cells already done (an ok row in --results) are skipped; failed ones are "
                               "retried. Kill and re-run at any time.")
    pr.add_argument("--tasks", help="comma list of tasks (see `list`)")
    pr.add_argument("--datasets", help="comma list of datasets (default: each task's defaults + synthface, "
                                       "those without a data root skipped)")
    pr.add_argument("--backbones", help="comma list of backbone URIs, e.g. random:vit_tiny,"
                                        "paco_fr:runs/x/encoder.safetensors,farl:FaRL-ep64.pth "
                                        "(default random:vit_tiny)")
    pr.add_argument("--label", action="append", metavar="NAME|URI=NAME",
                    help="the name a backbone gets in its rows and the report (the rows' method block): "
                         "NAME with one --backbones URI, else URI=NAME (repeatable); default: what the "
                         "weights file recorded (study runs), else derived from the URI")
    pr.add_argument("--protocols", help="comma list: linear,frozen,finetune (default: the profile's)")
    pr.add_argument("--seeds", help="comma list of seeds (default: the profile's)")
    pr.add_argument("--fractions", help="comma list of training fractions, e.g. 0.01,0.1,1 (default: the profile's)")
    pr.add_argument("--profile", default="smoke",
                    help=f"evaluation profile: {', '.join(sorted(PROFILES))} (bench_tasks/configs/<name>.yaml) or "
                         "a profile YAML file of the same shape (default smoke)")
    pr.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override one profile value (repeatable): a profile field (batch_size=32, seeds=[0,1]) or "
                         "a task setting (dense_channels=64, linear.lr_head=0.02, recognition.emb_dim=64, "
                         "farl_epochs=2); unknown keys are errors listing the valid ones; see `run --dry-run`")
    pr.add_argument("--data-root", action="append",
                    help="a folder holding one sub-folder per dataset, or name=path pairs (comma list; repeatable)")
    pr.add_argument("--results", help="results file (default results/<profile>.jsonl)")
    pr.add_argument("--work-dir", default="work_dirs", help="scratch: feature cache (default work_dirs/)")
    pr.add_argument("--dry-run", action="store_true", help="print the plan and how many cells are done")
    pr.add_argument("--all", action="store_true",
                    help="every registered task on its default datasets (SynthFace when no data root is given); "
                         "without --backbones this is the whole study: pre-train the PaCo-FR, MAE, FaRL-style, "
                         "MCF-style and ablation runs (runs/<profile>/), evaluate them with a random-init control, "
                         "then write reports/<profile>/")
    pr.add_argument("--runs", default="runs", help="pre-training runs folder for --all (default runs/)")
    pr.add_argument("--no-ablations", action="store_true", help="--all: pre-train and evaluate the methods only")
    pr.add_argument("--no-report", action="store_true", help="--all: do not write the report at the end")
    pr.add_argument("--reports", default="reports", help="--all: where the report goes (<reports>/<profile>/)")
    pr.add_argument("--pretrain-override", action="append", metavar="KEY=VALUE",
                    help="--all: a pre-training config override applied to every run of the suite, e.g. "
                         "train.steps=500 (repeatable; see docs/pretraining.md for the keys)")
    pr.add_argument("--pretrain-jobs", type=int, default=1, metavar="N",
                    help="--all: pre-train N runs of the suite at once, each in its own process sharing this "
                         "machine's GPU or CPU cores (default 1: one after the other; the runs are the same)")
    pr.add_argument("--pretrain-seeds", action="append", metavar="SEEDS|RUN=SEEDS",
                    help="--all: pre-training seeds, one run folder per (run, seed): 0,1,2 for the compared methods "
                         "(ablations train at the first), RUN=SEEDS for one run (e.g. farl=0); repeatable; replaces "
                         "the profile's pretrain_seeds entries (default: seed 0 only; docs/pretraining.md)")
    pr.add_argument("--pretrain-only", action="store_true",
                    help="--all: stage 1 only (pre-train or reuse the suite's runs), then stop; a later `run --all` "
                         "with the same options evaluates them")
    pr.add_argument("--eval-only", action="store_true",
                    help="--all: no pre-training; evaluate the suite's runs that have finished (those not finished "
                         "are named and left out): e.g. several evaluation processes after one --pretrain-only")
    pr.add_argument("--budget-by", choices=("flops", "images", "steps"), default="flops",
                    help="--all: match the pre-training runs by model FLOPs (default), distinct images seen or "
                         "optimizer steps; PaCo-FR's configured length is the reference and MCF-style is charged "
                         "for its teacher's pre-training (docs/pretraining.md, 'Budget matching')")
    pr.add_argument("--no-ceilings", action="store_true",
                    help="do not add the supervised:<arch> ceiling cells (floors are always added)")
    pr.add_argument("--no-probes", action="store_true",
                    help="do not add the probe cells next to the encoders' (recognition: cosine; attributes, "
                         "expression: concat; bench_tasks.plan.references.PROBE_PROTOCOLS)")
    pr.add_argument("--force", action="store_true", help="recompute cells that are already done")
    pr.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1")
    pr.add_argument("--no-progress", action="store_true", help="no progress bars")
    pr.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch (default: 1 in the smoke profile, where two threads on a "
                         "2-core CPU stall whenever another process runs; torch's default otherwise)")
    pr.add_argument("--status", action="store_true",
                    help="cells done / claimed / failed / to do of this plan per backbone and task, workers "
                         "in flight, estimated time left (see also `python -m bench_tasks status`)")
    from bench_tasks.run.launch import add_launch_arguments

    add_launch_arguments(pr)
    pr.set_defaults(func=cmd_run)

    from bench_tasks.run.status import add_status_parser

    add_status_parser(sub)

    from bench_tasks.cli.preview import add_preview_parser

    add_preview_parser(sub)

    from bench_tasks.report.build import add_arguments as add_report_arguments

    prep = sub.add_parser("report", help="tables and figures from results/ only (no recomputation)")
    add_report_arguments(prep)
    prep.set_defaults(func=cmd_report)
    _add_scheme_epilogs(p, sub)
    return p


def _add_scheme_epilogs(parser: argparse.ArgumentParser, sub) -> None:
    """Every verb's --help ends with the backbone URI schemes (plug-ins included)."""
    load_registries()
    schemes = backbone_schemes_help()
    if not schemes:
        return
    for sp in [parser, *sub.choices.values()]:
        sp.epilog = (sp.epilog + "\n\n" if sp.epilog else "") + schemes
        sp.formatter_class = argparse.RawDescriptionHelpFormatter


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.command in ("list", "run"):
        load_registries()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
