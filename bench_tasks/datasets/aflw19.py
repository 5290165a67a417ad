"""AFLW-19 (19 points) for facial landmarks, from AFLWinfo_release.mat (as HRNet / FaRL).

Fields: data (N x 38: x1..x19, y1..y19), bbox (N x 4: x1 x2 y1 y2), ra (1 x N, MATLAB 1-based
random permutation), nameList (N x 1 cell of image paths relative to <root>/data/flickr/),
mask_new (N x 19 visibility). Standard split: ra[:20000] train, ra[20000:] test; the frontal
subset = test faces with all 19 points visible (slice "frontal"). val = a fixed 5% of train.
Crop: the box's centre, side max(w, h) * 1.25. Metrics: NME normalised by the box, sqrt(w * h)
(`nme_box`) and sqrt(w^2 + h^2) (`nme_diag`, the headline, also `nme`), AUC@0.07.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench_tasks.contracts import DatasetLayoutError, DatasetSpec, Profile, TaskSplit
from bench_tasks.datasets._readers import LandmarkRecordsSplit, apply_affine, check_root, crop_matrix, holdout
from bench_tasks.registry import DATASETS

MARGIN = 1.25
NUM_TRAIN = 20000

LAYOUT = """<root>/AFLWinfo_release.mat   fields data (N x 38), bbox (N x 4: x1 x2 y1 y2), ra (1 x N,
    1-based permutation), nameList (N x 1 cell), mask_new (N x 19)
<root>/data/flickr/<nameList entry>   (or <root>/flickr/, <root>/images/, <root>/)"""


def _name(entry) -> str:
    while isinstance(entry, np.ndarray):
        entry = entry.reshape(-1)[0]
    return str(entry)


def read_aflw_mat(path: Path) -> dict:
    # lazy: scipy only when AFLW's .mat file is read
    from scipy.io import loadmat

    m = loadmat(str(path))
    for k in ("data", "bbox", "ra", "nameList"):
        if k not in m:
            raise ValueError(f"{path.name} has no field {k!r}")
    data = np.asarray(m["data"], dtype=np.float64)
    n = data.shape[0]
    pts = np.stack([data[:, :19], data[:, 19:38]], -1)  # (N, 19, 2)
    bbox = np.asarray(m["bbox"], dtype=np.float64)  # x1 x2 y1 y2
    ra = np.asarray(m["ra"]).reshape(-1).astype(np.int64) - 1
    names = [_name(e) for e in np.asarray(m["nameList"], dtype=object).reshape(-1)]
    mask = np.asarray(m["mask_new"]) if "mask_new" in m else np.ones((n, 19))
    if bbox.shape != (n, 4) or len(names) != n or ra.min() < 0 or ra.max() >= n:
        raise ValueError(f"{path.name}: inconsistent shapes data {data.shape}, bbox {bbox.shape}, "
                         f"nameList {len(names)}, ra range [{ra.min() + 1}, {ra.max() + 1}]")
    return {"points": pts, "bbox": bbox, "ra": ra, "names": names, "mask": mask}


def find_image(root: Path, name: str) -> str:
    for base in (root / "data" / "flickr", root / "flickr", root / "images", root):
        if (base / name).exists():
            return str(base / name)
    return str(root / "data" / "flickr" / name)


def load_aflw19(root, split: str, size: int, num_train: int = NUM_TRAIN) -> LandmarkRecordsSplit:
    r = check_root("aflw19", root, LAYOUT, ["AFLWinfo_release.mat"])
    try:
        info = read_aflw_mat(r / "AFLWinfo_release.mat")
    except ValueError as e:
        raise DatasetLayoutError("aflw19", root, str(e), LAYOUT) from e
    ra = info["ra"]
    if split == "test":
        idx = ra[num_train:]
    else:
        train = ra[:num_train]
        tr, va = holdout(len(train))
        idx = train[tr if split == "train" else va]
    bbox = info["bbox"][idx]
    x1, x2, y1, y2 = bbox.T
    mats = np.stack([crop_matrix((a + b) / 2, (c + d) / 2, max(b - a, d - c) * MARGIN, size)
                     for a, b, c, d in zip(x1, x2, y1, y2)])
    corners = np.stack([np.stack([x1, y1], -1), np.stack([x2, y2], -1)], 1)  # (n, 2, 2)
    crop_corners = np.stack([apply_affine(c, m) for c, m in zip(corners, mats)])
    boxes = crop_corners.reshape(-1, 4)  # x1, y1, x2, y2 in crop pixels
    frontal = np.all(info["mask"][idx] == 1, axis=1)
    meta = {"num_points": 19, "norm": "box", "boxes": boxes, "auc_thr": 0.07}
    slices = {"frontal": frontal} if split == "test" else {}
    return LandmarkRecordsSplit("aflw19", split, [find_image(r, info["names"][i]) for i in idx],
                                info["points"][idx], mats, size, meta=meta, slices=slices)


@DATASETS.register("aflw19")
class AFLW19(DatasetSpec):
    name = "aflw19"
    tasks = ("landmarks",)
    needs_root = True
    layout = LAYOUT

    def load(self, task: str, split: str, root: str | None, profile: Profile, image_size: int) -> TaskSplit:
        return load_aflw19(root, split, image_size)
