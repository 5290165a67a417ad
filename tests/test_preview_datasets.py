"""`preview --datasets X --data-root R` draws items of every kind of dataset with their labels."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from format_fixtures import (
    write_300w_pts,
    write_celeba,
    write_face_folder,
    write_lapa,
    write_lfw,
    write_rafdb,
)
from PIL import Image

from bench_tasks.cli.preview import draw_dataset_preview

WRITERS = {"lapa": write_lapa, "300w": write_300w_pts, "celeba": write_celeba, "rafdb": write_rafdb,
           "lfw": write_lfw, "face_folder": write_face_folder}


@pytest.mark.parametrize("name, split, expect", [
    ("lapa", "test", "3 items of 3"), ("300w", "test", "3 items of 3"), ("celeba", "train", "3 items of 3"),
    ("rafdb", "test", "2 items of 2"), ("lfw", "test", "4 pairs of"), ("face_folder", "train", "4 items of")])
def test_preview_draws_labels(tmp_path, name, split, expect):
    root = WRITERS[name](tmp_path / name)
    out, title = draw_dataset_preview(name, root, tmp_path / "p.png", n=4, split=split, image_size=48)
    assert expect in title and name in title
    im = np.asarray(Image.open(out).convert("RGB"))
    assert im.shape[0] > 48 and im.shape[1] >= 2 * 48
    if name == "lapa":  # the mask overlay: LaPa's skin colour blended into the second tile
        tile = im[16:16 + 48, 48:96].astype(int)
        assert (tile != im[16:16 + 48, :48].astype(int)).any()  # overlay differs from the image
    if name == "300w":  # green landmark dots
        assert ((im[..., 1] == 255) & (im[..., 0] == 0) & (im[..., 2] == 0)).sum() > 20


@pytest.mark.slow
def test_preview_cli_relative_root_and_errors(tmp_path):
    write_300w_pts(tmp_path / "w300_rel")
    write_celeba(tmp_path / "data" / "celeba")
    env_cmd = [sys.executable, "-m", "bench_tasks", "preview"]
    r = subprocess.run(env_cmd + ["--datasets", "300w", "--data-root", "300w=w300_rel", "--n", "3", "--size", "32"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "300w / landmarks / test: 3 items of 3 images" in r.stdout and "300w_preview.png" in r.stdout
    assert (tmp_path / "300w_preview.png").is_file() and "Traceback" not in r.stderr
    r = subprocess.run(env_cmd + ["--datasets", "celeba,300w", "--data-root", "data", "--split", "train",
                                  "--out", "prev.png"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1  # celeba drawn, 300w not found under data/
    assert (tmp_path / "prev_celeba.png").is_file()
    assert "300w: cannot preview" in r.stderr and "--data-root" in r.stderr and "Traceback" not in r.stderr
