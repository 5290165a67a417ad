"""Plan-time validation: every problem of a `run` found before any cell runs.

`python -m bench_tasks run` (and `--dry-run`) calls these before it writes anything; each problem
is one paragraph (what, which file, what was expected, the closest valid name) and they are
printed together, exit code 2. The Python API (`bench_tasks.evaluate`) uses the same checks.

    check_args(args) -> list[str]                    option values: tasks, datasets, protocols,
                                                     seeds, fractions, device, backbone URIs (syntax)
    check_data(task_datasets, roots, profile)        each (task, dataset) with a data root: the
                                                     reader loads its splits, they are not empty,
                                                     the first image decodes
    check_backbones(uris, tasks, profile, device)    each backbone is built once and runs one
                                                     forward pass at the plan's input size
    parse_seeds / parse_fractions / check_device     the single-value parsers
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import yaml

from bench_tasks.backbones.base import build_backbone, resolve_device
from bench_tasks.contracts import BackboneURI, DatasetLayoutError, Profile, uri_scheme
from bench_tasks.errors import PlanError, cause_line, closest
from bench_tasks.plan.options import PlanOptions
from bench_tasks.plan.profiles import profile_name
from bench_tasks.plan.suite import study_overrides
from bench_tasks.protocols.fractions import subset_indices
from bench_tasks.protocols.train import MIN_TRAIN_ITEMS
from bench_tasks.registry import BACKBONES, DATASETS, TASKS
from paco_fr.config import ConfigError, check_data_config, load_config

# schemes users try that this harness does not have, and what to use instead
SCHEME_HINTS = {
    "hf-hub": "Hugging Face hub names are not downloaded here; save the model with save_pretrained (or "
              "download its folder) and pass hf:<folder>, or a timm model's file as timm:<model>:<file>",
    "file": "give the scheme of the checkpoint's family instead: paco_fr:, timm:<model>:, hf:, open_clip:<arch>:, "
            "arcface:, farl:, mae:, mcf:",
    "clip": "OpenCLIP checkpoints load with open_clip:<arch>:<file>, FaRL-style CLIP checkpoints with farl:<file>",
}


class PlanInvalid(PlanError, ValueError):
    """A plan that cannot run; `problems` holds one paragraph per problem."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(format_problems(self.problems))


def format_problems(problems: Sequence[str]) -> str:
    n = len(problems)
    head = f"the run cannot start: {n} problem{'s' if n != 1 else ''} (nothing was run or written)"
    return head + "".join(f"\n\n[{i}] {p}" for i, p in enumerate(problems, 1))


def _csv(s: str | None) -> list[str] | None:
    if s is None:
        return None
    return [x.strip() for x in str(s).split(",") if x.strip()]


# ----------------------------------------------------------------------------- single values


def parse_seeds(text: str | Iterable | None) -> tuple[list[int] | None, list[str]]:
    """('0,1,2' | [0, 1]) -> ([0, 1, 2], problems)."""
    if text is None:
        return None, []
    items = _csv(text) if isinstance(text, str) else list(text)
    out, bad = [], []
    for s in items:
        try:
            if isinstance(s, float) and not s.is_integer():
                raise ValueError
            out.append(int(s))
        except (TypeError, ValueError):
            bad.append(s)
    if bad:
        return None, [f"--seeds: {', '.join(map(repr, bad))} {'is' if len(bad) == 1 else 'are'} not "
                      "integer(s); expected a comma list of integers, e.g. --seeds 0,1,2"]
    if not out:
        return None, ["--seeds is empty; expected a comma list of integers, e.g. --seeds 0,1,2"]
    return out, []


