"""Each task's discriminating power: best - random init and ceiling - random init in units of the
PaCo-FR - MAE half-width; a column below the threshold is said not to discriminate, with its reason."""

from __future__ import annotations

import pandas as pd

from bench_tasks.report.discrimination import (
    DISCRIMINATION_MIN,
    discriminating_power,
    non_discriminating,
    power_markdown,
)


def _frame(task: str, values: dict, hw: float, hib: bool = True) -> pd.DataFrame:
    rows = []
    kinds = {"random:vit_tiny@64/8": "main", "floor:input-free": "floor", "supervised:vit_tiny@64/8": "ceiling"}
    labels = {"paco": "PaCo-FR (ours)", "mae": "MAE", "random:vit_tiny@64/8": "Random init",
              "floor:input-free": "Floor", "supervised:vit_tiny@64/8": "Ceiling", "mcf": "MCF-style"}
    for uri, v in values.items():
        kind = kinds.get(uri, "main")
        proto = {"floor": "floor", "ceiling": "finetune"}.get(kind, "linear")
        # each interval half-width hw / sqrt(2): the unpaired PaCo-FR - MAE interval has half-width hw
        h = hw / 2 ** 0.5
        rows.append({"uri": uri, "run": uri, "task": task, "dataset": "synthface", "protocol": proto, "fraction": 1.0,
                     "seed": 0, "kind": kind, "value": v, "metric": "acc", "higher_is_better": hib,
                     "method": labels[uri], "method_label": labels[uri], "ci": [v - h, v + h], "items": None})
    return pd.DataFrame(rows)


def test_a_spread_of_a_few_half_widths_discriminates():
    df = _frame("attributes", {"random:vit_tiny@64/8": 57.0, "mae": 60.5, "paco": 61.3, "mcf": 59.0,
                               "supervised:vit_tiny@64/8": 67.0}, hw=0.5)
    (p,) = discriminating_power(df)
    assert abs(p.half_width - 0.5) < 1e-6 and p.best_label == "PaCo-FR (ours)"
    assert abs(p.best_units - 4.3 / 0.5) < 1e-6 and abs(p.ceiling_units - 10.0 / 0.5) < 1e-6
    assert p.discriminates and not non_discriminating([p])


def test_a_spread_inside_the_half_width_does_not_and_says_why():
    # recognition's cosine probe in the reference study: the whole spread about one half-width
    df = _frame("expression", {"random:vit_tiny@64/8": 50.5, "mae": 51.1, "paco": 51.4}, hw=0.9)
    (p,) = discriminating_power(df)
    assert p.best_units < DISCRIMINATION_MIN and p.discriminates is False
    assert "from random init" in non_discriminating([p])[("expression", "synthface", "linear")]
    assert "**no**" in power_markdown([p])


def test_a_ceiling_below_random_init_does_not_discriminate_and_lower_is_better_counts():
    df = _frame("landmarks", {"random:vit_tiny@64/8": 11.3, "mae": 8.7, "paco": 8.6,
                              "supervised:vit_tiny@64/8": 11.5}, hw=0.2, hib=False)
    (p,) = discriminating_power(df)
    assert p.best_units > DISCRIMINATION_MIN  # NME: lower is better, so the gain counts positive
    assert p.ceiling_units < 0 and p.discriminates is False and "ceiling" in p.reason()


def test_without_paco_and_mae_nothing_is_judged():
    df = _frame("attributes", {"random:vit_tiny@64/8": 57.0, "mcf": 59.0}, hw=0.5)
    (p,) = discriminating_power(df)
    assert p.half_width is None and p.discriminates is None and not non_discriminating([p])
    assert power_markdown([p]) is None  # no unit, no section (a report about the user's backbones)
