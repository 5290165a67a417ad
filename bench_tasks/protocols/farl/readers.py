"""FaRL's readers of LaPa, CelebAMask-HQ, 300W, WFLW and AFLW-19 (the crops and files FaRL's
`farl/datasets/*.py` and `prepare.py` use), and `load_farl_splits`, a cell's train / val / test."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from torch.utils.data import Subset

from bench_tasks.contracts import CellContext, DatasetLayoutError
from bench_tasks.datasets._readers import get_dataset_spec, read_label
from bench_tasks.datasets.aflw19 import NUM_TRAIN, read_aflw_mat
from bench_tasks.datasets.aflw19 import find_image as find_aflw19_image
from bench_tasks.datasets.celebamaskhq import load_celebamaskhq
from bench_tasks.datasets.lapa import FIVE_IDX, LAPA_CLASSES, load_lapa, read_lapa_landmarks
from bench_tasks.datasets.w300 import find_image, read_hrnet_csv, row_key
from bench_tasks.protocols.farl import transforms as T
from bench_tasks.protocols.farl.settings import CELEBM_FARL_CLASSES, CELEBM_FARL_PARTS, LAPA_FARL_CLASSES
from bench_tasks.protocols.farl.splits import FarlLandmarkSplit, FarlParsingSplit
from bench_tasks.protocols.fractions import subset_indices


def _layout_error(ds, root, problem):
    return DatasetLayoutError(ds, root, f"{problem} (the FaRL protocol reads FaRL's inputs)",
                              get_dataset_spec(ds).layout)


def load_lapa_farl(root, split: str, st: dict) -> FarlParsingSplit:
    base = load_lapa(root, split, 512)  # the reader's checks and file lists
    mats = []
    for p in base.images:
        stem = Path(p).stem
        pts = read_lapa_landmarks(Path(root) / split / "landmarks" / f"{stem}.txt")
        mats.append(T.face_align_matrix(pts[FIVE_IDX], (512, 512)))
    return FarlParsingSplit("lapa", split, base.images, base.labels, np.stack(mats), st, train=split == "train",
                            meta={"classes": LAPA_CLASSES, "farl_classes": LAPA_FARL_CLASSES})


def celebm_farl_label(anno_dir: Path, hq_id: int) -> np.ndarray:
    """FaRL's `make_label`: a 512 x 512 map painted in CELEBM_FARL_PARTS order (later overrides)."""
    label = np.zeros((512, 512), np.uint8)
    folder = Path(anno_dir) / str(hq_id // 2000)
    for i, part in enumerate(CELEBM_FARL_PARTS):
        p = folder / f"{hq_id:05d}_{part}.png"
        if p.exists():
            m = read_label(p)
            if m.shape[:2] != label.shape:
                raise ValueError(f"{p}: mask is {m.shape[:2]}, FaRL's reader expects 512 x 512")
            label = np.where(m > 0, np.uint8(i + 1), label)
    return label


def load_celebm_farl(root, split: str, st: dict) -> FarlParsingSplit:
    base = load_celebamaskhq(root, split, 512)  # the reader's split logic and checks
    anno = Path(root) / "CelebAMask-HQ-mask-anno"
    ids = [int(Path(p).stem) for p in base.images]
    labels = [functools.partial(celebm_farl_label, anno, i) for i in ids]
    return FarlParsingSplit("celebamaskhq", split, base.images, labels, np.stack([np.eye(3)] * len(ids)), st,
                            train=split == "train", resize_to_label=True,
                            meta={"classes": CELEBM_FARL_CLASSES, "farl_classes": CELEBM_FARL_CLASSES})


def _hrnet_rows(root: Path, fname: str, k: int, ds: str):
    p = root / fname
    if not p.exists():
        raise _layout_error(ds, root, f"missing {fname}")
    return read_hrnet_csv(p, k)


def load_300w_farl(root, split: str, st: dict) -> FarlLandmarkSplit:
    r = Path(root)
    if split == "train":
        rows = _hrnet_rows(r, "face_landmarks_300w_train.csv", 68, "300w")
        subsets = {}
    else:
        common = _hrnet_rows(r, "face_landmarks_300w_valid_common.csv", 68, "300w")
        chall = _hrnet_rows(r, "face_landmarks_300w_valid_challenge.csv", 68, "300w")
        rows = common + chall  # FaRL's "full" = IBUG300W.test_common.zip + test_challenging.zip
        subsets = {"common": np.arange(len(rows)) < len(common), "challenging": np.arange(len(rows)) >= len(common)}
    names = [("ibug/image_092 _01.jpg" if x["name"] == "ibug/image_092_01.jpg"
              and not find_image(r, x["name"]).exists() else x["name"]) for x in rows]
    pts = np.stack([x["points"] - 2.0 for x in rows])  # FaRL's IBUG300W reader: v - 2.0
    boxes = []
    for x in rows:
        half = 100.0 * x["scale"]
        cw, ch = x["center"][0] - 2.0, x["center"][1] - 2.0
        boxes.append([ch - half, cw - half, ch + half, cw + half])
    return FarlLandmarkSplit("300w", split, [str(find_image(r, n)) for n in names], pts, np.array(boxes), st,
                             train=split == "train", meta={"num_points": 68}, slices=subsets)


WFLW_SUBSETS = ("blur", "expression", "illumination", "largepose", "makeup", "occlusion")


def load_wflw_farl(root, split: str, st: dict) -> FarlLandmarkSplit:
    r = Path(root)
    rows = _hrnet_rows(r, "face_landmarks_wflw_train.csv" if split == "train" else "face_landmarks_wflw_test.csv",
                       98, "wflw")
    slices = {}
    if split != "train":
        keys = [row_key(x) for x in rows]
        for sub in WFLW_SUBSETS:
            p = r / f"face_landmarks_wflw_test_{sub}.csv"
            if p.exists():
                want = {row_key(x) for x in _hrnet_rows(r, p.name, 98, "wflw")}
                slices[sub] = np.array([k in want for k in keys])
    boxes = [[x["center"][1] - 100 * x["scale"], x["center"][0] - 100 * x["scale"],
              x["center"][1] + 100 * x["scale"], x["center"][0] + 100 * x["scale"]] for x in rows]
    return FarlLandmarkSplit("wflw", split, [str(find_image(r, x["name"])) for x in rows],
                             np.stack([x["points"] for x in rows]), np.array(boxes), st, train=split == "train",
                             meta={"num_points": 98}, slices=slices)


def load_aflw19_farl(root, split: str, st: dict) -> FarlLandmarkSplit:
    r = Path(root)
    if not (r / "AFLWinfo_release.mat").exists():
        raise _layout_error("aflw19", root, "missing AFLWinfo_release.mat")
    info = read_aflw_mat(r / "AFLWinfo_release.mat")
    idx = info["ra"][:NUM_TRAIN] if split == "train" else info["ra"][NUM_TRAIN:]
    left, right, top, bottom = info["bbox"][idx].T
    boxes = np.stack([top, left, bottom, right], -1)  # FaRL: box_y1x1y2x2 = top, left, bottom, right
    slices = {"frontal": np.all(info["mask"][idx] == 1, axis=1)} if split != "train" else {}
    return FarlLandmarkSplit("aflw19", split, [find_aflw19_image(r, info["names"][i]) for i in idx],
                             info["points"][idx],
                             boxes, st, train=split == "train", meta={"num_points": 19}, slices=slices)


LOADERS = {"lapa": load_lapa_farl, "celebamaskhq": load_celebm_farl, "300w": load_300w_farl,
           "wflw": load_wflw_farl, "aflw19": load_aflw19_farl}


def load_farl_splits(ctx: CellContext, st: dict):
    """(train, None, test) as FaRL reads them: FaRL trains on the whole training set and evaluates
    the test set every epoch; no file of FaRL's reads a validation split, so none is read here (the
    row's `metrics` are the last epoch's, `metrics_best_test` the best test epoch's). A data set
    spec with st["val"] set would be read for model selection."""
    if ctx.data_root is None:
        raise _layout_error(st["dataset"], None, "the FaRL protocol runs on the real data set: pass --data-root")
    load = LOADERS[st["dataset"]]
    train = load(ctx.data_root, "train", st)
    test = load(ctx.data_root, "test", st)
    val = None
    if st.get("val"):
        try:
            val = load(ctx.data_root, "val", st)
        except DatasetLayoutError:  # no official val folder / partition: select the last epoch
            val = None
    tr = train
    if ctx.cell.fraction < 1:
        tr = Subset(train, subset_indices(len(train), ctx.cell.fraction, ctx.cell.seed).tolist())
    if st.get("train_images") and len(tr) > st["train_images"]:
        tr = Subset(tr, list(range(int(st["train_images"]))))
    return tr, val, test
