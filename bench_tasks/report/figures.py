"""Figures: data-efficiency curves, robustness slices, codebook-size reconstructions.

Every function returns the written path (or None) and never raises on missing data; callers
get a note saying why nothing was drawn.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from paco_fr.atomic import temp_beside

from .columns import add_references
from .compare import protocol_mask, protocol_text, references
from .naming import MethodInfo, dataset_name, metric_name, task_name, task_sort_key  # noqa: E402

DPI = 130


def _panels(keys: list, max_cols: int = 3, w: float = 4.6, h: float = 3.6):
    n = len(keys)
    ncols = min(max_cols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(w * ncols, 7.5), h * nrows + 0.8), squeeze=False)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend_space(fig, n_handles: int) -> float:
    """Fraction of the figure height to keep free at the bottom for a legend of 5 columns."""
    rows = math.ceil(max(1, n_handles) / 5)
    return min(0.4, (0.15 + 0.28 * rows) / fig.get_figheight())


def _method_palette(labels: list[str]) -> dict[str, tuple]:
    import seaborn as sns  # lazy: seaborn only when a figure is drawn

    refs = {m: (0.72, 0.72, 0.72) if m.startswith("Floor") else (0.3, 0.3, 0.3)
            for m in labels if m.startswith(("Floor", "Ceiling"))}  # references in greys
    rest = [m for m in labels if m not in refs]
    cols = sns.color_palette("tab10" if len(rest) <= 10 else "tab20", n_colors=max(10, len(rest)))
    return {**{m: cols[i % len(cols)] for i, m in enumerate(rest)}, **refs}


def data_efficiency_figure(df_ok: pd.DataFrame, methods: dict[str, MethodInfo], protocol: str | None,
                           out_path: str | Path) -> tuple[Path | None, str | None]:
    """Headline score vs training fraction (log x), one line per method, one panel per
    task/dataset; error bars = sd over seeds, or the row's 95 % bootstrap interval with one seed."""
    if df_ok.empty or not protocol:
        return None, "no ok rows"
    refs = references(df_ok)
    sub = df_ok[protocol_mask(df_ok, protocol)]
    sub = sub[~sub["kind"].isin(["floor", "ceiling"])] if "kind" in sub else sub
    fracs = sorted(set(sub["fraction"]))
    if len(fracs) < 2:
        return None, (f"only one training fraction ({fracs[0]:g}) under protocol `{protocol}`; "
                      "data-efficiency curves need at least two" if fracs else "no rows")
    # only (method, task, dataset) series with at least two fractions make a curve
    nfr = sub.groupby(["uri", "task", "dataset"])["fraction"].transform("nunique")
    sub = sub[nfr >= 2].copy()
    if sub.empty:
        return None, f"no method has results at two or more training fractions under protocol `{protocol}`"
    fracs = sorted(set(sub["fraction"]))
    sub["order"] = [methods[u].order for u in sub["uri"]]
    sub = sub.sort_values("order")
    hue_order = list(dict.fromkeys(sub["method"]))
    palette = _method_palette(hue_order)
    keys = sorted({(t, d) for t, d in zip(sub["task"], sub["dataset"])}, key=lambda k: (task_sort_key(k[0]), k[1]))
    fig, axes = _panels(keys)
    drawn = {"floor": False, "ceiling": False}
    n_seeds = set()
    for ax, (task, ds) in zip(axes, keys):
        d = sub[(sub["task"] == task) & (sub["dataset"] == ds)]
        metric = d["metric"].iloc[0]
        for m in [m for m in hue_order if m in set(d["method"])]:
            pts = _points_with_error(d[d["method"] == m])
            n_seeds |= set(pts["n"])
            ax.errorbar(pts["fraction"], pts["mean"], yerr=[pts["err_lo"], pts["err_hi"]], color=palette[m],
                        marker="o", capsize=3, lw=1.5)
        ax.set_xscale("log")
        ax.set_xticks(fracs)
        ax.set_xticklabels([f"{f:g}" for f in fracs])
        ax.minorticks_off()
        arrow = "↑" if bool(d["higher_is_better"].iloc[0]) else "↓"
        ax.set_title(f"{task_name(task)} · {dataset_name(ds)}")
        ax.set_xlabel("training fraction (log)")
        ax.set_ylabel(f"{metric_name(metric)} {arrow}")
        ax.grid(alpha=0.3)
        ref = refs.get((task, ds))
        if ref is not None and ref.floor is not None:
            ax.axhline(ref.floor, color="0.35", ls="--", lw=1.2)
            drawn["floor"] = True
        if ref is not None and ref.ceiling is not None:
            ax.axhline(ref.ceiling, color="0.35", ls=":", lw=1.4)
            drawn["ceiling"] = True
    handles = [plt.Line2D([], [], color=palette[m], marker="o", label=m) for m in hue_order]
    # the legend names a reference line only when some panel draws it
    if drawn["floor"]:
        handles.append(plt.Line2D([], [], color="0.35", ls="--", label="floor (input-free)"))
    if drawn["ceiling"]:
        handles.append(plt.Line2D([], [], color="0.35", ls=":", label="ceiling (supervised, fraction 1)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"Data efficiency (protocol {protocol_text(protocol)}; {_error_text(n_seeds)})")
    fig.tight_layout(rect=(0, _legend_space(fig, len(handles)), 1, 1))
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=DPI)
    plt.close(fig)
    return out_path, None


def _points_with_error(d: pd.DataFrame) -> pd.DataFrame:
    """Per training fraction: mean over seeds and the error bar below / above it: ± the sd over
    seeds when there are several, else the one row's 95 % bootstrap interval (0 without one)."""
    recs = []
    for frac, g in d.groupby("fraction", sort=True):
        mean = float(g["value"].mean())
        if len(g) > 1:
            lo = hi = float(g["value"].std(ddof=1))
        else:
            ci = g["ci"].iloc[0] if "ci" in g else None
            ok = isinstance(ci, (list, tuple)) and len(ci) == 2
            lo, hi = (max(0.0, mean - float(ci[0])), max(0.0, float(ci[1]) - mean)) if ok else (0.0, 0.0)
        recs.append({"fraction": frac, "mean": mean, "err_lo": lo, "err_hi": hi, "n": len(g)})
    return pd.DataFrame(recs)


def _error_text(n_seeds: set) -> str:
    if n_seeds and min(n_seeds) > 1:
        return "mean ± sd over seeds"
    if n_seeds == {1}:
        return "one seed: bars = 95 % bootstrap interval over test items"
    return "bars: ± sd over seeds, or the 95 % bootstrap interval where one seed"


def slice_frame(df_ok: pd.DataFrame, protocol, fraction) -> pd.DataFrame:
    """Long frame of slice metrics: method, uri, task, dataset, slice, factor, level, metric, value, seed."""
    recs = []
    if df_ok.empty:
        return pd.DataFrame(columns=["method", "uri", "task", "dataset", "slice", "factor", "level", "metric",
                                     "value", "seed", "higher_is_better"])
    sub = df_ok[protocol_mask(df_ok, protocol) & (df_ok["fraction"] == fraction)]
    sub = add_references(sub, df_ok)  # floors and ceilings are bars of their own
    for _, r in sub.iterrows():
        for sname, vals in (r["slices"] or {}).items():
            if not isinstance(vals, dict) or not vals:
                continue
            metric = r["metric"] if r["metric"] in vals else next(iter(vals))
            try:
                v = float(vals[metric])
            except (TypeError, ValueError):
                continue
            factor, _, level = str(sname).partition(":")
            recs.append({"method": r["method"], "uri": r["uri"], "task": r["task"], "dataset": r["dataset"],
                         "slice": sname, "factor": factor, "level": level or factor, "metric": metric, "value": v,
                         "seed": r["seed"], "higher_is_better": r["higher_is_better"] if metric == r["metric"]
                         else not metric.lower().startswith("nme")})
    return pd.DataFrame(recs, columns=["method", "uri", "task", "dataset", "slice", "factor", "level", "metric",
                                       "value", "seed", "higher_is_better"])


def slices_figure(sf: pd.DataFrame, methods: dict[str, MethodInfo], out_path: str | Path,
                  title: str = "") -> tuple[Path | None, str | None]:
    """One panel per task/dataset: x = slice (grouped by factor), bars = methods (mean over seeds,
    error bar = sd)."""
    import seaborn as sns  # lazy: seaborn only when a figure is drawn

    if sf.empty:
        return None, "no row has robustness `slices`"
    main = sf[[methods[u].kind != "ablation" for u in sf["uri"]]]
    sf = (main if not main.empty else sf).copy()  # ablations stay in slices.csv; the figure shows methods
    sf["order"] = [methods[u].order for u in sf["uri"]]
    sf = sf.sort_values(["order", "factor", "level"])
    hue_order = list(dict.fromkeys(sf["method"]))
    palette = _method_palette(hue_order)
    keys = sorted({(t, d) for t, d in zip(sf["task"], sf["dataset"])}, key=lambda k: (task_sort_key(k[0]), k[1]))
    n_slices = max(sf[(sf["task"] == t) & (sf["dataset"] == d)]["slice"].nunique() for t, d in keys)
    w = max(4.6, 0.5 * n_slices * max(1, len(hue_order)) ** 0.5 + 1.5)
    fig, axes = _panels(keys, max_cols=2 if w > 6 else 3, w=w, h=3.9)
    for ax, (task, ds) in zip(axes, keys):
        d = sf[(sf["task"] == task) & (sf["dataset"] == ds)]
        order = sorted(dict.fromkeys(d["slice"]), key=lambda s: (s.partition(":")[0], s))
        sns.barplot(data=d, x="slice", y="value", hue="method", order=order,
                    hue_order=[m for m in hue_order if m in set(d["method"])], palette=palette,
                    errorbar="sd", ax=ax, legend=False)
        metric = d["metric"].iloc[0]
        arrow = "↑" if bool(d["higher_is_better"].iloc[0]) else "↓"
        ax.set_title(f"{task_name(task)} · {dataset_name(ds)}")
        ax.set_ylabel(f"{metric_name(metric)} {arrow}")
        ax.set_xlabel("")
        ax.tick_params(axis="x", labelrotation=30)
        for lab in ax.get_xticklabels():
            lab.set_horizontalalignment("right")
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[m], label=m) for m in hue_order]
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(handles)), frameon=False)
    title = title or "Robustness slices (mean ± sd over seeds)"
    if sf.groupby(["method", "task", "dataset", "slice"])["seed"].nunique().max() <= 1:
        # one seed: seaborn draws no bar, and the title must not promise one
        title = title.replace("mean ± sd over seeds", "one seed: no interval")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, _legend_space(fig, len(handles)), 1, 1))
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=DPI)
    plt.close(fig)
    return out_path, None


