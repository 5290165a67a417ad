"""The study's pre-training suite, as data: its runs (`SuiteRun`: PaCo-FR, MAE, FaRL-style,
MCF-style and its teacher, the random-init control, the PaCo-FR ablations), their pre-training
seeds, the study's overrides per profile, and the method block of each run
(bench_tasks.store.method). Rows written before method blocks existed get theirs here too
(`method_of_row`, `legacy_identity`: the run of the suite their URI names).

How long each run trains is bench_tasks.plan.study.plan_suite; training them is
bench_tasks.run.pretrain; what is evaluated is bench_tasks.plan.study.study_cells.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import yaml

from bench_tasks.contracts import Profile, uri_parts
from bench_tasks.plan.profiles import parse_pretrain_seeds, profile_name, profile_section
from bench_tasks.store.method import derive_from_uri, suite_identity
from paco_fr.atomic import write_text_atomic

# What a profile's study trains and evaluates is in its YAML file's `study:` section
# (bench_tasks/configs/<profile>.yaml): `pretrain_overrides` (the pre-training budget on top of the
# profile's paco_fr config, identical for every run of the suite; smoke: 64 steps on 512 SynthFace
# images so that `run --all` fits CI's 2-core CPU), `ablation_tasks` (the tasks the ablation
# encoders are evaluated on; smoke: the three cheap ones) and `ablation_runs` (the ablation runs it
# trains; cpu_reference: the ground-truth region map and the codebook sizes). Unset: none / every one.
# Every function below takes the Profile (a profile file or `--set` included: the one the run
# resolved) or the name of a bundled profile; the name alone picks the paco_fr config and the
# runs/<name>/ folder.


def study_setting(profile: Profile | str, key: str, default=None):
    """`key` of the profile's `study:` section (`default` when it is not set, or `profile` names no
    bundled profile)."""
    return profile_section(profile, "study").get(key, default)


def study_overrides(profile: Profile | str) -> dict:
    """The pre-training config overrides every run of the profile's suite gets."""
    return dict(study_setting(profile, "pretrain_overrides") or {})


def ablation_tasks(profile: Profile | str) -> tuple[str, ...] | None:
    """The tasks the ablation encoders are evaluated on (None: every task)."""
    got = study_setting(profile, "ablation_tasks")
    return tuple(got) if got else None


def ablation_runs(profile: Profile | str) -> tuple[str, ...] | None:
    """The ablation runs the profile's study trains (None: every one)."""
    got = study_setting(profile, "ablation_runs")
    return tuple(got) if got else None


@dataclass(frozen=True)
class SuiteRun:
    name: str  # folder under runs/<profile>/ (never parsed: what a run is, is `identity`)
    overrides: dict = field(default_factory=dict, hash=False, compare=False)
    role: str = "main"  # "main" (compared in the main table) | "ablation" | "teacher" (not evaluated; bench_tasks.store.method.ROLES)
    component: str = ""  # ablation: one of bench_tasks.store.method.COMPONENTS (masking, codebook, candidates, ...)
    teacher: str | None = None  # the run whose encoder is this run's teacher (passed as mcf.teacher)
    pretrain_seed: int = 0  # the pre-training seed (config `seed`); see with_seed
    base: str = ""  # the suite's run this one repeats with another seed ("" = itself)

    @property
    def base_name(self) -> str:
        return self.base or self.name

    def with_seed(self, seed: int, teacher: str | None = None) -> SuiteRun:
        """This run with pre-training seed `seed`: seed 0 is the run itself (its folder and config
        unchanged, so the cell keys of its rows stay the same); another seed is the folder
        `<name>_seed<k>` with `seed: k` and `data.seed: 0` (the same images, another
        initialisation, batch order, masks). `teacher`: the teacher's run name for this seed."""
        if int(seed) == 0:
            return self if teacher in (None, self.teacher) else replace(self, teacher=teacher)
        return replace(self, name=seeded_name(self.base_name, seed),
                       overrides={**self.overrides, "seed": int(seed), "data.seed": 0},
                       pretrain_seed=int(seed), base=self.base_name, teacher=teacher or self.teacher)

    def identity(self, profile: Profile | str, overrides: dict | None = None) -> dict:
        """This run's method block (bench_tasks.store.method): recorded in the run folder's method.json
        and summary.json, the encoder's metadata, and every result row of the encoder."""
        # lazy: keeps paco_fr's config and objective registry out of --help/list/status
        from paco_fr.config import load_config

        cfg = load_config(profile_name(profile), {**(overrides or {}), **self.overrides})
        return suite_identity(self.name, str(cfg["objective"]), self.role, self.component, cfg,
                              teacher=self.teacher, pretrain_seed=self.pretrain_seed)


