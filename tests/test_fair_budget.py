"""Compute-matched budgets: FLOP counting against a closed form, the budget
arithmetic by hand, equal FLOPs across objectives at the smoke config, distinct images per step,
and the compute block of a tiny run's summary.json."""

from __future__ import annotations

import json

import pytest
import torch

from bench_tasks.plan.budget import BudgetError, match_steps
from paco_fr.backbone import create_backbone
from paco_fr.config import load_config
from paco_fr.flops import count_flops, distinct_images_per_micro_batch, micro_batch_flops, vit_forward_flops


def test_vit_forward_flops_match_the_closed_form():
    # ViT-Ti width 192, 2 blocks, 32 px / patch 8: P = 16 patches, T = 17 tokens, batch 3.
    # 2 * B * [P * 3p^2 * D + L * (T * 12 D^2 + 2 T^2 D)]
    # = 2 * 3 * [16*192*192 + 2 * (17 * 12 * 36864 + 2 * 289 * 192)] = 95,113,728
    assert vit_forward_flops(3, 16, 192, 2, 192) == 95_113_728
    torch.manual_seed(0)
    enc = create_backbone("vit_tiny", img_size=32, patch_size=8, depth=2)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert count_flops(lambda: enc.forward_features(x)) == 95_113_728  # attention included on a CPU too


def test_forward_backward_of_a_vit_by_hand():
    # backward of a linear layer = 2 products (input grad + weight grad): 2 x its forward, except the
    # patch embedding's input grad (the image needs none); attention backward = 5 products of its
    # forward's 2 (the scores are recomputed, as flash attention does): 2.5 x its forward.
    # B = 2, P = 16, T = 17, D = 192, 1 block: linear+conv forward 2*2*(16*192*192 + 17*12*192^2) = 32,440,320,
    # attention forward 2*2*2*17^2*192 = 443,904 -> 3 * 32,440,320 - 2*2*16*192*192 + 3.5 * 443,904
    enc = create_backbone("vit_tiny", img_size=32, patch_size=8, depth=1)
    x = torch.randn(2, 3, 32, 32)
    assert vit_forward_flops(2, 16, 192, 1, 192) == 32_440_320 + 443_904
    total = count_flops(lambda: enc.forward_features(x).last_tokens.sum().backward())
    assert total == 3 * 32_440_320 - 2 * 2 * 16 * 192 * 192 + 3.5 * 443_904 == 96_515_328


def test_match_steps_by_hand():
    costs = {"paco": {"flops_per_step": 100, "images_per_step": 8}, "mae": {"flops_per_step": 40, "images_per_step": 16},
             "teacher": {"flops_per_step": 40, "images_per_step": 16},
             "mcf": {"flops_per_step": 250, "images_per_step": 16}}
    teachers = {"mcf": "teacher"}
    # flops: budget 100 x 60 = 6000; mae 6000 / 40 = 150; teacher 0.25 x 6000 / 40 = 37.5 -> 38 (1520 spent);
    # mcf (6000 - 1520) / 250 = 17.92 -> 18
    assert match_steps(costs, "paco", 60, "flops", teachers) == {"teacher": 38, "paco": 60, "mae": 150, "mcf": 18}
    # images: budget 8 x 60 = 480; mae 30; teacher 0.25 x 480 / 16 = 7.5 -> 8 (128); mcf (480 - 128) / 16 = 22
    assert match_steps(costs, "paco", 60, "images", teachers) == {"teacher": 8, "paco": 60, "mae": 30, "mcf": 22}
    # steps: the teacher's steps are charged too
    assert match_steps(costs, "paco", 60, "steps", teachers) == {"teacher": 15, "paco": 60, "mae": 60, "mcf": 45}
    with pytest.raises(BudgetError, match="whole budget"):
        match_steps(costs, "paco", 60, "flops", teachers, teacher_share=1.0)
    with pytest.raises(BudgetError, match="budget-by"):
        match_steps(costs, "paco", 60, "joules")


def test_smoke_study_runs_spend_equal_flops_within_5_percent():
    from bench_tasks.plan.study import plan_suite

    torch.set_num_threads(1)
    plan = {p.run.name: p for p in plan_suite("smoke", "runs", include_ablations=False, budget_by="flops")}
    spend = {n: p.cost["flops_per_step"] * p.steps for n, p in plan.items()}
    spend["mcf"] += spend.pop("mcf_teacher")  # the teacher's pre-training is charged to MCF-style
    ref = spend["paco"]
    assert plan["paco"].steps == 64  # the reference keeps its configured length (the profile's study: pretrain_overrides)
    for name, flops in spend.items():
        assert abs(flops - ref) / ref < 0.05, (name, flops, ref)
    # the costs differ (else this test would prove nothing): MAE is cheaper per step, FaRL dearer
    assert plan["mae"].steps > 64 > plan["farl"].steps
    # the teacher is passed to MCF by path, trained on the disjoint split
    assert plan["mcf"].overrides["mcf.teacher"] == str(plan["mcf_teacher"].encoder)
    assert plan["mcf_teacher"].overrides["data.split"] == "teacher"


