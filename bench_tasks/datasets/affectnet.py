"""AffectNet expressions, manually annotated part: `affectnet8` (with contempt) and `affectnet7`.

Reads the official CSVs (`training.csv`, `validation.csv`; columns subDirectory_filePath, face_x,
face_y, face_width, face_height, facial_landmarks, expression, valence, arousal). expression: 0
Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt, 8 None,
9 Uncertain, 10 Non-face; 8+ are dropped (and 7 for affectnet7). Images are looked up under
`Manually_Annotated_Images/` (or directly under the root) and cropped to the face box.
AffectNet's validation set is the test split (as in FaRL and the literature); val is a seeded,
stratified 5% of training.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from bench_tasks.contracts import DatasetLayoutError, DatasetSpec
from bench_tasks.datasets._readers import ImageListSplit, check_root
from bench_tasks.datasets.rafdb import stratified_val
from bench_tasks.registry import DATASETS

NAMES8 = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
VAL_FRAC, VAL_SEED = 0.05, 0
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "expression")

LAYOUT = """affectnet/                              (shared by affectnet7 and affectnet8)
  training.csv   validation.csv         header: subDirectory_filePath,face_x,face_y,face_width,
                                        face_height,facial_landmarks,expression,valence,arousal
  Manually_Annotated_Images/<subDirectory_filePath>   e.g. 689/737db2...jpg"""


def read_affectnet_csv(path: Path, num_classes: int, name: str):
    files, boxes, labels = [], [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetLayoutError(name, path.parent, f"{path.name} lacks columns {missing}", LAYOUT)
        for n, r in enumerate(reader, 2):
            try:
                y = int(r["expression"])
                box = [float(r[k]) for k in ("face_x", "face_y", "face_width", "face_height")]
            except (TypeError, ValueError):
                raise DatasetLayoutError(name, path.parent, f"{path.name} line {n} is malformed", LAYOUT) from None
            if y < 0 or y >= num_classes:
                continue
            files.append(r["subDirectory_filePath"])
            boxes.append(box)
            labels.append(y)
    return files, np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(labels, dtype=np.int64)


class _AffectNet(DatasetSpec):
    tasks = ("expression",)
    needs_root = True
    layout = LAYOUT
    folder = "affectnet"
    num_classes = 8

    def load(self, task, split, root, profile, image_size):
        root = check_root(self.name, root, LAYOUT, ["training.csv", "validation.csv"])
        csv_name = "validation.csv" if split == "test" else "training.csv"
        files, boxes, labels = read_affectnet_csv(root / csv_name, self.num_classes, self.name)
        if split != "test":
            val_mask = stratified_val(labels, VAL_FRAC, VAL_SEED)
            keep = val_mask if split == "val" else ~val_mask
            files = [f for f, k in zip(files, keep) if k]
            boxes, labels = boxes[keep], labels[keep]
        img_root = root / "Manually_Annotated_Images"
        if not img_root.is_dir():
            img_root = root
        paths = [str(img_root / f) for f in files]
        return ImageListSplit(self.name, split, paths, labels, image_size,
                              meta={"class_names": list(NAMES8[: self.num_classes]), "task": task},
                              crop="face_box", boxes=boxes)


@DATASETS.register("affectnet8")
class AffectNet8(_AffectNet):
    name = "affectnet8"
    num_classes = 8


@DATASETS.register("affectnet7")
class AffectNet7(_AffectNet):
    name = "affectnet7"
    num_classes = 7
