"""Evaluation profiles as YAML files, and the one way to override them.

A profile is `bench_tasks/configs/<name>.yaml` (bundled: smoke, cpu, small, gpu, paper) or any
YAML file of the same shape given by path (`run --profile my_profile.yaml`): the fields of
`bench_tasks.contracts.Profile` plus `extra`, the task settings that differ from the tasks' defaults:
    dense_<key>           parsing / landmarks (bench_tasks.tasks._dense.dense_settings; dense_train_images
                          caps the training images of every dense cell, FaRL's too)
    <protocol>.<key>, <key>  attributes / expression (bench_tasks.tasks._classification.settings)
    recognition.<key>     recognition (bench_tasks.tasks.recognition.settings_for)
    farl_<key>            FaRL's protocol (bench_tasks.protocols.farl.farl_settings)

`--set KEY=VALUE` (repeatable) changes one value: KEY is a profile field (`batch_size=32`,
`seeds=[0,1]`) or a settings key with or without `extra.` (`dense_channels=64`,
`linear.lr_head=0.02`, `recognition.emb_dim=64`); VALUE is a YAML scalar or list. An unknown
key is an error naming it and the valid keys (`setting_keys()`). `run --dry-run` prints the
effective settings of every task (`effective_settings`).

    load_profile("smoke" | "path/to.yaml", overrides=["batch_size=32"]) -> Profile
    parse_assignments(["a=1", "b.c=x"]) -> {"a": 1, "b.c": "x"}   (shared with --pretrain-override)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from bench_tasks.backbones.native import native_size
from bench_tasks.contracts import Profile
from bench_tasks.plan.profile_files import (  # noqa: F401 - dotted_overrides, parse_assignments, ProfileError: named here too
    CONFIG_DIR,
    ProfileError,
    dotted_overrides,
    parse_assignments,
)
from bench_tasks.protocols.farl import farl_settings
from bench_tasks.registry import TASKS, load_all
from bench_tasks.tasks._ceiling import ceiling_epochs_for, is_ceiling
from bench_tasks.tasks._classification import settings as cls_settings
from bench_tasks.tasks._dense import dense_section
from bench_tasks.tasks.recognition import settings_for


def _field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Profile)]


def setting_keys() -> list[str]:
    """Every key `extra` may hold (the valid `--set` settings keys): those the registered tasks
    declare (`Task.setting_keys`, plug-in tasks included), and the harness's own."""
    load_all()
    keys = list(dict.fromkeys(k for name in TASKS.names() for k in TASKS.get(name).setting_keys()))
    keys += ["ceiling_lr", "ceiling_epochs"]  # the supervised ceiling's recipe (bench_tasks.plan.references)
    keys += [NATIVE_KEY]  # run the backbones at their own input size (resolve_native_size)
    return keys


def _check_extra(extra: dict, source: str) -> None:
    valid = set(setting_keys())
    for k, v in extra.items():
        if k == "recognition" and isinstance(v, dict):
            bad = [f"recognition.{x}" for x in v if f"recognition.{x}" not in valid]
        elif k.startswith("recognition."):  # recognition reads its nested mapping only: a flat key is never read
            raise ProfileError(f"{source}: setting {k!r} is read from the nested `recognition:` mapping; write "
                               f"`recognition: {{{k.split('.', 1)[1]}: {v!r}}}` under `extra:` (`--set {k}=...` "
                               "nests it for you)")
        else:
            bad = [] if k in valid else [k]
        if bad:
            raise ProfileError(f"{source}: unknown setting {bad[0]!r}; settings keys: {', '.join(setting_keys())}")


