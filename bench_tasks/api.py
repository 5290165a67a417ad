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

`evaluate` and `run` resolve and execute an experiment exactly as `python -m bench_tasks run` does
(bench_tasks.session): `evaluate` refuses bad input before anything runs
(`bench_tasks.plan.validate.PlanInvalid`, whose message lists every problem), prints the plan's notes,
appends one row per cell to the results file (resumable: a cell is recomputed only when its row is
not current: another task or data version, other settings (`settings=` overrides the profile's, as
`run --set` does), other weights; or with force=True) and returns the rows of the plan's cells, the
floors, ceilings and probes next to the backbone's, as a pandas DataFrame
(bench_tasks.store.results.to_dataframe columns: backbone, task, dataset, protocol, fraction, seed,
status, headline, headline_value, metric/<name>, ...).

An in-memory backbone is a timm ViT-family module (VisionTransformer, EVA, DeiT, BEiT, ...), a
`paco_fr.backbone.ViTBackbone` or a `bench_tasks.backbones.base.BenchBackbone`. Its cells are keyed
by `memory:<name>@<hash of its weights>`, so a changed model never reuses old rows. The model is
copied per cell (fine-tuning never changes the object you passed) and resized to each task's input
size with timm's `set_input_size`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd
from torch import nn

from bench_tasks.backbones.base import BenchBackbone
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
from bench_tasks.errors import PlanError
from bench_tasks.plan.profiles import PROFILES, get_profile
from bench_tasks.plan.validate import PlanInvalid
from bench_tasks.registry import load_registries
from bench_tasks.report.compare import compare as compare_rows
from bench_tasks.report.compare import main_protocols, method_uris
from bench_tasks.report.load import load_rows
from bench_tasks.report.tables import rows_to_frames
from bench_tasks.run.spec import RunSpec
from bench_tasks.session.execute import InProcess, evaluate_stage
from bench_tasks.session.experiment import resolve
from bench_tasks.session.in_memory import InMemoryBackbones, at_size, wrap_module
from bench_tasks.session.process import apply_threads
from bench_tasks.session.run import run_spec
from bench_tasks.store.readers import describe_rejected, inspect, latest_rows
from bench_tasks.store.results import to_dataframe

__all__ = [
    "evaluate", "load_results", "compare", "run", "RunSpec", "wrap_module", "at_size",
    # the contracts and profiles, under the names plug-ins have imported from here
    "Cell", "CellContext", "CellResult", "DatasetLayoutError", "DatasetSpec", "Profile", "Task", "TaskSplit",
    "split_targets", "PROFILES", "get_profile",
]


def _listed(x: str | Sequence | None) -> list[str] | None:
    if x is None:
        return None
    return [x] if isinstance(x, str) else [str(v) for v in x]


def _assignments(settings: Mapping | Sequence[str] | None) -> list[str]:
    """{"linear.lr_head": 0.5} or ["linear.lr_head=0.5"] -> `run --set` items."""
    if not settings:
        return []
    if isinstance(settings, Mapping):
        import json

        return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in settings.items()]
    return [str(s) for s in settings]


def evaluation_spec(backbone_uri: str, tasks=None, datasets=None, profile: str = "smoke", protocols=None,
                    seeds=None, fractions=None, data_root=None, results=None, work_dir="work_dirs",
                    device: str = "auto", force: bool = False, progress: bool = True, threads: int | None = None,
                    settings=None, ceilings: bool = True, probes: bool = True) -> RunSpec:
    """The RunSpec of an evaluate() call: `run --backbones <uri>` with the same arguments."""
    data = {"profile": profile, "set": _assignments(settings), "tasks": _listed(tasks), "all": tasks is None,
            "datasets": _listed(datasets), "backbones": [backbone_uri], "protocols": _listed(protocols),
            "seeds": _listed(seeds), "fractions": _listed(fractions), "data_root": _listed(data_root) or [],
            "results": None if results is None else str(results), "work_dir": str(work_dir), "device": device,
            "force": force, "no_progress": not progress, "threads": threads, "no_ceilings": not ceilings,
            "no_probes": not probes}
    return RunSpec.from_dict({k: v for k, v in data.items() if v is not None})


def evaluate(backbone: str | nn.Module | BenchBackbone, tasks: str | Sequence[str] | None = None,
             datasets: str | Sequence[str] | None = None, profile: str = "smoke",
             protocols: str | Sequence[str] | None = None, seeds: str | Sequence[int] | None = None,
             fractions: str | Sequence[float] | None = None, data_root: str | Sequence[str] | None = None,
             results: str | Path | None = None, work_dir: str | Path = "work_dirs", device: str = "auto",
             force: bool = False, progress: bool = True, name: str | None = None,
             log: Callable[[str], None] | None = print, threads: int | None = None,
             settings: Mapping | Sequence[str] | None = None, ceilings: bool = True, probes: bool = True):
    """Evaluate one backbone (a URI string or an in-memory model) and return the rows of its plan
    (its cells, their floors, ceilings and probes) as a pandas DataFrame. `tasks=None` runs every
    task; `datasets=None` each task's default datasets that have a data root, plus SynthFace.
    `settings`: profile overrides, as `run --set` takes them ({"linear.lr_head": 0.5} or
    ["linear.lr_head=0.5"]); a cell computed with other settings is recomputed. `ceilings`,
    `probes`: the reference cells `run` adds (`--no-ceilings`, `--no-probes`). Raises
    bench_tasks.plan.validate.PlanInvalid (every problem listed) before anything runs when the input
    is bad. `threads`: torch's CPU threads, with the CLI's default (`run --threads`: 1 under the
    smoke profile, else torch's own); it is set for the whole process, as the CLI does."""
    load_registries()
    log = log or (lambda msg: None)
    source = None
    if not isinstance(backbone, str):
        try:
            source = InMemoryBackbones(wrap_module(backbone, name))
        except (TypeError, ValueError) as err:
            raise PlanInvalid([str(err)]) from None
    try:
        spec = evaluation_spec(backbone if source is None else source.model.uri, tasks, datasets, profile, protocols,
                               seeds, fractions, data_root, results, work_dir, device, force, progress, threads,
                               settings, ceilings, probes)
        apply_threads(spec.threads, Path(spec.profile).stem)  # the CLI's default, before the plan's checks run
        exp = resolve(spec, log=log, backbones=source)
    except PlanInvalid:
        raise
    except PlanError as err:
        raise PlanInvalid([str(err)]) from None
    if not len(exp.plan):
        raise PlanInvalid(["the plan is empty: no task has an available dataset (give datasets=... and data_root=...)"])
    for line in exp.notes:
        log(line)
    evaluate_stage(exp, InProcess(record=False), log=log)
    latest = latest_rows(exp.results)
    keys = [k for k in exp.plan.keys() if k in latest]
    df = to_dataframe(exp.results)
    if df.empty:
        return pd.DataFrame()
    df = df[df["key"].isin(keys)]
    return df.set_index("key", drop=False).loc[keys].reset_index(drop=True)


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
    Returns {"metric", "delta", "lo", "hi", "verdict" (stats.verdict: "better" / "worse" / "the same" / "not shown"),
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
