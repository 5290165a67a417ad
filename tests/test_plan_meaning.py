"""What a plan says about its numbers before it runs: a backbone's own input size (the `native`
profile, one line per resized backbone), the ceiling of each encoder's architecture and size (or
why none) and the gain computed only against it, verification sets' training faces and crops;
and how `run` ends: Ctrl-C in one line, no progress bars off a terminal, `status` without a plan."""

from __future__ import annotations

import json

import pytest
import torch

from bench_tasks.cli.app import main
from bench_tasks.contracts import Cell
from bench_tasks.plan.profiles import PROFILES

TIMM_224 = "vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def timm_file(tmp_path_factory):
    """A 224-px timm ViT-Ti/16 with random weights in a local safetensors file (no download)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    m = timm.create_model(TIMM_224, pretrained=False, num_classes=0)
    path = tmp_path_factory.mktemp("w") / "my_vit.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    return f"timm:{TIMM_224}:{path}"


@pytest.fixture()
def no_probe(tmp_path, monkeypatch):
    from bench_tasks.plan import estimate as E

    monkeypatch.setattr(E, "machine_speed", lambda device="cpu", refresh=None: E.Speed(50e9, 80e9, cached=True))


def run(capsys, *argv):
    rc = main(["run", "--no-progress", *argv])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_shape_and_native_size_are_read_without_building(timm_file, tmp_path):
    from bench_tasks.backbones.native import native_size, vit_shape

    assert vit_shape(timm_file) == (192, 12, 16, 224)
    assert vit_shape("random:vit_small@112/8/d4") == (384, 4, 8, 112)
    assert native_size("random:vit_tiny") is None  # any size: it follows the profile
    assert vit_shape(f"paco_fr:{tmp_path / 'missing.safetensors'}") is None


@pytest.mark.slow
def test_a_resized_backbone_gets_one_line_and_the_native_profile_keeps_its_size(timm_file, tmp_path, capsys,
                                                                                no_probe):
    res = tmp_path / "r.jsonl"
    rc, text = run(capsys, "--tasks", "attributes", "--backbones", timm_file, "--results", str(res), "--dry-run")
    assert rc == 0
    lines = [ln for ln in text.splitlines() if ln.startswith("input size:")]
    assert lines == [f"input size: {timm_file}: 224 -> 64 px, position embedding resampled (profile smoke; keep "
                     "224 px with --profile native or --set image_size=224 --set dense_size=224)"]
    # the ceiling and the random-init control of its architecture, built at the size it is evaluated at
    assert (f"ceiling: supervised:vit_tiny@64/16/d12 (the architecture of {timm_file}, built at the size it is "
            "evaluated at; native size 224)") in text
    assert f"random-init control: random:vit_tiny@64/16/d12 (the architecture of {timm_file}" in text
    rc, text = run(capsys, "--tasks", "attributes", "--backbones", timm_file, "--profile", "native",
                   "--no-ceilings", "--results", str(res), "--dry-run")
    assert rc == 0, text
    assert f"native size: 224 px, the input size of {timm_file}" in text and "input size:" not in text
    assert "image_size: 224" in text and "ceilings: none (--no-ceilings)" in text and "estimate: total" in text
    # --set says otherwise: the profile's size, said out loud
    rc, text = run(capsys, "--tasks", "attributes", "--backbones", timm_file, "--profile", "native",
                   "--set", "image_size=112", "--no-ceilings", "--results", str(res), "--dry-run")
    assert rc == 0 and "224 -> 112 px" in text and "image_size: 112" in text


def test_native_sizes_that_differ_are_an_error_naming_them(timm_file):
    from bench_tasks.plan.profiles import ProfileError, resolve_native_size

    prof = PROFILES["native"]
    with pytest.raises(ProfileError, match="112 px.*--set image_size=N"):
        resolve_native_size(prof, [timm_file, "random:vit_tiny@112/16"])
    got, lines = resolve_native_size(prof, ["random:vit_tiny@96/16", "random:vit_small"], {"dense_size"})
    assert (got.image_size, got.dense_size) == (96, prof.dense_size) and "dense_size from --set" in lines[0]
    assert resolve_native_size(PROFILES["smoke"], [timm_file]) == (PROFILES["smoke"], [])


def test_ceilings_match_architecture_and_size(timm_file, tmp_path):
    from bench_tasks.plan.references import ceiling_lines, ceiling_reason, ceiling_uri, matching_ceiling

    study = "supervised:vit_tiny@64/8/d2"
    assert ceiling_uri(timm_file) == "supervised:vit_tiny@224/16/d12"
    assert ceiling_uri("timm:eva02_tiny_patch14_224") is None
    assert "not one of the plain ViTs" in ceiling_reason("timm:eva02_tiny_patch14_224")
    # a study encoder whose run folder is gone: the suite's architecture, from its place
    assert ceiling_uri("paco_fr:runs/smoke/paco/encoder.safetensors") == study
    assert ceiling_uri(f"paco_fr:{tmp_path}/elsewhere/encoder.safetensors") is None
    # never a gain against another architecture's ceiling
    assert matching_ceiling(timm_file, [study]) is None
    assert matching_ceiling(timm_file, [study, "supervised:vit_tiny@224/16/d12"]) == "supervised:vit_tiny@224/16/d12"
    assert matching_ceiling("random:vit_tiny@64/8/d2", [study]) == study
    cells = [Cell(timm_file, "attributes", "synthface", "linear", 1.0, 0, "smoke"),
             Cell("timm:eva02_tiny_patch14_224", "attributes", "synthface", "linear", 1.0, 0, "smoke")]
    lines = ceiling_lines(cells)
    assert lines[0].startswith("ceiling: supervised:vit_tiny@224/16/d12 (") and "not in this plan" in lines[0]
    assert lines[1].startswith("ceiling: none for timm:eva02_tiny_patch14_224: timm model")


def test_the_reports_gain_uses_the_encoders_own_ceiling():
    from bench_tasks.report.compare import Reference, gain

    ref = Reference(floor=50.0, ceiling=90.0, ceilings={"supervised:vit_tiny@64/8/d2": (90.0, None),
                                                         "supervised:vit_small@64/8/d2": (70.0, None)})
    assert gain(60.0, ref.for_encoder("random:vit_small@64/8/d2")) == pytest.approx(0.5)
    assert gain(60.0, ref.for_encoder("random:vit_tiny@64/8/d2")) == pytest.approx(0.25)
    assert ref.for_encoder("random:vit_base@64/8/d2").ceiling is None


def test_verification_sets_say_where_the_head_trains_and_how_lfw_is_cropped(tmp_path):
    from bench_tasks.plan.cells import DataRoots
    from bench_tasks.registry import load_registries
    from bench_tasks.session.planning import verification_lines

    load_registries()
    (tmp_path / "lfw").mkdir()
    (tmp_path / "cfp_fp").mkdir()
    roots = DataRoots.parse([str(tmp_path)])
    cells = [Cell("random:vit_tiny", "recognition", d, "linear", 1.0, 0, "smoke") for d in ("lfw", "cfp_fp")]
    lines = verification_lines(cells, roots, PROFILES["smoke"])
    assert [ln.split(":")[0] for ln in lines] == ["recognition/lfw", "recognition/lfw", "recognition/cfp_fp"]
    assert "trains on SynthFace identities" in lines[0] and "centre-cropped" in lines[1]
    (tmp_path / "train_faces").mkdir()
    lines = verification_lines(cells, roots, PROFILES["smoke"])
    assert len(lines) == 1 and "centre-cropped" in lines[0]


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch, no_probe):
    from bench_tasks.run import loop

    res = tmp_path / "r.jsonl"
    res.write_text(json.dumps({"key": "k1", "status": "ok", "cell": {}}) + "\n")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "run_plan", interrupted)
    rc, text = run(capsys, "--tasks", "attributes", "--backbones", "random:vit_tiny@32/16/d1", "--results", str(res))
    assert rc == 130
    assert "Traceback" not in text and "; 1 rows kept; run the same command to resume" in text


def test_no_progress_bars_while_run_runs_and_as_before_afterwards(monkeypatch):
    import os

    from tqdm.auto import tqdm
    from tqdm.std import tqdm as std_tqdm

    from bench_tasks.session.process import progress_bars_off

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    before = std_tqdm.__dict__["__init__"]
    with progress_bars_off():
        with progress_bars_off():
            assert tqdm(range(2)).disable and tqdm(range(2), disable=False).disable is False
        assert tqdm(range(2)).disable and os.environ["TQDM_DISABLE"] == "1"
    assert "TQDM_DISABLE" not in os.environ and std_tqdm.__dict__["__init__"] is before
    assert not tqdm(range(2), file=open(os.devnull, "w")).disable


def test_status_without_a_plan_says_so(tmp_path, capsys):
    rc = main(["status", "--results", str(tmp_path / "nothing.jsonl")])
    out = capsys.readouterr().out
    assert rc == 1 and "no plan to report on" in out and "status <the plan's options>" in out
    assert not (tmp_path / "nothing.jsonl").exists()


def test_the_python_api_uses_the_clis_thread_default():
    from bench_tasks.api import evaluate
    from bench_tasks.plan.validate import PlanInvalid

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(PlanInvalid):
            evaluate("random:vit_tiny", tasks="no_such_task", profile="smoke", log=None)
        assert torch.get_num_threads() == 1
        with pytest.raises(PlanInvalid):
            evaluate("random:vit_tiny", tasks="no_such_task", profile="smoke", log=None, threads=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
