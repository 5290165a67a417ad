"""Face verification metrics on pair lists.

Conventions (see docs/recognition.md):

* similarity = cosine of L2-normalised embeddings (`cosine_scores`); with `flip=True` (the
  default in the recognition task) the embedding of an image is the sum of the embeddings of
  the image and of its horizontal flip, *before* normalisation (`combine_flip`).
* `ten_fold_accuracy`: the standard LFW protocol. The pair list is cut into `n_folds`
  contiguous blocks (as the folds of LFW's pairs.txt: fold k is lines k*2P .. (k+1)*2P-1);
  for each fold the threshold is chosen on the other folds and accuracy is measured on the
  held-out fold; the reported accuracy is the mean over folds (percent).
  Threshold candidates are -inf, +inf and every midpoint between consecutive distinct scores
  of the training folds; "same" is predicted when score > threshold. Of the candidates that
  maximise training-fold accuracy the median one is taken (index len // 2 of the sorted
  maximisers), so the choice is deterministic and sits in the middle of a tied plateau.
* `tar_at_far`: the threshold is the k-th largest impostor (different-identity) score,
  k = floor(far * n_impostor), and "accept" means score > threshold, so at most k impostor
  pairs are accepted (FAR <= far); TAR is the fraction of genuine pairs accepted. With n
  impostor pairs the achievable FAR resolution is 1/n: when far < 1/n, k = 0 and the number is
  TAR at FAR = 0 (the threshold is the highest impostor score). `verification_metrics` reports
  the resolution as `far_resolution` and the FAR actually achieved as `far@<target>`.
* `roc_auc`: area under the ROC curve (Mann-Whitney statistic with ties counted 1/2; equal to
  torchmetrics' binary AUROC, checked in tests).
"""

from __future__ import annotations

import numpy as np
import torch


def l2_normalize(x: torch.Tensor | np.ndarray, eps: float = 1e-12):
    if isinstance(x, np.ndarray):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)
    return torch.nn.functional.normalize(x.float(), dim=-1, eps=eps)


def combine_flip(emb: torch.Tensor, emb_flipped: torch.Tensor | None) -> torch.Tensor:
    """Sum of the embeddings of the original and the flipped image, then L2-normalised."""
    e = emb.float() if emb_flipped is None else emb.float() + emb_flipped.float()
    return l2_normalize(e)


def cosine_scores(emb: torch.Tensor | np.ndarray, idx1, idx2) -> np.ndarray:
    """Cosine similarity of pairs (idx1[i], idx2[i]) of rows of `emb` (normalised here)."""
    e = l2_normalize(torch.as_tensor(np.asarray(emb) if isinstance(emb, np.ndarray) else emb).float())
    i1, i2 = torch.as_tensor(np.asarray(idx1)), torch.as_tensor(np.asarray(idx2))
    return (e[i1] * e[i2]).sum(-1).double().numpy()


# ----------------------------------------------------------------------------- accuracy


def _as_arrays(scores, issame) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(issame).astype(bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"{len(s)} scores but {len(y)} is-same flags")
    if not np.isfinite(s).all():
        raise ValueError("non-finite similarity scores")
    return s, y


def threshold_candidates(scores: np.ndarray) -> np.ndarray:
    u = np.unique(scores)
    return np.concatenate([[-np.inf], (u[:-1] + u[1:]) / 2, [np.inf]])


def accuracy_at(scores, issame, thresholds) -> np.ndarray:
    """Accuracy (fraction) of predicting same := score > t, for every t in `thresholds`."""
    s, y = _as_arrays(scores, issame)
    t = np.asarray(thresholds, dtype=np.float64)
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    tp = len(pos) - np.searchsorted(pos, t, side="right")  # genuine with score > t
    tn = np.searchsorted(neg, t, side="right")  # impostors with score <= t
    return (tp + tn) / max(1, len(s))


