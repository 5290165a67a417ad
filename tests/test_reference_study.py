"""The reference study: supervision recorded and compared (labels_used), label-free PaCo-FR by
default with the ground-truth region map as an ablation, pre-training seeds as a plan axis, and
the weights the codebook figure needs kept by every run (recon.safetensors)."""

import json
from pathlib import Path

import pytest

from bench_tasks.plan.suite import (
    expand_seeds,
    parse_pretrain_seeds,
    split_seeded_name,
    study_overrides,
    suite_encoders,
    suite_run,
    suite_runs,
)
from bench_tasks.store.method import labels_used, supervision_kind
from paco_fr.config import load_config

# ----------------------------------------------------------------------------- labels used


def smoke_identities() -> dict[str, dict]:
    """{run: method block} of the smoke suite's runs (seed 0) under the study's overrides, as
    bench_tasks.plan.suite.legacy_identity gives them to rows of those runs."""
    return {r.name: r.identity("smoke", study_overrides("smoke")) for r in suite_runs(True, "smoke")}


def test_paco_default_is_label_free_and_the_ground_truth_map_is_an_ablation():
    assert load_config("smoke")["mask"]["regions"] == "canonical"
    ids = smoke_identities()
    assert ids["paco"]["labels_used"] == "none"
    assert ids["mae"]["labels_used"] == "none"
    assert ids["farl"]["labels_used"] == "captions (noisy)"
    assert ids["mcf"]["labels_used"] == "teacher (mcf_teacher)"
    gt = ids["abl_regions_gt"]
    assert (gt["role"], gt["component"], gt["labels_used"]) == ("ablation", "regions", "landmarks (ground truth)")
    assert gt["label"] == "PaCo-FR, regions from per-face landmarks"
    # every other PaCo-FR ablation is label-free
    assert all(i["labels_used"] == "none" for n, i in ids.items() if n.startswith("abl_") and n != "abl_regions_gt")
    assert all(i["pretrain_seed"] == 0 for i in ids.values())


def test_labels_used_of_other_sources(tmp_path):
    (tmp_path / "lm.txt").write_text("")
    folder = load_config("smoke", {"mask.regions": "landmarks", "data.source": "folder",
                                   "data.path": str(tmp_path), "data.landmarks_file": str(tmp_path / "lm.txt")})
    assert labels_used(folder) == "landmarks (user file)"
    # landmarks only matter to region masking: random masking with landmarks uses none
    assert labels_used(load_config("smoke", {"mask.regions": "landmarks", "mask.strategy": "random"})) == "none"
    assert labels_used(load_config("smoke", {"objective": "farl", "farl.captions.mode": "oracle"})) == "captions (oracle)"
    assert supervision_kind("teacher (mcf_teacher_seed1)") == "teacher"
    assert supervision_kind(None) == "not recorded"


# ----------------------------------------------------------------------------- pre-training seeds


def test_pretrain_seeds_parse_and_reject_bad_entries():
    assert parse_pretrain_seeds(None) == {"default": (0,)}
    assert parse_pretrain_seeds([0, 1, 2]) == {"default": (0, 1, 2)}
    assert parse_pretrain_seeds(["0,1,2", "farl=0"]) == {"default": (0, 1, 2), "farl": (0,)}
    assert parse_pretrain_seeds({"default": [0, 1], "mcf": [0]}) == {"default": (0, 1), "mcf": (0,)}
    with pytest.raises(ValueError, match="not a list of integers"):
        parse_pretrain_seeds(["0,x"])
    with pytest.raises(ValueError, match="unknown run"):
        expand_seeds(suite_runs(False, "smoke"), parse_pretrain_seeds(["paco=0", "pacoo=1"]))


