"""The contracts between the runner, tasks, datasets, backbones and the results store: the types
every plug-in implements or returns. This module imports nothing else of bench_tasks.

A *cell* is one unit of work: (backbone, task, dataset, protocol, fraction, seed) under a
profile. The runner builds a `CellContext`, calls `Task.run(ctx)`, and stores the returned
`CellResult` as one row in results/ (see bench_tasks/store/results.py for the row schema).

torch is imported when `TaskSplit` (a torch Dataset) is first asked for, so the cells, profiles
and URIs load without it (`--help`, `list`, `status`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench_tasks.errors import DataError

if TYPE_CHECKING:
    import torch

# ----------------------------------------------------------------------------- backbone URIs

# the references' schemes: the floor (an input-free predictor, no network) and the ceiling (the
# architecture trained end to end with the task's labels)
FLOOR_SCHEME = "floor"
CEILING_SCHEME = "supervised"
# schemes whose spec names an architecture, not a weight file
FILELESS_SCHEMES = ("random", CEILING_SCHEME, FLOOR_SCHEME)
# schemes whose spec is `<model name>:<weight file>`
NAMED_FILE_SCHEMES = ("timm", "open_clip")


@dataclass(frozen=True)
class BackboneURI:
    """A backbone URI `scheme:spec` parsed once (`paco_fr:runs/x/encoder.safetensors`,
    `timm:vit_small_patch16_224[:w.pth]`, `random:vit_tiny`, `floor:input-free`). `str()` gives back
    the exact string it was parsed from; rows, cell keys and settings hashes keep that string."""

    scheme: str
    spec: str

    @classmethod
    def parse(cls, uri: BackboneURI | str) -> BackboneURI:
        """Raises ValueError naming `uri` when it is not `scheme:spec` with a non-empty spec."""
        if isinstance(uri, BackboneURI):
            return uri
        text = str(uri)
        scheme, sep, spec = text.partition(":")
        if not sep or not spec:
            raise ValueError(f"backbone URI {text!r}: expected scheme:spec, e.g. random:vit_tiny, "
                             "timm:<model>[:<file>], paco_fr:<encoder.safetensors>")
        return cls(scheme, spec)

    @classmethod
    def read(cls, uri: BackboneURI | str) -> BackboneURI:
        """The tolerant form of `parse`, for telling kinds of rows apart (rows of old or foreign
        files): any string reads, `abc` as scheme "abc" with an empty spec; never raises. Only
        `parse` promises that `str()` gives back the string."""
        if isinstance(uri, BackboneURI):
            return uri
        scheme, _, spec = str(uri).partition(":")
        return cls(scheme, spec)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.spec}"

    def with_scheme(self, scheme: str) -> BackboneURI:
        """The same spec under another scheme (`random:vit_tiny` -> `supervised:vit_tiny`)."""
        return BackboneURI(scheme, self.spec)

    @property
    def name(self) -> str:
        """The spec's first field: timm's model name, the architecture of `random:` / `supervised:`."""
        return self.spec.partition(":")[0]

    @property
    def file(self) -> str | None:
        """The weight file (or folder, `hf:`) the URI names (None for `random:`, `supervised:`,
        `floor:` and a timm URI without a file)."""
        if self.scheme in NAMED_FILE_SCHEMES:
            return self.spec.partition(":")[2] or None
        return None if self.scheme in FILELESS_SCHEMES else self.spec

    @property
    def is_floor(self) -> bool:
        """The floor reference (`floor:input-free`): a task's input-free predictor, no network."""
        return self.scheme == FLOOR_SCHEME

    @property
    def is_ceiling(self) -> bool:
        """The ceiling reference (`supervised:<arch>`): the architecture trained with the task's labels."""
        return self.scheme == CEILING_SCHEME


def uri_scheme(uri: BackboneURI | str) -> str:
    """The scheme of a URI, tolerant of any string (rows of old or foreign files): the text before
    the first `:` ("" for ""), for telling floors, ceilings and encoders apart."""
    return uri_parts(uri)[0]


def uri_parts(uri: BackboneURI | str) -> tuple[str, str]:
    """(scheme, spec) of a URI, tolerant of any string: ("abc", "") for "abc", ("random", "") for
    "random:"; `BackboneURI.parse` is the strict form."""
    u = BackboneURI.read(uri)
    return u.scheme, u.spec


