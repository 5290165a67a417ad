"""What the ceilings' targets would take: floor, random-init and ceiling against the number of
labelled training images.

A label-scaling study is an ordinary set of cells run with `--set synthface_train=N` (and, for the
ceilings, `--set ceiling_epochs=E`) into a results file of its own, e.g.
`results/cpu_label_scaling/rows.jsonl` (made by `scripts/device_ceiling_scaling.sh`, whose
`commands.txt` lists every command). This module reads such rows only: it groups them by task and
encoder (floor, random-init per protocol, ceiling per epoch count and recognition margin) and puts
each encoder's headline metric, with its 95 % bootstrap interval over test items, in one column per
labelled-set size (the row's `config.profile.synthface_train`). `python -m bench_tasks report
--label-scaling FILE` writes it as `label_scaling.md` and appends it to the calibration table.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench_tasks.contracts import uri_scheme
from bench_tasks.tasks._ceiling import ceiling_epochs_for

from .calibration import CEILING_TARGETS

_KIND_ORDER = {"floor": 0, "random": 1, "supervised": 2}


@dataclass(frozen=True)
class Point:
    task: str
    metric: str
    higher_is_better: bool
    encoder: str  # the table's row label
    order: tuple  # sort key of the row label
    n_train: int
    value: float
    ci: tuple[float, float] | None
    device: str


def read_rows(paths) -> list[dict]:
    """Every row of the JSONL files (folders: their *.jsonl), one per (key, settings hash): unlike
    the main report, cells that differ only in a setting (here the labelled-set size) are kept
    apart. Unreadable lines are skipped."""
    seen, out = set(), []
    for p in [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]:
        for f in sorted(p.glob("*.jsonl")) if p.is_dir() else [p]:
            if not f.exists():
                raise FileNotFoundError(f"label-scaling results {f}: no such file")
            for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and (k := (row.get("key"), row.get("settings_hash"))) not in seen:
                    seen.add(k)
                    out.append(row)
    return out


def _recognition_recipe(profile_snapshot: dict) -> str:
    rec = dict((profile_snapshot.get("extra") or {}).get("recognition") or {})
    margin = rec.get("margin", "arcface")
    m = rec.get("m")
    if m is None:
        m = 0.5 if margin == "arcface" else 0.35
    return "normalised softmax (m=0)" if float(m) == 0.0 else f"{margin} m={float(m):g}"


def points(rows: list[dict]) -> list[Point]:
    """One Point per ok row of a floor, random-init or supervised encoder with a labelled-set size."""
    out = []
    for r in rows:
        if r.get("status") != "ok":
            continue
        cell, cfg = r.get("cell") or {}, r.get("config") or {}
        prof = cfg.get("profile") or {}
        n = prof.get("synthface_train")
        metric = r.get("headline")
        value = (r.get("metrics") or {}).get(metric)
        kind = uri_scheme(cell.get("backbone", ""))
        if n is None or value is None or kind not in _KIND_ORDER:
            continue
        task, protocol = cell.get("task"), cell.get("protocol")
        if kind == "floor":
            label, sub = "floor", ()
        elif kind == "random":
            label, sub = f"random-init ({protocol})", (protocol,)
        else:
            epochs = ceiling_epochs_for(prof.get("extra"), task) or (cfg.get("task") or {}).get("epochs") or 0
            epochs = int(epochs)
            recipe = _recognition_recipe(prof) if task == "recognition" else ""
            label = f"ceiling, {epochs} ep" + (f", {recipe}" if recipe else "")
            sub = (recipe, -epochs)
        ci = (r.get("ci") or {}).get(metric)
        out.append(Point(task=task, metric=metric, higher_is_better=bool(r.get("higher_is_better", True)),
                         encoder=label, order=(_KIND_ORDER[kind], *sub), n_train=int(n), value=float(value),
                         ci=tuple(ci) if ci else None,
                         device=str((r.get("provenance") or {}).get("device", ""))))
    return out


def _fmt(p: Point | None) -> str:
    if p is None:
        return "—"
    return f"{p.value:.2f}" + (f" [{p.ci[0]:.2f}, {p.ci[1]:.2f}]" if p.ci else "")


def _meets(p: Point, target: float) -> bool:
    return p.value >= target if p.higher_is_better else p.value <= target


def label_scaling_markdown(rows: list[dict], title: str = "What the ceilings' targets would take") -> str | None:
    """The label-scaling table as markdown (None without points). One section per task: rows are
    encoders, columns labelled-set sizes; a repeated (task, encoder, size) keeps its first row."""
    pts = points(rows)
    if not pts:
        return None
    by_task: dict[str, dict[tuple, dict[int, Point]]] = defaultdict(lambda: defaultdict(dict))
    for p in pts:
        by_task[p.task][(p.order, p.encoder)].setdefault(p.n_train, p)
    sizes = sorted({p.n_train for p in pts})
    devices = sorted({p.device for p in pts if p.device})
    lines = [f"## {title}", "",
             "Headline metric against the number of labelled SynthFace training images (`--set "
             "synthface_train=N`; the validation and test splits and everything else as the profile), "
             "95 % bootstrap interval over test items in [ ], one seed. The ceiling is the same "
             "architecture trained end to end from random init with the task's labels"
             + (f"; computed on {', '.join(devices)}" if devices else "") + ".", "",
             "| task | encoder | " + " | ".join(f"{n:,} images" for n in sizes) + " | ceiling target |",
             "|---|---|" + "---|" * len(sizes) + "---|"]
    verdicts = []
    for task in sorted(by_task):
        enc = by_task[task]
        target = CEILING_TARGETS.get(task)
        first = next(iter(next(iter(enc.values())).values()))
        arrow = "↑" if first.higher_is_better else "↓"
        for (_, label), per_n in sorted(enc.items()):
            tgt = "" if target is None or not label.startswith("ceiling") else f"{'≥' if first.higher_is_better else '≤'} {target:g}"
            lines.append(f"| {task} ({first.metric} {arrow}) | {label} | "
                         + " | ".join(_fmt(per_n.get(n)) for n in sizes) + f" | {tgt} |")
        if target is not None:
            met = sorted((p.n_train, label) for (_, label), per_n in enc.items() if label.startswith("ceiling")
                         for p in per_n.values() if _meets(p, target))
            best = [p for (_, label), per_n in enc.items() if label.startswith("ceiling") for p in per_n.values()]
            if met:
                verdicts.append(f"{task}: the target is met with {met[0][0]:,} labelled images ({met[0][1]}).")
            elif best:
                b = max(best, key=lambda p: p.value if p.higher_is_better else -p.value)
                verdicts.append(f"{task}: no ceiling here meets the target; the best is {_fmt(b)} "
                                f"({b.encoder}, {b.n_train:,} images).")
    lines += [""] + [f"- {v}" for v in verdicts]
    return "\n".join(lines) + "\n"