def parse_fractions(text: str | Iterable | None) -> tuple[list[float] | None, list[str]]:
    """('0.1,1' | [0.1, 1]) -> ([0.1, 1.0], problems); each must be in (0, 1]."""
    if text is None:
        return None, []
    items = _csv(text) if isinstance(text, str) else list(text)
    out, bad, out_of_range = [], [], []
    for s in items:
        try:
            f = float(s)
        except (TypeError, ValueError):
            bad.append(s)
            continue
        if not 0 < f <= 1:
            out_of_range.append(s)
        out.append(f)
    problems = []
    if bad:
        problems.append(f"--fractions: {', '.join(map(repr, bad))} not a number; expected fractions of the "
                        "training split in (0, 1], e.g. --fractions 0.01,0.1,1")
    if out_of_range:
        problems.append(f"--fractions: {', '.join(map(repr, out_of_range))} outside (0, 1]; a fraction is the "
                        "share of the training split a cell trains on (1 = all of it), e.g. --fractions 0.1,1")
    if not items:
        problems.append("--fractions is empty; expected e.g. --fractions 0.1,1")
    return (None if problems else out), problems


def check_device(device: str | None) -> list[str]:
    """'auto', 'cpu', 'cuda', 'cuda:N', 'mps': parseable and present on this machine."""
    if device is None or str(device) == "auto":
        return []
    try:
        dev = torch.device(str(device))
    except (RuntimeError, ValueError) as err:
        return [f"--device {device!r} is not a device ({cause_line(err)}); expected auto, cpu, cuda or cuda:<index>"]
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return [f"--device {device!r}: CUDA is not available on this machine (torch {torch.__version__}, "
                    f"built for CUDA {torch.version.cuda}); use --device cpu or auto"]
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            return [f"--device {device!r}: this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})"]
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            return [f"--device {device!r}: MPS is not available on this machine; use --device cpu or auto"]
    elif dev.type != "cpu":
        return [f"--device {device!r}: device type {dev.type!r} is not supported; expected auto, cpu, cuda[:N]"]
    return []


def check_backbone_uri(uri: str) -> list[str]:
    """Syntax and scheme of one URI (the file itself is checked by `check_backbones`)."""
    schemes = BACKBONES.names()
    try:
        scheme = BackboneURI.parse(uri).scheme
    except ValueError:
        scheme = uri_scheme(uri)
        return [f"backbone {uri!r}: expected scheme:spec, e.g. random:vit_tiny, timm:<model>[:<file>], "
                f"paco_fr:<encoder.safetensors>; schemes: {', '.join(schemes)}{closest(scheme, schemes)}"]
    if scheme not in BACKBONES:
        hint = SCHEME_HINTS.get(scheme)
        return [f"backbone {uri!r}: unknown scheme {scheme!r}{closest(scheme, schemes)}; registered schemes: "
                f"{', '.join(schemes)} (`python -m bench_tasks list`)" + (f". {hint}" if hint else "")]
    return []


# ----------------------------------------------------------------------------- arguments