# ----------------------------------------------------------------------------- codebook figure


def _to_hwc(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"expected (B,3,H,W) or (B,H,W,3) images, got shape {a.shape}")
    if a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(0, 2, 3, 1)
    if a.max() > 1.5:  # uint8-like
        a = a / 255.0
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.clip(a, 0.0, 1.0)


def recon_error(original, reconstructed) -> tuple[float, float]:
    """(MSE, PSNR in dB) over all images and pixels, images in [0, 1]."""
    o, r = _to_hwc(original), _to_hwc(reconstructed)
    mse = float(np.mean((o - r) ** 2))
    psnr = float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)
    return mse, psnr


def codebook_figure(data: dict, out_path: str | Path, n_faces: int = 4,
                    title: str = "Reconstruction vs codebook size") -> tuple[Path | None, str | None]:
    """data: {codebook_size: dict(original, corrupted, reconstructed)} with arrays (B,3,H,W) or
    (B,H,W,3) in [0,1]. One column block per codebook size (faces side by side); rows:
    original / corrupted (replaced patches) / reconstruction; MSE and PSNR under each block."""
    if not data:
        return None, "no reconstructions"

    def _k(s):
        try:
            return (0, float(s))
        except (TypeError, ValueError):
            return (1, str(s))

    sizes = sorted(data, key=_k)
    prepared = {}
    for s in sizes:
        d = data[s]
        imgs = {k: _to_hwc(d[k]) for k in ("original", "corrupted", "reconstructed")}
        prepared[s] = imgs
    nf = max(1, min([n_faces] + [len(v["original"]) for v in prepared.values()]))
    nb = len(sizes)
    gap = 0.25
    width_ratios = []
    for b in range(nb):
        width_ratios += [1.0] * nf + ([gap] if b < nb - 1 else [])
    ncols = len(width_ratios)
    cell = 1.25
    fig = plt.figure(figsize=(max(5.0, cell * sum(width_ratios) + 1.2), cell * 3 + 1.5))
    gs = fig.add_gridspec(3, ncols, width_ratios=width_ratios, left=0.09, right=0.99, top=0.84, bottom=0.14,
                          wspace=0.04, hspace=0.06)
    row_names = ["original", "corrupted", "reconstruction"]
    keys = ["original", "corrupted", "reconstructed"]
    for b, s in enumerate(sizes):
        c0 = b * (nf + 1)
        mse, psnr = recon_error(prepared[s]["original"][:nf], prepared[s]["reconstructed"][:nf])
        for row, key in enumerate(keys):
            for f in range(nf):
                ax = fig.add_subplot(gs[row, c0 + f])
                ax.imshow(prepared[s][key][f], interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if b == 0 and f == 0:
                    ax.set_ylabel(row_names[row], fontsize=10)
                if row == 0 and f == 0:
                    x0 = gs[0, c0].get_position(fig).x0
                    x1 = gs[0, c0 + nf - 1].get_position(fig).x1
                    fig.text((x0 + x1) / 2, 0.87, f"codebook {s}", ha="center", va="bottom", fontsize=11,
                             weight="bold")
                    fig.text((x0 + x1) / 2, 0.10, f"MSE {mse:.4f}\nPSNR {psnr:.1f} dB", ha="center", va="top",
                             fontsize=10)
    fig.suptitle(title, fontsize=12, y=0.985)
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=DPI)
    plt.close(fig)
    return out_path, None


