"""Classification metrics against values worked by hand; heads' shapes."""

import pytest
import torch

from bench_tasks.heads.attribute_head import AttributeHead, pooled_layer_feats
from bench_tasks.metrics.classification import multiclass_metrics, multilabel_metrics
from paco_fr.backbone import BackboneOutput


def test_multilabel_by_hand():
    # predictions (logit > 0): a = [1, 1, 0, 0], b = [0, 1, 0, 1]
    logits = torch.tensor([[2.0, -1], [1, 3], [-1, -2], [-3, 1]])
    targets = torch.tensor([[1, 0], [0, 1], [0, 1], [1, 1]])
    m = multilabel_metrics(logits, targets, ["a", "b"])
    # a: correct 1,0,1,0 -> 50%; b: correct 1,1,0,1 -> 75%; mean 62.5
    assert m["acc/a"] == pytest.approx(50.0) and m["acc/b"] == pytest.approx(75.0)
    assert m["mean_acc"] == pytest.approx(62.5)
    # a: TPR 1/2, TNR 1/2 -> 0.5; b: TPR 2/3, TNR 1/1 -> 5/6; mean (0.5 + 5/6) / 2
    assert m["balanced_acc"] == pytest.approx(100 * (0.5 + 5 / 6) / 2)


def test_multilabel_attribute_without_positives():
    logits = torch.tensor([[-1.0], [1.0]])
    targets = torch.tensor([[0], [0]])
    m = multilabel_metrics(logits, targets)
    assert m["mean_acc"] == pytest.approx(50.0)
    assert m["balanced_acc"] == pytest.approx(50.0)  # TPR undefined: TNR 1/2 alone


def test_multiclass_by_hand():
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 2, 2, 2]), 4).float()
    targets = torch.tensor([0, 1, 2, 2, 2, 0])
    m, cm = multiclass_metrics(logits, targets, 4, ["n", "h", "s", "x"])
    assert m["acc"] == pytest.approx(100 * 4 / 6)
    # recalls: class 0 1/2, class 1 1/1, class 2 2/3; class 3 absent -> mean over 3 classes
    assert m["mean_class_acc"] == pytest.approx(100 * (0.5 + 1 + 2 / 3) / 3)
    assert cm.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [0, 1, 2, 0], [0, 0, 0, 0]]
    assert "recall/x" not in m


def test_attribute_head_equal_on_cached_and_live_features():
    torch.manual_seed(0)
    out = BackboneOutput(cls=torch.randn(2, 8), patch_tokens=[torch.randn(2, 5, 8) for _ in range(3)],
                         grid=(1, 5), cls_tokens=[torch.randn(2, 8) for _ in range(3)])
    head = AttributeHead(embed_dim=8, num_layers=3, num_outputs=4)
    feats = pooled_layer_feats(out)
    assert feats.shape == (2, 3, 3, 8)
    torch.testing.assert_close(head(out), head(feats))
    # zero-initialised weights: a plain average of the 9 vectors
    want = head.fc(head.norm(feats.reshape(2, 9, 8).mean(1)))
    torch.testing.assert_close(head(feats), want)
