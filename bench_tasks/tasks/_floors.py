"""What the built-in tasks' floors share (`Task.floor`, bench_tasks.contracts): the train and test
splits they fit and score on, and the floor's result.

A floor is an ordinary row of the results store whose cell has the backbone URI
`floor:input-free` and the protocol `floor` (fraction 1.0, seed 0): one per (task, dataset,
profile), planned by bench_tasks.plan.references and computed by the runner without a backbone
(bench_tasks.plan.floors.compute_floor). The row has the task's headline and metrics, the
bootstrap CI over test items (`ci`), the per-item scores (artifact `items`) and its provenance;
`config.task.predictor` says what the predictor is:
  * attributes  - majority value of each attribute in the training split (balanced accuracy 50);
  * expression  - the majority training class;
  * landmarks   - the mean training shape, in the crop frame the task evaluates in;
  * parsing     - the most frequent class of each pixel over the training masks (in the crop
                  frame; warped back like the logits for datasets scored at original resolution);
  * recognition - one constant similarity for every pair: the 10-fold protocol then predicts one
                  answer for all pairs (50 % on balanced pair lists).
Each lives with its task (`floor` of ClassificationTask, LandmarksTask, ParsingTask,
RecognitionTask).
"""

from __future__ import annotations

import numpy as np

from bench_tasks.contracts import CellContext, CellResult, Task, TaskSplit
from bench_tasks.datasets._readers import get_dataset_spec
from bench_tasks.stats import ItemScores, items_note

FLOOR_PROTOCOL = "floor"


def train_and_test(task: Task, ctx: CellContext) -> tuple[TaskSplit, TaskSplit]:
    """The train and test splits of the cell's dataset at the task's input size under the profile
    (the crop frame the task evaluates in)."""
    size = task.image_size(ctx.profile)
    spec = get_dataset_spec(ctx.cell.dataset)
    train = spec.load(task.name, "train", ctx.data_root, ctx.profile, size)
    test = spec.load(task.name, "test", ctx.data_root, ctx.profile, size)
    return train, test


def floor_result(ctx: CellContext, metrics: dict, items: ItemScores, predictor: str, slices=None,
                 extra_config: dict | None = None) -> CellResult:
    """The floor's CellResult: `metrics` at every epoch selection, the per-item scores saved as the
    `items` artifact and their CI, `predictor` and `extra_config` as the row's config.task."""
    path = items.save(ctx.artifact_dir() / "items.npz")
    return CellResult(metrics=metrics, metrics_last=dict(metrics), metrics_best_test=dict(metrics),
                      slices=slices or {}, artifacts={"items": ctx.artifact_relpath(path)}, ci=items.ci(),
                      protocol_used=FLOOR_PROTOCOL,
                      config={"predictor": predictor, "n_test": items.n, **items_note(items), **(extra_config or {})})


def item_slices(items: ItemScores, split, keys: tuple[str, ...]) -> dict:
    """Slices of the test split scored on the floor's per-item scores (only for per-image items)."""
    out = {}
    for name, mask in (getattr(split, "slices", None) or {}).items():
        m = np.asarray(mask, dtype=bool)
        if m.shape[0] != items.n or not m.any():
            continue
        sub = ItemScores(items.statistic, {k: v[m] for k, v in items.arrays.items()})
        p = sub.point()
        out[name] = {k: p[k] for k in keys if k in p}
        out[name]["n"] = float(m.sum())
    return out