SEED_SUFFIX = "_seed"


def seeded_name(name: str, seed: int) -> str:
    """The run folder of `name` at pre-training seed `seed`: `name` for 0, else `name_seed<k>`."""
    return name if int(seed) == 0 else f"{name}{SEED_SUFFIX}{int(seed)}"


def split_seeded_name(name: str) -> tuple[str, int]:
    """`paco_seed2` -> ("paco", 2); `paco` -> ("paco", 0)."""
    base, sep, k = name.rpartition(SEED_SUFFIX)
    return (base, int(k)) if sep and base and k.isdigit() else (name, 0)


def expand_seeds(runs: list[SuiteRun], seeds: dict[str, tuple[int, ...]] | None) -> list[SuiteRun]:
    """`runs` with one copy per pre-training seed (parse_pretrain_seeds), teachers before the runs
    that use them, each run's seeds in order; with seed 0 only, `runs` unchanged."""
    seeds = parse_pretrain_seeds(None) if seeds is None else seeds
    unknown = [k for k in seeds if k != "default" and k not in {r.name for r in runs}]
    if unknown:
        raise ValueError(f"pre-training seeds for unknown run(s) {unknown}; runs: {', '.join(r.name for r in runs)}")
    default = seeds.get("default", (0,))
    own: dict[str, tuple[int, ...]] = {}
    for r in runs:
        if r.name in seeds:
            own[r.name] = seeds[r.name]
        elif r.role == "main":
            own[r.name] = default
        elif r.role != "teacher":
            own[r.name] = default[:1]
    for r in runs:  # a teacher: every seed of the runs that use it (its own list when named)
        if r.role == "teacher" and r.name not in own:
            used = [s for u in runs if u.teacher == r.name for s in own.get(u.name, ())]
            own[r.name] = tuple(dict.fromkeys(used)) or default[:1]
    out = []
    for i, r in enumerate(runs):
        for j, s in enumerate(own[r.name]):
            teacher = None
            if r.teacher:
                t_seeds = own.get(r.teacher, (0,))
                teacher = seeded_name(r.teacher, s if s in t_seeds else t_seeds[0])
            out.append(((r.role not in ("main", "teacher"), j, i), r.with_seed(s, teacher)))
    # the compared methods (and teachers) first, seed by seed (every method's first seed before any
    # second one: a study cut short has each method at least once), then the ablations
    return [r for _, r in sorted(out, key=lambda t: t[0])]


def study_seeds(given: Sequence[str] = (), profile: Profile | None = None) -> dict[str, tuple[int, ...]]:
    """The study's pre-training seeds: `given` (`--pretrain-seeds` entries, which replace the
    profile's) when any, else the profile's `pretrain_seeds:`, else seed 0 only."""
    given = list(given or [])
    spec = profile.pretrain_seeds if profile is not None and profile.pretrain_seeds else None
    seeds = parse_pretrain_seeds(spec)
    if given:
        seeds = {**seeds, **parse_pretrain_seeds(given)} if spec else parse_pretrain_seeds(given)
    return seeds