def test_one_run_folder_per_run_and_seed_seed_zero_unchanged():
    runs = suite_runs(True, "smoke")
    seeded = expand_seeds(runs, parse_pretrain_seeds(["0,1,2", "farl=0"]))
    names = [r.name for r in seeded]
    assert len(names) == len(set(names))
    for base in ("paco", "mae", "mcf", "mcf_teacher"):
        assert {base, f"{base}_seed1", f"{base}_seed2"} <= set(names)
    assert "farl_seed1" not in names and "abl_k1_seed1" not in names  # ablations: the first seed
    by = {r.name: r for r in seeded}
    # seed 0 is the run itself: same folder, same overrides -> the same encoder URI and cell keys
    assert by["paco"] == runs[0] and by["paco"].overrides == runs[0].overrides
    assert suite_encoders("runs", "smoke", True, parse_pretrain_seeds(["0,1,2"]))["paco"] == \
        suite_encoders("runs", "smoke", True)["paco"]
    # another seed: its own seed, the same images, the same label, its teacher of the same seed
    s1 = by["paco_seed1"]
    assert s1.overrides["seed"] == 1 and s1.overrides["data.seed"] == 0
    assert by["mcf_seed2"].teacher == "mcf_teacher_seed2"
    ident = s1.identity("smoke")
    assert ident["label"] == smoke_identities()["paco"]["label"] and ident["pretrain_seed"] == 1
    assert ident["run"] == "paco_seed1"
    # every method's first seed comes before any second one; teachers before their students
    assert names.index("mcf") < names.index("paco_seed1")
    assert names.index("mcf_teacher_seed1") < names.index("mcf_seed1")
    assert split_seeded_name("mcf_teacher_seed12") == ("mcf_teacher", 12)
    assert suite_run("smoke", "mcf_seed1").teacher == "mcf_teacher_seed1"
    assert suite_run("smoke", "nope_seed1") is None


def test_profile_yaml_pretrain_seeds(tmp_path):
    import yaml

    from bench_tasks.contracts import Cell
    from bench_tasks.plan.profiles import ProfileError, get_profile, read_profile_file, settings_hash

    data = yaml.safe_load(open(Path(__file__).resolve().parents[1] / "bench_tasks/configs/cpu.yaml"))
    p = tmp_path / "cpu.yaml"
    p.write_text(yaml.safe_dump({**data, "pretrain_seeds": {"default": [0, 1, 2], "farl": [0]}}))
    prof = read_profile_file(p)
    assert prof.pretrain_seeds == {"default": [0, 1, 2], "farl": [0]}
    # a plan axis: the cells' settings fingerprint does not change with it
    cell = Cell("random:vit_tiny", "attributes", "synthface", "linear", profile="cpu")
    assert settings_hash(cell, prof) == settings_hash(cell, get_profile("cpu"))
    p.write_text(yaml.safe_dump({**data, "pretrain_seeds": ["a"]}))
    with pytest.raises(ProfileError, match="pre-training seeds"):
        read_profile_file(p)


