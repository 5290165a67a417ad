"""Small folders in the distributed formats of the real datasets (random or SynthFace pixels), for
the reader, preview and README-walk tests: one writer per layout, each returning the dataset root."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

RNG = np.random.default_rng(0)


def face_image(path: Path, h: int = 48, w: int = 40, seed: int = 0) -> None:
    """A face-ish image (skin oval on a background) so that previews show something readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    a = np.empty((h, w, 3), np.uint8)
    a[:] = rng.integers(40, 200, 3, dtype=np.uint8)
    oval = ((xx - w / 2) / (0.35 * w)) ** 2 + ((yy - h / 2) / (0.42 * h)) ** 2 < 1
    a[oval] = (225, 180, 150)
    Image.fromarray(a).save(path)


def write_pts(path: Path, pts: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write("version: 1\nn_points:  68\n{\n" + "".join(f"{x:.3f} {y:.3f}\n" for x, y in pts) + "}\n")


def face68(h: int, w: int, seed: int) -> np.ndarray:
    """68 points on an oval inside an h x w image (jaw, brows, eyes, nose, mouth roughly placed)."""
    from paco_fr.data.template import CANONICAL_68

    pts = np.asarray(CANONICAL_68, np.float64)
    pts = (pts - pts.min(0)) / (pts.max(0) - pts.min(0))
    jitter = np.random.default_rng(seed).normal(0, 0.01, pts.shape)
    return (pts + jitter) * [0.6 * w, 0.7 * h] + [0.2 * w, 0.15 * h]


def write_300w_pts(root: Path, n_train: int = 4, n_common: int = 2, n_chall: int = 1, h: int = 48,
                   w: int = 40) -> Path:
    """<root>/{train/lfpw, test/common, test/challenging}/<name>.png + <name>.pts."""
    k = 0
    for sub, n in (("train/lfpw", n_train), ("test/common", n_common), ("test/challenging", n_chall)):
        for i in range(n):
            face_image(root / sub / f"f{i}.png", h, w, seed=k)
            write_pts(root / sub / f"f{i}.pts", face68(h, w, k))
            k += 1
    return root


def write_celeba(root: Path) -> Path:
    names = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Smiling"]
    files = [f"{i:06d}.jpg" for i in range(1, 7)]
    vals = [[1, -1, 1], [-1, -1, -1], [1, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]]
    root.mkdir(parents=True, exist_ok=True)
    lines = [str(len(files)), " ".join(names)] + [f"{f} " + " ".join(f"{v:2d}" for v in r) for f, r in zip(files, vals)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text(
        "\n".join(f"{f} {p}" for f, p in zip(files, [0, 0, 0, 1, 2, 2])) + "\n")
    (root / "list_landmarks_align_celeba.txt").write_text("6\nlefteye_x lefteye_y\n")
    for i, f in enumerate(files):
        face_image(root / "img_align_celeba" / f, 218, 178, seed=i)
    return root


def write_rafdb(root: Path) -> Path:
    labels = {"train_00001.jpg": 5, "train_00002.jpg": 7, "train_00003.jpg": 4, "train_00004.jpg": 4,
              "test_0001.jpg": 1, "test_0002.jpg": 6}
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel/list_patition_label.txt").write_text("".join(f"{f} {v}\n" for f, v in labels.items()))
    for i, f in enumerate(labels):
        face_image(root / "Image/aligned" / f"{f[:-4]}_aligned.jpg", 100, 100, seed=i)
    return root


def write_lfw_pairs(root: Path, write_image, folds: int = 2, per: int = 3) -> list[str]:
    """<root>/pairs.txt (`folds` folds of `per` genuine then `per` impostor pairs) and every image it
    names, written by write_image(path, k) at <root>/lfw/<Name>/<Name>_<NNNN>.jpg. Returns the lines."""
    names = [f"Person_{c}" for c in "ABCDEFGH"]
    lines = [f"{folds}\t{per}"]
    used = set()
    rng = np.random.default_rng(0)
    for _ in range(folds):
        for _ in range(per):
            n = names[rng.integers(len(names))]
            lines.append(f"{n}\t1\t2")
            used |= {(n, 1), (n, 2)}
        for _ in range(per):
            a, b = rng.choice(len(names), 2, replace=False)
            lines.append(f"{names[a]}\t1\t{names[b]}\t3")
            used |= {(names[a], 1), (names[b], 3)}
    root.mkdir(parents=True, exist_ok=True)
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    for k, (n, i) in enumerate(sorted(used)):
        path = root / "lfw" / n / f"{n}_{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, k)
    return lines


def write_lfw(root: Path, folds: int = 2, per: int = 3) -> Path:
    """LFW's layout with face-ish images: <root>/pairs.txt + <root>/lfw/<Name>/<Name>_<NNNN>.jpg."""
    write_lfw_pairs(root, lambda path, k: face_image(path, 62, 62, seed=k), folds, per)
    return root


def write_lapa(root: Path, n: int = 3, h: int = 60, w: int = 50) -> Path:
    """<root>/{train,val,test}/{images,labels,landmarks}/ (106 points, 11 classes)."""
    from bench_tasks.datasets.lapa import FIVE_IDX

    for split in ("train", "val", "test"):
        d = root / split
        for i in range(n):
            name = f"{split}_{i}"
            face_image(d / "images" / f"{name}.jpg", h, w, seed=i)
            lab = np.zeros((h, w), np.uint8)
            lab[8:52, 8:42] = 1
            lab[20:25, 14:20] = 4
            lab[20:25, 30:36] = 5
            lab[38:43, 18:32] = 7
            (d / "labels").mkdir(parents=True, exist_ok=True)
            Image.fromarray(lab).save(d / "labels" / f"{name}.png")
            pts = np.c_[RNG.uniform(10, 40, 106), RNG.uniform(10, 50, 106)]
            pts[FIVE_IDX] = [(0.35 * w, 0.4 * h), (0.65 * w, 0.4 * h), (0.5 * w, 0.55 * h), (0.38 * w, 0.72 * h),
                             (0.62 * w, 0.72 * h)]
            (d / "landmarks").mkdir(parents=True, exist_ok=True)
            (d / "landmarks" / f"{name}.txt").write_text("106\n" + "".join(f"{x:.3f} {y:.3f}\n" for x, y in pts))
    return root


def write_face_folder(root: Path, n_ids: int = 6, per: int = 3) -> Path:
    for k in range(n_ids):
        for i in range(per):
            face_image(root / f"id{k:02d}" / f"{i:04d}.jpg", 56, 56, seed=10 * k + i)
    return root
