"""300W (68 points) for facial landmarks, registered as "300w".

Two layouts:
  * HRNet's CSVs (as FaRL): face_landmarks_300w_{train,valid,valid_common,valid_challenge,test}.csv
    with columns image_name, scale, center_w, center_h, x0, y0, ..., x67, y67; images under
    <root>/images/<image_name> (or <root>/<image_name>). Box = centre +- 100 * scale; the crop is
    that box enlarged by MARGIN (HRNet's 1.25), resized to the input size.
    Splits: train = train.csv minus a fixed 5% held out as val; test = valid.csv, the usual
    "full" set (common 554 + challenging 135), with slices common / challenging taken from
    valid_common.csv / valid_challenge.csv. (test.csv, the private 300W test set, is not used.)
  * the original .pts files: <root>/{train,test}/**/<name>.pts next to <name>.{jpg,png}
    (`version: 1`, `n_points: 68`, `{`, 68 lines "x y", `}`); the box is the points' bounding
    box; every first-level sub-folder of test/ becomes a slice (e.g. test/common, test/challenging).
NME: inter-ocular (outer eye corners 36 and 45).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from bench_tasks.contracts import DatasetLayoutError, DatasetSpec, Profile, TaskSplit
from bench_tasks.datasets._readers import LandmarkRecordsSplit, check_root, crop_matrix, holdout_rows
from bench_tasks.errors import short_list
from bench_tasks.registry import DATASETS

MARGIN = 1.25
IMAGE_EXT = (".jpg", ".jpeg", ".png")

LAYOUT = """<root>/face_landmarks_300w_{train,valid,valid_common,valid_challenge}.csv
    columns: image_name, scale, center_w, center_h, x0, y0, ..., x67, y67 (HRNet)
<root>/images/<image_name>
or the original files: <root>/{train,test}/**/<name>.pts next to <name>.jpg|.png (or any format PIL reads: .ppm, .bmp, ...)
    (.pts: "version: 1", "n_points: 68", "{", 68 lines "x y", "}"; test/<subset>/ -> slices)"""


def read_hrnet_csv(path: Path, num_points: int) -> list[dict]:
    """Rows of an HRNet landmark CSV: {name, scale, center (2,), points (K, 2)}."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return rows
        start = 0 if _is_number(header[1] if len(header) > 1 else "") else 1
        if start == 0:
            rows.append(_row(header, num_points, path))
        for r in reader:
            if r:
                rows.append(_row(r, num_points, path))
    return rows


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _row(r: list[str], k: int, path) -> dict:
    if len(r) < 4 + 2 * k:
        raise ValueError(f"{path}: a row has {len(r)} columns, expected {4 + 2 * k}")
    vals = np.array([float(v) for v in r[1:4 + 2 * k]])
    return {"name": r[0], "scale": vals[0], "center": vals[1:3], "points": vals[3:].reshape(k, 2)}


def row_key(row: dict) -> tuple:
    return (row["name"], *np.round(row["points"][:2].reshape(-1), 2).tolist())


def find_image(root: Path, name: str) -> Path:
    if Path(name).is_absolute():
        return Path(name)
    for base in (root / "images", root, root / "WFLW_images"):
        if (base / name).exists():
            return base / name
    return root / "images" / name


def records_split(dataset: str, split: str, root: Path, rows: list[dict], size: int, meta: dict,
                  slices: dict | None = None) -> LandmarkRecordsSplit:
    mats = [crop_matrix(r["center"][0], r["center"][1], 200.0 * r["scale"] * MARGIN, size) for r in rows]
    return LandmarkRecordsSplit(dataset, split, [str(find_image(root, r["name"])) for r in rows],
                                np.stack([r["points"] for r in rows]), np.stack(mats), size,
                                meta=meta, slices=slices)


def read_pts(path: Path) -> np.ndarray:
    with open(path) as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    try:
        n = int(next(ln for ln in lines if ln.startswith("n_points")).split(":")[1])
        a = lines.index("{")
        b = lines.index("}")
    except (StopIteration, ValueError, IndexError) as e:
        raise ValueError(f"{path}: not a .pts file (version / n_points / {{ }})") from e
    pts = np.array([[float(v) for v in ln.split()[:2]] for ln in lines[a + 1:b]])
    if pts.shape != (n, 2):
        raise ValueError(f"{path}: n_points {n} but {len(pts)} point lines")
    return pts