def check_args(args, profile: Profile | None = None) -> list[str]:
    """Problems of the `run` options that need no data and no weights (names and values); `args`:
    a PlanOptions, or parsed arguments it is built from; `profile`: the run's resolved Profile (its
    `study:` section; default: the bundled profile `args` names)."""
    opts = PlanOptions.from_args(args)
    problems: list[str] = []
    tasks = _csv(opts.tasks) or []
    known_tasks = TASKS.names()
    for t in tasks:
        if t not in TASKS:
            problems.append(f"--tasks: unknown task {t!r}{closest(t, known_tasks)}; registered: {', '.join(known_tasks)}")
    datasets = _csv(opts.datasets) or []
    known_ds = DATASETS.names()
    for d in datasets:
        if d not in DATASETS:
            problems.append(f"--datasets: unknown dataset {d!r}{closest(d, known_ds)}; registered: {', '.join(known_ds)}")
    chosen = [t for t in tasks if t in TASKS] or (known_tasks if opts.all else [])
    protocols = _csv(opts.protocols)
    if protocols is not None:
        def accepted(t):  # a task's protocols and the names it plans under another (dense: linear -> frozen)
            task = TASKS.get(t)
            return (*task.protocols, *task.protocol_aliases)

        all_protocols = sorted({p for t in known_tasks for p in accepted(t)})
        served = sorted({p for t in chosen for p in accepted(t)})
        for p in protocols:
            if p not in all_protocols:
                problems.append(f"--protocols: unknown protocol {p!r}{closest(p, all_protocols)}; "
                                f"protocols: {', '.join(all_protocols)}")
            elif chosen and p not in served:
                problems.append(f"--protocols: none of the tasks {chosen} supports {p!r}; they support "
                                f"{', '.join(served)}")
        if not protocols:
            problems.append("--protocols is empty; expected e.g. --protocols linear,finetune")
    problems += parse_seeds(opts.seeds)[1]
    problems += parse_fractions(opts.fractions)[1]
    problems += check_device(opts.device)
    for uri in _csv(opts.backbones) or []:
        problems += check_backbone_uri(uri)
    study = opts.is_study  # evaluate() says False; the CLI: run --all without --backbones
    if study:
        problems += check_pretrain_overrides(list(opts.pretrain_override), profile or opts.profile)
    jobs = opts.pretrain_jobs
    if jobs is not None and int(jobs) < 1:
        problems.append(f"--pretrain-jobs {jobs}: expected a number of runs at once >= 1")
    if opts.pretrain_only and opts.eval_only:
        problems.append("--pretrain-only and --eval-only exclude each other (stage 1 only vs stage 2 only)")
    for flag, stage in (("eval_only", "evaluation"), ("pretrain_only", "pre-training")):
        if getattr(opts, flag) and not study:
            problems.append(f"--{flag.replace('_', '-')} needs `run --all` without --backbones (the study's {stage} stage)")
    return problems