# ----------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """How big a run is: bench_tasks/configs/<name>.yaml (smoke: CI's 2-core CPU, numbers not
    meaningful; cpu: a real study on a 2-core CPU; small / gpu: one GPU, SynthFace at 112; paper:
    FaRL-size settings for users' own data and GPUs). `extra`: task settings that differ from the
    tasks' defaults (keys: bench_tasks.plan.profiles.setting_keys())."""

    name: str
    image_size: int  # classification / recognition input size on SynthFace
    dense_size: int  # parsing / landmarks input size (FaRL: 448)
    synthface_train: int  # SynthFace images per split (train/val/test)
    synthface_val: int
    synthface_test: int
    batch_size: int
    linear_epochs: int
    finetune_epochs: int
    dense_epochs: int
    recognition_epochs: int
    seeds: tuple[int, ...] = (0,)
    fractions: tuple[float, ...] = (1.0,)
    protocols: tuple[str, ...] = ("linear",)
    num_workers: int = 0
    extra: dict = field(default_factory=dict, hash=False, compare=False)
    # the study's pre-training seeds (`run --all`): [0, 1, 2] or {default: [0, 1, 2], farl: [0]}
    # (bench_tasks.plan.suite.parse_pretrain_seeds); empty: seed 0 only
    pretrain_seeds: dict = field(default_factory=dict, hash=False, compare=False)
    # the study of this profile (`run --all`): `pretrain_overrides` (config overrides every run of
    # the suite gets), `ablation_tasks` (the tasks ablation encoders are evaluated on; none: all),
    # `ablation_runs` (the ablation runs trained; none: all) (bench_tasks.plan.suite.study_setting)
    study: dict = field(default_factory=dict, hash=False, compare=False)
    # cluster job sizes: `eval` {gpus, cpus, time, mem, group_size}, `pretrain` {nodes, gpus, cpus,
    # time, mem} (time in minutes, mem in GB; bench_tasks.run.jobs; flags override them)
    jobs: dict = field(default_factory=dict, hash=False, compare=False)


# ----------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    backbone: str  # URI, e.g. "random:vit_tiny" or "paco_fr:runs/x/encoder.safetensors"
    task: str
    dataset: str
    protocol: str  # "linear" | "finetune" | "frozen" (task-specific ones allowed)
    fraction: float = 1.0
    seed: int = 0
    profile: str = "smoke"

    def key(self) -> str:
        """Stable identity of the cell: a row with this key means the cell is done."""
        blob = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        return (f"{self.backbone} | {self.task}/{self.dataset} | {self.protocol} "
                f"| frac={self.fraction:g} | seed={self.seed}")


# ----------------------------------------------------------------------------- data


def _task_split_class():
    import torch  # the one place torch is imported: TaskSplit is a torch Dataset

    class TaskSplit(torch.utils.data.Dataset):
        """One split of one dataset, prepared for one task.

        __getitem__ returns (image, target): image a float tensor (3, H, W) in [0, 1] at the size
        the task asked for; target task-specific (multi-hot vector, class index, (68, 2) landmark
        tensor in pixels of the returned image, (H, W) long mask, identity index).
        `slices` maps a slice name (e.g. "pose:large", "occlusion:yes") to a boolean array over the
        split, used to report robustness separately. `meta` holds class names etc.
        `targets`: every target of the split stacked (N, ...) when the reader has them without
        decoding images (feature-cached linear probes, floors and majority baselines use them; read
        them with `split_targets`), None otherwise.
        """

        targets: np.ndarray | torch.Tensor | None = None

        def __init__(self, name: str, split: str, meta: dict | None = None,
                     slices: dict[str, np.ndarray] | None = None):
            self.name = name
            self.split = split
            self.meta = meta or {}
            self.slices = slices or {}

    TaskSplit.__module__, TaskSplit.__qualname__ = __name__, "TaskSplit"
    return TaskSplit


def __getattr__(name: str):
    if name == "TaskSplit":  # built on first use (module attribute from then on)
        cls = globals()["TaskSplit"] = _task_split_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def split_targets(split) -> np.ndarray | torch.Tensor | None:
    """The `targets` of a split when it has them for every item (None otherwise). A plug-in split
    written against the older contract (`targets()` a method) is read too."""
    t = getattr(split, "targets", None)
    if callable(t):
        t = t()
    if t is None or isinstance(t, dict) or len(t) != len(split):
        return None
    return t


