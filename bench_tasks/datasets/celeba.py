"""CelebA attributes (40 binary attributes), FaRL's attribute benchmark (its image-list split and
root check are bench_tasks.datasets._readers', shared with lfwa, rafdb, affectnet).

Images are the aligned 178x218 crops; the reader takes the centred 178x178 square (rows 20..198)
and resizes it to the task's input size. Targets: multi-hot uint8 (40,), from -1/1.
Splits: list_eval_partition.txt (0 train, 1 val, 2 test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench_tasks.contracts import DatasetLayoutError, DatasetSpec
from bench_tasks.datasets._readers import ImageListSplit, carve_val, check_root  # noqa: F401 (re-exported)
from bench_tasks.registry import DATASETS

LAYOUT = """celeba/
  img_align_celeba/000001.jpg ...        aligned 178x218 images
  list_attr_celeba.txt                   line 1: image count; line 2: the 40 attribute names;
                                         then '000001.jpg  -1  1 ...' (40 values in {-1, 1})
  list_eval_partition.txt                '000001.jpg 0' (0 train, 1 val, 2 test)
  list_landmarks_align_celeba.txt        (optional) line 1 count, line 2 header, then file + 10 ints"""


def parse_celeba_attrs(path: Path, name: str = "celeba", layout: str = LAYOUT):
    lines = path.read_text().splitlines()
    try:
        count = int(lines[0].split()[0])
        names = lines[1].split()
        files, rows = [], []
        for ln in lines[2:]:
            parts = ln.split()
            if not parts:
                continue
            if len(parts) != len(names) + 1:
                raise ValueError(f"line '{ln[:60]}' has {len(parts) - 1} values, expected {len(names)}")
            files.append(parts[0])
            rows.append([int(v) for v in parts[1:]])
    except (IndexError, ValueError) as err:
        raise DatasetLayoutError(name, path.parent, f"malformed {path.name}: {err}", layout) from None
    if count != len(files):
        raise DatasetLayoutError(name, path.parent, f"{path.name} announces {count} images, lists {len(files)}", layout)
    values = np.array(rows, dtype=np.int64)
    if not np.isin(values, (-1, 1)).all():
        raise DatasetLayoutError(name, path.parent, f"{path.name}: attribute values must be -1 or 1", layout)
    return files, names, (values > 0).astype(np.uint8)


@DATASETS.register("celeba")
class CelebA(DatasetSpec):
    name = "celeba"
    tasks = ("attributes",)
    needs_root = True
    layout = LAYOUT
    SPLITS = {"train": 0, "val": 1, "test": 2}

    def load(self, task, split, root, profile, image_size):
        root = check_root(self.name, root, LAYOUT, ["img_align_celeba", "list_attr_celeba.txt",
                                                     "list_eval_partition.txt"])
        files, names, attrs = parse_celeba_attrs(root / "list_attr_celeba.txt")
        part = {}
        for ln in (root / "list_eval_partition.txt").read_text().splitlines():
            parts = ln.split()
            if len(parts) == 2:
                part[parts[0]] = int(parts[1])
        if not part:
            raise DatasetLayoutError(self.name, root, "list_eval_partition.txt is empty or malformed", LAYOUT)
        want = self.SPLITS[split]
        idx = [i for i, f in enumerate(files) if part.get(f) == want]
        paths = [str(root / "img_align_celeba" / files[i]) for i in idx]
        return ImageListSplit(self.name, split, paths, attrs[idx], image_size,
                              meta={"attribute_names": names, "task": task}, crop="center_square")