def check_pretrain_overrides(items: Sequence[str], profile: Profile | str) -> list[str]:
    """`run --all --pretrain-override KEY=VALUE ...`: every item is KEY=VALUE, every key exists, and
    the suite's config (profile config + study budget + overrides) has usable data settings."""
    out, ov = [], {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            out.append(f"--pretrain-override {item!r} is not KEY=VALUE (e.g. train.steps=500)")
            continue
        ov[key.strip()] = yaml.safe_load(val) if val.strip() else None
    if out:
        return out

    try:
        cfg = load_config(profile_name(profile), {**study_overrides(profile), **ov})
        check_data_config(cfg)
    except (ConfigError, KeyError, FileNotFoundError) as err:
        out.append(f"--pretrain-override: {cause_line(err, limit=2000).split(': ', 1)[-1]}")
    return out


# ----------------------------------------------------------------------------- data


def _splits_for(spec, task: str) -> tuple[str, ...]:
    return ("test",) if spec.test_only else ("train", "val", "test")


def check_requirements(tasks: Iterable[str]) -> list[str]:
    """What each planned task needs that this environment lacks (Task.missing_requirements: the dense
    tasks need mmsegmentation with mmcv's compiled ops), found before anything is pre-trained or run."""
    return [p for t in dict.fromkeys(tasks) for p in TASKS.get(t).missing_requirements()]


def check_data(task_datasets: dict[str, Sequence[str]], roots, profile, log: Callable[[str], None] | None = None,
               fractions: Sequence[float] | None = None) -> list[str]:
    """Each (task, dataset) that reads a data root: its reader loads every split the task uses
    (annotation files parsed, image lists built), no split is empty, the first image of each decodes,
    and every training fraction of the plan (`fractions`, else the profile's) leaves at least
    `MIN_TRAIN_ITEMS` training items for a trained head."""
    fractions = list(fractions) if fractions else list(getattr(profile, "fractions", None) or (1.0,))
    problems = []
    for task_name, datasets in task_datasets.items():
        task = TASKS.get(task_name)()
        size = task.image_size(profile)
        for d in datasets:
            spec_cls = DATASETS.get(d)
            if not getattr(spec_cls, "needs_root", True):
                continue  # embedded data (SynthFace) is generated, not read
            root = roots.get(d)
            spec = spec_cls()
            for split in _splits_for(spec, task_name):
                try:
                    ds = spec.load(task_name, split, root, profile, size)
                    n = len(ds)
                    if n == 0:
                        problems.append(f"{task_name}/{d}: the {split} split is empty (root {root}); expected "
                                        f"images as listed by `python -m bench_tasks list --layouts` [{d}]")
                        break
                    ds[0]
                    if split == "train":
                        problems += _too_small(task_name, d, n, fractions)
                except Exception as err:  # noqa: BLE001 - every reader error becomes a problem paragraph
                    problems.append(_data_problem(task_name, d, split, root, err))
                    break
    return problems


def _too_small(task: str, dataset: str, n: int, fractions: Sequence[float]) -> list[str]:
    """A training fraction that leaves fewer than MIN_TRAIN_ITEMS items (a BatchNorm layer of the
    head cannot train on a batch of one), named with the fractions that would do."""
    small = [f for f in fractions if len(subset_indices(n, float(f), 0)) < MIN_TRAIN_ITEMS]
    if not small:
        return []
    ok = [f for f in fractions if f not in small]
    return [f"{task}/{dataset}: {n} training item(s); fraction(s) {', '.join(f'{f:g}' for f in small)} leave "
            f"fewer than {MIN_TRAIN_ITEMS}, the minimum a trained head needs (its BatchNorm layers cannot train on "
            "one item); add training images or "
            + (f"keep --fractions {','.join(f'{f:g}' for f in ok)}" if ok else "use --fractions 1")
            + (f" (at least {MIN_TRAIN_ITEMS} training images)" if n < MIN_TRAIN_ITEMS else "")]


def _data_problem(task: str, dataset: str, split: str, root, err: BaseException) -> str:
    if isinstance(err, DatasetLayoutError):
        return (f"{task}/{dataset}: {err.problem} (root: {err.root}).\nExpected layout:\n{err.layout}")
    return (f"{task}/{dataset}: reading the {split} split from {root} failed: {cause_line(err)}\n"
            f"(expected layout: `python -m bench_tasks list --layouts`, section [{dataset}])")


# ----------------------------------------------------------------------------- backbones


def check_backbones(uris: Iterable[str], tasks: Iterable[str], profile, device: str = "auto",
                    skip_missing: Callable[[str], bool] | None = None) -> list[str]:
    """Build each backbone once at the plan's smallest input size and run one forward pass with its
    dense layers (a model that builds but cannot run, or a file that does not fit, is found here,
    not in every cell). `skip_missing(uri)` True skips a URI (the study's encoders before stage 1)."""

    sizes = sorted({TASKS.get(t)().image_size(profile) for t in tasks}) or [profile.image_size]
    problems = []
    for uri in dict.fromkeys(uris):
        if check_backbone_uri(uri):
            continue  # already reported by check_args
        if skip_missing is not None and skip_missing(uri):
            continue
        try:
            bb = build_backbone(uri, sizes[0])
        except Exception as err:  # noqa: BLE001
            problems.append(f"backbone {uri!r} cannot be built: {cause_line(err, limit=2000)}")
            continue
        try:
            dev = resolve_device(device) if not check_device(device) else torch.device("cpu")
            bb = bb.to(dev).eval()
            with torch.no_grad():
                out = bb(torch.zeros(1, 3, sizes[0], sizes[0], device=dev), bb.dense_layers())
            if out.cls.ndim != 2:
                raise ValueError(f"CLS output has shape {tuple(out.cls.shape)}, expected (batch, dim)")
        except Exception as err:  # noqa: BLE001
            problems.append(f"backbone {uri!r} builds but its forward pass at {sizes[0]}x{sizes[0]} fails: "
                            f"{cause_line(err, limit=2000)}")
        finally:
            del bb
    return problems
