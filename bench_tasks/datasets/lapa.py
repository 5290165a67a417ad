"""LaPa face parsing (11 classes), aligned FaRL-style with 5 of its 106 landmarks.

Train / val items are aligned crops (image bilinear, label nearest). The val and test splits set
meta["warp_back"]: the parsing task predicts on the aligned crop, warps the *logits* back to the
original image with the inverse similarity and scores against the original-resolution label.
"""

from __future__ import annotations

import numpy as np

from bench_tasks.contracts import DatasetLayoutError, DatasetSpec, Profile, TaskSplit
from bench_tasks.datasets._readers import AlignedParsingSplit, check_root
from bench_tasks.registry import DATASETS
from paco_fr.data.template import CANONICAL_5, similarity_from_points

LAPA_CLASSES = ["background", "skin", "left_eyebrow", "right_eyebrow", "left_eye", "right_eye",
                "nose", "upper_lip", "inner_mouth", "lower_lip", "hair"]
# eye centres, nose tip, mouth corners among the 106 points (FaRL's choice)
FIVE_IDX = [104, 105, 54, 84, 90]

LAYOUT = """<root>/{train,val,test}/
    images/<name>.jpg
    labels/<name>.png        values 0..10 (background, skin, left_eyebrow, right_eyebrow, left_eye,
                             right_eye, nose, upper_lip, inner_mouth, lower_lip, hair)
    landmarks/<name>.txt     first line "106", then 106 lines "x y\""""


def read_lapa_landmarks(path) -> np.ndarray:
    with open(path) as f:
        toks = f.read().split()
    if not toks:
        raise ValueError(f"{path}: empty landmark file")
    n = int(float(toks[0]))
    vals = np.array([float(t) for t in toks[1:]], dtype=np.float64)
    if vals.size != 2 * n:
        raise ValueError(f"{path}: header says {n} points but holds {vals.size} numbers")
    return vals.reshape(n, 2)


def alignment_matrix(pts106: np.ndarray, size: int) -> np.ndarray:
    return similarity_from_points(pts106[FIVE_IDX], np.asarray(CANONICAL_5) * size - 0.5)


def load_lapa(root, split: str, size: int) -> AlignedParsingSplit:
    r = check_root("lapa", root, LAYOUT, [split])
    d = r / split
    for sub in ("images", "labels", "landmarks"):
        if not (d / sub).is_dir():
            raise DatasetLayoutError("lapa", root, f"missing {split}/{sub}/", LAYOUT)
    images = sorted(p for p in (d / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        raise DatasetLayoutError("lapa", root, f"no images in {split}/images/", LAYOUT)
    labels, mats = [], []
    for p in images:
        lab, lmk = d / "labels" / f"{p.stem}.png", d / "landmarks" / f"{p.stem}.txt"
        if not lab.exists() or not lmk.exists():
            raise DatasetLayoutError("lapa", root, f"{p.name} has no {lab.name} or {lmk.name}", LAYOUT)
        try:
            mats.append(alignment_matrix(read_lapa_landmarks(lmk), size))
        except ValueError as e:
            raise DatasetLayoutError("lapa", root, f"malformed {lmk}: {e}", LAYOUT) from e
        labels.append(str(lab))
    return AlignedParsingSplit("lapa", split, [str(p) for p in images], labels, np.stack(mats), size,
                               meta={"classes": LAPA_CLASSES, "warp_back": split in ("val", "test")})


@DATASETS.register("lapa")
class LaPa(DatasetSpec):
    name = "lapa"
    tasks = ("parsing",)
    needs_root = True
    layout = LAYOUT

    def load(self, task: str, split: str, root: str | None, profile: Profile, image_size: int) -> TaskSplit:
        return load_lapa(root, split, image_size)
