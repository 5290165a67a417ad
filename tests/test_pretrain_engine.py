"""End-to-end engine tests on tiny CPU runs: resume == uninterrupted, export into timm, loss
falls, corrupt images skipped, throughput bench, idempotent pretrain(), reconstruct()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from paco_fr.config import load_config
from paco_fr.engine import pretrain, reconstruct, train

TINY = [
    "model.img_size=32", "model.patch_size=8", "model.depth=1", "decoder.dim=32", "decoder.depth=1",
    "codebook.num_tokens=64", "belief.hidden=32", "data.source=random", "data.num_images=64",
    "train.batch_size=8", "train.log_every=1", "train.snapshot_every=0", "train.ckpt_every=0",
    "train.progress=false", "train.warmup_steps=2", "train.threads=1", "train.deterministic=true",
    "incubation.steps=2", "mcf.teacher=random", "mcf.proj_dim=32", "mcf.proj_hidden=64",
    "farl.embed_dim=32", "farl.text_width=32", "farl.text_depth=1", "farl.text_heads=2",
]


def _log(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines() if ln.strip()]


def _losses(run: Path) -> dict[int, dict]:
    return {r["step"]: r for r in _log(run) if "loss" in r}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "full"
    cfg = load_config(None, [*TINY, "train.steps=6"])
    s = train(cfg, run)
    assert s["status"] == "complete"
    return run


def test_resume_equals_uninterrupted(full_run, tmp_path):
    run = tmp_path / "interrupted"
    s1 = train(load_config(None, [*TINY, "train.steps=6", "train.interrupt_at_step=3"]), run)
    assert s1["status"] == "interrupted" and s1["step"] == 3
    assert (run / "ckpt" / "last.pt").exists() and not (run / "encoder.safetensors").exists()
    ck = torch.load(run / "ckpt" / "last.pt", weights_only=True)
    assert ck["step"] == 3
    s2 = train(load_config(None, [*TINY, "train.steps=6"]), run)
    assert s2["status"] == "complete" and s2["step"] == 6
    a, b = _losses(full_run), _losses(run)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    for step in (4, 6):
        assert b[step]["loss"] == pytest.approx(a[step]["loss"], rel=1e-5, abs=1e-6)
    sa = json.loads((full_run / "summary.json").read_text())["final"]["loss"]
    sb = json.loads((run / "summary.json").read_text())["final"]["loss"]
    assert sb == pytest.approx(sa, rel=1e-5)


def test_export_loads_into_timm(full_run, tmp_path):
    from paco_fr.backbone import create_backbone
    from paco_fr.export import export_encoder, load_encoder, read_metadata

    # full-depth vit_tiny at 32 px / patch 8: the exact documented timm call, no extra kwargs
    torch.manual_seed(0)
    cfg = load_config(None, ["model.img_size=32", "model.patch_size=8"])
    enc = create_backbone("vit_tiny", img_size=32, patch_size=8)
    path = export_encoder(enc, cfg, tmp_path / "enc.safetensors", step=0)
    m = timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=0, img_size=32, patch_size=8,
                          pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = enc.eval().forward_features(enc.normalize(x)).cls
        got = m(enc.normalize(x))
        assert torch.allclose(ref, got, atol=1e-5)
        again = load_encoder(path)
        assert torch.allclose(again.forward_features(again.normalize(x)).cls, ref, atol=1e-5)
    # the engine's automatic export of a depth-overridden run: timm needs depth=<depth>
    meta = read_metadata(full_run / "encoder.safetensors")
    assert meta["arch"] == "vit_tiny" and meta["objective"] == "paco" and json.loads(meta["mean"]) == [0.5] * 3
    kw = json.loads(meta["timm_kwargs"])
    assert kw["depth"] == 1
    m2 = timm.create_model(meta["timm_name"], pretrained=True, pretrained_cfg_overlay=dict(
        file=str(full_run / "encoder.safetensors")), **kw)
    enc2 = load_encoder(full_run / "encoder.safetensors")
    with torch.no_grad():
        assert torch.allclose(m2.eval()(enc2.normalize(x)), enc2.forward_features(enc2.normalize(x)).cls, atol=1e-5)


def test_pretrain_idempotent_and_reconstruct(full_run):
    enc = full_run / "encoder.safetensors"
    mtime = enc.stat().st_mtime
    out = pretrain(load_config(full_run / "config.yaml"), None, full_run)
    assert out == enc and enc.stat().st_mtime == mtime
    imgs = torch.randint(0, 255, (3, 32, 32, 3), dtype=torch.uint8)
    r1 = reconstruct(full_run, imgs, seed=0)
    r2 = reconstruct(full_run, imgs, seed=0)
    for k in ("original", "corrupted", "reconstructed"):
        assert r1[k].shape == (3, 3, 32, 32)
        assert torch.equal(r1[k], r2[k])


def test_smoke_loss_falls(tmp_path):
    """A short CPU pre-training run (PaCo-FR, SynthFace if available): reconstruction loss falls."""
    try:
        import paco_fr.data.synthface  # noqa: F401

        src = ["data.source=synthface", f"data.root={tmp_path / 'sf'}", "data.num_images=256"]
    except ImportError:
        src = []
    steps = 60
    run = tmp_path / "smoke"
    cfg = load_config(None, [*TINY, *src, f"train.steps={steps}", "train.lr=2e-3", "train.warmup_steps=5",
                             "incubation.steps=10", "train.deterministic=false"])
    train(cfg, run)
    log = _losses(run)
    rec = [log[s]["rec"] for s in range(1, steps + 1)]
    first, last = np.mean(rec[:10]), np.mean(rec[-10:])
    assert last < 0.9 * first, (first, last)


def test_corrupt_images_are_skipped(tmp_path):
    from PIL import Image

    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(9):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"f{i}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    run = tmp_path / "folder_run"
    cfg = load_config(None, [*TINY, "data.source=folder", f"data.path={folder}", "data.hflip=false",
                             "train.steps=2", "train.batch_size=5", "objective=mae"])
    s = train(cfg, run)
    assert s["status"] == "complete"
    events = [r for r in _log(run) if r.get("event") == "skipped_images"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["skipped_images"] >= 1 and any("broken.png" in f for e in events for f in e["files"])


def test_landmarks_source(tmp_path):
    from PIL import Image

    from paco_fr.data.pretrain_data import build_pretrain_dataset
    from paco_fr.data.template import CANONICAL_5

    img = np.random.default_rng(0).integers(0, 255, (100, 80, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.jpg")
    pts = (np.asarray(CANONICAL_5) * 60 + 10).ravel()
    (tmp_path / "lm.txt").write_text("a.jpg " + " ".join(f"{v:.2f}" for v in pts) + "\nmissing.jpg "
                                     + " ".join(f"{v:.2f}" for v in pts) + "\n")
    ds = build_pretrain_dataset({"source": "landmarks", "path": str(tmp_path), "landmarks_file": str(tmp_path / "lm.txt")},
                                32)
    item = ds[1]  # missing file -> skipped, replaced by the next readable one
    assert item["image"].shape == (3, 32, 32) and item["skipped"]


def test_throughput_cpu_tiny():
    from paco_fr.throughput import bench_throughput, format_result

    r = bench_throughput("vit_tiny", img_size=32, patch_size=8, batch=4, steps=1, warmup=0, depth=1,
                         overrides=["decoder.dim=32", "decoder.depth=1", "codebook.num_tokens=64"])
    assert r["paco"]["img_per_s"] > 0 and r["simmim"]["img_per_s"] > 0 and r["paco"]["flops_per_step"] > 0
    assert "ratio" in format_result(r)


def test_cli_export_and_pretrain(full_run, tmp_path):
    from paco_fr.cli import main
    from paco_fr.export import read_metadata

    out = tmp_path / "e.safetensors"
    assert main(["export", str(full_run / "ckpt" / "last.pt"), str(out)]) == 0
    assert read_metadata(out)["objective"] == "paco"
    run = tmp_path / "cli_run"
    assert main(["pretrain", "--config", "smoke", "--run-dir", str(run), *TINY, "train.steps=2", "objective=mae"]) == 0
    assert (run / "encoder.safetensors").exists() and (run / "summary.json").exists()
    with pytest.raises(ValueError, match="checkpoint"):
        train(load_config(None, [*TINY, "train.steps=3", "objective=paco"]), run)


def test_grad_accum_ema_and_options(tmp_path):
    run = tmp_path / "opts"
    cfg = load_config(None, [*TINY, "train.steps=2", "train.grad_accum=2", "train.ema=0.9", "mask.strategy=block",
                             "codebook.selection=gumbel", "codebook.update=grad", "spatial.pairing=repeat",
                             "spatial.stop_grad=true", "loss.on=all", "train.snapshot_every=2"])
    s = train(cfg, run)
    assert s["status"] == "complete" and s["steps"] == 2
    assert (run / "snapshots" / "step_000002.png").exists()
    ck = torch.load(run / "ckpt" / "last.pt", weights_only=True)
    assert ck["ema"] is not None
    from safetensors.torch import load_file

    exported = load_file(str(run / "encoder.safetensors"))
    assert torch.equal(exported["cls_token"], ck["ema"]["vit.cls_token"].float())
