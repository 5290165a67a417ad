"""The base of the dense tasks (face parsing, landmarks): what a dense cell does whatever it predicts.

`DenseTask.run(ctx)`:
  * a registered protocol that serves the task (bench_tasks.registry.PROTOCOLS, e.g. FaRL's
    `farl-frozen` / `farl-refine`) runs the cell itself;
  * otherwise `frozen` / `finetune` (`linear` planned as `frozen`): the splits at the dense size, an
    FPN + UPerHead built from the cell's seed with one output map per class or point
    (`num_outputs`), trained through `_dense.fit_dense` with the task's loss and val score
    (`objective`), then the test split scored at the selected epoch (`score_test`): the row's
    slices, per-item scores (saved as `items.npz`, the bootstrap CI) and previews.

A subclass gives `num_outputs`, `objective` and `score_test` (and its floor); settings, input sizes
and the protocols come from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from bench_tasks.contracts import CellContext, CellResult, Task
from bench_tasks.heads.dense import build_dense_head
from bench_tasks.registry import TaskProtocols, protocol_for, protocols_serving
from bench_tasks.stats import ItemScores, items_note
from bench_tasks.tasks import _dense as D


@dataclass
class DenseObjective:
    """What a dense head trains on and is selected by: `loss(logits, targets)`, `evaluate(model,
    loader) -> metrics` (val, each evaluation), and what the row's config records of it."""

    loss: Callable
    evaluate: Callable
    config: dict = field(default_factory=dict)


@dataclass
class DenseScores:
    """The test split scored at the selected epoch: slices, per-item scores, the artifacts beside
    `items` ({name: relative path}) and what the row's config records of the test split."""

    slices: dict
    items: ItemScores
    artifacts: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


class DenseTask(Task):
    own_protocols = ("frozen", "finetune")  # implemented here (fit_dense)
    protocols = TaskProtocols()  # the own ones, then the registered protocols that serve the task
    protocol_aliases = D.PROTOCOL_ALIASES  # a plan's `linear` runs (and is recorded) as `frozen`
    # 2: scale-free head inputs (per-channel standardised tapped features) and the head's learning
    # rate chosen on val from a grid (old rows are recomputed)
    version = 2

    # ------------------------------------------------------------------ what a subclass gives

    def num_outputs(self, test) -> int:
        """Output maps of the head: classes (parsing) or points (landmarks), from the test split."""
        raise NotImplementedError

    def objective(self, ctx: CellContext, train, test, k: int, settings: dict) -> DenseObjective:
        raise NotImplementedError

    def score_test(self, ctx: CellContext, model, loader, test, k: int, settings: dict) -> DenseScores:
        raise NotImplementedError

    # ------------------------------------------------------------------ requirements, settings and sizes

    @classmethod
    def missing_requirements(cls) -> list[str]:
        return D.missing_requirements(cls.name)

    @classmethod
    def setting_keys(cls) -> tuple[str, ...]:
        """`dense_<key>` (and `dense_train_images`), then the keys of the registered protocols that
        serve the task (FaRL's `farl_<key>`)."""
        keys = [*(f"dense_{k}" for k in D.DENSE_KEYS), "dense_train_images"]
        for _, proto in protocols_serving(cls.name):
            keys += [k for k in proto.setting_keys() if k not in keys]
        return tuple(keys)

    def settings_section(self, cell, profile) -> dict:
        return D.dense_section(profile)

    def image_size(self, profile) -> int:
        return D.dense_settings(profile)["size"]

    def cell_image_size(self, cell, profile) -> int:
        proto = protocol_for(self.name, cell.protocol)
        return proto.cell_image_size(cell, profile) if proto is not None else self.image_size(profile)

    # ------------------------------------------------------------------ the cell

    def run(self, ctx: CellContext) -> CellResult:
        proto = protocol_for(self.name, ctx.cell.protocol)
        if proto is not None:  # e.g. FaRL's own configuration files, exactly
            return proto.run(ctx, self.name)
        st = D.dense_settings(ctx.profile)
        train, val, test = D.load_splits(ctx, self.name, st["size"])
        k = self.num_outputs(test)
        torch.manual_seed(ctx.cell.seed)  # the head's initialisation is part of the cell's seed
        head, layers = build_dense_head(ctx.backbone, k, st["channels"], coords=st["coords"])
        objective = self.objective(ctx, train, test, k, st)
        model, res, test_loader, protocol = D.fit_dense(
            ctx, head, layers, st, train, val, test, objective.loss, objective.evaluate, self.headline,
            self.higher_is_better)
        with torch.no_grad():  # the selected epoch's weights
            scores = self.score_test(ctx, model, test_loader, test, k, st)
        path, rel = D.artifact(ctx, "items.npz")  # per-item scores: the row's CI, paired comparisons
        scores.items.save(path)
        return CellResult(
            metrics=res.metrics, metrics_last=res.metrics_last, metrics_best_test=res.metrics_best_test,
            slices=scores.slices, artifacts={"items": rel, **scores.artifacts}, ci=scores.items.ci(),
            history=res.extra.get("history", []), protocol_used=protocol, head=D.DENSE_HEAD,
            config={**st, **items_note(scores.items), "input_norm": res.extra.get("input_norm"), "layers": layers,
                    **scores.config, **objective.config},
        )
