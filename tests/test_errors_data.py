"""Issue 15, data rows: 300W .pts files next to .ppm (or other PIL-readable) images are used; a .pts
without any image is reported, never skipped without a word."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench_tasks.contracts import DatasetLayoutError
from bench_tasks.datasets.w300 import load_300w

RNG = np.random.default_rng(0)


def _face(folder, name, ext):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(folder / f"{name}{ext}")
    pts = np.c_[RNG.uniform(5, 35, 68), RNG.uniform(5, 40, 68)]
    (folder / f"{name}.pts").write_text("version: 1\nn_points: 68\n{\n"
                                        + "".join(f"{x:.2f} {y:.2f}\n" for x, y in pts) + "}\n")


def test_300w_ppm_and_other_pil_formats_are_read(tmp_path):
    _face(tmp_path / "train" / "afw", "a", ".ppm")
    _face(tmp_path / "train" / "afw", "b", ".bmp")
    _face(tmp_path / "train" / "afw", "c", ".PNG")
    _face(tmp_path / "test" / "common", "d", ".ppm")
    te = load_300w(tmp_path, "test", 32)
    assert len(te) == 1
    x, y = te[0]
    assert x.shape == (3, 32, 32)
    tr = load_300w(tmp_path, "train", 32)
    va = load_300w(tmp_path, "val", 32)
    assert len(tr) + len(va) == 3


def test_300w_pts_without_image_is_reported(tmp_path):
    _face(tmp_path / "train" / "afw", "a", ".png")
    _face(tmp_path / "test" / "common", "d", ".png")
    (tmp_path / "test" / "common" / "orphan.pts").write_text((tmp_path / "test" / "common" / "d.pts").read_text())
    with pytest.raises(DatasetLayoutError, match="orphan.pts"):
        load_300w(tmp_path, "test", 32)
