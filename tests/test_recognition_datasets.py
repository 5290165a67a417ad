"""Readers of the recognition data formats, on fixtures written in exactly those formats."""

import io
import os
import pickle

import numpy as np
import pytest
import torch
from format_fixtures import write_lfw_pairs
from PIL import Image

from bench_tasks.contracts import DatasetLayoutError
from bench_tasks.datasets.face_folder import FaceFolder, load_face_folder
from bench_tasks.datasets.lfw import LFW
from bench_tasks.datasets.verification_bin import AgeDb30, CfpFp, LfwBin, UnsafePickleError, read_bin
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.registry import DATASETS

P = PROFILES["smoke"]


def _img(seed, size=24, fmt="JPEG") -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def test_registered():
    for name in ("lfw", "lfw_bin", "cfp_fp", "agedb_30", "face_folder"):
        assert "recognition" in DATASETS.get(name).tasks


# ----------------------------------------------------------------------------- .bin


def _write_bin(path, n_pairs=6, protocol=pickle.HIGHEST_PROTOCOL):
    bins = [_img(i, fmt="PNG" if i % 3 == 0 else "JPEG") for i in range(2 * n_pairs)]
    issame = [i % 2 == 0 for i in range(n_pairs)]
    with open(path, "wb") as f:
        pickle.dump((bins, issame), f, protocol=protocol)
    return bins, issame


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_bin_reader(tmp_path, protocol):
    bins, issame = _write_bin(tmp_path / "cfp_fp.bin", protocol=protocol)
    got_bins, got_same = read_bin(tmp_path / "cfp_fp.bin")
    assert got_bins == bins and got_same.tolist() == issame
    split = CfpFp().load("recognition", "test", str(tmp_path), P, 32)
    assert len(split) == 12
    x, _ = split[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    p = split.pairs["all"]
    assert p.idx1.tolist() == [0, 2, 4, 6, 8, 10] and p.idx2.tolist() == [1, 3, 5, 7, 9, 11]
    assert p.issame.tolist() == issame


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_MARKER",))


def test_bin_refuses_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "lfw.bin", "wb") as f:
        pickle.dump(([_img(0), _Evil()], [True]), f)
    with pytest.raises(UnsafePickleError, match="lfw.bin.*refusing.*system"):
        LfwBin().load("recognition", "test", str(tmp_path), P, 32)
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_bin_refuses_numpy(tmp_path):
    with open(tmp_path / "agedb_30.bin", "wb") as f:
        pickle.dump(([_img(0), _img(1)], np.array([True])), f)
    with pytest.raises(UnsafePickleError, match="agedb_30.bin"):
        AgeDb30().load("recognition", "test", str(tmp_path), P, 32)


def test_bin_missing_and_malformed(tmp_path):
    with pytest.raises(DatasetLayoutError, match="lfw.bin not found"):
        LfwBin().load("recognition", "test", str(tmp_path), P, 32)
    with open(tmp_path / "lfw.bin", "wb") as f:
        pickle.dump(([_img(0)], [True]), f)
    with pytest.raises(ValueError, match="1 images for 1 pairs"):
        LfwBin().load("recognition", "test", str(tmp_path), P, 32)
    (tmp_path / "lfw.bin").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="lfw.bin: not a readable"):
        LfwBin().load("recognition", "test", str(tmp_path), P, 32)
    with open(tmp_path / "lfw.bin", "wb") as f:
        pickle.dump(([_img(0), b"garbage"], [True]), f)
    with pytest.raises(ValueError, match="image 1 .pair 0. is not a JPEG/PNG"):
        LfwBin().load("recognition", "test", str(tmp_path), P, 32)
    with open(tmp_path / "lfw.bin", "wb") as f:  # right magic, truncated body
        pickle.dump(([_img(0), _img(1)[:40]], [True]), f)
    split = LfwBin().load("recognition", "test", str(tmp_path), P, 32)
    with pytest.raises(ValueError, match="lfw.bin image 1 .pair 0."):
        split[1]


# ----------------------------------------------------------------------------- LFW pairs.txt


