"""An experiment as one value: `RunSpec` holds every option of `python -m bench_tasks run` with its
default, here and nowhere else. The CLI builds it from its flags (`RunSpec.from_args`), a YAML file
gives it (`RunSpec.from_yaml`, `run --spec FILE`: a key is a `run` flag without its dashes, the
cluster flags under `launch:`), and the Python API builds it directly. Every stage (planning, the
study's pre-training, evaluation here or as cluster jobs, the report) reads it; nothing reads the
parsed arguments.

    spec = RunSpec.from_yaml("study.yaml")            # or a bundled one: RunSpec.from_yaml("cpu_reference")
    spec = RunSpec(profile="cpu", all=True, pretrain_seeds=("paco_fr=0,1,2",), launch=LaunchOptions("slurm"))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from bench_tasks.errors import PlanError
from bench_tasks.plan.options import PlanOptions
from bench_tasks.plan.profile_files import dotted_overrides
from bench_tasks.run.claims import CLAIM_TIMEOUT_S, HEARTBEAT_S
from bench_tasks.run.launchers import LAUNCHERS

STUDIES_DIR = Path(__file__).resolve().parents[1] / "configs" / "studies"  # bundled spec files, by name


class SpecError(PlanError, ValueError):
    """A spec file or value that cannot be used (the message names the file and the key)."""


@dataclass(frozen=True)
class LaunchOptions:
    """Where and how the plan's jobs run (docs/cluster.md): this process, shards, or submitit jobs
    (None: the per-profile default of bench_tasks.run.jobs)."""

    launcher: str = "local"
    num_shards: int = 1
    shard_index: int = 0
    group_size: int | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus: int | None = None
    cpus: int | None = None
    time: int | None = None
    mem: int | None = None
    array_parallelism: int | None = None
    pretrain_nodes: int | None = None
    pretrain_gpus: int | None = None
    pretrain_time: int | None = None
    jobs_dir: str | None = None
    no_wait: bool = False
    print_sbatch: bool = False
    worker_files: bool = False
    claim_timeout: float = CLAIM_TIMEOUT_S
    heartbeat: float = HEARTBEAT_S
    wait_claimed: float = 0.0
    since: float | None = None  # the launch time a set of workers shares


@dataclass(frozen=True)
class RunSpec:
    """One `run`: which cells (tasks, datasets, backbones or the study's suite, protocols, seeds,
    fractions, profile), where the data and results are, the study's pre-training options, and the
    launch. Lists are tuples of the strings `run` takes (comma lists are split)."""

    profile: str = "smoke"  # a bundled profile name or a profile YAML file
    set: tuple[str, ...] = ()  # KEY=VALUE profile overrides
    tasks: tuple[str, ...] | None = None
    all: bool = False
    datasets: tuple[str, ...] | None = None
    backbones: tuple[str, ...] | None = None
    label: tuple[str, ...] = ()
    protocols: tuple[str, ...] | None = None
    seeds: tuple[str, ...] | None = None
    fractions: tuple[str, ...] | None = None
    data_root: tuple[str, ...] = ()
    results: str | None = None  # default results/<profile>.jsonl
    work_dir: str = "work_dirs"
    device: str = "auto"
    threads: int | None = None  # default 1 under the smoke profile, torch's own otherwise
    force: bool = False
    no_progress: bool = False
    dry_run: bool = False
    status: bool = False
    no_ceilings: bool = False
    no_probes: bool = False
    # the study (`all` without backbones): pre-train the suite, evaluate it, report it
    runs: str = "runs"
    reports: str = "reports"
    no_ablations: bool = False
    no_report: bool = False
    pretrain_override: tuple[str, ...] = ()
    pretrain_jobs: int = 1
    pretrain_seeds: tuple[str, ...] = ()
    pretrain_only: bool = False
    eval_only: bool = False
    by_run: bool = False  # the study: each run evaluated before the next is pre-trained
    follow: bool = False  # --eval-only: evaluate the suite's runs as they finish, until all have
    budget_by: str = "flops"
    launch: LaunchOptions = field(default_factory=LaunchOptions)

    # ------------------------------------------------------------------ building

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the spec") -> RunSpec:
        """From {flag: value} (a flag's dashes may be underscores; `launch:` a mapping of the
        cluster flags). Every unknown key and every value of the wrong type is reported together in
        one SpecError naming `source` and the key."""
        if not isinstance(data, dict):
            raise SpecError(f"{source}: expected a mapping of `run` flags, got {_kind(data)}")
        data = {str(k).replace("-", "_"): v for k, v in data.items()}
        launch_raw = data.pop("launch", None)
        problems = []
        if launch_raw is not None and not isinstance(launch_raw, dict):
            problems.append(f"launch: expected a mapping of the cluster flags (e.g. launch: {{launcher: slurm, "
                            f"num_shards: 4}}), got {_kind(launch_raw)}")
            launch_raw = {}
        launch = {str(k).replace("-", "_"): v for k, v in (launch_raw or {}).items()}
        known = {f.name for f in fields(cls)} - {"launch"}
        known_launch = {f.name for f in fields(LaunchOptions)}
        bad = sorted(set(data) - known) + [f"launch.{k}" for k in sorted(set(launch) - known_launch)]
        if bad:
            problems.append(f"unknown key(s) {bad}; expected the flags of `run` ({', '.join(sorted(known))}) "
                            f"and under launch: {', '.join(sorted(known_launch))}")
        out, lout = {}, {}
        for target, klass, items, prefix in ((out, cls, data, ""), (lout, LaunchOptions, launch, "launch.")):
            for k, v in items.items():
                if k not in (known if klass is cls else known_launch):
                    continue
                try:
                    target[k] = _typed(klass, k, v, source)
                except SpecError as err:
                    problems.append(str(err).removeprefix(f"{source}: ").replace(f"{k}", f"{prefix}{k}", 1))
        spec = cls(**out, launch=LaunchOptions(**lout))  # the values that are right, to check them together
        problems += spec.value_problems()
        if problems:
            raise SpecError(_together(source, problems))
        return spec

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunSpec:
        """From a YAML file, or the name of a bundled one (bench_tasks/configs/studies/<name>.yaml)."""
        p = Path(path)
        if not p.is_file() and (STUDIES_DIR / f"{path}.yaml").is_file():
            p = STUDIES_DIR / f"{path}.yaml"
        if not p.is_file():
            bundled = ", ".join(sorted(f.stem for f in STUDIES_DIR.glob("*.yaml")))
            raise SpecError(f"spec file {p} not found; expected a YAML mapping of `run` flags (e.g. profile: cpu, "
                            f"all: true, pretrain_seeds: ['paco_fr=0,1,2']) or a bundled spec: {bundled}")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as err:
            raise SpecError(f"spec file {p}: not valid YAML ({err})") from err
        except (OSError, UnicodeDecodeError) as err:
            raise SpecError(f"spec file {p}: cannot be read ({type(err).__name__}: {err})") from err
        if data is None:
            raise SpecError(f"spec file {p} is empty; expected a mapping of `run` flags (e.g. profile: cpu, "
                            "all: true)")
        if not isinstance(data, dict):
            raise SpecError(f"spec file {p}: expected a mapping of `run` flags, got {_kind(data)}")
        return cls.from_dict(data, source=f"spec file {p}")

    @classmethod
    def from_args(cls, args, base: RunSpec | None = None) -> RunSpec:
        """From parsed `run` arguments (the parser leaves out what was not given): the command
        line's values over `base` (a `--spec` file's value, else the defaults)."""
        given = {k.replace("-", "_"): v for k, v in vars(args).items()}
        base = base or cls()
        own = {f.name for f in fields(cls)} - {"launch"}
        launch_own = {f.name for f in fields(LaunchOptions)}
        spec = dataclasses.replace(base, **{k: _typed(cls, k, v, "the command line")
                                            for k, v in given.items() if k in own})
        spec = dataclasses.replace(spec, launch=dataclasses.replace(
            base.launch, **{k: _typed(LaunchOptions, k, v, "the command line") for k, v in given.items()
                            if k in launch_own}))
        problems = spec.value_problems()
        if problems:
            raise SpecError(_together("the run's options", problems))
        return spec

    def value_problems(self) -> list[str]:
        """Problems between values (each value's own type is checked when the spec is built): the
        shard of a sharded run."""
        out = []
        if self.follow and not self.eval_only:
            out.append("follow (--follow) needs eval_only (--eval-only): it evaluates the study's runs as "
                       "another process pre-trains them")
        n, i = self.launch.num_shards, self.launch.shard_index
        if isinstance(n, int) and isinstance(i, int) and n >= 1 and not 0 <= i < n:
            out.append(f"launch.shard_index (--shard-index) {i} is not a shard of launch.num_shards "
                       f"(--num-shards) {n}; expected 0 to {n - 1}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The values that differ from the defaults, as a spec file holds them."""
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "launch"
               and getattr(self, f.name) != getattr(RunSpec(), f.name)}
        launch = {f.name: getattr(self.launch, f.name) for f in fields(LaunchOptions)
                  if getattr(self.launch, f.name) != getattr(LaunchOptions(), f.name)}
        if launch:
            out["launch"] = launch
        return out

    def replace(self, **changes) -> RunSpec:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ what the stages read

    @property
    def is_study(self) -> bool:
        """`all` without backbones: pre-train the compared backbones, then evaluate them."""
        return bool(self.all and not self.backbones)

    @property
    def stage(self) -> str:
        """What the study's stage 1 does here: "name" (a dry run, --status, a cluster launcher: the
        encoders are only named), "eval_only" (the finished encoders), "pretrain" (pre-train here)."""
        if self.dry_run or self.status or self.launch.launcher != "local":
            return "name"
        return "eval_only" if self.eval_only else "pretrain"

    @property
    def overrides(self) -> dict:
        """The pre-training config overrides (`pretrain_override`) as {dotted key: value}."""
        return dotted_overrides(list(self.pretrain_override))

    @property
    def results_path(self) -> Path:
        return Path(self.results or f"results/{Path(self.profile).stem if self.profile.endswith(('.yaml', '.yml')) else self.profile}.jsonl")

    @property
    def backbone_list(self) -> list[str]:
        """The backbone URIs of a run that is not the study (default: random:vit_tiny)."""
        return list(self.backbones) if self.backbones else ["random:vit_tiny"]

    @property
    def torch_threads(self) -> int | None:
        """torch's CPU threads: `threads`, else 1 under the smoke profile (two threads on a 2-core
        CPU stall whenever another process runs), else None (torch's default)."""
        return default_threads(self.threads, self.profile)

    @property
    def progress(self) -> bool:
        return not self.no_progress

    def plan_options(self) -> PlanOptions:
        """The options that choose the cells (bench_tasks.plan.validate checks them)."""
        def csv(xs):
            return None if xs is None else ",".join(xs)

        return PlanOptions(profile=self.profile, tasks=csv(self.tasks), all=self.all, datasets=csv(self.datasets),
                           protocols=csv(self.protocols), seeds=csv(self.seeds), fractions=csv(self.fractions),
                           device=self.device, backbones=csv(self.backbones),
                           pretrain_override=tuple(self.pretrain_override), study=self.is_study,
                           pretrain_jobs=self.pretrain_jobs, pretrain_only=self.pretrain_only,
                           eval_only=self.eval_only)


