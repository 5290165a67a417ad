"""The calibration table (bench_tasks/report/calibration.py) against hand-worked rows."""

from __future__ import annotations

import math

from bench_tasks.report.calibration import calibration_markdown, calibration_rows


def _row(backbone, task, protocol, value, ci, metric="acc", hib=True, seed=0, secs=10.0):
    return {"status": "ok", "headline": metric, "higher_is_better": hib,
            "cell": {"backbone": backbone, "task": task, "dataset": "synthface", "protocol": protocol,
                     "fraction": 1.0, "seed": seed, "profile": "cpu"},
            "metrics": {metric: value}, "ci": {metric: list(ci)}, "provenance": {"wall_time_s": secs}}


def test_checks_higher_is_better():
    rows = [_row("floor:input-free", "expression", "floor", 14.0, (14.0, 14.0)),
            _row("random:vit_tiny@64/8", "expression", "linear", 20.0, (18.0, 22.0)),
            _row("supervised:vit_tiny@64/8", "expression", "finetune", 50.0, (47.0, 53.0), secs=100.0)]
    (c,) = calibration_rows(rows)
    assert c.beats_floor() is True
    assert math.isclose(c.room(), (50 - 14) / (20 - 14))  # 6.0
    assert c.ceiling_meets_target() is False  # target 80
    md = calibration_markdown(rows, "cpu")
    assert "6.00 ✓" in md and "**no** (≥ 80)" in md and "10 / 10 / 100" in md
    assert "| task default |" in md  # the ceiling row's profile snapshot has no ceiling_epochs
    rows[2]["config"] = {"profile": {"extra": {"ceiling_epochs": 30}}}
    assert "| 30 |" in calibration_markdown(rows, "cpu")
    rows[2]["config"] = {"profile": {"extra": {"ceiling_epochs": {"expression": 25, "parsing": 9}}}}
    assert "| 25 |" in calibration_markdown(rows, "cpu")


def test_checks_lower_is_better_and_floor_inside_interval():
    # landmarks NME: lower is better; random-init's interval includes the floor
    rows = [_row("floor:input-free", "landmarks", "floor", 26.0, (25.0, 27.0), metric="nme", hib=False),
            _row("random:vit_tiny@64/8", "landmarks", "frozen", 25.0, (23.0, 27.0), metric="nme", hib=False),
            _row("supervised:vit_tiny@64/8", "landmarks", "finetune", 6.0, (5.5, 6.5), metric="nme", hib=False)]
    (c,) = calibration_rows(rows)
    assert c.beats_floor() is False
    assert math.isclose(c.room(), (26 - 6) / (26 - 25))  # 20
    assert c.ceiling_meets_target() is True  # <= 8 %
    # NME 0 is perfect: the most room any ceiling could give is 26 / 1
    assert math.isclose(c.max_room(), 26.0)
    rows[1] = _row("random:vit_tiny@64/8", "landmarks", "frozen", 11.0, (10.5, 11.5), metric="nme", hib=False)
    (c,) = calibration_rows(rows)
    # hand-worked: room (26 - 6) / (26 - 11) = 1.33; a perfect ceiling: 26 / 15 = 1.73 < 2
    assert math.isclose(c.room(), 20 / 15) and math.isclose(c.max_room(), 26 / 15)
    assert "1.33 ✗ (a perfect ceiling: 1.73)" in calibration_markdown(rows)


