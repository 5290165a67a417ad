"""References that fit the checkpoint: a timm ViT-Ti/16 made for 224 px and evaluated at the smoke
profile's 64 px gets its ceiling and its random-init control built at 64 px; a ceiling that does
not beat the encoder is flagged "ceiling not reached" and no normalised gain uses it."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch

from bench_tasks.plan.cells import plan_cells
from bench_tasks.plan.references import ceiling_lines, evaluation_size, with_references
from bench_tasks.registry import load_all
from bench_tasks.report.build import build_report
from bench_tasks.report.compare import references
from bench_tasks.report.fairness import NOT_REACHED, unreached_ceilings

load_all()


def test_a_timm_checkpoint_gets_ceiling_and_random_init_at_its_evaluation_size(tmp_path):
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    path = tmp_path / "tiny.pth"
    torch.save(vit.state_dict(), path)
    uri = f"timm:vit_tiny_patch16_224:{path}"
    cells = plan_cells([uri], {"attributes": ["synthface"], "landmarks": ["synthface"]}, protocols=["linear"],
                       seeds=[0], fractions=[0.1, 1.0], profile="smoke")
    full = with_references(cells)
    assert evaluation_size("attributes", "smoke") == 64
    ceil = {(c.backbone, c.task, c.protocol) for c in full if c.backbone.startswith("supervised:")}
    assert ceil == {("supervised:vit_tiny@64/16/d12", "attributes", "finetune"),
                    ("supervised:vit_tiny@64/16/d12", "landmarks", "finetune")}
    ctrl = [c for c in full if c.backbone.startswith("random:")]
    # every cell of the encoder, again with its architecture untrained at 64 px
    assert {(c.task, c.protocol, c.fraction) for c in ctrl} == {(c.task, c.protocol, c.fraction) for c in cells}
    assert {c.backbone for c in ctrl} == {"random:vit_tiny@64/16/d12"}
    lines = ceiling_lines(full)
    assert any(ln.startswith("ceiling: supervised:vit_tiny@64/16/d12 (") and "native size 224" in ln for ln in lines)
    assert any(ln.startswith("random-init control: random:vit_tiny@64/16/d12 (") for ln in lines)



def test_the_plans_profile_sizes_its_references_not_the_bundled_one_of_that_name(tmp_path):
    """A profile changed under the bundled name (a profile file, `--set image_size=96`): make_plan
    builds the ceiling and the random-init control at the size the cells run at under it."""
    import dataclasses

    import timm

    from bench_tasks.plan.cell_plan import make_plan
    from bench_tasks.plan.profiles import get_profile

    path = tmp_path / "tiny.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=2).state_dict(), path)
    uri = f"timm:vit_tiny_patch16_224:{path}"
    mine = dataclasses.replace(get_profile("smoke"), image_size=96)
    cells = plan_cells([uri], {"attributes": ["synthface"]}, protocols=["linear"], seeds=[0], fractions=[1.0],
                       profile=mine)
    refs = {c.backbone for c in make_plan(cells, ceilings="auto", profiles=mine).cells if c.backbone != uri}
    assert {"supervised:vit_tiny@96/16/d2", "random:vit_tiny@96/16/d2"} <= refs
    assert not any("@64/" in u for u in refs)  # the bundled smoke profile's size

def test_reference_lines_say_a_shared_control_once_and_nothing_per_encoder_without_ceilings(tmp_path):
    """A study's many encoders of one architecture share one random-init control: one line for it,
    and with --no-ceilings no "ceiling: none for ..." line per encoder (the first line says it)."""
    import timm

    uris = []
    for i in range(3):
        path = tmp_path / f"tiny{i}.pth"
        torch.save(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=2).state_dict(),
                   path)
        uris.append(f"timm:vit_tiny_patch16_224:{path}")
    cells = plan_cells(uris, {"attributes": ["synthface"]}, protocols=["linear"], seeds=[0], fractions=[1.0],
                       profile="smoke")
    lines = ceiling_lines(with_references(cells, ceilings=None), enabled=False)
    assert lines[0].startswith("ceilings: none (--no-ceilings)")
    assert not [ln for ln in lines if ln.startswith("ceiling")][1:]
    control = [ln for ln in lines if ln.startswith("random-init control:")]
    assert len(control) == 1 and "and 2 more encoder(s)" in control[0]


def _row(uri, protocol, value, kind_ci=(1.0, 1.0), fraction=1.0, selection=None):
    task = {"image_size": 64}
    if selection:
        task["selection"] = selection
    return {"key": f"{uri}|{protocol}|{fraction}", "status": "ok",
            "cell": {"backbone": uri, "task": "attributes", "dataset": "synthface", "protocol": protocol,
                     "fraction": fraction, "seed": 0, "profile": "smoke"},
            "headline": "balanced_acc", "higher_is_better": True, "metrics": {"balanced_acc": value},
            "ci": {"balanced_acc": [value - kind_ci[0], value + kind_ci[1]]}, "config": {"task": task}}


MINE = "timm:vit_tiny_patch16_224:/w/mine.pth"
CEIL = "supervised:vit_tiny@64/16/d12"
RAND = "random:vit_tiny@64/16/d12"


SEL = {"param": "lr_head", "grid": [0.003, 0.01, 0.03], "val": {}, "chosen": 0.01}
ROWS = [_row("floor:input-free", "floor", 50.0), _row(MINE, "linear", 57.5, selection=SEL),
        _row(RAND, "linear", 56.0, selection=dict(SEL, chosen=0.03)), _row(CEIL, "finetune", 51.3)]


def test_a_ceiling_below_the_encoder_gives_no_gain():
    from bench_tasks.report.frames import rows_to_frames

    df = rows_to_frames(ROWS)[0]
    got = unreached_ceilings(df)
    assert list(got) == [("attributes", "synthface", CEIL)] and set(got[("attributes", "synthface", CEIL)]) == {MINE, RAND}
    ref = references(df)[("attributes", "synthface")]
    assert ref.for_encoder(MINE).ceiling is None  # no normalised gain against it


@pytest.mark.slow
def test_a_ceiling_below_the_encoder_is_flagged_in_the_report(tmp_path):
    rows = ROWS
    res = tmp_path / "r.jsonl"
    res.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "rep"
    build_report([res], out, runs_dir=None, profile="smoke", reconstruct=False)
    summary = (out / "SUMMARY.md").read_text()
    assert NOT_REACHED in summary and f"`{CEIL}` does not beat" in summary
    assert NOT_REACHED in (out / "user_table.md").read_text()
    # the learning rate each backbone chose on val, and its evaluation / native sizes
    assert "Head learning rate chosen on `val`" in summary and "0.03" in summary
    assert re.search(r"timm vit_tiny_patch16_224 \(mine\)\s*\|\s*64\s*\|\s*224\s*\|", summary)  # evaluated at 64, made for 224


def test_a_ceiling_above_them_is_not_flagged():
    df = pd.DataFrame([
        {"uri": MINE, "kind": "measured", "task": "t", "dataset": "d", "protocol": "linear", "fraction": 1.0,
         "value": 60.0, "higher_is_better": True},
        {"uri": CEIL, "kind": "ceiling", "task": "t", "dataset": "d", "protocol": "finetune", "fraction": 1.0,
         "value": 80.0, "higher_is_better": True}])
    assert unreached_ceilings(df) == {}