def default_threads(threads: int | None, profile_name: str) -> int | None:
    """`threads`, else 1 under the smoke profile, else None (torch's default)."""
    return threads if threads is not None else (1 if profile_name == "smoke" else None)


_LIST_FIELDS = {"set", "tasks", "datasets", "backbones", "label", "protocols", "seeds", "fractions", "data_root",
                "pretrain_override", "pretrain_seeds"}
_COMMA_LISTS = {"tasks", "datasets", "backbones", "protocols", "seeds", "fractions"}


# numeric fields: (type, smallest value allowed)
_NUMBERS: dict[str, tuple[type, float]] = {
    "threads": (int, 1), "pretrain_jobs": (int, 1), "num_shards": (int, 1), "shard_index": (int, 0),
    "group_size": (int, 1), "gpus": (int, 0), "cpus": (int, 1), "time": (int, 1), "mem": (int, 1),
    "array_parallelism": (int, 1), "pretrain_nodes": (int, 1), "pretrain_gpus": (int, 0), "pretrain_time": (int, 1),
    "claim_timeout": (float, 0), "heartbeat": (float, 0), "wait_claimed": (float, 0), "since": (float, 0),
}
_POSITIVE = {"claim_timeout", "heartbeat"}  # > 0, not >= 0


def _kind(v) -> str:
    """How a YAML value reads to a user: 'nothing (an empty file)', "the text 'abc'", 'a list'."""
    if v is None:
        return "nothing (null)"
    if isinstance(v, str):
        return f"the text {v!r}"
    if isinstance(v, bool):
        return f"the flag {v}"
    if isinstance(v, (int, float)):
        return f"the number {v!r}"
    return f"a {'list' if isinstance(v, (list, tuple)) else 'mapping' if isinstance(v, dict) else type(v).__name__}" \
        f" ({v!r:.60})"


