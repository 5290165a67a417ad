"""`run --launcher {local,slurm,submitit-local}` and `--num-shards N --shard-index i`.

    python -m bench_tasks run --all --profile paper --data-root /data --launcher slurm \\
        --partition gpu --account myproj --gpus 1 --time 1440 --mem 128
    python -m bench_tasks run ... --num-shards 4 --shard-index $TASK_ID     # any other scheduler

`local` (default) computes the plan in this process (rows into results/<profile>.jsonl).
`slurm` and `submitit-local` go through submitit (its SlurmExecutor / LocalExecutor, the same
code path; the local one runs the jobs as processes on this machine and is what the tests use):
  * the plan is split into jobs of cells of ONE backbone (so a job builds the backbone and its
    feature cache once), at most `--group-size` cells each (0: the whole backbone), submitted
    together (one SLURM job array, `--array-parallelism` running at once);
  * every job is a worker (bench_tasks.run.worker): it claims each cell before computing it and
    writes its rows to its own file results/<profile>.d/<worker>.jsonl; a job killed by a
    time-out or a preemption is requeued by submitit (`checkpoint`) and resumes its cells;
  * `run --all` without --backbones (the study): each pre-training run of the suite becomes a
    job (`--pretrain-gpus` processes per node started torchrun-style, `--pretrain-nodes` nodes);
    the evaluation jobs of an encoder depend on its pre-training job (SLURM `afterok`; the local
    executor waits for it), MCF's on MAE's (its teacher).

Job sizes come from the profile's `jobs:` section (bench_tasks.run.jobs.job_defaults); `--print-sbatch` prints
the sbatch script submitit would submit for the evaluation array and stops (docs/cluster.md).
"""

from __future__ import annotations

import collections
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bench_tasks.contracts import Cell, Profile
from bench_tasks.plan.cell_plan import Plan, make_plan
from bench_tasks.plan.profiles import get_profile
from bench_tasks.plan.study import plan_suite
from bench_tasks.plan.suite import encoder_finished, study_seeds, teacher_of
from bench_tasks.run.jobs import (
    EvalJob,
    JobOptions,
    PretrainJob,
    eval_options,
    group_cells,
    group_size,
    jobs_folder,
    make_executor,
    pretrain_options,
    sbatch_script,
    worker_spec,
)
from bench_tasks.store.results import ResultsStore
from bench_tasks.store.rowfiles import record_launch

# ----------------------------------------------------------------------------- launching


def launch(spec, cells: Sequence[Cell] | Plan, results: Path, study_runs: dict | None = None,
           labels: dict[str, str] | None = None, log: Callable[[str], None] = print) -> int:
    """Submit the plan as submitit jobs. study_runs: {run name: (SuiteRun overrides, encoder path)}
    for `run --all`: their pre-training jobs are submitted first and the evaluation jobs of
    their encoders depend on them. Returns the exit code."""
    since = spec.launch.since if spec.launch.since is not None else time.time()
    kind = spec.launch.launcher
    if kind == "slurm" and not spec.launch.print_sbatch and shutil.which("sbatch") is None:
        print("error: --launcher slurm needs SLURM's sbatch and srun on PATH (run it on the cluster's login "
              "node); --print-sbatch shows the job script without submitting, --launcher submitit-local runs "
              "the same jobs on this machine", file=sys.stderr)
        return 2
    folder = jobs_folder(spec, results)
    profiles = dict(cells.profiles) if isinstance(cells, Plan) else {}
    profile = profiles.get(spec.profile)  # the run's Profile (its `jobs:` / `study:` sections), None: the bundled one
    opts = eval_options(spec, profile)
    if not spec.force:  # no job for cells already done (a re-launch after a kill submits only what is left)
        cells = cells_left(cells, results, log)
    groups = group_cells(cells, group_size(spec, profile))
    if not groups and not study_runs:
        log("every cell of the plan is done: nothing to submit")
        return 0
    if spec.launch.print_sbatch:
        return print_sbatch(spec, groups, study_runs, folder.absolute(), opts, profile)  # submitit uses the absolute folder
    folder.mkdir(parents=True, exist_ok=True)
    record = {"launcher": kind, "since": since, "profile": spec.profile, "jobs_dir": str(folder),
              "command": "python -m bench_tasks " + " ".join(sys.argv[1:]),
              "keys": [c.key() for g in groups for c in g], "cells": [asdict(c) for g in groups for c in g],
              "jobs": [], "pretrain_jobs": []}
    sub = Submission(spec, folder, record, results, since, study_runs or {}, dict(labels or {}), profiles, log,
                     profile or spec.profile)
    pre_jobs = submit_pretraining(sub)  # stage 1 of the study
    jobs, path = submit_evaluation(sub, groups, pre_jobs, opts)
    log(f"submitted {len(jobs)} evaluation job(s) ({kind}) for {len(record['keys'])} cells; "
        f"logs in {folder}; launch record {path}")
    log(f"progress: python -m bench_tasks status --results {results}")
    if kind == "slurm" or spec.launch.no_wait:
        return 0
    return wait_for(jobs, log)