def test_flops_extrapolated_from_tiny_batches_equal_the_measured_batch():
    from paco_fr.flops import PROBE_BATCHES, _micro_batch_flops, _probe_model

    torch.set_num_threads(1)
    cfg = load_config("smoke", {"objective": "mae", "model.depth": 1})
    model, vocab = _probe_model(cfg, None, None)
    assert max(PROBE_BATCHES) < 16
    direct = _micro_batch_flops(model, cfg, 16, vocab)
    assert micro_batch_flops(cfg, 16) == pytest.approx(direct, rel=1e-4)


def test_split_pairing_sees_half_the_images():
    from paco_fr.models.paco import PaCoModel

    cfg = load_config("smoke", {"model.depth": 1})
    assert distinct_images_per_micro_batch(cfg, 16) == 8
    assert distinct_images_per_micro_batch(load_config("smoke", {"spatial.weight": 0}), 16) == 16
    assert distinct_images_per_micro_batch(load_config("smoke", {"spatial.pairing": "repeat"}), 16) == 16
    assert distinct_images_per_micro_batch(load_config("smoke", {"objective": "mae"}), 16) == 16
    # the rule mirrors the model: count the distinct images PaCo-FR's views are made of
    from paco_fr.models import build_model

    for ov, want in (({}, 8), ({"spatial.pairing": "repeat"}, 16), ({"spatial.weight": 0}, 16)):
        c = load_config("smoke", {"model.depth": 1, **ov})
        m = build_model(c)
        assert isinstance(m, PaCoModel)
        x = torch.rand(16, 3, 64, 64)
        views, _ = m._views(x)
        assert len(torch.unique(views.flatten(1), dim=0)) == want == distinct_images_per_micro_batch(c, 16)


def test_tiny_pretraining_summary_has_the_compute_block(tmp_path):
    from paco_fr.engine import train

    cfg = load_config(None, ["model.img_size=32", "model.patch_size=8", "model.depth=1", "decoder.dim=32",
                             "decoder.depth=1", "codebook.num_tokens=64", "belief.hidden=32", "data.source=random",
                             "data.num_images=32", "train.batch_size=8", "train.steps=2", "train.progress=false",
                             "train.snapshot_every=0", "train.ckpt_every=0", "train.threads=1", "incubation.steps=1"])
    s = train(cfg, tmp_path / "run")
    c = json.loads((tmp_path / "run" / "summary.json").read_text())["compute"]
    assert c == s["compute"]
    assert c["steps"] == 2 and c["batch_per_step"] == 8 and c["images_per_step"] == 4  # split pairing
    assert c["images_seen"] == 8 and c["flops_total"] == 2 * c["flops_per_step"] > 0
    assert c["flops_per_step"] == micro_batch_flops(cfg, 8)
    assert c["wall_time_s"] > 0 and c["device"] == "cpu" and c["charged_flops_total"] == c["flops_total"]


def test_report_compute_table_reads_the_summaries(tmp_path):
    from bench_tasks.report.compute import compute_frame, compute_markdown
    from bench_tasks.report.naming import method_info

    def run(name, flops, steps, imgs, teacher=None):
        d = tmp_path / "runs" / "smoke" / name
        d.mkdir(parents=True)
        c = {"flops_per_step": flops, "steps": steps, "flops_total": flops * steps, "images_per_step": imgs,
             "images_seen": imgs * steps, "wall_time_s": 12.0, "device": "cpu",
             "charged_flops_total": flops * steps + (5e12 if teacher else 0),
             "charged_images_seen": imgs * steps + (100 if teacher else 0)}
        if teacher:
            c["teacher"] = {"path": teacher, "flops_total": 5e12}
        (d / "summary.json").write_text(json.dumps({"status": "complete", "compute": c}))
        from bench_tasks.store.method import block

        (d / "method.json").write_text(json.dumps(block(name, "main", label={"paco": "PaCo-FR (ours)"}.get(name, name),
                                                        run=name)))
        (d / "encoder.safetensors").write_bytes(b"")  # only its folder is read here
        return f"paco_fr:{d / 'encoder.safetensors'}"

    from bench_tasks.store.method import identity_for

    uris = [run("paco", 8e9, 64, 8), run("mcf", 1e10, 38, 16, teacher="runs/smoke/mcf_teacher/encoder.safetensors")]
    # the runner copies summary.json's compute block into each row's method block (identity_for)
    methods = {u: method_info({"cell": {"backbone": u}, "method": identity_for(u)})
               for u in [*uris, "random:vit_tiny"]}
    df = compute_frame(methods)
    assert list(df["run"]) == ["mcf", "paco"]  # table order: baselines first, ours last; no compute, no row
    mcf = df.iloc[0]
    assert mcf["GFLOP/step"] == 10 and mcf["TFLOP (run)"] == pytest.approx(0.38)
    assert mcf["TFLOP charged"] == pytest.approx(5.38) and mcf["images charged"] == 16 * 38 + 100
    md = compute_markdown(df)
    assert "Pre-training compute" in md and "PaCo-FR" in md and "mcf_teacher" in md and "5.38" in md


def test_baseline_sections_do_not_invalidate_other_objectives_runs():
    from paco_fr.rundir import config_diff

    old = load_config("smoke", {"farl.captions.mode": "oracle", "mcf.teacher": "random"})
    new = load_config("smoke")
    assert config_diff(old, new) == []  # a PaCo-FR run: the baselines' sections are not what it trains
    assert config_diff({**old, "objective": "farl"}, {**new, "objective": "farl"}) == [
        "farl.captions.mode: 'oracle' -> 'noisy'"]
