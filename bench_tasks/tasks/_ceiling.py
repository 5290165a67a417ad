"""The ceiling's training recipe, shared by the tasks that train one (`supervised:<arch>`: the
architecture trained end to end from random initialisation with the task's labels; the cells are
added to a plan by bench_tasks.plan.references).

The ceiling trains the architecture from random initialisation, so it gets a from-scratch recipe,
not the fine-tuning one (lr_backbone 1e-4 with layer decay 0.75 is made for pre-trained weights:
measured on the cpu profile, attributes, that ceiling reached 54.7 balanced accuracy, below the
random-init *linear probe*'s 57.1). Profile keys: `ceiling_lr` (every parameter group; default
1e-3) and `ceiling_epochs` (default: the task's fine-tune epochs): a number for every task, or a
mapping {task: epochs} where the tasks not named keep their own epochs.
"""

from __future__ import annotations

import dataclasses

from bench_tasks.contracts import BackboneURI


def is_ceiling(uri: BackboneURI | str) -> bool:
    """Whether a backbone URI (any string: rows of old or foreign files) is a ceiling's."""
    return BackboneURI.read(uri).is_ceiling


CEILING_LR = 1e-3


def ceiling_epochs_for(extra: dict | None, task: str | None):
    """`ceiling_epochs` of a profile's `extra` settings (or a row's snapshot of them) for `task`: an
    int, or None (the task's own fine-tune epochs)."""
    e = (extra or {}).get("ceiling_epochs")
    if isinstance(e, dict):
        e = e.get(task)
    return None if e is None else int(e)


def ceiling_recipe(cfg, uri: str, profile, task: str | None = None):
    """The FitConfig a cell of backbone `uri` trains with: `cfg` itself, or for a ceiling
    (`supervised:`) the from-scratch recipe: one learning rate for backbone and head
    (`ceiling_lr`), no layer-wise decay, the profile's `ceiling_epochs` for `task` when it sets one."""
    if not is_ceiling(uri):
        return cfg
    extra = getattr(profile, "extra", {}) or {}
    lr = float(extra.get("ceiling_lr", CEILING_LR))
    e = ceiling_epochs_for(extra, task)
    epochs = int(cfg.epochs) if e is None else e
    return dataclasses.replace(cfg, lr_head=max(cfg.lr_head, lr), lr_backbone=lr, layer_decay=1.0, epochs=epochs)