def cells_left(cells: Sequence[Cell] | Plan, results: Path, log: Callable[[str], None]) -> list[Cell]:
    """The cells without a current ok row (stale ones are redone)."""
    plan = cells if isinstance(cells, Plan) else make_plan(cells, references=False)
    left = [c for c, _ in plan.todo(ResultsStore(results).latest())[0]]
    cells = plan.cells
    if len(left) < len(cells):
        log(f"{len(cells) - len(left)} of {len(cells)} cells already done; jobs for the {len(left)} left")
    return left


def print_sbatch(spec, groups: list[list[Cell]], study_runs: dict | None, folder: Path, opts: JobOptions,
                 profile: Profile | None = None) -> int:
    """`--print-sbatch`: the job script(s) submitit would submit, without submitting."""
    if study_runs:
        first = next(iter(study_runs))
        enc = f"paco_fr:{study_runs[first][1]}"
        mine = [g for g in groups if g[0].backbone == enc]
        print(f"# stage 1: one pre-training job per run of the suite ({len(study_runs)} runs), e.g. {first}:\n")
        print(sbatch_script(pretrain_options(spec, profile), folder, 1))
        print(f"# stage 2: one evaluation job array per encoder ({len(groups)} jobs in all), each after the "
              f"pre-training job of its encoder, e.g. {first}'s {len(mine)} job(s), if its pre-training "
              "job had id 123456:\n")
        print(sbatch_script(opts, folder, len(mine), dependency="afterok:123456"))
        return 0
    print(sbatch_script(opts, folder, len(groups)))
    return 0


@dataclass(frozen=True)
class Submission:
    """One launch as its jobs are submitted: the spec, the jobs folder, the launch record (a dict that
    grows as jobs are submitted; `status` reads it), the results file, the launch time the workers
    share, the study's runs ({run name: (SuiteRun overrides, encoder path)}; {} without a study), the
    backbones' labels, the plan's profiles ({name: Profile}) and the log."""

    spec: object
    folder: Path
    record: dict
    results: Path
    since: float
    study_runs: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    profiles: dict = field(default_factory=dict)
    log: Callable[[str], None] = print
    profile: object = None  # the run's Profile (a bundled profile's name when the plan has none)


def submit_pretraining(sub: Submission) -> dict[str, object]:
    """One job per unfinished run of the study's suite (MCF-style after its teacher; on one machine,
    one after the other): {run name: job}."""
    spec, study_runs, folder, record, log = sub.spec, sub.study_runs, sub.folder, sub.record, sub.log
    kind = spec.launch.launcher
    profile = sub.profile if isinstance(sub.profile, Profile) else get_profile(sub.profile or spec.profile)
    teachers = teacher_of(True, profile, study_seeds(spec.pretrain_seeds, profile)) if study_runs else {}
    pre_jobs: dict[str, object] = {}
    popts = pretrain_options(spec, profile) if study_runs else None
    for name, (overrides, enc) in study_runs.items():
        if encoder_finished(enc):
            log(f"[pre-training] {name}: finished earlier ({enc}), no job")
            continue
        dep = None
        teacher = teachers.get(name)
        if teacher in pre_jobs:  # MCF-style's teacher run (bench_tasks.plan.study) must finish first
            dep = pre_jobs[teacher]
            if kind == "submitit-local":
                dep.result()
        if kind == "submitit-local" and pre_jobs:  # one machine: pre-training runs one after the other
            list(pre_jobs.values())[-1].result()
        pex = make_executor(kind, folder, popts, _afterok([dep]) if (kind == "slurm" and dep) else None)
        pex.update_parameters(**({"job_name": f"pretrain-{name}"} if kind == "slurm" else {"name": f"pretrain-{name}"}))
        job = pex.submit(PretrainJob(profile, name, overrides, str(Path(enc).parent), os.getcwd()))
        pre_jobs[name] = job
        record["pretrain_jobs"].append({"run": name, "job_id": str(job.job_id)})
        log(f"[pre-training] {name}: job {job.job_id} ({popts.nodes} node(s) x {popts.tasks_per_node} process(es))")
    return pre_jobs