def suite_run(profile: Profile | str, name: str) -> SuiteRun | None:
    """The run of the suite named `name` (`<run>` or `<run>_seed<k>`), None when there is none."""
    base, seed = split_seeded_name(name)
    runs = {r.name: r for r in suite_runs(True, profile)}
    if name in runs:
        return runs[name]
    if base not in runs:
        return None
    r = runs[base]
    return r.with_seed(seed, seeded_name(r.teacher, seed) if r.teacher else None)


def write_run_identity(run: SuiteRun, run_dir: str | Path, profile: Profile | str, overrides: dict | None = None) -> dict:
    """Write the run's method block to <run_dir>/method.json (before pre-training, so paco_fr's
    export copies it into the encoder's safetensors metadata) and into summary.json when the run
    has one (a finished run reused). Returns the block."""
    ident = run.identity(profile, overrides)
    run_dir = Path(run_dir)
    from bench_tasks.plan.tuning import (  # lazy: imports this module
        method_block_tuning,
        read_record,
        tuned_method,
    )

    method = tuned_method(run)
    record = read_record(run_dir.parent.parent, profile_name(profile), method) if method else None
    if record is not None:  # the trials and val scores the run's configuration was chosen by
        ident["tuning"] = method_block_tuning(record)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "method.json").write_text(json.dumps(ident, indent=2) + "\n")
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            data = json.loads(summary.read_text())
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("method") != ident:
            data["method"] = ident
            write_text_atomic(summary, json.dumps(data, indent=2))
    return ident


CONTROL_COMPONENTS = ("replacement", "belief")  # the controls among the ablation runs (bench_tasks/configs/suite/default.yaml)


REFERENCE_RUN = "paco"  # its configured length x its cost per step is every run's budget


SUITE_FILE = Path(__file__).resolve().parents[1] / "configs" / "suite" / "default.yaml"


