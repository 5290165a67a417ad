"""Dense metrics against numbers worked by hand."""

import math

import numpy as np
import pytest
import torch

from bench_tasks.metrics import landmarks as LM
from bench_tasks.metrics.parsing import confusion_matrix, scores_from_confusion


def test_confusion_matrix_bincount_and_ignore():
    gt = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 0]])
    cm = confusion_matrix(pred, gt, 3)
    # rows gt, cols pred; the 255 pixel is ignored
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]


def test_f1_from_tiny_confusion_matrix():
    # rows = gt, cols = pred
    cm = np.array([[5, 1, 0],
                   [2, 6, 2],
                   [0, 0, 4]])
    s = scores_from_confusion(cm, ["bg", "a", "b"])
    # class a: TP 6, #gt 10, #pred 7 -> F1 = 12/17; class b: TP 4, #gt 4, #pred 6 -> 8/10
    assert s["f1/a"] == pytest.approx(100 * 12 / 17)
    assert s["f1/b"] == pytest.approx(80.0)
    assert s["f1/bg"] == pytest.approx(100 * 10 / 13)  # TP 5, gt 6, pred 7
    assert s["f1_mean"] == pytest.approx(100 * (12 / 17 + 0.8) / 2)  # foreground only
    # IoU a = 6 / (10 + 7 - 6) = 6/11; b = 4 / (4 + 6 - 4) = 4/6
    assert s["miou"] == pytest.approx(100 * (6 / 11 + 4 / 6) / 2)
    assert s["pixel_acc"] == pytest.approx(100 * 15 / 20)


def test_absent_class_is_left_out():
    cm = np.array([[3, 0, 0], [0, 2, 0], [0, 0, 0]])
    s = scores_from_confusion(cm)
    assert math.isnan(s["f1/2"])
    assert s["f1_mean"] == pytest.approx(100.0)


def test_nme_inter_ocular_two_faces_by_hand():
    k = 68
    gt = np.zeros((2, k, 2))
    gt[0, 36] = [10, 20]
    gt[0, 45] = [50, 20]  # inter-ocular 40
    gt[1, 36] = [0, 0]
    gt[1, 45] = [30, 40]  # inter-ocular 50
    pred = gt.copy()
    pred[0, 0] += [3, 4]  # one point off by 5 -> mean error 5/68
    pred[1, :] += [6, 8]  # every point off by 10 -> mean error 10
    norm = LM.inter_ocular(gt, 36, 45)
    assert norm.tolist() == [40.0, 50.0]
    nme = LM.nme_per_image(pred, gt, norm)
    assert nme[0] == pytest.approx(5 / 68 / 40)
    assert nme[1] == pytest.approx(10 / 50)
    assert LM.summarize(nme)["nme"] == pytest.approx(100 * (5 / 68 / 40 + 0.2) / 2)


def test_box_normalisers():
    boxes = np.array([[0, 0, 30, 40], [10, 10, 20, 20]])
    assert LM.box_size(boxes).tolist() == pytest.approx([math.sqrt(1200), 10])
    assert LM.box_diag(boxes).tolist() == pytest.approx([50, math.sqrt(200)])


def test_failure_rate_and_auc_on_known_errors():
    errs = np.array([0.02, 0.05, 0.08, 0.12])
    assert LM.failure_rate(errs, 0.1) == pytest.approx(0.25)
    # CED area on [0, 0.1] = mean(max(0, 0.1 - e)) = (0.08 + 0.05 + 0.02 + 0) / 4 = 0.0375 -> / 0.1
    assert LM.auc(errs, 0.1) == pytest.approx(0.375)
    assert LM.auc(np.zeros(5), 0.1) == pytest.approx(1.0)
    assert LM.auc(np.full(5, 0.2), 0.1) == pytest.approx(0.0)
    # numerically integrated CED agrees
    xs = np.linspace(0, 0.1, 200001)
    ced = (errs[None, :] <= xs[:, None]).mean(1)
    assert LM.auc(errs, 0.1) == pytest.approx(np.trapezoid(ced, xs) / 0.1, abs=1e-4)
    s = LM.summarize(errs, 0.1, 0.1)
    assert s["fr@0.1"] == pytest.approx(25.0)
    assert s["auc@0.1"] == pytest.approx(0.375)


def test_nme_with_mask():
    gt = np.zeros((1, 3, 2))
    pred = np.array([[[1.0, 0], [0, 2.0], [100.0, 0]]])
    nme = LM.nme_per_image(pred, gt, np.array([1.0]), mask=np.array([[1, 1, 0]]))
    assert nme[0] == pytest.approx(1.5)