def codebook_size_of(info: MethodInfo) -> str | None:
    """The codebook size of a study run's row (its method block), None for other rows."""
    if info.group == "codebook":
        return info.setting
    return info.settings.get("codebook") or None


def load_reconstructions(run_dirs: dict[str, str | Path], image_size: int | None = None,
                         n_faces: int = 4) -> tuple[dict, list[str]]:
    """{codebook size: run dir} -> ({size: dict(original, corrupted, reconstructed)}, notes).

    Uses a precomputed `reconstructions.npz` (keys original/corrupted/reconstructed) in the run
    dir when present, else `paco_fr.engine.reconstruct` on SynthFace test faces with the model
    rebuilt from the files every finished run keeps (config.yaml, encoder.safetensors and
    recon.safetensors: paco_fr.export.load_recon_model), else from its checkpoint (ckpt/last.pt).
    Each failure becomes a note, never an exception."""
    data, notes = {}, []
    images = None
    for size, rd in run_dirs.items():
        rd = Path(rd)
        npz = rd / "reconstructions.npz"
        try:
            if npz.is_file():
                with np.load(npz) as z:
                    data[size] = {k: np.asarray(z[k]) for k in ("original", "corrupted", "reconstructed")}
                continue
            # lazy: torch and paco_fr's engine only when a run has no saved reconstructions
            from paco_fr.engine import reconstruct

            if images is None:
                import torch

                from paco_fr.data.synthface import load_synthface

                size_px = image_size or 64
                split = load_synthface("test", n_faces, image_size=size_px, seed=0, progress=False)
                images = torch.from_numpy(np.asarray(split.images[:n_faces])).permute(0, 3, 1, 2).float() / 255.0
            from paco_fr.export import RECON_NAME, load_recon_model

            out = reconstruct(load_recon_model(rd) if (rd / RECON_NAME).is_file() else rd, images)
            data[size] = {k: _np(out[k]) for k in ("original", "corrupted", "reconstructed")}
        except Exception as e:  # noqa: BLE001 - a figure must never crash the report
            notes.append(f"codebook {size} ({rd}): reconstruction unavailable: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}")
    return data, notes