def _write_lfw(root, folds=2, per=3):
    return write_lfw_pairs(root, lambda path, k: path.write_bytes(_img(k, size=50)), folds, per)


def test_lfw_reader(tmp_path):
    lines = _write_lfw(tmp_path)
    split = LFW().load("recognition", "test", str(tmp_path), P, 32)
    p = split.pairs["all"]
    assert len(p) == 12 and p.issame.tolist() == ([True] * 3 + [False] * 3) * 2
    first = lines[1].split()
    assert split.names[p.idx1[0]].endswith(f"lfw/{first[0]}/{first[0]}_0001.jpg")
    assert split.names[p.idx2[0]].endswith(f"lfw/{first[0]}/{first[0]}_0002.jpg")
    x, ident = split[int(p.idx1[0])]
    assert x.shape == (3, 32, 32)
    assert split.identity[p.idx1[0]] == split.identity[p.idx2[0]]


def test_lfw_layout_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="pairs.txt not found"):
        LFW().load("recognition", "test", str(tmp_path), P, 32)
    with pytest.raises(DatasetLayoutError, match="root folder not found"):
        LFW().load("recognition", "test", str(tmp_path / "nope"), P, 32)
    _write_lfw(tmp_path)
    txt = (tmp_path / "pairs.txt").read_text().splitlines()
    (tmp_path / "pairs.txt").write_text("\n".join(txt[:-1]) + "\n")
    with pytest.raises(DatasetLayoutError, match="found 11") as err:
        LFW().load("recognition", "test", str(tmp_path), P, 32)
    assert "name1 n1 name2 n2" in str(err.value)  # the expected layout is shown
    txt[2] = "Person_A 1"
    (tmp_path / "pairs.txt").write_text("\n".join(txt) + "\n")
    with pytest.raises(DatasetLayoutError, match="line 3"):
        LFW().load("recognition", "test", str(tmp_path), P, 32)


def test_lfw_missing_and_corrupt_image(tmp_path):
    _write_lfw(tmp_path)
    victim = sorted((tmp_path / "lfw").rglob("*.jpg"))[0]
    victim.write_bytes(b"\xff\xd8\xff broken")
    split = LFW().load("recognition", "test", str(tmp_path), P, 32)
    i = split.names.index(str(victim))
    with pytest.raises(ValueError, match=victim.name):
        split[i]
    victim.unlink()
    with pytest.raises(DatasetLayoutError, match="missing"):
        LFW().load("recognition", "test", str(tmp_path), P, 32)


# ----------------------------------------------------------------------------- face_folder


def test_face_folder(tmp_path):
    for k in range(10):
        d = tmp_path / f"id{k:02d}"
        d.mkdir()
        for j in range(3):
            (d / f"{j}.{'png' if j else 'jpg'}").write_bytes(_img(10 * k + j, fmt="PNG" if j else "JPEG"))
    (tmp_path / "id00" / "notes.txt").write_text("ignored")
    parts = {s: FaceFolder().load("recognition", s, str(tmp_path), P, 16) for s in ("train", "val", "test")}
    ids = {s: set(p.identity.tolist()) for s, p in parts.items()}
    assert sum(len(p) for p in parts.values()) == 30
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    x, y = parts["train"][0]
    assert x.shape == (3, 16, 16) and y in ids["train"]
    two = load_face_folder(str(tmp_path), "train", 16, test_frac=0.0)
    assert len(two) == 27
    (tmp_path / "id05" / "0.jpg").write_bytes(b"corrupt")
    split = load_face_folder(str(tmp_path), "train", 16, val_frac=0.0, test_frac=0.0)
    i = split.names.index(str(tmp_path / "id05" / "0.jpg"))
    with pytest.raises(ValueError, match="id05/0.jpg"):
        split[i]


def test_face_folder_missing_root(tmp_path):
    with pytest.raises(DatasetLayoutError, match="one folder per identity"):
        FaceFolder().load("recognition", "train", str(tmp_path / "missing"), P, 16)
    with pytest.raises(DatasetLayoutError, match="no identity folders"):
        FaceFolder().load("recognition", "train", str(tmp_path), P, 16)