def submit_evaluation(sub: Submission, groups: list[list[Cell]], pre_jobs: dict, opts: JobOptions) -> tuple[list, Path]:
    """Stage 2: one evaluation job per group of cells; those of a pre-trained encoder wait for its
    job. Returns (jobs, the launch record's path)."""
    spec, study_runs, folder, record, log = sub.spec, sub.study_runs, sub.folder, sub.record, sub.log
    results, since, labels, profiles = sub.results, sub.since, sub.labels, sub.profiles
    kind = spec.launch.launcher
    enc_of = {f"paco_fr:{enc}": name for name, (_, enc) in study_runs.items()}
    by_dep: dict[str | None, list[list[Cell]]] = {}
    for g in groups:
        dep_name = enc_of.get(g[0].backbone)
        by_dep.setdefault(dep_name if dep_name in pre_jobs else None, []).append(g)
    jobs = []
    path = record_launch(results, record)
    pool = _LocalPool(opts, spec.launch.array_parallelism, log) if kind == "submitit-local" else None
    for dep_name, gs in by_dep.items():
        dep_job = pre_jobs.get(dep_name) if dep_name else None
        if dep_job is not None and kind == "submitit-local":
            log(f"waiting for pre-training job {dep_job.job_id} ({dep_name}) before its evaluation jobs")
            dep_job.result()
        ex = make_executor(kind, folder, opts, _afterok([dep_job]) if (kind == "slurm" and dep_job) else None)
        if pool is not None:  # local processes: at most `parallel` at once, each on its own GPU
            subs = [pool.submit(ex, EvalJob(worker_spec(spec, g, results, since, labels=labels, profiles=profiles))) for g in gs]
        else:
            with ex.batch():
                subs = [ex.submit(EvalJob(worker_spec(spec, g, results, since, labels=labels, profiles=profiles))) for g in gs]
        for g, j in zip(gs, subs):
            jobs.append(j)
            record["jobs"].append({"job_id": str(j.job_id), "backbone": g[0].backbone, "cells": len(g),
                                   "after": dep_name})
        record_launch(results, record, path)
    return jobs, path


def wait_for(jobs: list, log) -> int:
    """Wait for every job (local launchers) and report each; 1 when a cell or a job failed."""
    failed = 0
    for j in jobs:
        try:
            s = j.result()
            log(f"job {j.job_id}: {s['ok']} ok, {s['failed']} failed, {s['skipped']} already done, "
                f"{s['busy']} held by other workers, {s['taken_over']} taken over")
            failed += s["failed"]
        except Exception as err:  # noqa: BLE001 - report every job
            failed += 1
            log(f"job {j.job_id} FAILED: {type(err).__name__}: {str(err).strip().splitlines()[-1:]}")
    return 1 if failed else 0


class _LocalPool:
    """submitit-local: submit jobs as slots free up (at most `parallel` processes at once), each
    job with GPUs gets its own device(s) through submitit's `visible_gpus`."""

    def __init__(self, opts: JobOptions, parallel: int | None, log):
        self.opts, self.log = opts, log
        self.n_gpus = torch.cuda.device_count() if opts.gpus else 0
        if parallel is None:
            parallel = (max(1, self.n_gpus // max(1, opts.gpus)) if opts.gpus
                        else max(1, (os.cpu_count() or 1) // max(1, opts.cpus)))
        self.parallel = max(1, int(parallel))
        self.running: list[tuple[object, tuple[int, ...]]] = []

    def submit(self, ex, fn):
        while True:
            self.running = [(j, g) for j, g in self.running if not j.done()]
            if len(self.running) < self.parallel:
                break
            time.sleep(0.5)
        if self.n_gpus:
            busy = collections.Counter(i for _, g in self.running for i in g)
            gpus = tuple(sorted(range(self.n_gpus), key=lambda i: busy[i])[:self.opts.gpus])
            ex.update_parameters(visible_gpus=gpus)
        else:
            gpus = ()
        job = ex.submit(fn)
        self.running.append((job, gpus))
        return job


def _afterok(jobs) -> str | None:
    ids = [str(j.job_id) for j in jobs if j is not None]
    return ("afterok:" + ":".join(ids)) if ids else None


# ----------------------------------------------------------------------------- the study's runs as jobs


def study_runs(spec, profile) -> dict[str, tuple[dict, Path]]:
    """{run name: (pre-training overrides, encoder path)} of the study's suite (what
    bench_tasks.run.pretrain.pretrain_suite would train), for the pre-training jobs."""
    extra = spec.overrides
    popts = pretrain_options(spec, profile)
    plan = plan_suite(profile, spec.runs, not spec.no_ablations, extra, spec.budget_by,
                      world=max(1, int(popts.nodes) * int(popts.tasks_per_node)),
                      pretrain_seeds=study_seeds(spec.pretrain_seeds, profile))  # one job per (run, pre-training seed)
    return {p.run.name: ({**p.overrides, "train.progress": False}, p.encoder) for p in plan}
