"""FaRL's scorers: parsing confusions on the original label grid, landmarks mapped back to the
original image, NME with FaRL's normalisers, AUC and failure rate."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from bench_tasks.metrics.parsing import confusion_matrix
from bench_tasks.protocols.farl import transforms as T
from bench_tasks.protocols.farl.splits import FarlLandmarkSplit, FarlParsingSplit


def parsing_confusions(model, loader, split: FarlParsingSplit, k: int, device) -> dict[int, np.ndarray]:
    """FaRL test_post.yaml: warped logits (upsampled to the warped size) -> inverse transform map
    onto the original label grid (bilinear, 0 outside) -> argmax -> confusion over all pixels."""
    s = split.st["warped_size"]
    cms = {}
    for images, extra in loader:
        logits = model(images.to(device)).float()
        logits = F.interpolate(logits, size=(s, s), mode="bilinear", align_corners=False).cpu()
        for b, idx in enumerate(extra["index"].tolist()):
            gt = split.original_label(idx)
            mp = T.unwarp_map(split.matrix(idx), split.st["warp_factor"], gt.shape[:2], (s, s))
            pred = T.remap(logits[b], mp, "bilinear").argmax(0)
            cms[idx] = confusion_matrix(pred, torch.from_numpy(gt.astype(np.int64)), k, ignore_index=None)
    return cms


def predict_landmarks(model, loader, split: FarlLandmarkSplit, device) -> dict[int, np.ndarray]:
    """Predicted points in original image pixels (FaRL test_post.yaml: TransformPoints2DInverted)."""
    s = split.st["warped_size"]
    out = {}
    for images, extra in loader:
        logits = model(images.to(device))
        pred = T.denormalize_points(T.heatmap_to_points(torch.sigmoid(logits.float())), s, s).cpu().numpy()
        for b, idx in enumerate(extra["index"].tolist()):
            out[idx] = T.unwarp_points(pred[b], split.test_matrix(idx), split.st["warp_factor"], (s, s))
    return out


def unit_distance(norm, gt: np.ndarray, box_y1x1y2x2: np.ndarray) -> float:
    """FaRL's NormalizeByLandmarks / NormalizeByBox / NormalizeByBoxDiag."""
    if norm == "box":
        y1, x1, y2, x2 = box_y1x1y2x2
        return math.sqrt((y2 - y1) * (x2 - x1))
    if norm == "diag":
        y1, x1, y2, x2 = box_y1x1y2x2
        return math.sqrt((x2 - x1) ** 2 + (y2 - y1) ** 2)
    left, right = norm
    return float(np.linalg.norm(gt[left].mean(0) - gt[right].mean(0)))


def auc_fr(nmes: np.ndarray, threshold: float, step: float = 1e-4) -> tuple[float, float]:
    """FaRL's AUC_FR (HRNet's recipe): CED on arange(0, thr + step, step), Simpson's rule / thr;
    FR = 1 - CED(thr)."""
    # lazy: scipy only when a landmark AUC is scored
    from scipy.integrate import simpson

    nmes = np.sort(np.asarray(nmes, dtype=np.float64))
    xs = np.arange(0.0, threshold + step, step)
    ced = np.array([np.count_nonzero(nmes <= x) / len(nmes) for x in xs])
    return float(simpson(ced, x=xs) / threshold), float(1.0 - ced[-1])


def landmark_scores(preds: dict, split: FarlLandmarkSplit, st: dict, sel: np.ndarray | None = None) -> dict:
    """NMEs (in %, per image mean over points / unit, averaged over images) for every normaliser of
    FaRL's scorer file; `nme` = the headline normaliser; AUC / FR where the file has them."""
    idx = [i for i in sorted(preds) if sel is None or sel[i]]
    out: dict[str, float] = {}
    if not idx:
        return out
    per: dict[str, np.ndarray] = {}
    for name, norm in st["norms"].items():
        v = []
        for i in idx:
            gt = split.points[i]
            unit = unit_distance(norm, gt, split.boxes[i])
            v.append(float(np.linalg.norm(gt - preds[i], axis=-1).mean() / unit))
        per[name] = np.array(v)
        out[f"nme_{name}"] = float(per[name].mean() * 100)
    out["nme"] = out[f"nme_{st['headline_norm']}"]
    if st.get("auc"):
        norm, thr = st["auc"]
        a, fr = auc_fr(per[norm], thr)
        tag = f"{norm}_{int(round(thr * 100))}"
        out[f"auc_{tag}"], out[f"fr_{tag}"] = a, fr * 100
    out["n"] = float(len(idx))
    return out
