"""The study `run --all` runs, as one frozen value built in one place (`build_run_spec`) from the
profile (its YAML and `--set`) and the CLI's options: the profile, the tasks and their data sets,
the evaluation seeds, the pre-training seeds, the suite with or without its ablation grid, and the
launcher options. The CLI's study stages read it instead of the parsed arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench_tasks.contracts import Profile
from bench_tasks.plan.profiles import dotted_overrides
from bench_tasks.plan.suite import SuiteRun, expand_seeds, study_seeds, suite_runs


@dataclass(frozen=True)
class LauncherOptions:
    """Where and how the study's jobs run: `launcher` local / submitit-local / slurm; pre-training
    runs at once; the budget measure; progress bars."""

    launcher: str = "local"
    pretrain_jobs: int = 1
    budget_by: str = "flops"
    progress: bool = True


@dataclass(frozen=True)
class RunSpec:
    """One study run. `stage` says what runs here: "name" (a dry run, --status, a cluster launcher:
    the encoders are only named), "eval_only" (the finished encoders), "pretrain" (stage 1 here)."""

    profile: Profile
    runs_root: str  # runs/<profile>/<run>/ as given (--runs)
    task_datasets: dict[str, list[str]]
    protocols: tuple[str, ...] | None
    seeds: tuple[int, ...] | None
    fractions: tuple[float, ...] | None
    pretrain_seeds: dict[str, tuple[int, ...]]
    ablations: bool  # the suite's ablation grid (bench_tasks.plan.study) is pre-trained and evaluated
    suite: tuple[SuiteRun, ...]  # the runs to pre-train, one per pre-training seed
    pretrain_override: tuple[str, ...]
    launcher: LauncherOptions
    dry_run: bool = False
    status: bool = False
    eval_only: bool = False
    pretrain_only: bool = False
    ceilings: bool = True
    probes: bool = True

    @property
    def stage(self) -> str:
        if self.dry_run or self.status or self.launcher.launcher != "local":
            return "name"
        return "eval_only" if self.eval_only else "pretrain"

    @property
    def overrides(self) -> dict:
        """The pre-training config overrides (`--pretrain-override KEY=VALUE`) as {dotted key: value}."""
        return dotted_overrides(list(self.pretrain_override))


def _tuple(xs):
    return None if xs is None else tuple(xs)


def build_run_spec(args, profile: Profile, task_datasets: dict[str, list[str]], protocols=None, seeds=None,
                   fractions=None) -> RunSpec:
    """The study's RunSpec from the parsed `run` arguments, the resolved profile and the planned
    tasks. Raises ValueError when `--pretrain-seeds` (or the profile's `pretrain_seeds:`) is bad."""
    pseeds = study_seeds(args, profile)  # --pretrain-seeds / the profile's pretrain_seeds
    ablations = not getattr(args, "no_ablations", False)
    suite = tuple(expand_seeds(suite_runs(ablations, profile.name), pseeds))
    launcher = LauncherOptions(launcher=getattr(args, "launcher", "local"),
                               pretrain_jobs=max(1, int(getattr(args, "pretrain_jobs", 1) or 1)),
                               budget_by=getattr(args, "budget_by", "flops"),
                               progress=not getattr(args, "no_progress", False))
    return RunSpec(profile=profile, runs_root=args.runs, task_datasets=dict(task_datasets),
                   protocols=_tuple(protocols), seeds=_tuple(seeds), fractions=_tuple(fractions),
                   pretrain_seeds=pseeds, ablations=ablations, suite=suite,
                   pretrain_override=tuple(getattr(args, "pretrain_override", None) or ()), launcher=launcher,
                   dry_run=bool(getattr(args, "dry_run", False)), status=bool(getattr(args, "status", False)),
                   eval_only=bool(getattr(args, "eval_only", False)),
                   pretrain_only=bool(getattr(args, "pretrain_only", False)),
                   ceilings=not getattr(args, "no_ceilings", False), probes=not getattr(args, "no_probes", False))
