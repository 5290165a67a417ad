"""A damaged checkpoint (`ckpt/last.pt` truncated, emptied, or not a training checkpoint) ends
`pretrain` with exit 2, the file named, what is wrong with it and `--fresh` -- never torch's
traceback with exit 1 (which means "interrupted, re-run to resume")."""

from __future__ import annotations

import zipfile

import pytest

from paco_fr.checkpoint_file import CheckpointUnreadable, read_checkpoint
from paco_fr.cli import main

TINY = [
    "model.img_size=32", "model.patch_size=8", "model.depth=1", "decoder.dim=32", "decoder.depth=1",
    "data.source=random", "data.num_images=32", "train.batch_size=8", "train.log_every=1",
    "train.snapshot_every=0", "train.progress=false", "train.warmup_steps=1", "train.threads=1", "objective=mae",
    "train.steps=2",
]


@pytest.mark.parametrize("damage,why", [("truncate", "truncated or damaged"), ("empty", "is empty")])
def test_damaged_checkpoint_exits_2_naming_fresh(tmp_path, capsys, damage, why):
    import torch

    run = tmp_path / "run"
    ck = run / "ckpt" / "last.pt"
    ck.parent.mkdir(parents=True)
    torch.save({"model": {"w": torch.zeros(256, 256)}, "step": 1}, ck)  # an interrupted run's checkpoint
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"")
    rc = main(["pretrain", "--config", "smoke", "--run-dir", str(run), *TINY])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(ck) in err and why in err and "--fresh" in err and "Traceback" not in err
    if damage == "truncate":  # --fresh starts the directory over
        assert main(["pretrain", "--config", "smoke", "--run-dir", str(run), *TINY, "--fresh"]) == 0
        assert read_checkpoint(ck)["step"] == 2


def test_read_checkpoint_names_what_is_wrong(tmp_path):
    odd = tmp_path / "last.pt"
    with zipfile.ZipFile(odd, "w") as z:  # a complete zip that torch cannot read
        z.writestr("x/data.pkl", b"not a pickle")
    with pytest.raises(CheckpointUnreadable, match="cannot be read .*--fresh"):
        read_checkpoint(odd)
    with pytest.raises(CheckpointUnreadable, match="does not exist"):
        read_checkpoint(tmp_path / "none.pt")


def test_export_of_a_damaged_checkpoint_exits_2(tmp_path, capsys):
    ck = tmp_path / "ckpt" / "last.pt"
    ck.parent.mkdir()
    ck.write_bytes(b"PK\x03\x04 cut")
    assert main(["export", str(ck), str(tmp_path / "e.safetensors")]) == 2
    assert str(ck) in capsys.readouterr().err