def best_threshold(scores, issame) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy on these pairs (median of tied maximisers)."""
    s, y = _as_arrays(scores, issame)
    cand = threshold_candidates(s)
    acc = accuracy_at(s, y, cand)
    best = np.flatnonzero(acc == acc.max())
    i = best[len(best) // 2]
    return float(cand[i]), float(acc[i])


def lfw_folds(n: int, n_folds: int = 10) -> list[np.ndarray]:
    """Contiguous blocks of the pair list (LFW's pairs.txt folds); sizes differ by at most 1."""
    if n < n_folds:
        raise ValueError(f"{n} pairs cannot be split into {n_folds} folds")
    return [np.arange(b[0], b[-1] + 1) for b in np.array_split(np.arange(n), n_folds)]


def ten_fold_accuracy(scores, issame, n_folds: int = 10) -> dict:
    """Mean and std (percent) of held-out-fold accuracy, thresholds chosen on the other folds."""
    s, y = _as_arrays(scores, issame)
    accs, thrs = [], []
    for fold in lfw_folds(len(s), n_folds):
        train = np.ones(len(s), dtype=bool)
        train[fold] = False
        thr, _ = best_threshold(s[train], y[train])
        accs.append(float(accuracy_at(s[fold], y[fold], [thr])[0]))
        thrs.append(thr)
    return {"acc": 100.0 * float(np.mean(accs)), "acc_std": 100.0 * float(np.std(accs)),
            "fold_acc": [100.0 * a for a in accs], "thresholds": thrs}


def ten_fold_correct(scores, issame, n_folds: int = 10) -> np.ndarray:
    """Per-pair correctness (bool) of the 10-fold protocol: each pair is judged with the threshold
    chosen on the other folds. Its mean equals `ten_fold_accuracy`'s acc when the folds have equal
    sizes; the bootstrap CI over pairs resamples it (bench_tasks.stats)."""
    s, y = _as_arrays(scores, issame)
    out = np.zeros(len(s), dtype=bool)
    for fold in lfw_folds(len(s), n_folds):
        train = np.ones(len(s), dtype=bool)
        train[fold] = False
        thr, _ = best_threshold(s[train], y[train])
        out[fold] = (s[fold] > thr) == y[fold]
    return out


# ----------------------------------------------------------------------------- TAR@FAR, AUC


def tar_at_far(scores, issame, far: float) -> dict:
    """{"tar", "far" (achieved), "threshold", "resolution" (1/n_impostor)}."""
    s, y = _as_arrays(scores, issame)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("TAR@FAR needs both genuine and impostor pairs")
    neg_desc = np.sort(neg)[::-1]
    k = int(np.floor(far * len(neg) + 1e-9))
    thr = -np.inf if k >= len(neg) else float(neg_desc[k])
    return {"tar": float((pos > thr).mean()), "far": float((neg > thr).mean()), "threshold": thr,
            "resolution": 1.0 / len(neg)}


def roc_auc(scores, issame) -> float:
    """P(score_genuine > score_impostor) + 0.5 P(equal)."""
    # lazy: scipy only when an ROC AUC is scored
    from scipy.stats import rankdata

    s, y = _as_arrays(scores, issame)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both genuine and impostor pairs")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def far_name(far: float) -> str:
    """1e-3 -> "1e-3" (the spelling used in metric names)."""
    m, _, e = f"{far:.0e}".partition("e")
    return f"{m}e{int(e)}"


def verification_metrics(scores, issame, n_folds: int = 10, fars=(1e-3, 1e-2)) -> dict[str, float]:
    """The numbers the recognition task reports for one pair set (plain floats).

    acc/acc_std: 10-fold accuracy (percent); tar@far=1e-3 etc.: TAR at FAR <= 1e-3 (fraction); far@1e-3: the
    FAR achieved; far_resolution: 1 / number of impostor pairs; auc: ROC AUC; n_pairs."""
    s, y = _as_arrays(scores, issame)
    out: dict[str, float] = {}
    folds = min(n_folds, len(s))
    if folds >= 2:
        tf = ten_fold_accuracy(s, y, folds)
        out["acc"], out["acc_std"] = tf["acc"], tf["acc_std"]
    else:
        out["acc"], out["acc_std"] = float("nan"), float("nan")
    if y.any() and (~y).any():
        for f in fars:
            r = tar_at_far(s, y, f)
            out[f"tar@far={far_name(f)}"] = r["tar"]
            out[f"far@{far_name(f)}"] = r["far"]
        out["far_resolution"] = 1.0 / int((~y).sum())
        out["auc"] = roc_auc(s, y)
    out["n_pairs"] = float(len(s))
    return out
