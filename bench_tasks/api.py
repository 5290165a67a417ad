"""The public Python API, for notebooks (also `from bench_tasks import evaluate, load_results`).
It sits at the top of the package, beside the CLI; the contract types plug-ins implement are
bench_tasks.contracts (re-exported here for plug-ins written against `from bench_tasks.api import ...`).

    import timm, bench_tasks
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0)
    df = bench_tasks.evaluate(vit, tasks=["attributes", "expression"], profile="smoke")
    df[["task", "dataset", "protocol", "headline", "headline_value"]]

    df = bench_tasks.evaluate("paco_fr:runs/smoke/paco/encoder.safetensors", tasks=["parsing"],
                              datasets=["lapa"], data_root="/data", profile="paper")
    all_rows = bench_tasks.load_results("results/smoke.jsonl")

`evaluate` plans the cells exactly as `python -m bench_tasks run` does, refuses bad input before
anything runs (`bench_tasks.plan.validate.PlanInvalid`, whose message lists every problem), appends one
row per cell to the results file (resumable: done cells are not recomputed unless force=True) and
returns this call's rows as a pandas DataFrame (bench_tasks.store.results.to_dataframe columns: backbone,
task, dataset, protocol, fraction, seed, status, headline, headline_value, metric/<name>, ...).

An in-memory backbone is a timm ViT-family module (VisionTransformer, EVA, DeiT, BEiT, ...), a
`paco_fr.backbone.ViTBackbone` or a `bench_tasks.backbones.base.BenchBackbone`. Its cells are keyed
by `memory:<name>@<hash of its weights>`, so a changed model never reuses old rows. The model is
copied per cell (fine-tuning never changes the object you passed) and resized to each task's input
size with timm's `set_input_size`.
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from bench_tasks.backbones.base import BenchBackbone
from bench_tasks.backbones.timm_file import TimmViTBackbone, _mean_std, missing_vit_parts
from bench_tasks.cli.common import apply_threads
from bench_tasks.cli.planning import build_task_datasets
from bench_tasks.cli.run_cmd import run_spec
from bench_tasks.contracts import (
    Cell,
    CellContext,
    CellResult,
    DatasetLayoutError,
    DatasetSpec,
    Profile,
    Task,
    TaskSplit,
    split_targets,
)
from bench_tasks.errors import PlanError, cause_line
from bench_tasks.plan.cell_plan import make_plan
from bench_tasks.plan.cells import DataRoots, plan_cells
from bench_tasks.plan.options import PlanOptions
from bench_tasks.plan.profiles import PROFILES, get_profile
from bench_tasks.plan.validate import (
    PlanInvalid,
    check_args,
    check_backbones,
    check_data,
    parse_fractions,
    parse_seeds,
)
from bench_tasks.registry import TASKS, load_registries
from bench_tasks.report.compare import compare as compare_rows
from bench_tasks.report.compare import main_protocols, method_uris
from bench_tasks.report.load import load_rows
from bench_tasks.report.tables import rows_to_frames
from bench_tasks.run.runner import row_line, run_cell, run_plan
from bench_tasks.run.spec import RunSpec
from bench_tasks.store.readers import describe_rejected, inspect, latest_rows
from bench_tasks.store.results import ResultsStore, to_dataframe
from paco_fr.backbone import ViTBackbone

__all__ = [
    "evaluate", "load_results", "compare", "run", "RunSpec", "wrap_module", "at_size",
    # the contracts and profiles, under the names plug-ins have imported from here
    "Cell", "CellContext", "CellResult", "DatasetLayoutError", "DatasetSpec", "Profile", "Task", "TaskSplit",
    "split_targets", "PROFILES", "get_profile",
]


def _join(x: str | Sequence | None) -> str | None:
    if x is None:
        return None
    if isinstance(x, str):
        return x
    return ",".join(str(v) for v in x)


def _weights_hash(module: nn.Module) -> str:
    h = hashlib.sha256(type(module).__name__.encode())
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def wrap_module(model: nn.Module | BenchBackbone, name: str | None = None) -> BenchBackbone:
    """An in-memory model as a BenchBackbone keyed `memory:<name>@<weights hash>`."""
    if isinstance(model, BenchBackbone):
        return model
    h = _weights_hash(model)
    if isinstance(model, ViTBackbone):
        vit_bb = model
        label = name or model.arch
    else:
        missing = missing_vit_parts(model)
        if missing:
            raise TypeError(f"evaluate(): a {type(model).__name__} is not a timm ViT-family model (it has no "
                            f"{', '.join(missing)}); pass a timm ViT, a paco_fr ViTBackbone, or a backbone URI "
                            "string such as 'timm:<model>:<file>'")
        mean, std = _mean_std(model)
        label = name or getattr(model, "default_cfg", {}).get("architecture") or type(model).__name__
        vit_bb = TimmViTBackbone(model, arch=label, mean=mean, std=std)
    return BenchBackbone(f"memory:{label}@{h[:12]}", vit_bb, h, source=f"in-memory {type(model).__name__}")


def at_size(bb: BenchBackbone, size: int) -> BenchBackbone:
    """A copy of `bb` that takes `size` x `size` inputs."""
    bb = copy.deepcopy(bb)
    vit = bb.vit.vit
    cur = tuple(getattr(vit.patch_embed, "img_size", None) or ())
    dynamic = getattr(vit, "dynamic_img_size", False)
    if cur and cur != (size, size) and not dynamic:
        if not hasattr(vit, "set_input_size"):
            raise ValueError(f"{bb.uri}: the model takes {cur} inputs, the task needs {size}x{size}; create it "
                             "with dynamic_img_size=True or img_size=" + str(size))
        vit.set_input_size(img_size=(size, size))
        bb.vit.img_size = size
    return bb


def _check_forward(bb: BenchBackbone, task_ds: dict, prof) -> None:
    for size in sorted({TASKS.get(t)().image_size(prof) for t in task_ds}):
        m = at_size(bb, size).eval()
        with torch.no_grad():
            m(torch.zeros(1, 3, size, size), m.dense_layers())


def _run_in_memory(bb, cells, prof, results, work_dir, roots, device, force, progress, log) -> None:
    """run_plan for a backbone object: done cells skipped, each cell gets its own copy at its size."""
    store = ResultsStore(results)
    moved = store.quarantine()
    if moved:
        log(f"warning: {describe_rejected(store.path, moved)}: moved to {store.rejected_path}")
    done = store.done_keys()
    sized: dict[int, BenchBackbone] = {}
    for cell in cells:
        if cell.key() in done and not force:
            continue
        size = TASKS.get(cell.task)().image_size(prof)
        if size not in sized:
            sized[size] = at_size(bb, size)
        row = run_cell(cell, results=results, work_dir=work_dir, data_roots=roots, device=device,
                       progress=progress, backbone=copy.deepcopy(sized[size]))
        log(row_line(cell, row))


def _checked_backbone(backbone, name, task_ds, prof, device) -> tuple[BenchBackbone | None, str, list[str]]:
    """(the wrapped in-memory backbone or None for a URI, the URI its cells are keyed by, its problems)."""
    if isinstance(backbone, str):
        return None, backbone, check_backbones([backbone], task_ds, prof, device)
    bb = None
    try:
        bb = wrap_module(backbone, name)
        _check_forward(bb, task_ds, prof)
    except (TypeError, ValueError, RuntimeError, AssertionError) as err:
        return bb, bb.uri if bb is not None else "memory:?", [
            f"evaluate(): the in-memory backbone cannot be used: {cause_line(err, limit=2000)}"]
    return bb, bb.uri, []


def _checked_plan(backbone, opts, data_root, name, threads, log):
    """(profile, data roots, cells, in-memory backbone or None) of an evaluate() call, planned as
    `run` plans; every problem raised together as one PlanInvalid before anything runs."""
    problems = check_args(opts)
    try:
        prof = get_profile(opts.profile)
    except KeyError as err:
        raise PlanInvalid([*problems, str(err.args[0])]) from None
    apply_threads(threads, prof.name)
    roots = DataRoots.parse([data_root] if isinstance(data_root, str) else (list(data_root) if data_root else None))
    try:
        task_ds = build_task_datasets(opts, roots, log=log)
    except PlanError as err:
        raise PlanInvalid(problems or [str(err.code)]) from None
    problems += check_data(task_ds, roots, prof, fractions=parse_fractions(opts.fractions)[0])
    bb, uri, bad = _checked_backbone(backbone, name, task_ds, prof, opts.device)
    problems += bad
    if not task_ds:
        problems.append("the plan is empty: no task has an available dataset (give datasets=... and data_root=...)")
    if problems:
        raise PlanInvalid(problems)
    proto_list = [p.strip() for p in opts.protocols.split(",")] if opts.protocols else None
    cells = plan_cells([uri], task_ds, protocols=proto_list, seeds=parse_seeds(opts.seeds)[0],
                       fractions=parse_fractions(opts.fractions)[0], profile=prof.name)
    return prof, roots, cells, bb


def evaluate(backbone: str | nn.Module | BenchBackbone, tasks: str | Sequence[str] | None = None,
             datasets: str | Sequence[str] | None = None, profile: str = "smoke",
             protocols: str | Sequence[str] | None = None, seeds: str | Sequence[int] | None = None,
             fractions: str | Sequence[float] | None = None, data_root: str | Sequence[str] | None = None,
             results: str | Path | None = None, work_dir: str | Path = "work_dirs", device: str = "auto",
             force: bool = False, progress: bool = True, name: str | None = None,
             log: Callable[[str], None] | None = print, threads: int | None = None):
    """Evaluate one backbone (a URI string or an in-memory model) and return this call's result rows
    as a pandas DataFrame. `tasks=None` runs every task; `datasets=None` each task's default datasets
    that have a data root, plus SynthFace. Raises bench_tasks.plan.validate.PlanInvalid (every problem
    listed) before anything runs when the input is bad. `threads`: torch's CPU threads, with the
    CLI's default (`run --threads`: 1 under the smoke profile, else torch's own); it is set for the
    whole process, as the CLI does."""
    load_registries()
    log = log or (lambda msg: None)
    opts = PlanOptions(profile=profile, tasks=_join(tasks), all=tasks is None, datasets=_join(datasets),
                       protocols=_join(protocols), seeds=_join(seeds), fractions=_join(fractions), device=device,
                       backbones=backbone if isinstance(backbone, str) else None, study=False)
    prof, roots, cells, bb = _checked_plan(backbone, opts, data_root, name, threads, log)
    results = Path(results or f"results/{prof.name}.jsonl")
    if bb is None:
        run_plan(make_plan(cells), results=results, work_dir=work_dir, data_roots=roots, device=device, force=force,
                 progress=progress, log=log)
    else:
        _run_in_memory(bb, cells, prof, results, work_dir, roots, device, force, progress, log)
    latest = latest_rows(results)
    keys = [c.key() for c in cells]
    df = to_dataframe(results)
    if df.empty:
        return pd.DataFrame()
    return df[df["key"].isin([k for k in keys if k in latest])].reset_index(drop=True)


def run(spec: RunSpec | str | Path, **changes) -> int:
    """Run an experiment exactly as `python -m bench_tasks run` does: `spec` a RunSpec, a spec YAML
    file or the name of a bundled one (bench_tasks/configs/studies/), `changes` any of its fields
    (`run("cpu_reference", dry_run=True)`). Returns the CLI's exit code (0 ok, 1 a failed cell or
    stage, 2 bad input, with the reason printed)."""
    load_registries()
    if not isinstance(spec, RunSpec):
        spec = RunSpec.from_yaml(spec)
    return run_spec(spec.replace(**changes) if changes else spec)


def load_results(path: str | Path, latest_only: bool = True):
    """A results file as a pandas DataFrame (one row per cell, the latest row per key with
    latest_only). Raises FileNotFoundError for a missing file; unreadable lines are skipped with a
    warning (a run moves them to `<file>.rejected`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} not found")
    bad = inspect(path)
    if bad:
        warnings.warn(f"{describe_rejected(path, bad)}; they are left out", stacklevel=2)
    return to_dataframe(path, latest_only=latest_only)


