"""Issue 15, plan-time rows: bad input to `run` is refused before any cell runs, all problems at
once, exit code 2, and the results file is left byte for byte as it was (also with --dry-run)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench_tasks.cli.app import main

BB = "random:vit_tiny@32/16/d1"


@pytest.fixture()
def results(tmp_path):
    p = tmp_path / "results.jsonl"
    p.write_text('{"key": "x", "status": "ok"}\n')  # a file that must not be touched
    return p


def run(capsys, *argv):
    rc = main(["run", "--no-progress", *argv])
    out = capsys.readouterr()
    return rc, out.out + out.err


def _celeba(root, partition=True):
    files = [f"{i:06d}.jpg" for i in range(1, 7)]
    names = ["Smiling", "Young"]
    lines = [str(len(files)), " ".join(names)] + [f"{f} 1 -1" for f in files]
    root.mkdir(parents=True, exist_ok=True)
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_landmarks_align_celeba.txt").write_text("6\nlefteye_x lefteye_y\n")
    if partition:
        (root / "list_eval_partition.txt").write_text("".join(f"{f} {i % 3}\n" for i, f in enumerate(files)))
    for f in files:
        (root / "img_align_celeba").mkdir(exist_ok=True)
        Image.fromarray(np.full((218, 178, 3), 99, np.uint8)).save(root / "img_align_celeba" / f)


@pytest.mark.parametrize("dry", [True, False])
@pytest.mark.parametrize("case", ["hf", "pth", "safetensors", "wrong_keys", "device"])
def test_bad_backbone_or_device_refused_at_plan_time(tmp_path, capsys, results, case, dry):
    before = results.read_bytes()
    backbone, device, expect = BB, "cpu", None
    if case == "hf":
        backbone, expect = "hf-hub:x", "unknown scheme 'hf-hub'"
    elif case == "pth":
        f = tmp_path / "garbage.pth"
        f.write_bytes(b"garbage" * 20)
        backbone, expect = f"mae:{f}", "garbage.pth is not a readable PyTorch checkpoint"
    elif case == "safetensors":
        f = tmp_path / "garbage.safetensors"
        f.write_bytes(b"garbage" * 20)
        backbone, expect = f"paco_fr:{f}", "garbage.safetensors is not a readable .safetensors file"
    elif case == "wrong_keys":
        import timm

        vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
        sd = {k: v for k, v in vit.state_dict().items() if not k.startswith("blocks.")}
        sd.update({f"stem.extra{i}": torch.zeros(1) for i in range(30)})
        f = tmp_path / "wrong.pth"
        torch.save(sd, f)
        backbone, expect = f"timm:vit_tiny_patch16_224:{f}", "wrong.pth does not fit the backbone"
    elif case == "device":
        if torch.cuda.device_count() > 7:
            pytest.skip("this machine has a cuda:7")
        device, expect = "cuda:7", "--device 'cuda:7'"
    rc, text = run(capsys, "--tasks", "expression", "--datasets", "synthface", "--backbones", backbone,
                   "--device", device, "--results", str(results), *(["--dry-run"] if dry else []))
    assert rc == 2, text
    assert expect in text and "nothing was run or written" in text
    assert "todo" not in text and "Traceback" not in text
    assert len(text) < 4000  # key lists are shortened
    assert results.read_bytes() == before


@pytest.mark.parametrize("opt,value,expect", [
    ("--seeds", "abc", "--seeds: 'abc' is not integer"),
    ("--fractions", "x", "--fractions: 'x' not a number"),
    ("--fractions", "1.5", "'1.5' outside (0, 1]"),
    ("--fractions", "0", "'0' outside (0, 1]"),
    ("--protocols", "linaer,frozen", "unknown protocol 'linaer' (did you mean 'linear'?)"),
    ("--protocols", "linaer", "unknown protocol 'linaer' (did you mean 'linear'?)"),
    ("--tasks", "atributes", "unknown task 'atributes' (did you mean 'attributes'?)"),
    ("--datasets", "celba", "unknown dataset 'celba' (did you mean 'celeba'?)"),
])
@pytest.mark.parametrize("dry", [True, False])
def test_bad_option_values(capsys, results, opt, value, expect, dry):
    before = results.read_bytes()
    args = {"--tasks": "expression", "--datasets": "synthface", "--backbones": BB}
    args[opt] = value
    flat = [x for kv in args.items() for x in kv]
    rc, text = run(capsys, *flat, "--results", str(results), *(["--dry-run"] if dry else []))
    assert rc == 2, text
    assert expect in text and "Traceback" not in text
    assert results.read_bytes() == before


def test_all_problems_are_printed_together(tmp_path, capsys, results):
    before = results.read_bytes()
    f = tmp_path / "garbage.pth"
    f.write_bytes(b"garbage")
    rc, text = run(capsys, "--tasks", "expression", "--datasets", "synthface", "--backbones", f"hf-hub:x,mae:{f}",
                   "--seeds", "abc", "--fractions", "1.5", "--protocols", "linaer", "--results", str(results))
    assert rc == 2
    assert "5 problems" in text
    for frag in ("'hf-hub'", "garbage.pth", "--seeds", "--fractions", "'linaer'"):
        assert frag in text
    assert results.read_bytes() == before


@pytest.mark.parametrize("dry", [True, False])
def test_wrong_layout_names_the_missing_file_not_the_optional_one(tmp_path, capsys, results, dry):
    before = results.read_bytes()
    _celeba(tmp_path / "data" / "celeba", partition=False)
    rc, text = run(capsys, "--tasks", "attributes", "--datasets", "celeba", "--data-root", str(tmp_path / "data"),
                   "--backbones", BB, "--results", str(results), *(["--dry-run"] if dry else []))
    assert rc == 2, text
    assert "missing list_eval_partition.txt" in text and "Expected layout" in text
    assert results.read_bytes() == before


@pytest.mark.parametrize("dry", [True, False])
def test_empty_dataset_folder(tmp_path, capsys, results, dry):
    before = results.read_bytes()
    (tmp_path / "data" / "celeba").mkdir(parents=True)
    rc, text = run(capsys, "--tasks", "attributes", "--datasets", "celeba", "--data-root", str(tmp_path / "data"),
                   "--backbones", BB, "--results", str(results), *(["--dry-run"] if dry else []))
    assert rc == 2, text
    assert "celeba" in text and "img_align_celeba" in text
    assert results.read_bytes() == before


def test_valid_data_passes_the_check(tmp_path, capsys, results):
    _celeba(tmp_path / "data" / "celeba")
    # two training images: fraction 1 only (the smoke profile's 0.1 would leave one, which the plan
    # refuses: test_too_few_training_images_are_refused_before_anything_runs)
    rc, text = run(capsys, "--tasks", "attributes", "--datasets", "celeba", "--data-root", str(tmp_path / "data"),
                   "--backbones", BB, "--results", str(results), "--fractions", "1", "--dry-run")
    assert rc == 0, text
    assert "todo" in text


def test_too_few_training_images_are_refused_before_anything_runs(tmp_path, capsys, results):
    _celeba(tmp_path / "data" / "celeba")
    rc, text = run(capsys, "--tasks", "attributes", "--datasets", "celeba", "--data-root", str(tmp_path / "data"),
                   "--backbones", BB, "--results", str(results), "--fractions", "0.1,1", "--dry-run")
    assert rc != 0 and "fraction(s) 0.1 leave fewer than 2" in text and "--fractions 1" in text


def test_fraction_outside_range_refused_by_the_python_planner():
    from bench_tasks.plan.cells import plan_cells

    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        plan_cells([BB], {"parsing": ["synthface"]}, fractions=[1.5])