class DatasetSpec:
    """A registered dataset. `tasks` lists the tasks it can serve; `load` builds one split.
    `root` is None for the embedded SynthFace; readers of real formats raise
    `DatasetLayoutError` (with the expected layout) when the root is missing or malformed."""

    name: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]
    needs_root: ClassVar[bool] = True
    layout: ClassVar[str] = ""  # the expected folder layout, shown in errors and `list`
    # the sub-folder it expects under a --data-root parent (None: its name; e.g. affectnet7 and
    # affectnet8 share `affectnet/`)
    folder: ClassVar[str | None] = None
    # a data set with only a test split (verification benchmarks): a plan reads no train / val
    test_only: ClassVar[bool] = False
    # the version of the data it yields (a generator's version): rows record it as `data_version`
    # and a row of another version is recomputed, like one of another `Task.version`
    version: ClassVar[str] = "1"

    def load(self, task: str, split: str, root: str | None, profile: Profile, image_size: int) -> "TaskSplit":  # noqa: F821, UP037
        raise NotImplementedError


class DatasetLayoutError(DataError, FileNotFoundError):
    def __init__(self, dataset: str, root: str | Path | None, problem: str, layout: str):
        self.dataset, self.root, self.problem, self.layout = dataset, root, problem, layout
        super().__init__(f"{dataset}: {problem} (root: {root})\nexpected layout:\n{layout}")


# ----------------------------------------------------------------------------- tasks


@dataclass
class CellContext:
    cell: Cell
    backbone: Any  # bench_tasks.backbones.base.BenchBackbone
    profile: Profile
    data_root: str | None  # root of the cell's dataset, None for SynthFace's cache default
    device: torch.device
    work_dir: Path  # per-run scratch shared by the cells of a run: feature cache (work_dir/features)
    progress: bool = True
    results_dir: Path | None = None  # folder of the results file; artifacts go under it
    # the cell's settings hash under its profile (bench_tasks.plan.profiles.settings_hash), handed
    # down by the runner; None: the artifact folder is the cell key alone
    settings_hash: str | None = None

    def artifact_dir(self) -> Path:
        """Folder for this cell's artifacts (confusion matrices, histories, previews):
        <results_dir>/artifacts/<key>-<settings>/ (created), <settings> the first 8 characters of the
        cell's settings hash (`settings_hash`), so the same cell computed with
        other settings (a `--set`, a changed profile) into the same results folder keeps its own
        artifacts. CellResult.artifacts stores paths relative to results_dir (`artifact_relpath`)."""
        base = self.results_dir if self.results_dir is not None else Path(self.work_dir)
        h = self.settings_hash
        d = Path(base) / "artifacts" / (self.cell.key() + (f"-{h[:8]}" if h else ""))
        d.mkdir(parents=True, exist_ok=True)
        return d

    def artifact_relpath(self, path: str | Path) -> str:
        base = self.results_dir if self.results_dir is not None else Path(self.work_dir)
        try:
            return Path(path).resolve().relative_to(Path(base).resolve()).as_posix()
        except ValueError:
            return str(path)


@dataclass
class CellResult:
    """metrics: scores at the epoch selected on the validation split (the headline numbers);
    metrics_last: scores at the last epoch; metrics_best_test: best test score over epochs
    (FaRL's published convention, stored for comparison only). slices: robustness slices,
    {slice_name: {metric: value}}. artifacts: {name: path relative to results/}; `items` names the
    per-item scores (bench_tasks.stats.ItemScores, .npz) the report uses for paired comparisons.
    `extra` is free-form and not stored (plug-in tasks that still return `extra["config"]`,
    `extra["timings"]`, `extra["history"]` or `extra["protocol_used"]` have them read as the typed
    fields below)."""

    metrics: dict[str, float]
    metrics_last: dict[str, float] = field(default_factory=dict)
    metrics_best_test: dict[str, float] = field(default_factory=dict)
    slices: dict[str, dict[str, float]] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # 95 % bootstrap intervals of test metrics over test items (pairs for verification):
    # {metric: [lo, hi]} (bench_tasks.stats); stored as the row's `ci`
    ci: dict[str, list[float]] = field(default_factory=dict)
    # what actually ran: the protocol (a dense task runs a plan's `linear` as `frozen`) and the head
    # trained on the backbone (e.g. "attribute", "fpn_uperhead", "arcface"); the row's `protocol_used`
    protocol_used: str = ""
    head: str = ""
    # the task's effective settings (the row's config.task), wall-clock timings in seconds (the
    # row's provenance.timings) and one dict per evaluated epoch (the row's `history`)
    config: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