def _np(x):
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def reads_reconstructions(run_dir: str | Path) -> bool:
    """True for a study run the codebook figures read (the full PaCo-FR and the codebook ablations,
    by its method.json)."""
    try:
        m = json.loads((Path(run_dir) / "method.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and (m.get("component") == "codebook"
                                    or (m.get("method") == "paco" and m.get("role") == "main"))


def save_reconstructions(run_dir: str | Path, image_size: int | None = None, n_faces: int = 4) -> str | None:
    """Write `reconstructions.npz` (original, corrupted, reconstructed: float16, compressed) into a
    run the codebook figures read, while its encoder and decoder files are here: the figures then
    need only the run's small files (a study resumed on another machine keeps those, not the
    weights). A run that already has it, or that the figures do not read, is left alone. Returns a
    note when the reconstruction failed, else None."""
    run_dir = Path(run_dir)
    npz = run_dir / "reconstructions.npz"
    if npz.is_file() or not reads_reconstructions(run_dir):
        return None
    data, notes = load_reconstructions({"run": run_dir}, image_size, n_faces)
    if "run" not in data:
        return "; ".join(notes) or f"{run_dir}: no reconstruction"
    # this process's own temporary file: two processes sharing a study may both save the same run
    tmp = temp_beside(npz, ".tmp.npz")
    np.savez_compressed(tmp, **{k: np.asarray(v, dtype=np.float16) for k, v in data["run"].items()})
    tmp.replace(npz)
    return None
