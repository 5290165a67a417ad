"""CelebAMask-HQ face parsing (19 classes). Part masks are painted in the fixed order of
CELEBAMASK_CLASSES[1:] (a later part overrides an earlier one). Splits follow CelebA's
list_eval_partition.txt through CelebA-HQ-to-CelebA-mapping.txt (0 train, 1 val, 2 test).
Items: the whole image resized to the input size; the test split is scored at the label's own
resolution (logits resized back before the argmax, as LaPa's warp-back)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from bench_tasks.contracts import DatasetLayoutError, DatasetSpec, Profile, TaskSplit
from bench_tasks.datasets._readers import AlignedParsingSplit, check_root, read_label
from bench_tasks.registry import DATASETS

CELEBAMASK_CLASSES = ["background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow",
                      "l_ear", "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l",
                      "neck", "cloth"]
SPLIT_CODE = {"train": 0, "val": 1, "test": 2}

LAYOUT = """<root>/
    CelebA-HQ-img/<id>.jpg                              id = 0..29999
    CelebAMask-HQ-mask-anno/<id // 2000>/<id:05d>_<part>.png   part in skin, nose, eye_g, l_eye,
        r_eye, l_brow, r_brow, l_ear, r_ear, mouth, u_lip, l_lip, hair, hat, ear_r, neck_l, neck,
        cloth (missing part files = part absent)
    CelebA-HQ-to-CelebA-mapping.txt                     header "idx orig_idx orig_file"
    list_eval_partition.txt                             "<celeba file> <0|1|2>" (CelebA's)"""


def assemble_mask(anno_dir: Path, hq_id: int, size_hint: tuple[int, int] | None = None) -> np.ndarray:
    folder = Path(anno_dir) / str(hq_id // 2000)
    mask = None
    for cls, part in enumerate(CELEBAMASK_CLASSES[1:], start=1):
        p = folder / f"{hq_id:05d}_{part}.png"
        if not p.exists():
            continue
        m = read_label(p)
        if mask is None:
            mask = np.zeros(m.shape[:2], np.uint8)
        mask[m > 0] = cls
    if mask is None:
        mask = np.zeros(size_hint or (512, 512), np.uint8)
    return mask


def read_partition(path: Path) -> dict[str, int]:
    out = {}
    with open(path) as f:
        for line in f:
            t = line.split()
            if len(t) >= 2:
                out[t[0]] = int(t[1])
    return out


def read_mapping(path: Path) -> list[tuple[int, str]]:
    """[(hq idx, orig_file)] from CelebA-HQ-to-CelebA-mapping.txt."""
    rows = []
    with open(path) as f:
        for line in f:
            t = line.split()
            if len(t) < 3 or not t[0].isdigit():
                continue  # header
            rows.append((int(t[0]), t[2]))
    return rows


def load_celebamaskhq(root, split: str, size: int) -> AlignedParsingSplit:
    need = ["CelebA-HQ-img", "CelebAMask-HQ-mask-anno", "CelebA-HQ-to-CelebA-mapping.txt"]
    r = check_root("celebamaskhq", root, LAYOUT, need)
    part_file = next((p for p in (r / "list_eval_partition.txt", r / "Eval" / "list_eval_partition.txt")
                      if p.exists()), None)
    if part_file is None:
        raise DatasetLayoutError("celebamaskhq", root, "missing list_eval_partition.txt", LAYOUT)
    partition = read_partition(part_file)
    mapping = read_mapping(r / "CelebA-HQ-to-CelebA-mapping.txt")
    if not mapping:
        raise DatasetLayoutError("celebamaskhq", root, "CelebA-HQ-to-CelebA-mapping.txt has no rows", LAYOUT)
    code = SPLIT_CODE[split]
    ids = [i for i, orig in mapping if partition.get(orig) == code]
    images = [str(r / "CelebA-HQ-img" / f"{i}.jpg") for i in ids]
    for p in images[:1]:
        if not Path(p).exists():
            raise DatasetLayoutError("celebamaskhq", root, f"missing image {p}", LAYOUT)
    anno = r / "CelebAMask-HQ-mask-anno"
    labels = [partial(assemble_mask, anno, i) for i in ids]
    return AlignedParsingSplit("celebamaskhq", split, images, labels, None, size,
                             meta={"classes": CELEBAMASK_CLASSES, "warp_back": split in ("val", "test"),
                                   "ids": ids})


@DATASETS.register("celebamaskhq")
class CelebAMaskHQ(DatasetSpec):
    name = "celebamaskhq"
    tasks = ("parsing",)
    needs_root = True
    layout = LAYOUT

    def load(self, task: str, split: str, root: str | None, profile: Profile, image_size: int) -> TaskSplit:
        return load_celebamaskhq(root, split, image_size)
