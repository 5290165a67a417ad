"""Reference cells every plan gets next to its encoders' cells, so each score can be read against
what no encoder and a fully supervised network achieve:
  * floors (`floor:input-free`, protocol `floor`): one per (task, dataset, profile) of the plan,
    computed from the labels alone (bench_tasks.plan.floors) in seconds;
  * ceilings (`supervised:<arch spec>`, protocol `finetune`, fraction 1.0, the plan's seeds):
    the architecture of the plan's encoders trained end to end from random init with the task's
    labels at the profile's fine-tune budget, whatever protocols the plan lists (the arch comes
    from `random:` / `supervised:` URIs, from a `paco_fr:` file's metadata, or is given), built at
    the size the encoder is evaluated at (the task's input size under the cell's profile), not the
    checkpoint's native size;
  * random-init controls (`random:<arch spec>`, the same architecture at the evaluation size): every
    cell of an encoder that is not itself a random init, repeated with the random init, so the
    encoder's score can be read against its own architecture untrained;
  * a probe next to each encoder's cells of a task that has one (`PROBE_PROTOCOLS`; one per
    backbone, dataset and seed, fraction 1.0), so a weak head cannot make an encoder look worse than
    it is: recognition's parameter-free cosine probe, and for attributes and expression a logistic
    regression on the concatenated pooled features next to FaRL's averaging head.

    cells = with_references(cells, ceilings="auto")   # or ceilings=None, or ["supervised:vit_tiny@64/8/d2"]
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from bench_tasks.backbones.base import family_of
from bench_tasks.backbones.native import vit_shape
from bench_tasks.contracts import BackboneURI, Cell, Profile, uri_parts
from bench_tasks.plan.floors import FLOOR_PROTOCOL, FLOOR_URI, has_floor, is_floor
from bench_tasks.plan.profiles import get_profile
from bench_tasks.plan.suite import random_control, suite_runs
from bench_tasks.registry import TASKS
from bench_tasks.tasks._ceiling import is_ceiling

CEILING_PROTOCOL = "finetune"
COSINE_PROTOCOL = "cosine"
# task -> the protocol of its probe (a protocol the task implements)
PROBE_PROTOCOLS = {"recognition": COSINE_PROTOCOL, "attributes": "concat", "expression": "concat"}


def is_probe(cell_or_protocol, task: str | None = None) -> bool:
    """Whether a cell (or a task's protocol) is its task's probe."""
    if task is None:
        task, protocol = cell_or_protocol.task, cell_or_protocol.protocol
    else:
        protocol = cell_or_protocol
    return PROBE_PROTOCOLS.get(task) == protocol


def is_reference(uri: str) -> bool:
    return is_floor(uri) or is_ceiling(uri)


def floor_cell(task: str, dataset: str, profile: str) -> Cell:
    return Cell(backbone=FLOOR_URI, task=task, dataset=dataset, protocol=FLOOR_PROTOCOL, fraction=1.0,
                seed=0, profile=profile)


def ceiling_uri(uri: str, size: int | None = None) -> str | None:
    """`supervised:<arch spec>` with the architecture of backbone `uri` and its native input size, or
    `size` (the size it is evaluated at) when given, when it can be told without loading weights
    (`ceiling_reason` says why not); else None."""
    got = _ceiling(uri)[0]
    return at_size(got, size) if got is not None and size else got


def control_uri(uri: str, size: int | None = None) -> str | None:
    """The random-init control of backbone `uri`: `random:` of its architecture at `size`; None for a
    reference, a random init itself, or an architecture that cannot be told."""
    if is_reference(uri) or uri_parts(uri)[0] == "random":
        return None
    got = ceiling_uri(uri, size)
    return str(BackboneURI.parse(got).with_scheme("random")) if got else None


def at_size(uri: str, size: int) -> str:
    """`<scheme>:<arch>@<size>/<patch>[/d<depth>]`: the spec's input size replaced by `size` (a spec
    without one, `random:vit_tiny`, already runs at the task's size: unchanged)."""
    scheme, spec = uri_parts(uri)
    arch, sep, shape = spec.partition("@")
    if not sep:
        return uri
    parts = shape.split("/")
    parts[0] = str(int(size))
    return f"{scheme}:{arch}@{'/'.join(parts)}"


def arch_key(uri: str) -> tuple | None:
    """(arch, patch, depth) of a backbone, its input size left out: what an encoder, its random init
    and its ceiling share whatever size each was built at."""
    got = ceiling_uri(uri)
    if got is None:
        return None
    arch, _, shape = uri_parts(got)[1].partition("@")
    parts = shape.split("/") if shape else []
    patch = parts[1] if len(parts) > 1 and parts[1] else "16"
    depth = parts[2] if len(parts) > 2 else ""
    return arch, patch, depth


def same_architecture(a: str, b: str) -> bool:
    ka = arch_key(a)
    return ka is not None and ka == arch_key(b)


def evaluation_size(task: str, profile: str, profiles: Mapping[str, Profile] | None = None) -> int | None:
    """The input size a cell of `task` runs at under profile `profile`: the Profile `profiles` holds
    under that name (the plan's), else the bundled one (None when the profile is not known here)."""
    try:
        prof = (profiles or {}).get(profile) or get_profile(profile)
        return int(TASKS.get(task)().image_size(prof))
    except Exception:  # noqa: BLE001 - a profile file not registered: the native size stays
        return None


def ceiling_reason(uri: str) -> str | None:
    """Why backbone `uri` gets no ceiling (None when it gets one)."""
    return _ceiling(uri)[1]


# the architectures `supervised:` builds, by width (paco_fr.backbone.ARCHS); CLIP's ViT-B by its keys
_ARCH_BY_WIDTH = {192: "vit_tiny", 384: "vit_small", 768: "vit_base", 1024: "vit_large"}
_PLAIN_TIMM_VIT = re.compile(r"^vit_(tiny|small|base|large)_patch(\d+)_(\d+)(\.[\w-]+)?$")


def _ceiling(uri: str) -> tuple[str | None, str | None]:
    if is_floor(uri):
        return None, "a floor has no ceiling"
    scheme, rest = uri_parts(uri)
    if scheme in ("random", "supervised") and rest:
        return f"supervised:{rest}", None
    if scheme == "paco_fr" and rest:
        got = _paco_fr_arch(rest) or _study_arch(rest)
        return (got, None) if got else (None, f"its file {rest} is not there (or has no arch metadata)")
    own = family_of(scheme)
    if own.reference is not None and rest:  # the family's own answer (a CNN's timm name, an iResNet, a HF ViT)
        try:
            arch = own.reference(rest)
        except Exception as err:  # noqa: BLE001 - a plan line, not an error
            return None, f"its architecture could not be read ({type(err).__name__}: {err})"
        if arch:
            return f"supervised:{arch}", None
        if scheme != "timm":
            why = own.reference_reason(rest) if own.reference_reason else None
            return None, why or f"the `{scheme}:` family has no `supervised:` architecture for it"
    if scheme == "timm":
        name = BackboneURI.parse(uri).name if rest else ""
        if not _PLAIN_TIMM_VIT.match(name):
            return None, (f"timm model {name!r} is not one of the plain ViTs (vit_tiny/small/base/large_patch*) "
                          "that `supervised:` trains from scratch")
    if scheme in ("timm", "mae", "mcf", "farl") and rest:
        try:
            shape = vit_shape(uri)
        except Exception as err:  # noqa: BLE001 - a plan line, not an error
            return None, f"its architecture could not be read ({type(err).__name__}: {err})"
        if shape is None:
            return None, "its architecture could not be read without building it (a missing file?)"
        dim, depth, patch, native = shape
        arch = "vit_base_clip" if scheme == "farl" and dim == 768 else _ARCH_BY_WIDTH.get(dim)
        if arch is None:
            return None, (f"its width {dim} is none of the architectures `supervised:` builds "
                          f"({', '.join(f'{a} {w}' for w, a in _ARCH_BY_WIDTH.items())})")
        if native is None:
            return None, "its input size could not be read"
        return f"supervised:{arch}@{native}/{patch}/d{depth}", None
    return None, f"the `{scheme}:` scheme does not tell its architecture"


def _study_arch(path: str) -> str | None:
    """A study encoder's arch spec from its place (<runs>/<profile>/<run>/encoder.safetensors) when
    the file is gone (rows kept without their run folder): the suite's architecture of that profile."""
    p = Path(path)
    if p.name != "encoder.safetensors" or len(p.parts) < 3:
        return None
    profile, run = p.parts[-3], p.parts[-2]
    runs, arch = _suite_arch(profile)
    return arch if run in runs else None


@functools.lru_cache(maxsize=8)
def _suite_arch(profile: str) -> tuple[frozenset, str | None]:
    """(the run names of profile `profile`'s suite, the ceiling spec of its architecture); (∅, None)
    for a profile that is not a study's. Read once per profile: a plan asks it for every cell of
    every study encoder not written yet."""
    try:
        runs = frozenset(r.name for r in suite_runs(True, profile))
        return runs, str(BackboneURI.parse(random_control(profile)).with_scheme("supervised"))
    except Exception:  # noqa: BLE001 - not a study profile
        return frozenset(), None


def matching_ceiling(encoder_uri: str, ceiling_uris: Iterable[str]) -> str | None:
    """The ceiling a gain of `encoder_uri` is computed against: among `ceiling_uris`, the one of the
    same architecture and input size (`ceiling_uri(encoder_uri)`); None when there is none (no gain
    rather than a gain against another architecture's ceiling). Rows compared must also share their
    profile, task and dataset (the report groups them so)."""
    want = ceiling_uri(encoder_uri)
    ceiling_uris = list(dict.fromkeys(ceiling_uris))
    if want is not None and want in ceiling_uris:
        return want
    # a ceiling built at the evaluation size rather than the checkpoint's native one: the same
    # architecture, patch and depth (rows compared share their profile and task, hence their size)
    same = [u for u in ceiling_uris if is_ceiling(u) and same_architecture(encoder_uri, u)]
    return same[0] if len(same) == 1 else None


def ceiling_lines(cells: Sequence[Cell], enabled: bool = True) -> list[str]:
    """One line per ceiling of the plan (which encoders it is the ceiling of, at which size), one per
    random-init control, and one per encoder without a ceiling (why not)."""
    enc = list(dict.fromkeys(c.backbone for c in cells if not is_reference(c.backbone)))
    if not enc:
        return []
    planned = list(dict.fromkeys(c.backbone for c in cells if is_ceiling(c.backbone)))
    controls = {c.backbone for c in cells if uri_parts(c.backbone)[0] == "random"}
    out, head = [], []
    served: dict[str, list[str]] = {}  # random-init control -> the encoders it is the control of
    for uri in enc:
        u, why = _ceiling(uri)
        if u is None:
            if enabled:  # with --no-ceilings the first line says it for every encoder
                out.append(f"ceiling: none for {uri}: {why}")
            continue
        native = u.partition("@")[2].split("/")[0] or "any"
        mine = [p for p in planned if same_architecture(uri, p)]
        if enabled:
            for p in mine:
                head.append(f"ceiling: {p} (the architecture of {uri}, built at the size it is evaluated at; "
                            f"native size {native})")
            if not mine:
                head.append(f"ceiling: {u} (the architecture of {uri}; not in this plan: its tasks have no "
                            "fine-tune protocol)")
        if uri_parts(uri)[0] == "random":
            continue  # a random init is its own control
        for ctrl in sorted(c for c in controls if same_architecture(uri, c)):
            served.setdefault(ctrl, []).append(uri)
    for ctrl, encoders in served.items():  # one line per control, however many encoders share it
        of = encoders[0] if len(encoders) == 1 else f"{encoders[0]} and {len(encoders) - 1} more encoder(s)"
        head.append(f"random-init control: {ctrl} (the architecture of {of}, untrained, every cell of it)")
    if not enabled:
        head.insert(0, "ceilings: none (--no-ceilings): no normalised gain in the report")
    return list(dict.fromkeys(head)) + out


def _paco_fr_arch(path: str) -> str | None:
    """The arch spec of an exported paco_fr encoder from its safetensors header (arch, img_size,
    patch_size metadata; depth = number of `blocks.<i>.` groups)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return None
    meta = header.get("__metadata__") or {}
    arch = meta.get("arch")
    if not arch:
        return None
    blocks = {k.split("blocks.", 1)[1].split(".", 1)[0] for k in header if "blocks." in k}
    spec = f"supervised:{arch}"
    if meta.get("img_size") and meta.get("patch_size"):
        spec += f"@{int(meta['img_size'])}/{int(meta['patch_size'])}"
        depth = meta.get("depth") or len(blocks)
        if depth:
            spec += f"/d{int(depth)}"
    return spec


def reference_cells(cells: Sequence[Cell], ceilings: str | Iterable[str] | None = "auto",
                    probes: bool = True, controls: bool = True,
                    profiles: Profile | Mapping[str, Profile] | None = None) -> list[Cell]:
    """The floor, ceiling and probe cells for a plan (not including `cells` themselves). `profiles`:
    the Profile the cells name (or {name: Profile}); a name not given is the bundled profile's."""
    profiles = {profiles.name: profiles} if isinstance(profiles, Profile) else dict(profiles or {})
    enc = [c for c in cells if not is_reference(c.backbone)]
    out: list[Cell] = []
    # floors: every (task, dataset, profile) whose task has an input-free predictor
    for key in dict.fromkeys((c.task, c.dataset, c.profile) for c in cells if not is_floor(c.backbone)):
        if has_floor(key[0]):
            out.append(floor_cell(*key))
    # random-init controls: the encoder's cells again with its architecture untrained, at the size
    # each cell runs at
    if controls:
        for c in enc:
            ctrl = control_uri(c.backbone, evaluation_size(c.task, c.profile, profiles))
            if ctrl is not None:
                out.append(Cell(ctrl, c.task, c.dataset, c.protocol, c.fraction, c.seed, c.profile))
    # ceilings: at each task's evaluation size
    sized: dict[tuple, list[str]] = {}
    if ceilings == "auto":
        for c in enc:
            u = ceiling_uri(c.backbone, evaluation_size(c.task, c.profile, profiles))
            if u and u not in sized.setdefault((c.task, c.dataset, c.profile), []):
                sized[(c.task, c.dataset, c.profile)].append(u)
        uris = list(dict.fromkeys(u for us in sized.values() for u in us))
    elif ceilings is None:
        uris = []
    else:
        uris = [ceilings] if isinstance(ceilings, str) else list(ceilings)
        for u in uris:
            if not is_ceiling(u):
                raise ValueError(f"ceiling {u!r} is not a supervised:<arch spec> URI")
    if uris:
        groups: dict[tuple, list[int]] = {}
        for c in cells:
            if not is_floor(c.backbone):
                groups.setdefault((c.task, c.dataset, c.profile), [])
                if c.seed not in groups[(c.task, c.dataset, c.profile)]:
                    groups[(c.task, c.dataset, c.profile)].append(c.seed)
        for u in uris:
            for (task, ds, prof), seeds in groups.items():
                if CEILING_PROTOCOL not in TASKS.get(task).protocols:
                    continue
                if sized and u not in sized.get((task, ds, prof), ()):
                    continue  # another task's evaluation size
                for s in seeds:
                    out.append(Cell(u, task, ds, CEILING_PROTOCOL, 1.0, s, prof))
    # each task's probe next to every encoder's cells of that task
    if probes:
        for c in enc:
            probe = PROBE_PROTOCOLS.get(c.task)
            if probe and probe != c.protocol and probe in TASKS.get(c.task).protocols:
                out.append(Cell(c.backbone, c.task, c.dataset, probe, 1.0, c.seed, c.profile))
    return out


def with_references(cells: Sequence[Cell], ceilings: str | Iterable[str] | None = "auto",
                    probes: bool = True, controls: bool = True,
                    profiles: Profile | Mapping[str, Profile] | None = None) -> list[Cell]:
    """The plan with its reference cells: floors first (cheap, and the report needs them),
    then the plan, then random-init controls, ceilings and probes; duplicates removed (order kept).
    `profiles`: as reference_cells."""
    refs = reference_cells(cells, ceilings, probes, controls, profiles)
    floors = [c for c in refs if is_floor(c.backbone)]
    rest = [c for c in refs if not is_floor(c.backbone)]
    seen: set[str] = set()
    out = []
    for c in [*floors, *cells, *rest]:
        k = c.key()
        if k not in seen:
            seen.add(k)
            out.append(c)
    return out
