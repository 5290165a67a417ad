"""The cost of a plan before it runs (bench_tasks.plan.estimate): the FLOPs model, the cached speed
probe, where each cell's estimate comes from, and the lines `run --dry-run` / `--status` print."""

from __future__ import annotations

import json

import pytest
import torch

from bench_tasks.cli.app import main
from bench_tasks.contracts import Cell
from bench_tasks.plan import estimate as E
from bench_tasks.plan.cell_costs import FORWARD_EFFICIENCY
from bench_tasks.plan.profiles import PROFILES


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """A speed cache of this machine's key in a temporary folder: no probe runs."""
    monkeypatch.setenv("PACO_FR_CACHE", str(tmp_path / "cache"))
    path = E.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({E.machine_key("cpu"): {"small": 10e9, "large": 20e9, "measured": "x"}}))
    return path


def test_flops_per_image_agrees_with_torchs_counter():
    from timm.models.vision_transformer import VisionTransformer
    from torch.utils.flop_counter import FlopCounterMode

    for dim, depth, heads, size, patch in ((192, 2, 3, 64, 8), (384, 1, 6, 112, 16)):
        m = VisionTransformer(img_size=size, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads,
                              num_classes=0).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            m(torch.rand(1, 3, size, size))
        got = E.Shape(dim, depth, patch).flops_per_image(size)
        t = (size // patch) ** 2 + 1
        attention = depth * 4 * t * t * dim  # torch's counter leaves the CPU's fused attention out
        assert got == pytest.approx(counter.get_total_flops() + attention, rel=0.01)


def test_speed_is_probed_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PACO_FR_CACHE", str(tmp_path))
    monkeypatch.delenv("PACO_FR_SPEED_PROBE", raising=False)
    calls = []

    def fake(dim, *a, **k):
        calls.append(dim)
        return 1e9 * dim

    monkeypatch.setattr(E, "_probe_shape", fake)
    s1 = E.machine_speed("cpu")
    assert not s1.cached and calls == [192, 768]
    s2 = E.machine_speed("cpu")
    assert s2.cached and calls == [192, 768] and s2.small == s1.small
    assert E.machine_key("cpu") in json.loads((tmp_path / "speed_probe.json").read_text())
    # between the two probed widths: interpolated; outside: the nearest
    assert s2.flops_per_s(192) == pytest.approx(192e9) and s2.flops_per_s(1024) == pytest.approx(768e9)
    assert 192e9 < s2.flops_per_s(384) < 768e9
    monkeypatch.setenv("PACO_FR_SPEED_PROBE", "refresh")
    E.machine_speed("cpu")
    assert len(calls) == 4


def _cell(bb, task="attributes", protocol="linear", fraction=1.0, profile="smoke"):
    return Cell(bb, task, "synthface", protocol, fraction, 0, profile)


def test_cells_take_their_row_else_rows_of_the_same_group_scaled_by_flops_else_the_probe():
    from dataclasses import asdict

    prof = PROFILES["smoke"]
    speed = E.Speed(10e9, 20e9)
    small, big = "random:vit_tiny@64/8/d2", "random:vit_small@64/8/d2"
    done, same_small, same_big = _cell(small), _cell(small, fraction=0.1), _cell(big, fraction=0.1)
    other_task = _cell(small, task="expression", protocol="concat")
    ref = _cell("random:vit_tiny@64/16/d2", fraction=0.1)
    rows = {done.key(): {"status": "ok", "cell": asdict(done), "provenance": {"wall_time_s": 7.0}},
            ref.key(): {"status": "ok", "cell": asdict(ref), "provenance": {"wall_time_s": 3.0},
                        "config": {"task": {"selection": {"grid": [3e-3, 1e-2, 3e-2]}}}}}
    est = E.cell_estimates([done, same_small, same_big, other_task], rows, prof, speed)
    assert est[done.key()].seconds == 7.0 and est[done.key()].done and est[done.key()].source == "row"
    e_small, e_big = est[same_small.key()], est[same_big.key()]
    assert e_small.source == e_big.source == "rows" and not e_small.done
    # the row's backbone has patch 16 (17 tokens), these patch 8 (65): scaled by the FLOPs ratio
    ratio = E.Shape(192, 2, 8).flops_per_image(64) / E.Shape(192, 2, 16).flops_per_image(64)
    assert e_small.seconds == pytest.approx(3.0 * ratio)
    assert e_big.seconds > 2 * e_small.seconds  # vit_small is wider
    assert est[other_task.key()].source == "probe" and est[other_task.key()].seconds > 0
    # a row from before the head's learning rate was chosen on val trained once: the grid's runs
    # (three values on val, the chosen one again with test) scale it
    del rows[ref.key()]["config"]
    old = E.cell_estimates([same_small], rows, prof, speed)[same_small.key()]
    assert E.training_runs(same_small, prof) == 4.0
    assert old.seconds == pytest.approx(4.0 * 3.0 * ratio)


def test_frozen_features_are_counted_once_per_backbone_dataset_and_size():
    prof = PROFILES["smoke"]
    speed = E.Speed(1e9, 1e9)  # slow: the backbone passes dominate
    bb = "random:vit_tiny@64/8/d2"
    first, second, tuned = _cell(bb), _cell(bb, task="expression"), _cell(bb, protocol="finetune")
    est = E.cell_estimates([first, second, tuned], {}, prof, speed)
    s1, s2, s3 = (est[c.key()].seconds for c in (first, second, tuned))
    images = prof.synthface_train + prof.synthface_val + prof.synthface_test
    extraction = images * E.Shape(192, 2, 8).flops_per_image(64) / FORWARD_EFFICIENCY / 1e9
    assert s1 - s2 == pytest.approx(extraction)  # the second cell reads the first one's features
    assert 0 < s2 < s1 < s3  # fine-tuning: forward and backward every epoch


def test_plan_estimate_lines_count_done_and_left():
    e = E.PlanEstimate(cells={"a": E.CellEstimate(60.0, "row", done=True), "b": E.CellEstimate(30.0, "probe"),
                              "c": E.CellEstimate(None, "none")},
                       pretrain=[E.RunEstimate("paco", 100.0, False), E.RunEstimate("mae", 50.0, True, 40.0)])
    assert e.total_s == pytest.approx(60 + 30 + 100 + 40) and e.left_s == pytest.approx(130)
    text = "\n".join(e.lines())
    assert "estimate: pre-training" in text and "for 2 runs" in text and "1 not done" in text
    assert "1 from the speed probe" in text and "1 from nothing (not counted)" in text
    assert "estimate: total" in text and "left: 2min" in text
    assert E.actual_line(100, 150).endswith("(1.50 x the estimate)")


def test_dry_run_and_status_print_the_estimate(tmp_path, capsys, cache):
    res = tmp_path / "r.jsonl"
    argv = ["run", "--no-progress", "--tasks", "attributes", "--backbones", "random:vit_tiny@32/16/d1",
            "--results", str(res)]
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "estimate: cells" in out and "estimate: total" in out and "10.0 GFLOP/s at ViT width 192" in out
    assert "cached" in out and not res.exists()
    assert main([*argv, "--status"]) == 0
    assert "estimate: total" in capsys.readouterr().out


def test_a_stale_row_is_counted_to_do_by_the_estimate_too(tmp_path, capsys, cache):
    """The estimate counts done what the plan counts done: an ok row computed with other settings
    gives its time, and its cell is among the ones left (never "0 not done" beside "1 to do")."""
    from bench_tasks.plan.cell_plan import make_plan
    from bench_tasks.store.results import ResultsStore
    from bench_tasks.store.rows import make_row

    res = tmp_path / "r.jsonl"
    argv = ["run", "--no-progress", "--tasks", "expression", "--datasets", "synthface", "--backbones",
            "random:vit_tiny@32/16/d1", "--results", str(res), "--no-ceilings", "--no-probes", "--protocols", "linear"]
    plan = make_plan([Cell("random:vit_tiny@32/16/d1", "expression", "synthface", "linear", profile="smoke")])
    store = ResultsStore(res)
    for cell, version in plan.items:
        fields = {**version.row_fields(), "settings_hash": "another0000"}  # computed with other settings
        store.append(make_row(cell, "ok", "balanced_acc", provenance={"wall_time_s": 7.0}, **fields))
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    import re

    todo = int(re.search(r"0 already done, 0 failed before \(will be retried\), (\d+) to do", out).group(1))
    assert todo >= len(plan) and f"for the {todo} not done" in out, out
    assert f"{len(plan)} from their rows" in out, out
    # --status counts them to do as well, and prints one estimate (the plan's)
    assert main([*argv, "--status"]) == 0
    out = capsys.readouterr().out
    assert f"{todo} cell(s) left, {len(plan)} of them done before with another version" in out, out
    assert "from the measured cell times" not in out and f"for the {todo} not done" in out


def test_dense_head_flops_agree_with_torchs_counter():
    from torch.utils.flop_counter import FlopCounterMode

    from bench_tasks.heads.dense import DenseHead, mmseg_available
    from bench_tasks.plan.dense_costs import head_flops_per_image
    from paco_fr.backbone import default_dense_layers

    if not mmseg_available():
        pytest.skip("mmcv / mmseg not installed")
    for dim, depth, patch, size, channels, task in ((192, 2, 8, 64, 32, "landmarks"), (192, 12, 16, 224, 32, "parsing")):
        levels = len(default_dense_layers(depth))
        head = DenseHead(dim, {"landmarks": 68, "parsing": 11}[task], channels=channels, num_levels=levels).eval()
        g = size // patch
        maps = [torch.rand(1, dim, g, g) for _ in range(levels)]
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            head(maps)
        assert head_flops_per_image(task, dim, depth, patch, size, channels) == pytest.approx(
            counter.get_total_flops(), rel=0.15)


def test_a_dense_cell_costs_its_steps_evaluations_and_input_size():
    """The dense estimate follows what fit_dense trains: more steps (dense_min_steps), a larger input
    (the head's grid and the backbone's tokens), fine-tuning the backbone every step."""
    import dataclasses

    prof = PROFILES["smoke"]
    speed = E.Speed(10e9, 10e9)

    def secs(profile=prof, protocol="frozen", bb="random:vit_tiny@64/8/d2"):
        c = Cell(bb, "landmarks", "synthface", protocol, 1.0, 0, "smoke")
        return E.cell_estimates([c], {}, profile, speed)[c.key()].seconds

    base = secs()
    more_steps = dataclasses.replace(prof, extra={**prof.extra, "dense_min_steps": 2000})
    bigger = dataclasses.replace(prof, dense_size=128, extra={k: v for k, v in prof.extra.items()})
    assert secs(more_steps) > 3 * base
    assert secs(bigger, bb="random:vit_tiny@128/8/d2") > 2.5 * base
    assert secs(protocol="finetune") > base
