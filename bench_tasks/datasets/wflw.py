"""WFLW (98 points) for facial landmarks.

Layouts:
  * HRNet's CSVs (as FaRL): face_landmarks_wflw_{train,test}.csv (image_name, scale, center_w,
    center_h, x0, y0, ..., x97, y97) and the subset lists face_landmarks_wflw_test_{largepose,
    expression,illumination,makeup,occlusion,blur}.csv; images under <root>/images/ (or
    <root>/WFLW_images/). Box = centre +- 100 * scale, crop enlarged by 1.25.
  * the original annotation lists: <root>/WFLW_annotations/list_98pt_rect_attr_train_test/
    list_98pt_rect_attr_{train,test}.txt, one face per line: 196 coordinates (x0 y0 ... x97 y97),
    the box x_min y_min x_max y_max, 6 attribute flags (pose, expression, illumination, make-up,
    occlusion, blur), the image path under <root>/WFLW_images/.
Metrics: NME inter-ocular (outer eye corners 60 and 72), FR@0.1, AUC@0.1, on the full test set
and the 6 attribute subsets (7 sets: full + pose, expression, illumination, makeup, occlusion,
blur). val = a fixed 5% of train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench_tasks.contracts import DatasetLayoutError, DatasetSpec, Profile, TaskSplit
from bench_tasks.datasets._readers import check_root, holdout_rows
from bench_tasks.datasets.w300 import read_hrnet_csv, records_split, row_key
from bench_tasks.registry import DATASETS

ATTRS = ["pose", "expression", "illumination", "makeup", "occlusion", "blur"]
CSV_SUBSET = {"largepose": "pose", "expression": "expression", "illumination": "illumination",
              "makeup": "makeup", "occlusion": "occlusion", "blur": "blur"}
LIST_DIR = "WFLW_annotations/list_98pt_rect_attr_train_test"
META_WFLW = {"num_points": 98, "norm": "inter_ocular", "eyes": (60, 72), "fr_thr": 0.1, "auc_thr": 0.1}

LAYOUT = """<root>/face_landmarks_wflw_{train,test}.csv, face_landmarks_wflw_test_{largepose,expression,
    illumination,makeup,occlusion,blur}.csv (HRNet: image_name, scale, center_w, center_h, x0, y0, ...)
<root>/images/<image_name>
or the original lists: <root>/WFLW_annotations/list_98pt_rect_attr_train_test/
    list_98pt_rect_attr_{train,test}.txt (196 coords, x_min y_min x_max y_max, 6 attribute flags,
    image path) with images under <root>/WFLW_images/"""


def read_wflw_list(path: Path) -> list[dict]:
    rows = []
    with open(path) as f:
        for n, line in enumerate(f):
            t = line.split()
            if not t:
                continue
            if len(t) != 196 + 4 + 6 + 1:
                raise ValueError(f"{path}:{n + 1}: {len(t)} fields, expected 207")
            v = np.array([float(x) for x in t[:206]])
            box = v[196:200]
            side = max(box[2] - box[0], box[3] - box[1])
            rows.append({"name": t[206], "scale": side / 200.0, "center": (box[:2] + box[2:]) / 2,
                         "points": v[:196].reshape(98, 2), "attrs": v[200:206].astype(bool)})
    return rows


def load_wflw(root, split: str, size: int):
    r = check_root("wflw", root, LAYOUT, [])
    csv_train = r / "face_landmarks_wflw_train.csv"
    lst = r / LIST_DIR
    if csv_train.exists():
        if split == "test":
            p = r / "face_landmarks_wflw_test.csv"
            if not p.exists():
                raise DatasetLayoutError("wflw", root, "missing face_landmarks_wflw_test.csv", LAYOUT)
            rows = read_hrnet_csv(p, 98)
            keys = [row_key(x) for x in rows]
            slices = {}
            for sub, name in CSV_SUBSET.items():
                q = r / f"face_landmarks_wflw_test_{sub}.csv"
                if q.exists():
                    want = {row_key(x) for x in read_hrnet_csv(q, 98)}
                    slices[name] = np.array([k in want for k in keys])
            return records_split("wflw", split, r, rows, size, dict(META_WFLW), slices)
        rows = read_hrnet_csv(csv_train, 98)
    elif lst.is_dir():
        which = "test" if split == "test" else "train"
        p = lst / f"list_98pt_rect_attr_{which}.txt"
        if not p.exists():
            raise DatasetLayoutError("wflw", root, f"missing {LIST_DIR}/{p.name}", LAYOUT)
        try:
            rows = read_wflw_list(p)
        except ValueError as e:
            raise DatasetLayoutError("wflw", root, str(e), LAYOUT) from e
        for x in rows:
            x["name"] = str(Path("WFLW_images") / x["name"])
        if split == "test":
            slices = {a: np.array([x["attrs"][j] for x in rows]) for j, a in enumerate(ATTRS)}
            return records_split("wflw", split, r, rows, size, dict(META_WFLW), slices)
    else:
        raise DatasetLayoutError("wflw", root, f"neither face_landmarks_wflw_train.csv nor {LIST_DIR}/", LAYOUT)
    rows = holdout_rows("wflw", root, rows, split, LAYOUT, "the training annotations")
    return records_split("wflw", split, r, rows, size, dict(META_WFLW))


@DATASETS.register("wflw")
class WFLW(DatasetSpec):
    name = "wflw"
    tasks = ("landmarks",)
    needs_root = True
    layout = LAYOUT

    def load(self, task: str, split: str, root: str | None, profile: Profile, image_size: int) -> TaskSplit:
        return load_wflw(root, split, image_size)
