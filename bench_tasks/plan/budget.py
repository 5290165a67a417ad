"""Budget matching for the pre-training suite: every run gets the same budget of FLOPs, images or
steps (`run --all --budget-by flops|images|steps`, default flops).

The reference is PaCo-FR's configured length (`train.steps`, or `train.epochs` converted to steps):
budget = its steps x its cost per step. Another run's steps = budget / its own cost per step, where
the cost per step is

* flops:  model FLOPs of one optimizer step (paco_fr.flops.step_cost: forward + backward, teacher
          passes and the text tower included, measured once per run config on tiny batches);
* images: distinct images per step (PaCo-FR's `split` pairing shows B/2 images twice: B/2);
* steps:  1 (the old "same number of steps").

A run that uses another run's encoder as a teacher (MCF-style) is charged for the teacher's whole
pre-training: the teacher gets TEACHER_SHARE of the budget and the method the rest.

`match_steps` is the arithmetic (tests/test_fair_budget.py checks it by hand); the study
(bench_tasks.plan.study.plan_suite) measures the costs and applies the steps.
"""

from __future__ import annotations

from collections.abc import Mapping

from bench_tasks.errors import PlanError

BUDGET_BY = ("flops", "images", "steps")
DEFAULT_BUDGET_BY = "flops"
# share of the budget spent on a teacher's own pre-training; the method that uses it gets the rest.
# A quarter: MAE's step costs ~0.4x PaCo-FR's, so the teacher still trains for ~60 % of PaCo-FR's steps
TEACHER_SHARE = 0.25


class BudgetError(PlanError, ValueError):
    """A budget that cannot be matched (unknown unit, no reference run, a teacher eating the budget)."""


def unit_cost(cost: Mapping, by: str) -> float:
    """Cost of one optimizer step in the budget's unit."""
    if by == "flops":
        return float(cost["flops_per_step"])
    if by == "images":
        return float(cost["images_per_step"])
    if by == "steps":
        return 1.0
    raise BudgetError(f"--budget-by {by!r}: choose one of {', '.join(BUDGET_BY)}")


def match_steps(costs: Mapping[str, Mapping], reference: str, reference_steps: int, by: str,
                teachers: Mapping[str, str] | None = None, teacher_share: float = TEACHER_SHARE) -> dict[str, int]:
    """{run: optimizer steps} so that every run spends the reference's budget.

    costs: {run: {"flops_per_step", "images_per_step"}}; teachers: {method run: its teacher run}.
    A teacher gets round(teacher_share x budget / its cost); its method round((budget - the
    teacher's spend) / its cost). Every run gets at least one step."""
    if reference not in costs:
        raise BudgetError(f"reference run {reference!r} is not in the suite ({', '.join(costs)})")
    teachers = dict(teachers or {})
    budget = unit_cost(costs[reference], by) * int(reference_steps)
    steps: dict[str, int] = {}
    for t in dict.fromkeys(teachers.values()):
        if t not in costs:
            raise BudgetError(f"teacher run {t!r} is not in the suite")
        steps[t] = max(1, round(teacher_share * budget / unit_cost(costs[t], by)))
    for name, cost in costs.items():
        if name in steps:
            continue
        if name == reference:
            steps[name] = int(reference_steps)
            continue
        left = budget
        if name in teachers:
            t = teachers[name]
            left -= steps[t] * unit_cost(costs[t], by)
            if left <= 0:
                raise BudgetError(f"{name}: its teacher {t} spends the whole budget")
        steps[name] = max(1, round(left / unit_cost(cost, by)))
    return steps


def spent(cost: Mapping, steps: int, by: str) -> float:
    return unit_cost(cost, by) * int(steps)


def plan_lines(costs: Mapping[str, Mapping], steps: Mapping[str, int], by: str,
               teachers: Mapping[str, str] | None = None) -> list[str]:
    """A readable budget plan: one line per run (steps, GFLOP/step, images/step, totals; a method's
    totals include its teacher's)."""
    teachers = dict(teachers or {})
    out = [f"budget by {by}: {'run':<20} {'steps':>7} {'GFLOP/step':>11} {'img/step':>8} {'TFLOP total':>12} "
           f"{'images seen':>11}"]
    for name, c in costs.items():
        s = steps[name]
        flops = float(c["flops_per_step"]) * s
        imgs = int(c["images_per_step"]) * s
        note = ""
        if name in teachers:
            t = teachers[name]
            flops += float(costs[t]["flops_per_step"]) * steps[t]
            imgs += int(costs[t]["images_per_step"]) * steps[t]
            note = f"  (incl. teacher {t})"
        out.append(f"budget by {by}: {name:<20} {s:>7d} {float(c['flops_per_step']) / 1e9:>11.3f} "
                   f"{int(c['images_per_step']):>8d} {flops / 1e12:>12.4g} {imgs:>11d}{note}")
    return out
