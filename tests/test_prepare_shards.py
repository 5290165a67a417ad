"""`python -m paco_fr prepare` and the `wds` source: bad inputs reported by name, shards that train,
a split across ranks and workers with no overlap and no gap, exact resume of the stream."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from shard_fixtures import TINY_WDS, raw_faces

from paco_fr.config import ConfigError, check_data_config, load_config
from paco_fr.data.shards import ShardStream, epoch_shards
from paco_fr.prepare import prepare

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    lm = raw_faces(root / "img", 40)
    return prepare(root / "shards", images=root / "img", landmarks=lm, size=32, shard_size=5, workers=1), root


def _bad_inputs(tmp_path):
    img = tmp_path / "img"
    lm = raw_faces(img, 12)
    (img / "id0" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    (img / "id0" / "corrupt.jpg").parent.mkdir(exist_ok=True)
    raw_faces(tmp_path / "extra", 2)  # two more images to place by hand
    (tmp_path / "extra" / "id0" / "img0000.jpg").rename(img / "no_line.jpg")
    (tmp_path / "extra" / "id1" / "img0001.png").rename(img / "no_points.png")
    text = lm.read_text()
    text += "id0/corrupt.jpg 10 10 30 10 20 20 12 30 28 30\n"
    text += "no_points.png\n"
    text += "gone.jpg 10 10 30 10 20 20 12 30 28 30\n"
    lm.write_text(text)
    return img, lm


@pytest.mark.slow
def test_prepare_reports_bad_inputs_by_name_and_its_shards_train(tmp_path):
    img, lm = _bad_inputs(tmp_path)
    out = tmp_path / "shards"
    res = subprocess.run([sys.executable, "-m", "paco_fr", "prepare", "--images", str(img), "--landmarks", str(lm),
                          "--out", str(out), "--size", "32", "--shard-size", "4", "--workers", "2"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    man = json.loads((out / "manifest.json").read_text())
    reasons = {s["file"]: s["reason"] for s in man["skipped"]}
    assert set(reasons) == {"id0/corrupt.jpg", "no_line.jpg", "no_points.png", "gone.jpg"}, reasons
    assert "cannot read the image" in reasons["id0/corrupt.jpg"]
    assert "no line in landmarks.txt" in reasons["no_line.jpg"]
    assert "no face points" in reasons["no_points.png"]
    assert "not found" in reasons["gone.jpg"]
    for name in reasons:  # each reported by name on the console too
        assert f"skipped {name}:" in res.stdout, res.stdout
    assert man["num_samples"] == 12 and man["inputs"] == 16
    assert sum(s["count"] for s in man["shards"]) == 12 and len(man["shards"]) == 4
    # the shards train (PaCo-FR with per-face landmarks from the shards)
    run = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "paco_fr", "pretrain", "--config", "smoke", "--run-dir", str(run),
                          *TINY_WDS, f"data.path={out}", "train.steps=2", "train.batch_size=4"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "12 images found in 4 shards" in res.stdout and "0 unreadable image(s) skipped" in res.stdout
    assert json.loads((run / "summary.json").read_text())["status"] == "complete"


def test_prepare_resumes_and_keeps_finished_shards(tmp_path):
    lm = raw_faces(tmp_path / "img", 10)
    out = tmp_path / "shards"
    first = prepare(out, images=tmp_path / "img", landmarks=lm, size=32, shard_size=4)
    assert first["shards_written"] == 3 and first["num_samples"] == 10
    (out / "shard-000001.tar").unlink()  # as if interrupted before this shard was finished
    mtime0 = (out / "shard-000000.tar").stat().st_mtime_ns
    again = prepare(out, images=tmp_path / "img", landmarks=lm, size=32, shard_size=4)
    assert again["shards_reused"] == 2 and again["shards_written"] == 1
    assert (out / "shard-000000.tar").stat().st_mtime_ns == mtime0
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in first["shards"]]  # same bytes


def test_prepare_aligned_folder_without_landmarks(tmp_path):
    raw_faces(tmp_path / "crops", 6, size=40)
    man = prepare(tmp_path / "out", aligned=tmp_path / "crops", size=32, shard_size=4)
    assert man["num_samples"] == 6 and not man["landmarks"]
    ds = ShardStream(tmp_path / "out", 32, shuffle_buffer=4)
    ds.configure(batch_size=3)
    b = next(iter(ds))
    assert b["image"].shape == (3, 3, 32, 32) and "landmarks" not in b


def test_epoch_split_no_overlap_no_gap():
    for n, world, workers in [(10, 2, 1), (10, 2, 2), (7, 3, 2), (5, 1, 1)]:
        for epoch in range(3):
            got = [epoch_shards(n, 0, epoch, r, world, w, workers) for r in range(world) for w in range(workers)]
            flat = [s for g in got for s in g]
            assert sorted(flat) == list(range(n)), (n, world, workers, epoch)
    assert epoch_shards(10, 0, 0, 0, 2, 0, 1) != epoch_shards(10, 0, 1, 0, 2, 0, 1)  # reshuffled each epoch


def _epoch_indices(ds, rank, world, batch, workers=1):
    """The global rows rank `rank` reads in its first len/world samples (one epoch's share)."""
    ds.configure(rank=rank, world=world, batch_size=batch, workers=workers)
    n_rank = sum(ds.counts[i] for w in range(workers) for i in epoch_shards(len(ds.shards), ds.seed, 0, rank,
                                                                            world, w, workers))
    rows, it = [], iter(ds)
    while len(rows) < n_rank:
        rows += next(it)["index"].tolist()
    return rows[:n_rank]


def test_stream_ranks_disjoint_and_complete_per_epoch(shards):
    man, root = shards
    ds = ShardStream(root / "shards", 32, shuffle_buffer=8)
    a, b = _epoch_indices(ds, 0, 2, 4), _epoch_indices(ds, 1, 2, 4)
    assert not set(a) & set(b)
    assert sorted(a + b) == list(range(man["num_samples"]))  # every face once in the epoch
    assert a != sorted(a)  # the shuffle buffer mixed them


def test_stream_landmarks_follow_each_face(shards):
    _, root = shards
    ds = ShardStream(root / "shards", 32, shuffle_buffer=8)
    ds.configure(batch_size=8)
    b = next(iter(ds))
    lm = b["landmarks"]
    assert lm.shape == (8, 68, 2) and torch.isfinite(lm).all()
    # each face's eye points sit near the canonical template (aligned), not at one fixed place per batch
    assert (lm[:, 36:48, 1].mean(1) - 0.4).abs().max() < 0.15


def test_stream_resume_is_exact(shards):
    _, root = shards
    for workers in (1,):
        ds = ShardStream(root / "shards", 32, shuffle_buffer=8)
        ds.configure(rank=1, world=2, batch_size=3, workers=workers)
        it = iter(ds)
        full = [next(it)["index"].tolist() for _ in range(12)]  # crosses an epoch (20 rows per rank)
        for start in (1, 5, 7, 11):
            ds.configure(rank=1, world=2, batch_size=3, start_micro=start, workers=workers)
            it = iter(ds)
            assert [next(it)["index"].tolist() for _ in range(12 - start)] == full[start:], start


def test_stream_resume_exact_with_two_loader_workers(shards):
    _, root = shards
    from torch.utils.data import DataLoader

    ds = ShardStream(root / "shards", 32, shuffle_buffer=8)

    def take(start, n):
        ds.configure(world=1, batch_size=4, start_micro=start, workers=2)
        it = iter(DataLoader(ds, batch_size=None, num_workers=2))
        return [next(it)["index"].tolist() for _ in range(n)]

    full = take(0, 9)
    assert take(3, 6) == full[3:]


def test_corrupt_sample_skipped_with_shard_and_key(tmp_path):
    import webdataset as wds

    from paco_fr.prepare import _encode_jpeg

    out = tmp_path / "s"
    out.mkdir()
    # a shard with one broken JPEG, written by hand
    with wds.TarWriter(str(out / "shard-000000.tar"), encoder=False) as w:
        for k in range(4):
            arr = (np.random.default_rng(k).random((32, 32, 3)) * 255).astype(np.uint8)
            data = _encode_jpeg(arr, 90)
            w.write({"__key__": f"k{k}", "jpg": {2: b"broken", 1: data[: len(data) // 2]}.get(k, data)})
    (out / "manifest.json").write_text(json.dumps({"shards": [{"name": "shard-000000.tar", "count": 4}],
                                                   "landmarks": False}))
    for decoder in ("pil", "simplejpeg"):
        ds = ShardStream(out, 32, shuffle_buffer=1, decoder=decoder)
        ds.configure(batch_size=4)
        b = next(iter(ds))
        assert b["skipped"] == ["shard-000000.tar:k1", "shard-000000.tar:k2"] and b["image"].shape[0] == 4, decoder


def test_wds_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs data.path"):
        check_data_config(load_config("smoke", ["data.source=wds"]))
    with pytest.raises(ConfigError, match="no manifest.json"):
        check_data_config(load_config("smoke", ["data.source=wds", f"data.path={tmp_path}"]))
    with pytest.raises(ConfigError, match="data.landmarks_file"):
        check_data_config(load_config("smoke", ["data.source=landmarks"]))


def test_too_few_shards_for_ranks_and_workers(shards):
    _, root = shards
    ds = ShardStream(root / "shards", 32)
    with pytest.raises(ValueError, match="cannot feed 4 rank"):
        ds.configure(world=4, workers=3)


def test_pretrain_prints_images_found_and_skipped(tmp_path, capsys):
    from PIL import Image

    from paco_fr.engine import train

    img = tmp_path / "faces"
    img.mkdir()
    for i in range(7):
        Image.fromarray((np.random.default_rng(i).random((32, 32, 3)) * 255).astype(np.uint8)).save(img / f"{i}.png")
    (img / "broken.jpg").write_bytes(b"not an image")
    over = [o for o in TINY_WDS if not o.startswith("data.")]
    cfg = load_config("smoke", [*over, "data.source=folder", f"data.path={img}", "train.steps=1",
                                "train.batch_size=8"])
    assert train(cfg, tmp_path / "run")["status"] == "complete"
    out = capsys.readouterr().out
    assert "8 images found (data.source=folder)" in out
    assert "1 unreadable image(s) skipped" in out


@pytest.mark.slow
def test_engine_resume_on_shards_with_workers_and_accum_is_exact(shards, tmp_path):
    from paco_fr.engine import train

    _, root = shards

    def cfg(*extra):
        return load_config("smoke", [*TINY_WDS, f"data.path={root / 'shards'}", "data.num_workers=2",
                                     "train.batch_size=4", "train.grad_accum=2", "train.steps=8", *extra])

    full = train(cfg(), tmp_path / "full")
    assert train(cfg("train.interrupt_at_step=3"), tmp_path / "cut")["status"] == "interrupted"
    assert train(cfg(), tmp_path / "cut")["status"] == "complete"

    def last(run):
        recs = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
        return [r["loss"] for r in recs if "loss" in r]

    assert full["status"] == "complete"
    assert last(tmp_path / "cut") == pytest.approx(last(tmp_path / "full"), rel=1e-5)


def test_empty_shards_are_left_out(shards, tmp_path):
    man, root = shards
    m = json.loads((root / "shards" / "manifest.json").read_text())
    m["shards"][0]["count"] = 0  # as when every input of that shard was skipped
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    for s in m["shards"]:
        (tmp_path / s["name"]).symlink_to(root / "shards" / s["name"])
    ds = ShardStream(tmp_path, 32)
    assert len(ds.shards) == len(m["shards"]) - 1 and len(ds) == man["num_samples"] - man["shards"][0]["count"]
