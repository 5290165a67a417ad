"""Data roots given as relative paths, and training sets too small to hold one image out."""

from __future__ import annotations

import numpy as np
import pytest
from format_fixtures import write_300w_pts, write_celeba, write_lapa, write_lfw, write_rafdb

from bench_tasks.contracts import DatasetLayoutError
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.registry import DATASETS, load_all

load_all()
P = PROFILES["smoke"]


def _load(name, root, split, task=None, size=24):
    spec = DATASETS.get(name)()
    return spec.load(task or spec.tasks[0], split, root, P, size)


def test_300w_pts_relative_root_reads_every_split(tmp_path, monkeypatch):
    write_300w_pts(tmp_path / "w300_rel")
    monkeypatch.chdir(tmp_path)
    for split, n in (("train", 3), ("val", 1), ("test", 3)):
        data = _load("300w", "w300_rel", split)
        assert len(data) == n
        img, pts = data[0]  # reads the image: the path is not joined to the root twice
        assert img.shape == (3, 24, 24) and pts.shape == (68, 2)
        assert all(str(tmp_path / "w300_rel") in p and p.count("w300_rel") == 1 for p in data.paths)


@pytest.mark.parametrize("name, writer, split", [
    ("lapa", write_lapa, "test"), ("celeba", write_celeba, "train"), ("rafdb", write_rafdb, "test"),
    ("lfw", write_lfw, "test")])
def test_other_readers_accept_a_relative_root(tmp_path, monkeypatch, name, writer, split):
    writer(tmp_path / "rel")
    monkeypatch.chdir(tmp_path)
    data = _load(name, "rel", split)
    x = data[0][0]
    assert x.shape == (3, 24, 24)


def test_300w_pts_with_one_training_image_says_how_many_are_needed(tmp_path):
    root = write_300w_pts(tmp_path / "w300", n_train=1)
    for split in ("train", "val"):
        with pytest.raises(DatasetLayoutError, match=r"1 annotated training image\(s\) in train/; at least 2"):
            _load("300w", str(root), split)
    assert len(_load("300w", str(root), "test")) == 3  # the test split alone still reads


def test_300w_pts_with_two_training_images_is_a_usable_split(tmp_path):
    root = write_300w_pts(tmp_path / "w300", n_train=2)
    tr, va = _load("300w", str(root), "train"), _load("300w", str(root), "val")
    assert (len(tr), len(va)) == (1, 1)
    assert not set(tr.paths) & set(va.paths)
    assert np.isfinite(va[0][1].numpy()).all()