class CellProtocol:
    """A protocol that lives outside the tasks it serves, as one object registered in
    `bench_tasks.registry.PROTOCOLS` (e.g. FaRL's `farl-frozen` / `farl-refine`,
    bench_tasks.protocols.farl.protocol). A task whose `protocols` is `registry.TaskProtocols()` (the
    dense tasks) accepts every registered protocol that names it in `tasks`, asks it for the cell's
    input size and hands it the cell to run: adding such a protocol is one module."""

    name: str
    tasks: ClassVar[tuple[str, ...]] = ()  # the tasks it serves

    def setting_keys(self) -> tuple[str, ...]:
        """The keys of a profile's `extra` the protocol reads (valid `--set` keys of the tasks it serves)."""
        return ()

    def cell_image_size(self, cell: Cell, profile: Profile) -> int:
        """The backbone's input size for one cell of this protocol."""
        raise NotImplementedError

    def run(self, ctx: CellContext, task: str) -> CellResult:
        """Train and score one cell of task `task`."""
        raise NotImplementedError


class Task:
    name: ClassVar[str]
    # bump when a change to the task changes its numbers: the runner then recomputes rows written
    # by another version (rows record `task_version`; rows without one count as version 1).
    # `Cell.key()` does not include it, so results of an unchanged task stay valid.
    version: ClassVar[int] = 1
    default_datasets: ClassVar[tuple[str, ...]]  # real data sets the task knows
    protocols: ClassVar[tuple[str, ...]] = ("linear", "finetune", "frozen")
    # protocols a plan may name that the task runs (and records) under another name, e.g. the
    # dense tasks' {"linear": "frozen"}: rows, tables and `list` show the protocol actually run
    protocol_aliases: ClassVar[dict[str, str]] = {}
    headline: ClassVar[str]  # name of the headline metric in CellResult.metrics
    higher_is_better: ClassVar[bool] = True

    @classmethod
    def plan_protocol(cls, protocol: str) -> str | None:
        """The protocol a plan's `protocol` runs as for this task (None: not supported)."""
        protocol = cls.protocol_aliases.get(protocol, protocol)
        return protocol if protocol in cls.protocols else None

    @classmethod
    def missing_requirements(cls) -> list[str]:
        """What the task needs that this environment lacks (e.g. a package with compiled ops), each a
        sentence naming it and how to get it; the plan checks it before anything runs. Default: none."""
        return []

    def image_size(self, profile: Profile) -> int:
        """Input size of the task under `profile` (the runner builds the backbone at this size,
        interpolating position embeddings). Dense tasks return profile.dense_size."""
        return profile.image_size

    def cell_image_size(self, cell: Cell, profile: Profile) -> int:
        """Input size of one cell (a protocol with its own input size, e.g. FaRL's, overrides it);
        default `image_size(profile)`."""
        return self.image_size(profile)

    @classmethod
    def setting_keys(cls) -> tuple[str, ...]:
        """The keys of a profile's `extra` this task reads (the valid `--set` settings keys; a
        nested `recognition:` mapping's keys as `recognition.<key>`). Default: none."""
        return ()

    def settings_section(self, cell: Cell, profile: Profile) -> dict | None:
        """The task's own settings one cell runs with under `profile` (heads, learning rates,
        epochs, training subsets), as the task computes them for the run: rows record their
        fingerprint (`settings_hash`), so a changed value recomputes exactly the rows it changes.
        Default None: nothing beyond the profile's shared fields."""
        return None

    def run(self, ctx: CellContext) -> CellResult:
        raise NotImplementedError

    def floor(self, ctx: CellContext) -> CellResult:
        """The task's floor: its best *input-free* predictor, fitted on the training labels of
        ctx.cell.dataset and scored with the task's own metric on the test split (the cell's backbone
        is `floor:input-free`, its protocol `floor`; ctx.backbone is None). A task that overrides it
        gets a floor cell in every plan (bench_tasks.plan.references); by default a task has none."""
        raise NotImplementedError(f"task {self.name!r} has no floor (input-free predictor): "
                                  "override Task.floor(ctx) to give it one")

    @classmethod
    def has_floor(cls) -> bool:
        """Whether the task has a floor, i.e. overrides `floor`."""
        return cls.floor is not Task.floor
