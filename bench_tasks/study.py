"""The whole study behind `python -m bench_tasks run --all` (when no --backbones are given).

Stage 1, pre-training suite (`pretrain_suite`): PaCo-FR, MAE, FaRL-style and MCF-style
objectives with the same backbone, data and budget (the profile's bundled pre-training config:
`paco_fr/configs/<profile>.yaml`), a random-init control, and the PaCo-FR ablations: masking
strategy (random / block vs structured), codebook size (4 sizes across 64..8192), candidates
k = 1 vs several, incubation off, spatial consistency off. Runs live in `runs/<profile>/<name>/`;
a finished run is reused, an interrupted one resumes (paco_fr.engine.pretrain).

Stage 2, evaluation (`study_cells`): the compared methods on every task with the profile's
protocols, fractions and seeds; the ablation runs on every task with the first protocol, full
data and the first seed (enough to rank the components; in `smoke` only on the three cheap tasks,
see ABLATION_TASKS). SynthFace's robustness slices come with every SynthFace row. Every task
also gets its floor (input-free predictor) and ceiling (`supervised:<the suite's arch>`) rows
and recognition its parameter-free cosine probe (bench_tasks.references).

Stage 3 is `python -m bench_tasks report` (bench_tasks.report.build).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench_tasks.api import Cell, Profile

# the main PaCo-FR config has its own codebook size (256 in smoke/small, 8192 in paper); the
# ablation adds these (duplicates of the main size are skipped)
ABLATION_CODEBOOK_SIZES = (64, 512, 2048, 8192)

# The study's pre-training budget on top of the profile's bundled config (paco_fr/configs/<profile>.yaml),
# identical for every run of the suite. smoke: 64 steps on 512 SynthFace images (incubation = the
# first epoch = 32 steps), so that the whole `run --all` fits CI's 2-core CPU in about 15 minutes;
# small and paper use their configs as they are.
STUDY_OVERRIDES: dict[str, dict] = {
    "smoke": {"train.steps": 64, "data.num_images": 512, "train.snapshot_every": 64, "train.ckpt_every": 32},
    "small": {},
    # gpu: train.steps is set on the device from measured step times (bench_tasks/device_study.py)
    "gpu": {},
    "cpu": {},
    "paper": {},
}

# Tasks the ablation encoders are evaluated on. smoke: the three cheap ones (the dense heads cost
# ~40 s a cell on 2 CPU cores, 9 ablations x 2 dense tasks would double the study's time);
# small and paper: every task.
ABLATION_TASKS: dict[str, tuple[str, ...] | None] = {
    "smoke": ("attributes", "expression", "recognition"),
    "small": None,
    "gpu": None,
    "cpu": None,
    "paper": None,
}


@dataclass(frozen=True)
class SuiteRun:
    name: str  # folder under runs/<profile>/, also what the report's naming maps to a label
    overrides: dict = field(default_factory=dict, hash=False, compare=False)
    role: str = "method"  # "method" (compared in the main table) | "ablation"
    component: str = ""  # ablation group: masking / codebook / candidates / incubation / spatial


def suite_runs(include_ablations: bool = True, profile_name: str = "smoke") -> list[SuiteRun]:
    from paco_fr.config import load_config

    main_codebook = load_config(profile_name)["codebook"]["num_tokens"]
    runs = [
        SuiteRun("paco", {"objective": "paco"}),
        SuiteRun("mae", {"objective": "mae"}),
        SuiteRun("farl", {"objective": "farl"}),
        # after mae: its teacher is `auto` = the MAE encoder of this suite (MCF used MoCo-v3)
        SuiteRun("mcf", {"objective": "mcf", "mcf.teacher": "auto"}),
    ]
    if include_ablations:
        runs += [
            SuiteRun("abl_mask_random", {"objective": "paco", "mask.strategy": "random"}, "ablation", "masking"),
            SuiteRun("abl_mask_block", {"objective": "paco", "mask.strategy": "block"}, "ablation", "masking"),
            *[SuiteRun(f"abl_codebook_{n}", {"objective": "paco", "codebook.num_tokens": n}, "ablation", "codebook")
              for n in ABLATION_CODEBOOK_SIZES if n != main_codebook],
            SuiteRun("abl_k1", {"objective": "paco", "codebook.k": 1}, "ablation", "candidates"),
            SuiteRun("abl_no_incubation", {"objective": "paco", "incubation.epochs": 0}, "ablation", "incubation"),
            # the term off, the two views kept: the same distinct images per step as PaCo-FR
            SuiteRun("abl_no_spatial", {"objective": "paco", "spatial.weight": 0, "spatial.keep_views": True},
                     "ablation", "spatial"),
            # controls (issue 13): the same region mask with a learned mask token (no codebook, no
            # Belief Predictor), and the Belief Predictor trained by cross-entropy only (no
            # reconstruction gradient through the mixing weights); role "ablation" so that
            # study_cells evaluates them like the ablations
            SuiteRun("abl_learned_mask_token", {"objective": "paco", "mask.replace": "mask_token"}, "ablation", "control"),
            SuiteRun("abl_belief_ce_only", {"objective": "paco", "belief.detach_weights": True}, "ablation", "control"),
        ]
    return runs


def random_control(profile_name: str) -> str:
    """The random-init control has the same architecture as the suite's encoders."""
    from paco_fr.config import load_config

    m = load_config(profile_name)["model"]
    spec = f"{m['arch']}@{m['img_size']}/{m['patch_size']}"
    if m.get("depth"):
        spec += f"/d{m['depth']}"
    return f"random:{spec}"


