"""Facial expression recognition (7 classes: neutral, happy, sad, surprise, fear, disgust, anger;
AffectNet-8 adds contempt).

Head: the FaRL/facer pooled head (heads/attribute_head.py) with a softmax output; CE loss.
Headline `acc` (%), plus `mean_class_acc` (mean per-class recall) and `recall/<class>`. The test
confusion matrix at the selected epoch is saved as results/artifacts/<key>/confusion.csv (rows =
true class) and confusion.png.
"""

from __future__ import annotations

from bench_tasks.registry import TASKS
from bench_tasks.tasks._classification import ClassificationTask

EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")


@TASKS.register("expression")
class ExpressionTask(ClassificationTask):
    name = "expression"
    default_datasets = ("rafdb", "affectnet7")
    protocols = ("linear", "concat", "frozen", "finetune")
    headline = "acc"
    # 2: scale-free head inputs (per-channel standardised tapped features) and the head's learning
    # rate chosen on val from a grid (old rows are recomputed)
    version = 2
    higher_is_better = True
    kind = "multiclass"
    default_head = "attribute"

    def class_names(self, split, targets):
        names = super().class_names(split, targets)
        if all(n.isdigit() for n in names) and len(names) <= len(EXPRESSIONS):
            return list(EXPRESSIONS)
        return names
