"""Damaged shards are caught: `prepare` checks every shard it keeps (size and sha256 against its
record) and rewrites a damaged one, so the manifest is true after every run; the `wds` source
reads a partly damaged shard set as far as it goes, counts the lost samples (images, not
occurrences) and names the damaged shards; none readable is a clear error; resume stays exact;
prepare's numbers are checked before any image is read."""

import hashlib
import json
import shutil

import pytest
from shard_fixtures import TINY_WDS, raw_faces

from paco_fr.cli import main
from paco_fr.config import ConfigError, check_data_config, load_config
from paco_fr.data.shards import ShardStream, read_manifest
from paco_fr.prepare import prepare


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    lm = raw_faces(root / "img", 24)
    prepare(root / "shards", images=root / "img", landmarks=lm, size=32, shard_size=6, workers=1)
    return root, lm


def _copy(prepared, tmp_path):
    root, lm = prepared
    out = tmp_path / "shards"
    shutil.copytree(root / "shards", out)
    return out, root, lm


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_prepare_rewrites_a_truncated_shard_and_the_manifest_is_true(prepared, tmp_path, capsys):
    out, root, lm = _copy(prepared, tmp_path)
    _truncate(out / "shard-000001.tar")
    rc = main(["prepare", "--images", str(root / "img"), "--landmarks", str(lm), "--out", str(out), "--size", "32",
               "--shard-size", "6", "--workers", "1"])
    text = capsys.readouterr().out
    assert rc == 0 and "rewrote damaged shard shard-000001.tar" in text and "3 kept from an earlier run" in text
    man = json.loads((out / "manifest.json").read_text())
    assert [d["name"] for d in man["shards_damaged"]] == ["shard-000001.tar"]
    for e in man["shards"]:
        f = out / e["name"]
        assert hashlib.sha256(f.read_bytes()).hexdigest() == e["sha256"] and f.stat().st_size == e["bytes"]
    assert man["num_samples"] == 24


def test_prepare_numbers_checked_together(tmp_path, capsys):
    lm = raw_faces(tmp_path / "img", 2)
    rc = main(["prepare", "--images", str(tmp_path / "img"), "--landmarks", str(lm), "--out", str(tmp_path / "o"),
               "--size", "0", "--shard-size", "0", "--workers", "0", "--quality", "101"])
    err = capsys.readouterr().err
    assert rc == 2
    for flag in ("--size 0", "--shard-size 0", "--workers 0", "--quality 101"):
        assert flag in err
    assert not (tmp_path / "o").exists()


def _one_epoch(ds, n_batches):
    it = iter(ds)
    return [next(it) for _ in range(n_batches)]


def test_stream_counts_lost_samples_and_names_the_damaged_shard(prepared, tmp_path):
    out, _, _ = _copy(prepared, tmp_path)
    _truncate(out / "shard-000002.tar", 0.4)
    ds = ShardStream(out, 32, shuffle_buffer=4)
    assert list(ds.damaged) == ["shard-000002.tar"]
    ds.configure(batch_size=4)
    batches = _one_epoch(ds, 14)  # more than two epochs of the readable samples
    lost = {n for b in batches for n in b["skipped"] if n.startswith("shard-000002.tar:#")}
    readable = ds._records_in(2)
    assert 0 < readable < 6 and len(lost) == 6 - readable
    assert [n for b in batches for n in b["damaged_shards"]] == ["shard-000002.tar"]  # named once
    seen = [i for b in batches[:5] for i in b["index"].tolist()]
    assert not any(12 + readable <= i < 18 for i in seen)  # no lost row is ever served


def test_stream_resume_exact_with_a_damaged_shard(prepared, tmp_path):
    out, _, _ = _copy(prepared, tmp_path)
    _truncate(out / "shard-000000.tar", 0.5)
    ds = ShardStream(out, 32, shuffle_buffer=4)
    ds.configure(batch_size=3)
    it = iter(ds)
    full = [next(it)["index"].tolist() for _ in range(14)]  # crosses an epoch
    for start in (3, 7, 10):
        ds.configure(batch_size=3, start_micro=start)
        it = iter(ds)
        assert [next(it)["index"].tolist() for _ in range(14 - start)] == full[start:], start


def test_no_readable_shard_is_a_clear_error(prepared, tmp_path, capsys):
    out, _, _ = _copy(prepared, tmp_path)
    for f in out.glob("*.tar"):
        _truncate(f, 0.3)
    with pytest.raises(ValueError, match="none of the 4 shard"):
        read_manifest(out)
    with pytest.raises(ConfigError, match="shard-000000.tar"):
        check_data_config(load_config("smoke", ["data.source=wds", f"data.path={out}"]))
    rc = main(["pretrain", "--config", "smoke", "--run-dir", str(tmp_path / "run"), *TINY_WDS, f"data.path={out}"])
    err = capsys.readouterr().err
    assert rc == 2 and "none of the 4 shard(s) is readable" in err and "prepare" in err


def test_pretrain_summary_counts_images_not_occurrences(prepared, tmp_path, capsys):
    from paco_fr.engine import train

    out, _, _ = _copy(prepared, tmp_path)
    _truncate(out / "shard-000003.tar", 0.4)
    lost = 6 - ShardStream(out, 32)._records_in(3)
    over = [o for o in TINY_WDS if not o.startswith("data.source")]
    cfg = load_config("smoke", [*over, "data.source=wds", f"data.path={out}", "train.steps=8", "train.batch_size=8",
                                "objective=mae"])  # 64 draws: about three epochs of the readable faces
    summary = train(cfg, tmp_path / "run")
    text = capsys.readouterr().out
    assert summary["status"] == "complete"
    got = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert got["skipped_images"] == lost and got["damaged_shards"] == ["shard-000003.tar"]
    assert f"{lost} unreadable image(s) skipped" in text and "1 damaged shard(s): shard-000003.tar" in text


def test_resume_exact_over_a_shard_damaged_without_a_size_change(prepared, tmp_path):
    out, _, _ = _copy(prepared, tmp_path)
    shard = out / "shard-000001.tar"
    import tarfile

    with tarfile.open(shard) as t:
        offset = t.getmembers()[len(t.getmembers()) // 2].offset  # a member's header mid-archive
    data = bytearray(shard.read_bytes())
    data[offset:offset + 512] = bytes(512)  # zeroed: tar reads the end of the archive there
    shard.write_bytes(bytes(data))
    ds = ShardStream(out, 32, shuffle_buffer=4)
    assert not ds.damaged  # the size is unchanged
    ds.configure(batch_size=3)
    it = iter(ds)
    full = [next(it) for _ in range(14)]
    found = [n for b in full for n in b["damaged_shards"]]
    assert found == ["shard-000001.tar"]  # found while read: the engine stores it in the checkpoint
    full = [b["index"].tolist() for b in full]
    resumed = ShardStream(out, 32, shuffle_buffer=4)
    resumed.mark_damaged(found)  # what restore_checkpoint does with the checkpoint's list
    resumed.configure(batch_size=3, start_micro=10)
    it = iter(resumed)
    assert [next(it)["index"].tolist() for _ in range(4)] == full[10:]
