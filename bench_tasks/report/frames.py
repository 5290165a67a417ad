"""Result rows as data frames: `rows_to_frames` (one row per ok result with its headline value, the
failed rows, every backbone's MethodInfo; a method's pre-training runs pooled as one table row),
`aggregate` (mean, std, n and the study-design interval per cell), and the selections the tables
share (`pick_protocol`, `pick_fraction`)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench_tasks.stats.scores import TOO_FEW_ITEMS
from bench_tasks.store.rowfiles import WORKER_SUFFIX

from .compare import _mean_ci, design_interval
from .naming import MethodInfo, canon_dataset, lower_is_better, method_info


def rows_to_frames(rows: list[dict]):
    """-> (ok DataFrame: one row per ok result with its headline value, failed DataFrame,
    {uri: MethodInfo} from the rows' method blocks, problems: list of str)."""
    methods: dict[str, MethodInfo] = {}
    recorded: set[str] = set()  # URIs whose MethodInfo comes from a row's own block
    ok, failed, problems = [], [], []
    for r in rows:
        cell = r.get("cell") or {}
        uri = str(cell.get("backbone", "?"))
        if uri not in recorded and (uri not in methods or r.get("method")):
            methods[uri] = method_info(r)
            if r.get("method"):
                recorded.add(uri)
        base = {
            "key": r.get("key"), "uri": uri, "task": str(cell.get("task", "?")),
            "dataset": canon_dataset(cell.get("dataset", "?")), "protocol": str(cell.get("protocol", "?")),
            "fraction": to_float(cell.get("fraction", 1.0), 1.0), "seed": cell.get("seed", 0),
            "profile": cell.get("profile"), "provenance": r.get("provenance") or {},
        }
        if r.get("status") != "ok":
            failed.append({**base, "status": r.get("status", "?"), "error": r.get("error")})
            continue
        metrics = r.get("metrics") or {}
        headline = r.get("headline")
        if not headline or to_float(metrics.get(headline)) is None:
            problems.append(f"{_label(base)}: status ok but headline metric {headline!r} missing from metrics")
            continue
        hib = r.get("higher_is_better")
        hib = (not lower_is_better(headline)) if hib is None else bool(hib)
        ci = (r.get("ci") or {}).get(headline)
        ci = [float(ci[0]), float(ci[1])] if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci else None
        items = (r.get("artifacts") or {}).get("items")
        if items and r.get("_source"):
            items = _artifact_path(r["_source"], items)
        task_cfg = (r.get("config") or {}).get("task") or {}
        farl = task_cfg.get("farl") or {}
        ok.append({**base, "metric": headline, "higher_is_better": hib, "value": to_float(metrics[headline]),
                   "slices": r.get("slices") or {}, "kind": methods[uri].kind, "ci": ci,
                   "ci_all": r.get("ci") or {}, "metrics": metrics, "items": items,
                   "farl_exact": bool(farl.get("farl_exact")),
                   # fewer test items than stats.MIN_TEST_ITEMS: no interval, no verdict
                   "too_few": task_cfg.get("verdict") == TOO_FEW_ITEMS,
                   # the head's hyper-parameter chosen on val (protocols.selection), when a grid ran
                   "selection": task_cfg.get("selection"),
                   "image_size": task_cfg.get("image_size") or task_cfg.get("size") or farl.get("input_size"),
                   "method_label": methods[uri].label,  # before _disambiguate: shared by a method's runs
                   "pretrain_seed": (r.get("method") or {}).get("pretrain_seed")})
    ok_cols = ["key", "uri", "task", "dataset", "protocol", "fraction", "seed", "profile", "provenance",
               "metric", "higher_is_better", "value", "slices", "kind", "ci", "ci_all", "metrics", "items",
               "farl_exact", "too_few", "selection", "image_size", "method_label", "pretrain_seed"]
    df = pd.DataFrame(ok, columns=ok_cols)
    fdf = pd.DataFrame(failed, columns=["key", "uri", "task", "dataset", "protocol", "fraction", "seed",
                                        "profile", "provenance", "status", "error"])
    runs_of = _pretraining_runs(methods)
    for frame in (df, fdf):
        frame["run"] = list(frame["uri"])  # the backbone: one pre-training run
        frame["uri"] = [runs_of.get(u, u) for u in frame["uri"]]  # the method's row in the tables
    _disambiguate({u: m for u, m in methods.items() if u not in runs_of})
    for frame in (df, fdf):
        frame["method"] = [methods[u].label for u in frame["uri"]]
    return df, fdf, methods, problems


RUNS_PREFIX = "runs:"


def _pretraining_runs(methods: dict[str, MethodInfo]) -> dict[str, str]:
    """{backbone URI: method key} for methods whose label several backbones share: they are that
    method's pre-training runs (rows of one method at several pre-training seeds carry its label and
    a `pretrain_seed`), shown as ONE table row ("runs:<label>", added to `methods`) whose interval
    resamples the runs (bench_tasks.stats). Floors are never grouped."""
    by_label: dict[str, list[str]] = {}
    for u, m in methods.items():
        if m.kind != "floor" and not u.startswith(RUNS_PREFIX):
            by_label.setdefault(m.label, []).append(u)
    out = {}
    for label, uris in by_label.items():
        if len(uris) < 2:
            continue
        key = RUNS_PREFIX + label
        first = methods[uris[0]]
        methods[key] = MethodInfo(key, label, first.method, first.kind, first.group, first.setting, first.run,
                                  dict(first.settings), {}, {}, first.order)
        for u in uris:
            out[u] = key
    return out


def _artifact_path(source: str, rel: str) -> str:
    """An artifact path of a row read from `source`: relative to the results folder, which for a
    worker's row file (results/<profile>.d/<worker>.jsonl, bench_tasks.store.rowfiles) is the folder above."""
    folder = Path(source).parent
    if folder.name.endswith(WORKER_SUFFIX) and not (folder / rel).exists():
        folder = folder.parent
    return str(folder / rel)


def _disambiguate(methods: dict[str, MethodInfo]) -> None:
    seen: dict[str, list[str]] = {}
    for uri, m in methods.items():
        seen.setdefault(m.label, []).append(uri)
    for label, uris in seen.items():
        if len(uris) > 1:
            for u in uris:
                methods[u].label = f"{label} [{u}]"


def _label(base: dict) -> str:
    return (f"{base['uri']} | {base['task']}/{base['dataset']} | {base['protocol']} "
            f"| frac={base['fraction']:g} | seed={base['seed']}")


def cell_label(row) -> str:
    return _label(dict(row))


def to_float(v, default=None):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(f) else f


def pick_protocol(df: pd.DataFrame, preferred: str = "linear") -> str | None:
    if df.empty:
        return None
    protos = list(dict.fromkeys(df["protocol"]))
    return preferred if preferred in protos else protos[0]


def pick_fraction(df: pd.DataFrame) -> float | None:
    if df.empty:
        return None
    fr = sorted(set(df["fraction"]))
    return 1.0 if 1.0 in fr else fr[-1]


def aggregate(df: pd.DataFrame, pool_df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean, sample std (NaN for one seed), n per (uri, task, dataset, metric, protocol, fraction), and
    the 95 % interval of the mean under the study's design (compare.design_interval: test items, or
    identities, shared by the seeds, plus the seed spread of the cell's pool; `covers` says what it
    resamples); rows without per-item scores: the mean of their per-seed intervals."""
    cols = ["uri", "method", "task", "dataset", "metric", "higher_is_better", "protocol", "fraction"]
    if df.empty:
        return pd.DataFrame(columns=cols + ["mean", "std", "n", "ci", "covers"])
    g = df.groupby(cols, sort=False, dropna=False)["value"]
    out = g.agg(mean="mean", std=lambda s: s.std(ddof=1) if len(s) > 1 else float("nan"), n="count").reset_index()
    if "ci" in df:
        pool_df = df if pool_df is None else pool_df
        cis, covers = [], []
        for _, grp in df.groupby(cols, sort=False, dropna=False):
            got = design_interval(pool_df, grp, grp["metric"].iloc[0]) if "items" in grp else None
            cis.append([got[0], got[1]] if got else _mean_ci(list(grp["ci"])))
            covers.append(got[2] if got else "per-seed intervals averaged")
        out["ci"], out["covers"] = cis, covers
    else:
        out["ci"], out["covers"] = None, None
    return out