def compare(results: str | Path, a: str, b: str, task: str, dataset: str = "synthface", protocol: str | None = None,
            fraction: float = 1.0) -> dict:
    """metric(a) - metric(b) on a task's headline with the report's interval and verdict (the same
    statistics layer and `stats.verdict` as SUMMARY.md): a, b are backbone URIs (or method labels:
    every pre-training run of the method). protocol: default the report's main protocol of the task.
    Returns {"metric", "delta", "lo", "hi", "verdict" ("better" / "worse" / "same within noise"),
    "covers" (what the interval resamples)}. Raises ValueError when either side has no ok row."""
    df = rows_to_frames(load_rows([results]).rows)[0]
    protocol = protocol or main_protocols(df).get(task)

    def uris(x: str) -> list[str]:
        if x in set(df["uri"]):
            return [x]
        if x in set(df["run"]):
            return list(dict.fromkeys(df[df["run"] == x]["uri"]))
        return list(dict.fromkeys(df[df["method_label"] == x]["uri"])) or method_uris(df, x)

    ua, ub = uris(a), uris(b)
    cmp = compare_rows(df, ua, ub, task, dataset, protocol, fraction) if ua and ub else None
    if cmp is None:
        raise ValueError(f"{results}: no comparable ok rows for {a!r} and {b!r} on {task}/{dataset} "
                         f"(protocol {protocol}, fraction {fraction:g}); expected rows with a headline and an interval")
    d = cmp.diff
    return {"metric": cmp.metric, "delta": d.delta, "lo": d.lo, "hi": d.hi, "verdict": cmp.word, "covers": d.covers}