def pretrain_suite(profile: Profile, runs_root: str | Path = "runs", include_ablations: bool = True,
                   log: Callable[[str], None] = print, progress: bool = True,
                   overrides: dict | None = None, failed: list | None = None) -> dict[str, Path]:
    """Pre-train (or reuse / resume) every run of the suite; returns {run name: encoder path}.
    `overrides` (dotted keys, e.g. {"train.steps": 500}) apply to every run: the budget stays equal.
    A run that fails is reported and left out (appended to `failed` as (name, cause)); the others go on."""
    from paco_fr.engine import pretrain

    out: dict[str, Path] = {}
    runs = suite_runs(include_ablations, profile.name)
    for i, run in enumerate(runs, 1):
        run_dir = Path(runs_root) / profile.name / run.name
        log(f"[stage 1: pre-training {i}/{len(runs)}] {run.name} -> {run_dir}")
        try:
            ov = {**STUDY_OVERRIDES.get(profile.name, {}), **(overrides or {}), **run.overrides, "name": run.name}
            if not progress:
                ov["train.progress"] = False
            out[run.name] = pretrain(profile.name, ov, run_dir=run_dir)
        except (KeyboardInterrupt, InterruptedError):
            raise
        except Exception as err:  # one broken objective must not sink the study
            from bench_tasks.errors import cause_line

            log(f"pre-training {run.name} FAILED: {cause_line(err)}")
            if failed is not None:
                failed.append((run.name, cause_line(err)))
    return out


def study_cells(profile: Profile, encoders: dict[str, Path], task_datasets: dict[str, list[str]],
                protocols: list[str] | None = None, seeds: list[int] | None = None,
                fractions: list[float] | None = None, ceilings: bool = True) -> list[Cell]:
    """Stage 2's plan: methods x tasks x protocols x fractions x seeds, ablations x tasks once."""
    from bench_tasks.runner import plan_cells

    roles = {r.name: r.role for r in suite_runs(True, profile.name)}
    methods = [f"paco_fr:{p}" for n, p in encoders.items() if roles.get(n, "method") == "method"]
    methods.append(random_control(profile.name))
    ablations = [f"paco_fr:{p}" for n, p in encoders.items() if roles.get(n) == "ablation"]
    cells = plan_cells(methods, task_datasets, protocols=protocols, seeds=seeds, fractions=fractions,
                       profile=profile.name)
    if ablations:
        first_protocol = (protocols or list(profile.protocols))[:1]
        first_seed = (seeds or list(profile.seeds))[:1]
        only = ABLATION_TASKS.get(profile.name)
        abl_tasks = {t: d for t, d in task_datasets.items() if only is None or t in only}
        cells += plan_cells(ablations, abl_tasks, protocols=first_protocol, seeds=first_seed,
                            fractions=[1.0], profile=profile.name)
    # floors and the supervised ceiling (the suite's architecture trained end to end) for every
    # task evaluated, the parameter-free recognition probe next to every recognition cell
    from bench_tasks.references import with_references

    ceiling = ["supervised:" + random_control(profile.name).partition(":")[2]] if ceilings else None
    return with_references(cells, ceilings=ceiling)