def profile_from_dict(data: dict, source: str, check_settings: bool = True):
    """A Profile from a profile file's mapping; raises ProfileError naming `source` and the key.
    `check_settings` checks the `extra` keys too (it imports the tasks: off while bench_tasks.api
    loads the bundled files, which tests/test_contracts.py checks)."""
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a profile file is a YAML mapping of profile fields, got {type(data).__name__}")
    fields = _field_names()
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ProfileError(f"{source}: unknown profile key {unknown[0]!r}; keys: {', '.join(fields)}")
    required = [f.name for f in dataclasses.fields(Profile)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        raise ProfileError(f"{source}: missing profile key(s) {', '.join(missing)}")
    d = dict(data)
    for k in ("seeds", "fractions", "protocols"):
        if k in d:
            d[k] = tuple(d[k]) if isinstance(d[k], (list, tuple)) else (d[k],)
    d["seeds"] = tuple(int(s) for s in d.get("seeds", (0,)))
    d["fractions"] = tuple(float(f) for f in d.get("fractions", (1.0,)))
    d["extra"] = dict(d.get("extra") or {})
    ps = d.get("pretrain_seeds") or {}
    if ps:  # a list is the compared methods' seeds (parse_pretrain_seeds)
        try:
            ps = {k: list(v) for k, v in parse_pretrain_seeds(ps).items()}
        except ValueError as err:
            raise ProfileError(f"{source}: {err}") from err
    d["pretrain_seeds"] = dict(ps)
    d["study"], d["jobs"] = _section(d, "study", STUDY_KEYS, source), _section(d, "jobs", JOB_KEYS, source)
    if check_settings:
        _check_extra(d["extra"], source)
    return Profile(**d)


def parse_pretrain_seeds(spec) -> dict[str, tuple[int, ...]]:
    """The pre-training seeds of a study: {"default": seeds, <run name>: seeds, ...}.

    `spec`: None / [] (seed 0 only), a list of ints or "0,1,2" (the default), a mapping
    {"default": [0, 1, 2], "farl": [0]} (profile YAML `pretrain_seeds:`), or a list of strings
    from `--pretrain-seeds` ("0,1,2", "farl=0", "mcf=0,1"). `default` applies to the compared
    methods (role main); ablations and controls train at its first seed unless named; a teacher
    trains at every seed of the runs that use it. Raises ValueError naming the bad entry."""
    out: dict[str, tuple[int, ...]] = {}

    def seeds_of(v, where) -> tuple[int, ...]:
        items = v if isinstance(v, (list, tuple)) else str(v).split(",")
        try:
            seeds = tuple(dict.fromkeys(int(str(x).strip()) for x in items if str(x).strip() != ""))
        except ValueError:
            raise ValueError(f"pre-training seeds {where}: {v!r} is not a list of integers (e.g. 0,1,2)") from None
        if not seeds or any(x < 0 for x in seeds):
            raise ValueError(f"pre-training seeds {where}: {v!r}: give one or more seeds >= 0")
        return seeds

    if spec is None or spec == [] or spec == ():
        return {"default": (0,)}
    if isinstance(spec, dict):
        for k, v in spec.items():
            out[str(k)] = seeds_of(v, f"of {k!r}")
    elif isinstance(spec, (list, tuple)) and all(isinstance(x, int) for x in spec):
        out["default"] = seeds_of(list(spec), "")
    else:
        for item in ([spec] if isinstance(spec, str) else spec):
            name, eq, val = str(item).rpartition("=")
            if eq:
                out[name.strip()] = seeds_of(val, f"of {name.strip()!r}")
            else:
                out["default"] = seeds_of(val, "")
    out.setdefault("default", (0,))
    return out


# the keys of a profile's `study:` and `jobs:` sections (bench_tasks.plan.suite, bench_tasks.run.jobs)
STUDY_KEYS = {"pretrain_overrides": None, "ablation_tasks": None, "ablation_runs": None, "tune": None,
              "ablation_seeds": None}
JOB_KEYS = {"eval": ("gpus", "cpus", "time", "mem", "group_size"), "pretrain": ("nodes", "gpus", "cpus", "time", "mem")}


def _section(d: dict, name: str, keys: dict, source: str) -> dict:
    """The profile's `name:` section, its keys checked (and those of its sub-mappings that list theirs)."""
    got = d.get(name) or {}
    if not isinstance(got, dict):
        raise ProfileError(f"{source}: `{name}:` must be a mapping with keys {', '.join(keys)}")
    for k, v in got.items():
        if k not in keys:
            raise ProfileError(f"{source}: unknown key {name}.{k}; keys: {', '.join(keys)}")
        if keys[k] is not None:
            bad = [x for x in (v or {}) if x not in keys[k]]
            if not isinstance(v or {}, dict) or bad:
                raise ProfileError(f"{source}: {name}.{k}: unknown key(s) {bad}; keys: {', '.join(keys[k])}")
    return dict(got)


def profile_section(profile: Profile | str, section: str) -> dict:
    """The `study:` or `jobs:` section of `profile`: a Profile (the one a plan carries: a profile file
    or `--set` included), or the name of a bundled profile ({} when it has none or the name is
    unknown)."""
    if not isinstance(profile, Profile):
        try:
            profile = get_profile(str(profile))
        except KeyError:
            return {}
    return dict(getattr(profile, section) or {})


def profile_name(profile: Profile | str) -> str:
    """The name of `profile` (a Profile or a name): the paco_fr config and runs/<name>/ it uses."""
    return profile.name if isinstance(profile, Profile) else str(profile)


def resolve_profile_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise ProfileError(f"profile file {p} not found")
        return p
    cand = CONFIG_DIR / f"{name_or_path}.yaml"
    if cand.is_file():
        return cand
    raise ProfileError(f"unknown profile {str(name_or_path)!r}; bundled: "
                       f"{', '.join(sorted(q.stem for q in CONFIG_DIR.glob('*.yaml')))}, or a YAML file path")


def read_profile_file(path: str | Path, check_settings: bool = True):
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ProfileError(f"{path}: not valid YAML ({err})") from err
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    return profile_from_dict(data, str(path), check_settings)


def bundled_profiles() -> dict:
    """{name: Profile} of bench_tasks/configs/*.yaml."""
    return {p.stem: read_profile_file(p, check_settings=False) for p in sorted(CONFIG_DIR.glob("*.yaml"))}


def with_overrides(profile, overrides: dict[str, Any] | list[str] | None):
    """`profile` with `--set` overrides applied (flat keys, see the module docstring)."""
    if not overrides:
        return profile
    if not isinstance(overrides, dict):
        overrides = parse_assignments(overrides)
    data = dataclasses.asdict(profile)
    extra = dict(data.pop("extra") or {})
    fields = _field_names()
    valid = setting_keys()
    for key, val in overrides.items():
        k = key[len("extra."):] if key.startswith("extra.") else key
        if k in fields and k not in ("extra", "name"):
            data[k] = val
        elif k in valid and k.startswith("recognition."):
            extra["recognition"] = {**(extra.get("recognition") or {}), k.split(".", 1)[1]: val}
        elif k in valid:
            extra[k] = val
        else:
            names = [f for f in fields if f not in ("extra", "name")] + valid
            raise ProfileError(f"--set: unknown key {key!r}; valid keys: {', '.join(names)}")
    return profile_from_dict({**data, "extra": extra}, f"profile {profile.name!r} with --set")


# bench_tasks/configs/<name>.yaml, one file per profile, read once at import and never written after:
# plans carry the Profile objects their cells are computed under (Plan.profile_of), and the study's
# planners (bench_tasks.plan.suite, bench_tasks.plan.study) and the job sizes (bench_tasks.run.jobs)
# take the Profile, so a profile changed by `--set` or read from a user's YAML file reaches them
# without this dict.
PROFILES: dict[str, Profile] = bundled_profiles()


def get_profile(name: str) -> Profile:
    """A bundled profile by name, else a profile YAML file by path."""
    if name in PROFILES:
        return PROFILES[name]
    if str(name).endswith((".yaml", ".yml")):
        return load_profile(name)
    raise KeyError(f"unknown profile {name!r}; choose from {sorted(PROFILES)} or give a profile YAML file")


def load_profile(name_or_path: str | Path, overrides=None, register: bool = False):
    """The profile `name_or_path` (a bundled name or a YAML file) with overrides applied. It registers
    nothing: a plan made with it carries it (bench_tasks.plan.cell_plan.make_plan(..., profiles=profile));
    `register` is accepted for older callers and must be False."""
    if register:
        raise ValueError("load_profile registers nothing (PROFILES holds the bundled files only): hand the "
                         "Profile to make_plan(..., profiles=profile) or to the study's planner")
    name = str(name_or_path)
    if name in PROFILES and not Path(name).suffix:
        profile = PROFILES[name]
    else:
        profile = read_profile_file(resolve_profile_path(name_or_path))
    return with_overrides(profile, overrides)


# `extra.native_size: true` (the `native` profile): image_size and dense_size become the plan's
# backbones' own input size (the profile's values are used when no backbone tells its size)
NATIVE_KEY = "native_size"


def resolve_native_size(profile, uris, overridden=()) -> tuple[Any, list[str]]:
    """(profile, plan lines): a profile with `native_size: true` at the input size of the plan's
    backbones (bench_tasks.backbones.native); `image_size` / `dense_size` given with --set
    (`overridden`) are kept. Backbones of different sizes in one native plan are an error
    (ProfileError): their rows would not share one input size."""
    if not (profile.extra or {}).get(NATIVE_KEY):
        return profile, []

    sizes = {}
    for uri in dict.fromkeys(uris):
        try:
            n = native_size(uri)
        except Exception:  # noqa: BLE001 - the plan's own checks report a backbone that cannot be read
            n = None
        if n:
            sizes[uri] = int(n)
    if len(set(sizes.values())) > 1:
        raise ProfileError(f"profile {profile.name!r} runs every backbone at its own input size, and these differ: "
                           + ", ".join(f"{u} {n} px" for u, n in sizes.items())
                           + "; run them in separate plans, or fix one size with --set image_size=N --set dense_size=N")
    keep = {k for k in ("image_size", "dense_size") if k in set(overridden)}
    if not sizes:
        return profile, [f"native size: no backbone of the plan tells its input size; {profile.image_size} px "
                         f"(the profile's image_size) is used"]
    n = next(iter(sizes.values()))
    change = {k: n for k in ("image_size", "dense_size") if k not in keep}
    lines = [f"native size: {n} px, the input size of {', '.join(sizes)}"
             + (f" ({', '.join(sorted(keep))} from --set)" if keep else "")]
    return dataclasses.replace(profile, **change), lines


def effective_settings(profile) -> dict[str, Any]:
    """Every value the built-in tasks use under `profile`, as they compute it (run --dry-run)."""
    d = {k: v for k, v in dataclasses.asdict(profile).items() if k != "extra"}
    return {
        "profile": d,
        "classification (attributes, expression)": {p: cls_settings(profile, p) for p in ("linear", "concat", "frozen", "finetune")},
        "dense (parsing, landmarks)": dense_section(profile),
        "recognition": settings_for(profile),
        "farl (lapa, farl-refine)": {k: v for k, v in farl_settings("lapa", "farl-refine", profile).items()
                                     if k in ("warped_size", "input_size", "head_channels", "epochs", "batch_size",
                                              "train_images", "overrides", "farl_exact")},
    }


# profile fields that say which cells a plan has, not how one cell is computed
_PLAN_FIELDS = ("seeds", "fractions", "protocols", "name", "pretrain_seeds", "study", "jobs")


def cell_settings(cell, profile) -> dict[str, Any]:
    """The effective settings one cell is computed with under `profile`: the profile's sizes and
    budgets, the task's own section (`Task.settings_section`), FaRL's for its protocols, the
    ceiling's recipe for a `supervised:` backbone. Rows record its fingerprint (`settings_hash`), so
    a changed setting recomputes the rows it changes and only those."""
    shared = {k: v for k, v in dataclasses.asdict(profile).items() if k != "extra"}
    out: dict[str, Any] = {"profile": {k: v for k, v in shared.items() if k not in _PLAN_FIELDS}}
    section = TASKS.get(cell.task)().settings_section(cell, profile) if cell.task in TASKS else None
    if section is not None:
        out[cell.task] = section
    if str(cell.protocol).startswith("farl"):
        out["farl"] = farl_settings(cell.dataset, cell.protocol, profile)
    if is_ceiling(cell.backbone):
        extra = profile.extra or {}
        out["ceiling"] = {"ceiling_lr": extra.get("ceiling_lr"), "ceiling_epochs": ceiling_epochs_for(extra, cell.task)}
    return out


def settings_hash(cell, profile) -> str:
    blob = json.dumps(cell_settings(cell, profile), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def format_settings(settings: dict) -> str:
    return yaml.safe_dump(settings, sort_keys=False, default_flow_style=None, width=110)