def test_cli_dry_run_plans_every_seed(capsys):
    from bench_tasks.cli.app import main

    rc = main(["run", "--all", "--profile", "smoke", "--tasks", "attributes", "--no-ablations", "--no-ceilings",
               "--no-probes", "--dry-run", "--pretrain-seeds", "0,1", "--pretrain-seeds", "farl=0",
               "--results", "/nonexistent/r.jsonl", "--runs", "/nonexistent/runs"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "paco_seed1" in out and "mcf_teacher_seed1" in out and "farl_seed1" not in out
    assert "/nonexistent/runs/smoke/paco_seed1/encoder.safetensors" in out


def test_stored_config_without_a_later_default_key_is_no_conflict(tmp_path):
    from paco_fr.rundir import config_diff

    new = load_config("smoke")
    old = json.loads(json.dumps(new))
    del old["data"]["seed"]  # a run recorded before data.seed existed
    assert config_diff(old, new) == []
    assert config_diff(old, load_config("smoke", {"data.seed": 3})) == ["data.seed: '<unset>' -> 3"]


# ----------------------------------------------------------------------------- the report's supervision


def _row(label, role, labels, uri, seed=0):
    return {"status": "ok", "cell": {"backbone": uri, "profile": "smoke"},
            "method": {"method": "x", "role": role, "label": label, "labels_used": labels, "pretrain_seed": seed}}


def test_report_prints_supervision_and_says_when_unequal():
    from bench_tasks.report.supervision import supervision_frame, supervision_markdown

    rows = [_row("PaCo-FR (ours)", "main", "none", "paco_fr:a"), _row("PaCo-FR (ours)", "main", "none", "paco_fr:b", 1),
            _row("MAE", "main", "none", "paco_fr:c"),
            _row("FaRL-style", "main", "captions (noisy)", "paco_fr:d"),
            _row("PaCo-FR, regions from per-face landmarks", "ablation", "landmarks (ground truth)", "paco_fr:e")]
    df = supervision_frame(rows)
    paco = df[df["label"] == "PaCo-FR (ours)"].iloc[0]
    assert (paco["runs"], paco["pretrain_seeds"], paco["kind"]) == (2, "0, 1", "none")
    md = supervision_markdown(rows)
    assert "Unequal comparison" in md and "FaRL-style (captions (noisy))" in md
    assert "landmarks (ground truth)" in md
    equal = supervision_markdown(rows[:3])
    assert "Unequal" not in equal and "Equal comparison: every compared method uses none" in equal


# ----------------------------------------------------------------------------- recon.safetensors


@pytest.mark.slow
def test_every_run_keeps_recon_weights_and_the_figure_reads_them(tmp_path):
    import shutil

    import numpy as np
    import torch
    from safetensors import safe_open

    from bench_tasks.report.figures import load_reconstructions
    from paco_fr.engine import pretrain, reconstruct
    from paco_fr.export import RECON_NAME, load_recon_model

    run = tmp_path / "paco"
    ov = {"train.steps": 3, "train.warmup_steps": 1, "data.num_images": 64, "train.progress": False,
          "train.snapshot_every": 0, "train.ckpt_every": 3, "export.use_ema": False, "train.ema": 0.0,
          "diagnostics.grad_norms": False}
    pretrain("smoke", ov, run_dir=run)
    recon = run / RECON_NAME
    assert recon.is_file()
    with safe_open(str(recon), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith("encoder.") for k in keys)
    assert any("codebook" in k for k in keys) and any(k.startswith("decoder.") for k in keys)
    assert recon.stat().st_size < (run / "ckpt" / "last.pt").stat().st_size / 2  # no optimizer state
    x = torch.rand(2, 3, 64, 64)
    want = reconstruct(run, x)  # from the checkpoint
    got = reconstruct(load_recon_model(run), x)  # from encoder + recon files
    for k in ("original", "corrupted", "reconstructed"):
        assert torch.allclose(want[k], got[k], atol=1e-4), k
    shutil.rmtree(run / "ckpt")  # what a committed study keeps: no checkpoint
    data, notes = load_reconstructions({"256": run}, 64, n_faces=2)
    assert notes == [] and np.asarray(data["256"]["reconstructed"]).shape[0] == 2
    # the files a study commits (scripts/keep_study_files.py): no encoder, the figure's arrays
    import importlib.util

    spec = importlib.util.spec_from_file_location("keep", Path(__file__).resolve().parents[1] / "scripts" /
                                                  "keep_study_files.py")
    keep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(keep)
    out = tmp_path / "kept"
    keep.keep(tmp_path, out, n_faces=2)
    kept = sorted(p.name for p in (out / "paco").iterdir())  # (no method.json: not a study run)
    assert kept == ["config.yaml", "reconstructions.npz", "summary.json"]
    data, notes = load_reconstructions({"256": out / "paco"}, 64)
    assert notes == [] and np.asarray(data["256"]["original"]).shape[0] == 2


def test_study_cells_evaluate_every_seed_of_a_method_and_ablations_once():
    from bench_tasks.plan.profiles import get_profile
    from bench_tasks.plan.study import study_cells

    prof = get_profile("cpu")
    enc = suite_encoders("runs", "cpu", True, parse_pretrain_seeds(["0,1"]))
    cells = study_cells(prof, enc, {"attributes": ["synthface"]}, ceilings=False, probes=False)
    by = {}
    for c in cells:
        by.setdefault(c.backbone, set()).add(c.seed)
    assert by[f"paco_fr:{enc['paco_seed1']}"] == by[f"paco_fr:{enc['paco']}"] == set(prof.seeds)
    assert by[f"paco_fr:{enc['abl_regions_gt']}"] == {prof.seeds[0]}
    assert "abl_regions_gt_seed1" not in enc and "mcf_teacher_seed1" not in enc  # teachers are not evaluated
    assert len({c.key() for c in cells}) == len(cells)


def test_a_seeded_rows_block_is_found_from_its_folder_name():
    from bench_tasks.plan.suite import legacy_identity

    b = legacy_identity("paco_fr:runs/smoke/paco_seed2/encoder.safetensors", "smoke")
    assert (b["label"], b["pretrain_seed"], b["run"], b["labels_used"]) == ("PaCo-FR (ours)", 2, "paco_seed2", "none")
