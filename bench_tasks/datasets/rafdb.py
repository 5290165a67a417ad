"""RAF-DB basic expression set (7 classes).

Labels in `EmoLabel/list_patition_label.txt` ('train_00001.jpg 5', 'test_0001.jpg 1') are 1..7 =
Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral; they are mapped to our order
(neutral, happy, sad, surprise, fear, disgust, anger). Images: `Image/aligned/<stem>_aligned.jpg`
(100x100 aligned faces). RAF-DB has train and test only: val is a seeded, stratified 10% of train.
"""

from __future__ import annotations

import numpy as np

from bench_tasks.contracts import DatasetLayoutError, DatasetSpec
from bench_tasks.datasets._readers import ImageListSplit, check_root
from bench_tasks.registry import DATASETS

EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
# RAF-DB label (1..7) -> our index
RAF_TO_OURS = {1: 3, 2: 4, 3: 5, 4: 1, 5: 2, 6: 6, 7: 0}
VAL_FRAC, VAL_SEED = 0.1, 0

LAYOUT = """rafdb/
  EmoLabel/list_patition_label.txt     'train_00001.jpg 5' / 'test_0001.jpg 1'; labels 1..7 = Surprise,
                                       Fear, Disgust, Happiness, Sadness, Anger, Neutral
  Image/aligned/train_00001_aligned.jpg ..."""


def stratified_val(labels: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """Boolean mask of a seeded, per-class val subset (>= 1 item per class with >= 2 items)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue
        k = max(1, int(round(len(idx) * frac)))
        mask[rng.choice(idx, size=k, replace=False)] = True
    return mask


@DATASETS.register("rafdb")
class RAFDB(DatasetSpec):
    name = "rafdb"
    tasks = ("expression",)
    needs_root = True
    layout = LAYOUT

    def load(self, task, split, root, profile, image_size):
        root = check_root(self.name, root, LAYOUT, ["EmoLabel/list_patition_label.txt", "Image/aligned"])
        files, labels = [], []
        for n, ln in enumerate((root / "EmoLabel/list_patition_label.txt").read_text().splitlines(), 1):
            parts = ln.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in RAF_TO_OURS:
                raise DatasetLayoutError(self.name, root, f"list_patition_label.txt line {n}: {ln!r}", LAYOUT)
            files.append(parts[0])
            labels.append(RAF_TO_OURS[int(parts[1])])
        files_a, labels_a = np.array(files), np.array(labels, dtype=np.int64)
        is_train = np.array([f.startswith("train") for f in files])
        if split == "test":
            sel = ~is_train
        else:
            tr = np.flatnonzero(is_train)
            val_mask = stratified_val(labels_a[tr], VAL_FRAC, VAL_SEED)
            sel = np.zeros(len(files), dtype=bool)
            sel[tr[val_mask if split == "val" else ~val_mask]] = True
        idx = np.flatnonzero(sel)
        paths = [str(root / "Image/aligned" / f"{files_a[i].rsplit('.', 1)[0]}_aligned.jpg") for i in idx]
        return ImageListSplit(self.name, split, paths, labels_a[idx], image_size,
                              meta={"class_names": list(EXPRESSIONS), "task": task})
