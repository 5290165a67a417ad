"""Facial attributes (multi-label), FaRL's CelebA protocol.

Head: FaRL/facer attribute head (heads/attribute_head.py) on blocks `backbone.probe_layers()` (a ViT: its dense layers; a pyramid: its last stage)
(3, 5, 7, 11 for a 12-block ViT). Loss: BCE with logits. Headline `balanced_acc`: mean over
attributes of (TPR + TNR) / 2 (%), which a constant predictor cannot inflate on imbalanced
attributes (it scores 50); also FaRL's `mean_acc` (mean per-attribute accuracy, the published
CelebA number) and `acc/<attribute>`.
"""

from __future__ import annotations

from bench_tasks.registry import TASKS
from bench_tasks.tasks._classification import ClassificationTask


@TASKS.register("attributes")
class AttributesTask(ClassificationTask):
    name = "attributes"
    default_datasets = ("celeba", "lfwa")
    protocols = ("linear", "concat", "frozen", "finetune")
    headline = "balanced_acc"
    # 2: scale-free head inputs (per-channel standardised tapped features) and the head's learning
    # rate chosen on val from a grid (old rows are recomputed)
    version = 2
    higher_is_better = True
    kind = "multilabel"
    default_head = "attribute"
