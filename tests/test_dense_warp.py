"""Warping parsing logits back to the original image (LaPa protocol) and the landmark geometry."""

import numpy as np
import pytest
import torch

from bench_tasks.metrics.parsing import confusion_matrix, scores_from_confusion
from bench_tasks.tasks._dense import (
    apply_affine,
    compose,
    crop_matrix,
    invert_affine,
    resize_matrix,
    warp_affine,
)
from bench_tasks.tasks.landmarks import gaussian_targets, landmark_loss, soft_argmax
from bench_tasks.tasks.parsing import warp_logits_back


def _blobs(h, w, k=4, seed=0):
    """A label map of a few rectangles and logits that favour it."""
    lab = np.zeros((h, w), np.int64)
    lab[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1
    lab[h // 3: h // 2, w // 3: w // 2] = 2
    lab[: h // 6, :] = 3
    logits = torch.nn.functional.one_hot(torch.from_numpy(lab), k).permute(2, 0, 1).float() * 5
    logits += torch.randn(logits.shape, generator=torch.Generator().manual_seed(seed)) * 0.1
    return lab, logits


def test_identity_warp_gives_identical_scores():
    lab, logits = _blobs(40, 40)
    direct = scores_from_confusion(confusion_matrix(logits.argmax(0), lab, 4))
    back = warp_logits_back(logits, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (40, 40))
    torch.testing.assert_close(back, logits, atol=1e-5, rtol=0)
    warped = scores_from_confusion(confusion_matrix(back.argmax(0), lab, 4))
    assert warped == pytest.approx(direct, nan_ok=True)


def test_similarity_warp_round_trips():
    h, w, s = 60, 50, 48
    lab, logits = _blobs(h, w)
    # a similarity original -> aligned crop: rotate 20 deg, scale 0.8, shift
    a = np.deg2rad(20)
    m = np.array([[0.8 * np.cos(a), -0.8 * np.sin(a), 12.0], [0.8 * np.sin(a), 0.8 * np.cos(a), -4.0]])
    aligned = warp_affine(logits, m, (s, s), padding_mode="border")
    back = warp_logits_back(aligned, m, (h, w))
    # every original pixel whose image lies well inside the crop comes back with its class
    ys, xs = np.mgrid[0:h, 0:w]
    q = apply_affine(np.stack([xs, ys], -1).reshape(-1, 2), m).reshape(h, w, 2)
    inside = (q > 2).all(-1) & (q < s - 3).all(-1)
    assert inside.sum() > 0.4 * h * w
    # away from class boundaries (bilinear resampling blurs a 1-2 px band)
    from scipy import ndimage

    edge = ndimage.morphological_gradient(lab, size=5) > 0
    keep = inside & ~edge
    assert (back.argmax(0).numpy()[keep] == lab[keep]).mean() == 1.0
    # and the point geometry round-trips exactly
    p = np.array([[3.0, 7.0], [40.0, 55.0]])
    np.testing.assert_allclose(apply_affine(apply_affine(p, m), invert_affine(m)), p, atol=1e-9)


def test_label_warp_nearest_keeps_classes():
    lab = torch.randint(0, 11, (1, 30, 30)).float()
    out = warp_affine(lab, resize_matrix((30, 30), (60, 60)), (60, 60), mode="nearest")
    assert set(out.unique().tolist()) <= set(range(11))
    torch.testing.assert_close(out[0, ::2, ::2], lab[0])


def test_matrices():
    m = crop_matrix(100.0, 50.0, 40.0, 32)
    np.testing.assert_allclose(apply_affine([[100.0, 50.0]], m), [[15.5, 15.5]])
    np.testing.assert_allclose(apply_affine([[80.0, 30.0]], m), [[-0.5 + 0.0, -0.5]], atol=1e-9)
    r = resize_matrix((10, 20), (5, 10))  # halve: pixel centres 0,1 -> 0.25 - 0.5 ...
    np.testing.assert_allclose(apply_affine([[-0.5, -0.5], [19.5, 9.5]], r), [[-0.5, -0.5], [9.5, 4.5]])
    np.testing.assert_allclose(compose(m, invert_affine(m)), [[1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_soft_argmax_and_targets():
    unit = torch.tensor([[[0.4, 0.6], [0.55, 0.45]]])
    hm = gaussian_targets(unit, 16, 16, sigma=1.5)
    assert hm.shape == (1, 2, 16, 16) and hm.max() <= 1
    # softmax(log Gaussian) = the normalised Gaussian, whose mean is the target point
    pred = soft_argmax(torch.log(hm))
    torch.testing.assert_close(pred, unit, atol=2e-3, rtol=0)
    pts_px = unit * 64 - 0.5
    good = landmark_loss(torch.log(hm + 1e-6) * 4, pts_px, 64)
    bad = landmark_loss(torch.zeros(1, 2, 16, 16), pts_px, 64)
    assert good < bad
