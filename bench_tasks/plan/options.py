"""The options that choose a plan's cells and are checked before anything runs, as one frozen value:
the CLI builds it from `run`'s flags (`PlanOptions.from_args`), bench_tasks.api.evaluate from its
arguments; bench_tasks.plan.validate.check_args and the CLI's planning read it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

# the embedded data set every task that it serves gets by default
SYNTHFACE = "synthface"


def csv_list(s: str | None) -> list[str] | None:
    """"a, b,,c" -> ["a", "b", "c"]; None -> None."""
    if s is None:
        return None
    return [x.strip() for x in s.split(",") if x.strip()]


@dataclass(frozen=True)
class PlanOptions:
    """Comma-separated lists as `run` takes them (None: not given)."""

    profile: str = "smoke"
    tasks: str | None = None
    all: bool = False  # every task (`run --all`, evaluate(tasks=None))
    datasets: str | None = None
    protocols: str | None = None
    seeds: str | None = None
    fractions: str | None = None
    device: str | None = "auto"
    backbones: str | None = None
    pretrain_override: tuple[str, ...] = ()
    study: bool | None = None  # None: the CLI's rule, `run --all` without --backbones
    pretrain_jobs: int | None = 1
    pretrain_only: bool = False
    eval_only: bool = False

    @classmethod
    def from_args(cls, args) -> PlanOptions:
        """From parsed `run` arguments (an argparse.Namespace or any object with these attributes;
        a missing one keeps its default)."""
        if isinstance(args, PlanOptions):
            return args
        given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        given["pretrain_override"] = tuple(given.get("pretrain_override") or ())
        return cls(**given)

    @property
    def is_study(self) -> bool:
        """The study's pre-training stage runs: `run --all` without --backbones, unless `study` says."""
        return bool(self.all and not self.backbones) if self.study is None else self.study
