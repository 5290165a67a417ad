"""Facial-landmark metrics (pure functions on numpy arrays or tensors).

* `nme_per_image(pred, gt, norm)`: mean over points of the point-to-point distance divided by a
  per-image normaliser.
* normalisers: `inter_ocular(gt, i, j)` (distance of two outer eye corners: 36/45 on 68-point
  300W, 60/72 on 98-point WFLW), `box_size(boxes)` = sqrt(w*h) and `box_diag(boxes)` =
  sqrt(w^2 + h^2) (AFLW-19; boxes as x1, y1, x2, y2).
* `failure_rate(nmes, thr)`: fraction of images with NME > thr (FR@0.1 on WFLW).
* `auc(nmes, thr)`: area under the cumulative error distribution (CED) from 0 to thr,
  divided by thr so that it lies in [0, 1] (AUC@0.1 on WFLW, @0.07 on AFLW-19). The CED is a
  step function: CED(e) = fraction of images with NME <= e; the area is integrated exactly.

NMEs are fractions here; the task stores them as percentages (FaRL's convention).
"""

from __future__ import annotations

import numpy as np


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def inter_ocular(gt, left: int, right: int) -> np.ndarray:
    gt = _np(gt)
    return np.linalg.norm(gt[..., left, :] - gt[..., right, :], axis=-1)


def box_size(boxes) -> np.ndarray:
    b = _np(boxes)
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    return np.sqrt(w * h)


def box_diag(boxes) -> np.ndarray:
    b = _np(boxes)
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    return np.sqrt(w * w + h * h)


def nme_per_image(pred, gt, norm, mask=None) -> np.ndarray:
    """pred, gt: (N, K, 2); norm: (N,); mask: optional (N, K) points to count. -> (N,)."""
    pred, gt, norm = _np(pred), _np(gt), _np(norm)
    d = np.linalg.norm(pred - gt, axis=-1)  # (N, K)
    if mask is None:
        mean = d.mean(-1)
    else:
        m = _np(mask)
        mean = (d * m).sum(-1) / np.maximum(m.sum(-1), 1)
    return mean / norm


def failure_rate(nmes, thr: float = 0.1) -> float:
    nmes = _np(nmes)
    return float((nmes > thr).mean()) if nmes.size else float("nan")


def auc(nmes, thr: float = 0.1) -> float:
    """Exact area under the step CED curve on [0, thr], normalised by thr."""
    e = np.sort(_np(nmes).reshape(-1))
    n = e.size
    if n == 0:
        return float("nan")
    # CED jumps by 1/n at each error; image i (0-based, sorted) contributes (thr - e_i) / n if e_i < thr
    area = np.clip(thr - e, 0, None).sum() / n
    return float(area / thr)


def summarize(nmes, fr_thr: float | None = None, auc_thr: float | None = None,
              prefix: str = "nme") -> dict[str, float]:
    """{prefix: mean NME in %, fr@thr (%), auc@thr ([0, 1])} for one set of per-image NMEs."""
    nmes = _np(nmes)
    out = {prefix: float(nmes.mean() * 100) if nmes.size else float("nan")}
    if fr_thr is not None:
        out[f"fr@{fr_thr:g}"] = failure_rate(nmes, fr_thr) * 100
    if auc_thr is not None:
        out[f"auc@{auc_thr:g}"] = auc(nmes, auc_thr)
    return out