def image_for(pts_path: Path) -> Path | None:
    """The image next to a .pts file: .jpg/.jpeg/.png first, then any other format PIL reads
    (.ppm, .bmp, .tif, ...), extension case-insensitive."""
    for e in IMAGE_EXT:
        if pts_path.with_suffix(e).exists():
            return pts_path.with_suffix(e)
    readable = {e.lower() for e in Image.registered_extensions()}
    for cand in sorted(pts_path.parent.glob(pts_path.stem + ".*")):
        if cand.suffix.lower() in readable and cand.suffix.lower() != ".pts":
            return cand
    return None


def pts_rows(folder: Path) -> list[dict]:
    rows = []
    orphans = []
    for p in sorted(folder.rglob("*.pts")):
        img = image_for(p)
        if img is None:
            orphans.append(p)
            continue
        pts = read_pts(p)
        lo, hi = pts.min(0), pts.max(0)
        rows.append({"name": str(img), "scale": float((hi - lo).max()) / 200.0, "center": (lo + hi) / 2,
                     "points": pts, "subset": p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1
                     else ""})
    if orphans:
        raise ValueError(f"{len(orphans)} .pts file(s) under {folder} have no image next to them (same name, "
                         f"an image format PIL reads): {short_list([str(o) for o in orphans], 5)}")
    return rows


META_300W = {"num_points": 68, "norm": "inter_ocular", "eyes": (36, 45)}


def load_300w(root, split: str, size: int) -> LandmarkRecordsSplit:
    r = check_root("300w", root, LAYOUT, [])
    csv_train = r / "face_landmarks_300w_train.csv"
    if csv_train.exists():
        if split in ("train", "val"):
            rows = holdout_rows("300w", root, read_hrnet_csv(csv_train, 68), split, LAYOUT, csv_train.name)
            return records_split("300w", split, r, rows, size, dict(META_300W))
        full = r / "face_landmarks_300w_valid.csv"
        if not full.exists():
            raise DatasetLayoutError("300w", root, "missing face_landmarks_300w_valid.csv", LAYOUT)
        rows = read_hrnet_csv(full, 68)
        keys = [row_key(x) for x in rows]
        slices = {}
        for sub in ("common", "challenge"):
            p = r / f"face_landmarks_300w_valid_{sub}.csv"
            if p.exists():
                want = {row_key(x) for x in read_hrnet_csv(p, 68)}
                slices["challenging" if sub == "challenge" else sub] = np.array([k in want for k in keys])
        return records_split("300w", split, r, rows, size, dict(META_300W), slices)
    if (r / "train").is_dir() and (r / "test").is_dir():
        folder = r / ("test" if split == "test" else "train")
        try:
            rows = pts_rows(folder)
        except ValueError as e:
            raise DatasetLayoutError("300w", root, str(e), LAYOUT) from e
        if not rows:
            raise DatasetLayoutError("300w", root, f"no .pts files with images under {folder.name}/", LAYOUT)
        if split != "test":
            rows = holdout_rows("300w", root, rows, split, LAYOUT, "train/")
            return records_split("300w", split, r, rows, size, dict(META_300W))
        subs = sorted({x["subset"] for x in rows if x["subset"]})
        slices = {s: np.array([x["subset"] == s for x in rows]) for s in subs}
        return records_split("300w", split, r, rows, size, dict(META_300W), slices)
    raise DatasetLayoutError("300w", root, "neither face_landmarks_300w_train.csv nor train/ + test/", LAYOUT)


@DATASETS.register("300w")
class W300(DatasetSpec):
    name = "300w"
    tasks = ("landmarks",)
    needs_root = True
    layout = LAYOUT

    def load(self, task: str, split: str, root: str | None, profile: Profile, image_size: int) -> TaskSplit:
        return load_300w(root, split, image_size)