def _together(source: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return f"{source}: {len(problems)} problems\n" + "\n".join(f"  - {p}" for p in problems)


def _typed(cls, key: str, value, source: str):
    """`value` as field `key` of `cls` holds it: lists as tuples of strings (comma lists split),
    numbers, text and flags checked (SpecError naming `source` and the key)."""
    if cls is RunSpec and key in _LIST_FIELDS:
        items = value if isinstance(value, (list, tuple)) else [value]
        out = []
        for x in items:
            if isinstance(x, (dict, list, tuple)) or x is None:
                raise SpecError(f"{source}: {key}: expected a list of names or values (or one comma list), "
                                f"got an item that is {_kind(x)}")
            parts = str(x).split(",") if key in _COMMA_LISTS else [str(x)]
            out += [p.strip() for p in parts if p.strip()]
        return tuple(out)
    default = next(f for f in fields(cls) if f.name == key).default
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SpecError(f"{source}: {key} must be true or false, got {_kind(value)}")
        return value
    if key in _NUMBERS:
        return _number(key, value, source, default)
    if key == "launcher" and value not in LAUNCHERS:
        raise SpecError(f"{source}: launcher {value!r}: expected one of {', '.join(LAUNCHERS)}")
    if value is not None and not isinstance(value, str) and isinstance(default, str | type(None)):
        if isinstance(value, (dict, list, tuple)):
            raise SpecError(f"{source}: {key}: expected a text value (a name or a path), got {_kind(value)}")
        value = str(value)
    return value


def _number(key: str, value, source: str, default):
    kind, low = _NUMBERS[key]
    if value is None and default is None:
        return None
    v = value
    if isinstance(v, str):  # a number written as text ("4") is read as one
        try:
            v = kind(v.strip())
        except ValueError:
            v = value
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or float(v).is_integer())
    what = "a whole number" if kind is int else "a number"
    if not ok:
        raise SpecError(f"{source}: {key}: expected {what} >= {low:g}, got {_kind(value)}")
    v = kind(v)
    if v < low or (key in _POSITIVE and v <= 0):
        raise SpecError(f"{source}: {key}: expected {what} {'>' if key in _POSITIVE else '>='} {low:g}, got {v!r}")
    return v


def _plain(v):
    return list(v) if isinstance(v, tuple) else v
