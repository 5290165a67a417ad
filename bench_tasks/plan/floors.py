"""Floors in a plan: the best *input-free* predictor of each task, fitted on the training labels and
scored with the task's own metric on the test split.

A floor is an ordinary row of the results store whose cell has the backbone URI `FLOOR_URI` and the
protocol `FLOOR_PROTOCOL` (fraction 1.0, seed 0): one per (task, dataset, profile) of a task that
has one. bench_tasks.plan.references adds these cells to every plan; the runner computes them with
`compute_floor` instead of building a backbone (seconds). The predictor is the task's own
`Task.floor(ctx)` (bench_tasks.contracts); the built-in ones are described in
bench_tasks.tasks._floors.
"""

from __future__ import annotations

from bench_tasks.contracts import BackboneURI, CellContext, CellResult, Task
from bench_tasks.registry import TASKS
from bench_tasks.tasks._floors import FLOOR_PROTOCOL

FLOOR_URI = "floor:input-free"
__all__ = ["FLOOR_PROTOCOL", "FLOOR_URI", "compute_floor", "has_floor", "is_floor"]


def has_floor(task_name: str) -> bool:
    """Whether the registered task `task_name` has a floor (implements `Task.floor`)."""
    return task_name in TASKS and TASKS.get(task_name).has_floor()


def is_floor(uri: BackboneURI | str) -> bool:
    """Whether a backbone URI (any string: rows of old or foreign files) is the floor's."""
    return BackboneURI.read(uri).is_floor


def compute_floor(task: Task, ctx: CellContext) -> CellResult:
    """The floor row's result for `task` (a Task instance) on ctx.cell.dataset; raises
    NotImplementedError naming the task when it has no floor."""
    if not type(task).has_floor():
        raise NotImplementedError(f"task {task.name!r} has no floor (input-free predictor); tasks with one: "
                                  f"{[n for n, cls in TASKS.items() if cls.has_floor()]}. Give it a "
                                  "`floor(ctx) -> CellResult` method (bench_tasks.contracts.Task.floor)")
    return task.floor(ctx)