def test_seeds_are_averaged_and_random_below_floor_has_infinite_room():
    rows = [_row("floor:input-free", "recognition", "floor", 50.0, (50.0, 50.0)),
            _row("random:vit_tiny@64/8", "recognition", "linear", 49.0, (47.0, 51.0), seed=0),
            _row("random:vit_tiny@64/8", "recognition", "linear", 51.0, (49.0, 53.0), seed=1),
            _row("random:vit_tiny@64/8", "recognition", "linear", 50.0, (48.0, 52.0), seed=2),
            _row("random:vit_tiny@64/8", "recognition", "cosine", 60.0, (58.0, 62.0)),
            _row("supervised:vit_tiny@64/8", "recognition", "finetune", 70.0, (68.0, 72.0))]
    (c,) = calibration_rows(rows)
    assert c.random.n == 3 and math.isclose(c.random.value, 50.0)
    # the per-seed intervals over test items, averaged (not an interval of 3 seeds' mean, which would
    # leave the test items' noise out): (47+49+48)/3, (51+53+52)/3
    assert c.random.ci == (48.0, 52.0) and c.beats_floor() is False
    assert c.probe.value == 60.0 and c.probe_protocol == "cosine"
    assert c.probe_beats_floor() is True  # (58, 62) excludes 50
    assert c.room() == math.inf  # random at the floor: any ceiling above it leaves unbounded room
    md = calibration_markdown(rows)
    assert "(n=3)" in md and "≤ 65" in md
    assert "60.00 [58.00, 62.00] (cosine)" in md and "| **no** / yes |" in md


def test_concat_probe_of_classification_tasks():
    rows = [_row("floor:input-free", "expression", "floor", 13.8, (11.6, 16.0)),
            _row("random:vit_tiny@64/8", "expression", "linear", 14.7, (12.4, 17.1)),
            _row("random:vit_tiny@64/8", "expression", "concat", 16.4, (14.1, 18.7)),
            _row("random:vit_tiny@64/8", "expression", "cosine", 99.0, (98.0, 99.5))]  # not expression's probe
    (c,) = calibration_rows(rows)
    assert (c.probe.value, c.probe_protocol) == (16.4, "concat")
    # the floor verdict is the verdict of score - floor: the floor's own interval counts (unpaired here,
    # no per-item scores), so 16.4 (14.1, 18.7) does not beat 13.8 (11.6, 16.0) although it excludes 13.8
    assert c.beats_floor() is False and c.probe_beats_floor() is False
    rows[2] = _row("random:vit_tiny@64/8", "expression", "concat", 20.4, (18.1, 22.7))
    (c,) = calibration_rows(rows)
    assert c.beats_floor() is False and c.probe_beats_floor() is True


def test_no_table_without_encoder_rows():
    assert calibration_markdown([_row("floor:input-free", "attributes", "floor", 50.0, (50, 50))]) is None


def test_ceiling_gets_a_from_scratch_recipe():
    from bench_tasks.plan.profiles import get_profile
    from bench_tasks.protocols.train import FitConfig
    from bench_tasks.tasks._ceiling import CEILING_LR, ceiling_recipe

    cfg = FitConfig(epochs=6, lr_head=1e-3, lr_backbone=1e-4, layer_decay=0.75)
    prof = get_profile("cpu")
    assert ceiling_recipe(cfg, "random:vit_tiny@64/8/d4", prof) is cfg  # only ceilings change
    c = ceiling_recipe(cfg, "supervised:vit_tiny@64/8/d4", prof, "attributes")
    assert (c.lr_backbone, c.layer_decay, c.epochs) == (CEILING_LR, 1.0, 30)  # cpu.yaml: attributes 30
    # cpu.yaml names every task; a task it does not name keeps its own epochs
    assert ceiling_recipe(cfg, "supervised:vit_tiny@64/8/d4", prof, "parsing").epochs == 30
    import dataclasses

    partial = dataclasses.replace(prof, extra={**prof.extra, "ceiling_epochs": {"attributes": 30}})
    assert ceiling_recipe(cfg, "supervised:vit_tiny@64/8/d4", partial, "parsing").epochs == 6

    every = dataclasses.replace(prof, extra={**prof.extra, "ceiling_epochs": 12})  # one number: every task
    assert ceiling_recipe(cfg, "supervised:vit_tiny@64/8/d4", every, "parsing").epochs == 12
    assert c.lr_head == max(1e-3, CEILING_LR)
    smoke = get_profile("smoke")  # no ceiling_epochs: the task's own epochs
    assert ceiling_recipe(cfg, "supervised:vit_tiny@64/8/d4", smoke).epochs == 6