@functools.lru_cache(maxsize=1)
def suite_definition() -> dict:
    """bench_tasks/configs/suite/default.yaml: the suite's runs and ablations."""
    data = yaml.safe_load(SUITE_FILE.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ValueError(f"{SUITE_FILE}: expected a mapping with `runs:` and `ablations:` lists")
    return data


def _suite_run(entry: dict, role: str) -> list[SuiteRun]:
    """One entry of the suite file as SuiteRuns (one per value of `each`, `{n}` replaced by it)."""
    def one(n=None):
        def fill(v):
            if n is None or not isinstance(v, str) or "{n}" not in v:
                return v
            return n if v == "{n}" else v.replace("{n}", str(n))

        return SuiteRun(fill(entry["name"]), {k: fill(v) for k, v in (entry.get("overrides") or {}).items()},
                        entry.get("role", role), entry.get("component", ""), entry.get("teacher"))

    return [one(n) for n in entry["each"]] if "each" in entry else [one()]


def suite_runs(include_ablations: bool = True, profile: Profile | str = "smoke") -> list[SuiteRun]:
    """The suite of bench_tasks/configs/suite/default.yaml: its runs, then (include_ablations) its
    ablations, less those the profile's `study: ablation_runs` leaves out; a codebook ablation of
    the profile's own codebook size is the main run and is skipped."""
    # lazy: keeps paco_fr's config and objective registry out of --help/list/status
    from paco_fr.config import load_config

    main_codebook = load_config(profile_name(profile))["codebook"]["num_tokens"]
    data = suite_definition()
    runs = [r for e in data["runs"] for r in _suite_run(e, "main")]
    if include_ablations:
        abl = [r for e in data.get("ablations") or [] for r in _suite_run(e, "ablation")]
        runs += [r for r in abl if r.overrides.get("codebook.num_tokens") != main_codebook]
        only = ablation_runs(profile)
        if only is not None:
            runs = [r for r in runs if r.role != "ablation" or r.name in only]
    return runs


def suite_encoders(runs_root: str | Path, profile: Profile | str, include_ablations: bool = True,
                   pretrain_seeds: dict | None = None) -> dict[str, Path]:
    """{run name: where its encoder is (or will be)} for every evaluated run of the suite (not the
    teacher) at each of its pre-training seeds: runs/<profile>/<name>[_seed<k>]/encoder.safetensors."""
    return {r.name: Path(runs_root) / profile_name(profile) / r.name / "encoder.safetensors"
            for r in expand_seeds(suite_runs(include_ablations, profile), pretrain_seeds)
            if r.role != "teacher"}


def encoder_finished(enc: str | Path) -> bool:
    """True when the run that writes the encoder file `enc` finished (the file is there and its
    run's summary.json says `complete`): a finished run is reused, never trained again."""
    enc = Path(enc)
    try:
        return enc.exists() and json.loads((enc.parent / "summary.json").read_text()).get("status") == "complete"
    except (OSError, ValueError):
        return False


FAILED_NAME = "failed.json"  # beside a run's files while its last pre-training attempt has failed


def run_failure(enc: str | Path) -> dict | None:
    """The last failed attempt of the run that writes the encoder file `enc` ({"cause", "host",
    "pid", "time"} from its run directory's failed.json), or None: the run has not failed, or is
    being tried again (bench_tasks.run.pretrain removes the file when a run starts)."""
    try:
        got = json.loads((Path(enc).parent / FAILED_NAME).read_text())
    except (OSError, ValueError):
        return None
    return got if isinstance(got, dict) else {"cause": "?"}


def finished_elsewhere(enc: str | Path) -> bool:
    """True when the run that writes the encoder file `enc` finished on another machine: its
    summary.json (complete, with the encoder's hash recorded) is here and the encoder is not. Such a
    run is not trained again while the plan's cells of its encoder all have rows from that hash
    (Plan.covers); a study resumed on a new machine keeps its runs' small files, not their encoders."""
    from bench_tasks.backbones.base import recorded_sha256  # lazy: torch only when a study pre-trains

    enc = Path(enc)
    return not enc.exists() and recorded_sha256(enc) is not None


def random_control(profile: Profile | str) -> str:
    """The random-init control has the same architecture as the suite's encoders."""
    # lazy: keeps paco_fr's config and objective registry out of --help/list/status
    from paco_fr.config import load_config

    m = load_config(profile_name(profile))["model"]
    spec = f"{m['arch']}@{m['img_size']}/{m['patch_size']}"
    if m.get("depth"):
        spec += f"/d{m['depth']}"
    return f"random:{spec}"


def teacher_of(include_ablations: bool = True, profile: Profile | str = "smoke",
               pretrain_seeds: dict | None = None) -> dict[str, str]:
    """{run: the run whose encoder is its teacher} (MCF-style -> mcf_teacher; mcf_seed1 -> mcf_teacher_seed1)."""
    return {r.name: r.teacher for r in expand_seeds(suite_runs(include_ablations, profile), pretrain_seeds)
            if r.teacher}


def legacy_identity(uri: str, profile: str | None) -> dict:
    """A block for a row written before rows carried one: a URI
    `paco_fr:<...>/<profile>/<run>/encoder.safetensors` whose <run> is a run of the study's suite
    (bench_tasks.plan.suite.suite_runs of that profile, looked up by name) gets that run's block, any
    other URI `derive_from_uri`."""
    scheme, rest = uri_parts(uri)
    if scheme == "paco_fr" and rest and profile:
        p = PurePosixPath(rest)
        run_name = p.parent.name if p.suffix else p.name
        if p.parent.parent.name == profile or not p.suffix:
            try:
                run = suite_run(profile, run_name)  # `<run>` or `<run>_seed<k>`; one block, not the suite's
                ident = None if run is None else run.identity(profile, study_overrides(profile))
            except Exception:  # noqa: BLE001 - a profile without a pre-training config
                ident = None
            if ident is not None:
                return ident
    return derive_from_uri(uri)


def method_of_row(row: dict) -> dict:
    """The method block of a result row (derived for rows written before blocks existed)."""
    m = row.get("method")
    if isinstance(m, dict) and m.get("role"):
        return m
    cell = row.get("cell") or {}
    return legacy_identity(str(cell.get("backbone", "?")), cell.get("profile"))
