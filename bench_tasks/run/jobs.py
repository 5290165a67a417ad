"""The jobs `run --launcher slurm|submitit-local` submits (bench_tasks.run.launch): their options
(per-profile defaults, the --gpus/--time/... flags), the groups of cells of one backbone, and the
callables submitit pickles and runs on a node (`EvalJob`: a worker over a group of cells;
`PretrainJob`: one pre-training run of the study, torchrun-style).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bench_tasks.contracts import Cell, Profile
from bench_tasks.plan.cell_plan import Plan, make_plan
from bench_tasks.plan.cells import DataRoots
from bench_tasks.plan.profiles import get_profile, profile_from_dict, profile_name, profile_section
from bench_tasks.plan.suite import suite_run, write_run_identity
from bench_tasks.registry import load_registries
from bench_tasks.run.claims import CLAIM_TIMEOUT_S, HEARTBEAT_S
from bench_tasks.run.launchers import LAUNCHERS
from bench_tasks.store.rowfiles import worker_dir

# A job's size when the profile's `jobs:` section (bench_tasks/configs/<profile>.yaml) does not
# give it: one GPU node of a small cluster (group_size 0: a whole backbone per job). Flags (--gpus, --time, --pretrain-nodes, ...) override both.
EVAL_JOB = {"gpus": 1, "cpus": 10, "time": 8 * 60, "mem": 64, "group_size": 0}
PRETRAIN_JOB = {"nodes": 1, "gpus": 1, "cpus": 10, "time": 12 * 60, "mem": 64}


def job_defaults(profile: Profile | str, kind: str) -> dict:
    """The `kind` ("eval" | "pretrain") job size of the profile (the run's Profile, or a bundled
    profile's name): its `jobs:` section over the defaults."""
    base = EVAL_JOB if kind == "eval" else PRETRAIN_JOB
    return {**base, **(profile_section(profile, "jobs").get(kind) or {})}


@dataclass
class JobOptions:
    gpus: int
    cpus: int
    time: int  # minutes
    mem: int  # GB
    nodes: int = 1
    tasks_per_node: int = 1
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 64
    name: str = "bench"

    def slurm(self, dependency: str | None = None) -> dict:
        """submitit SlurmExecutor parameters (sbatch names)."""
        out = {"job_name": self.name, "time": int(self.time), "nodes": int(self.nodes),
               "ntasks_per_node": int(self.tasks_per_node), "cpus_per_task": int(self.cpus),
               "mem": f"{int(self.mem)}GB", "array_parallelism": int(self.array_parallelism),
               "signal_delay_s": 120}
        if self.gpus:
            out["gpus_per_node"] = int(self.gpus)
        for k in ("partition", "account", "qos", "constraint"):
            if getattr(self, k):
                out[k] = getattr(self, k)
        if dependency:
            out["dependency"] = dependency
        return out

    def local(self) -> dict:
        return {"timeout_min": int(self.time), "gpus_per_node": int(self.gpus),
                "tasks_per_node": int(self.tasks_per_node), "cpus_per_task": int(self.cpus),
                "mem_gb": int(self.mem), "name": self.name}


def eval_options(spec, profile: Profile | None = None) -> JobOptions:
    """The evaluation jobs' options: the flags over `profile`'s `jobs: eval` (default: the bundled
    profile the spec names)."""
    d = job_defaults(profile or spec.profile, "eval")
    pick = lambda k: d[k] if getattr(spec.launch, k) is None else getattr(spec.launch, k)  # noqa: E731
    return JobOptions(gpus=pick("gpus"), cpus=pick("cpus"), time=pick("time"), mem=pick("mem"),
                      partition=spec.launch.partition, account=spec.launch.account, qos=spec.launch.qos, constraint=spec.launch.constraint,
                      array_parallelism=spec.launch.array_parallelism or 64, name=f"bench-eval-{spec.profile}")


def pretrain_options(spec, profile: Profile | None = None) -> JobOptions:
    """The pre-training jobs' options: the flags over `profile`'s `jobs: pretrain` (as eval_options)."""
    d = job_defaults(profile or spec.profile, "pretrain")
    gpus = d["gpus"] if spec.launch.pretrain_gpus is None else spec.launch.pretrain_gpus
    return JobOptions(gpus=gpus, cpus=d["cpus"], time=spec.launch.pretrain_time or d["time"], mem=d["mem"],
                      nodes=spec.launch.pretrain_nodes or d["nodes"], tasks_per_node=max(1, gpus),
                      partition=spec.launch.partition, account=spec.launch.account, qos=spec.launch.qos, constraint=spec.launch.constraint,
                      name=f"bench-pretrain-{spec.profile}")


def group_size(spec, profile: Profile | None = None) -> int:
    if spec.launch.group_size is not None:
        return int(spec.launch.group_size)
    return int(job_defaults(profile or spec.profile, "eval")["group_size"])


def group_cells(cells: Sequence[Cell], size: int) -> list[list[Cell]]:
    """Jobs: the (de-duplicated) plan's cells grouped by backbone, in plan order, each backbone's
    cells cut into chunks of at most `size` (0: one job per backbone)."""
    by_bb: dict[str, list[Cell]] = {}
    for c in {c.key(): c for c in cells}.values():
        by_bb.setdefault(c.backbone, []).append(c)
    groups = []
    for bb_cells in by_bb.values():
        n = size if size and size > 0 else len(bb_cells)
        groups += [bb_cells[i:i + n] for i in range(0, len(bb_cells), n)]
    return groups


def _checkpointable():
    try:
        # kept in a function: the job classes fall back to `object` where submitit is missing
        from submitit.helpers import Checkpointable
    except ImportError:  # pragma: no cover - submitit is a dependency
        return object
    return Checkpointable


@dataclass
class WorkerSpec:
    """Everything a worker process needs (pickled by submitit; plain data only)."""

    cells: list[dict]
    results: str
    work_dir: str
    cwd: str
    data_root: list[str] = field(default_factory=list)
    device: str = "auto"
    force: bool = False
    since: float = 0.0
    claim_timeout_s: float = CLAIM_TIMEOUT_S
    heartbeat_s: float = HEARTBEAT_S
    wait_s: float = 0.0
    threads: int | None = None
    plugins: str = ""
    rows_to: str = "worker"
    labels: dict = field(default_factory=dict)  # run --label: {backbone URI: name}
    # the effective profiles of the cells ({name: fields}): a user's YAML profile or `--set`
    # overrides reach the job, whose plan holds them (job_plan): nothing is registered
    profiles: dict = field(default_factory=dict)


def sent_profiles(profiles: dict) -> dict[str, Profile]:
    """{name: Profile} of the launching process's effective profiles, as a job receives them."""
    return {name: profile_from_dict(dict(fields), f"profile {name!r} sent by the launcher")
            for name, fields in (profiles or {}).items()}


def job_plan(spec: WorkerSpec) -> Plan:
    """A job's share of the plan: its cells as given, under the profiles the launcher sent."""
    return make_plan([Cell(**c) for c in spec.cells], references=False, profiles=sent_profiles(spec.profiles))


class EvalJob(_checkpointable()):
    """One evaluation job: a worker over its cells. Requeued on time-out / preemption by
    submitit (the requeued job takes over its own claims: same job id, another pid)."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec

    def __call__(self) -> dict:
        s = self.spec
        os.chdir(s.cwd)
        if s.plugins:
            os.environ["BENCH_TASKS_PLUGINS"] = s.plugins
        load_registries()
        if s.threads:
            torch.set_num_threads(s.threads)
        # lazy: the loop (runner, tasks' training code) loads in the job process, not on --help/list/status
        from bench_tasks.run.loop import run_plan
        from bench_tasks.run.runner import RunContext
        from bench_tasks.run.worker import Claims, SharedWriter

        claims = Claims(rows_to=s.rows_to, since=s.since, timeout_s=s.claim_timeout_s, heartbeat_s=s.heartbeat_s,
                        wait_s=s.wait_s)
        ctx = RunContext(results=s.results, work_dir=s.work_dir, data_roots=DataRoots.parse(s.data_root),
                         device=s.device, progress=False, force=s.force, labels=s.labels)
        summary = run_plan(job_plan(s), ctx, SharedWriter(claims), log=lambda m: print(m, flush=True))
        print(summary.line(), flush=True)
        return asdict(summary)


class PretrainJob(_checkpointable()):
    """One pre-training run of the study as a (multi-GPU, multi-node) job: every task of the
    job is one torchrun-style process (RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR exported by
    submitit's TorchDistributedEnvironment); paco_fr.engine resumes from the run's checkpoint
    when the job is requeued. `profile`: the study's Profile (pickled with the job: a profile file's
    `study:` section reaches it), or a bundled profile's name."""

    def __init__(self, profile: Profile | str, run_name: str, overrides: dict, run_dir: str, cwd: str):
        self.profile, self.run_name, self.overrides, self.run_dir, self.cwd = profile, run_name, overrides, run_dir, cwd

    def __call__(self) -> str:
        os.chdir(self.cwd)
        # lazy: submitit and paco_fr's training engine load in the pre-training job only
        import submitit

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        from paco_fr.engine import pretrain

        # what the run is (bench_tasks.store.method), before pre-training: its export copies it into
        # the encoder's metadata; after: into the summary.json the run wrote
        run = suite_run(self.profile, self.run_name)  # `<run>` or `<run>_seed<k>`
        if run is not None and int(os.environ.get("RANK", "0")) == 0:
            write_run_identity(run, self.run_dir, self.profile, self.overrides)
        out = str(pretrain(profile_name(self.profile), dict(self.overrides), run_dir=self.run_dir))
        if run is not None and int(os.environ.get("RANK", "0")) == 0:
            write_run_identity(run, self.run_dir, self.profile, self.overrides)
        return out


def jobs_folder(spec, results: Path) -> Path:
    return Path(spec.launch.jobs_dir) if spec.launch.jobs_dir else worker_dir(results) / "jobs"


def make_executor(kind: str, folder: Path, opts: JobOptions, dependency: str | None = None):
    # lazy: submitit only where a job is submitted
    import submitit

    if kind == "slurm":
        ex = submitit.SlurmExecutor(folder=folder)
        ex.update_parameters(**opts.slurm(dependency))
    elif kind == "submitit-local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(**opts.local())
    else:
        raise ValueError(f"unknown launcher {kind!r}; choose from {LAUNCHERS}")
    return ex


def sbatch_script(opts: JobOptions, folder: Path, n_jobs: int, dependency: str | None = None) -> str:
    """The sbatch script submitit writes for an array of `n_jobs` jobs with these options
    (rendered by submitit itself, without needing `sbatch` on this machine)."""
    # lazy: submitit only where an sbatch script is rendered
    from submitit.slurm.slurm import _make_sbatch_string

    cmd = " ".join([sys.executable, "-u -m submitit.core._submit", str(folder)])
    params = opts.slurm(dependency)
    if n_jobs > 1:
        params["map_count"] = n_jobs
    return _make_sbatch_string(command=cmd, folder=str(folder), **params)


def worker_spec(spec, cells: Sequence[Cell], results: Path, since: float, rows_to: str = "worker",
                labels: dict[str, str] | None = None, profiles: dict[str, Profile] | None = None) -> WorkerSpec:
    return WorkerSpec(cells=[asdict(c) for c in cells], results=str(results.resolve()),
                      work_dir=str(Path(spec.work_dir).resolve()), cwd=os.getcwd(),
                      data_root=list(spec.data_root or []), device=spec.device, force=spec.force, since=since,
                      claim_timeout_s=spec.launch.claim_timeout, heartbeat_s=spec.launch.heartbeat, wait_s=spec.launch.wait_claimed,
                      threads=spec.torch_threads,
                      plugins=os.environ.get("BENCH_TASKS_PLUGINS", ""), rows_to=rows_to,
                      labels=dict(labels or {}), profiles=effective_profiles(cells, profiles))


def effective_profiles(cells: Sequence[Cell], profiles: dict[str, Profile] | None = None) -> dict:
    """{profile name: its fields} of the cells' profiles: those of the plan (`profiles`,
    Plan.profiles), else the bundled ones by name."""
    out = {}
    for name in dict.fromkeys(c.profile for c in cells):
        try:
            out[name] = asdict((profiles or {}).get(name) or get_profile(name))
        except KeyError:
            pass
    return out
