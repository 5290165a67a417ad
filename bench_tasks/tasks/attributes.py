"""Facial attributes (multi-label), FaRL's CelebA protocol.

Head: FaRL/facer attribute head (heads/attribute_head.py) on blocks `backbone.dense_layers()`
(3, 5, 7, 11 for a 12-block ViT). Loss: BCE with logits. Headline `mean_acc`: mean over
attributes of the per-attribute accuracy (%); also `balanced_acc` and `acc/<attribute>`.
"""

from __future__ import annotations

from bench_tasks.registry import TASKS
from bench_tasks.tasks._classification import ClassificationTask


@TASKS.register("attributes")
class AttributesTask(ClassificationTask):
    name = "attributes"
    default_datasets = ("celeba", "lfwa")
    protocols = ("linear", "frozen", "finetune")
    headline = "mean_acc"
    higher_is_better = True
    kind = "multilabel"
    default_head = "attribute"
