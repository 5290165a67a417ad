"""`face_folder`: a face-recognition training set stored folder-per-identity.

    <root>/<identity>/<any name>.jpg|jpeg|png

Images should be aligned face crops (e.g. insightface's 112x112); they are resized to the
task's input size. Identities are split, seeded and disjoint, into train / val / test
(default 80 / 10 / 10 % of identities, at least one identity each for val and test when there
are >= 3 identities). The recognition task uses this set as the *training* source for the
test-only verification sets (lfw, lfw_bin, cfp_fp, agedb_30) when `<data-root>/train_faces`
exists; then its val identities select the epoch. Items: (image float (3, H, W) in [0, 1],
identity index). Corrupt images raise `ValueError` naming the file.

Also home of `EncodedImageSplit`, the lazily decoded image list the other readers of this family
(lfw, verification_bin) use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench_tasks.contracts import DatasetLayoutError, DatasetSpec, Profile, TaskSplit
from bench_tasks.datasets._readers import EncodedImageSplit, decode_image  # noqa: F401 (re-exported)
from bench_tasks.registry import DATASETS

IMAGE_EXTS = (".jpg", ".jpeg", ".png")

LAYOUT = """<root>/                      (e.g. <data-root>/train_faces)
  <identity_a>/0001.jpg ...   one folder per identity, .jpg/.jpeg/.png aligned face crops
  <identity_b>/...            (>= 2 images per identity to form genuine pairs)"""


def scan_face_folder(root: str | Path | None, dataset: str = "face_folder", layout: str = LAYOUT):
    """-> (sorted identity names, list of (path, identity index))."""
    if root is None or not Path(root).is_dir():
        raise DatasetLayoutError(dataset, root, "root folder not found", layout)
    root = Path(root)
    ids = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = []
    for k, name in enumerate(ids):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() in IMAGE_EXTS and f.is_file():
                items.append((f, k))
    if not items:
        raise DatasetLayoutError(dataset, root, "no identity folders with .jpg/.png images", layout)
    return ids, items


def identity_split(n_ids: int, split: str, seed: int = 0, val_frac: float = 0.1,
                   test_frac: float = 0.1) -> np.ndarray:
    """Seeded disjoint partition of identity indices; returns the indices of `split`."""
    perm = np.random.default_rng(seed).permutation(n_ids)
    n_val = max(1, int(round(n_ids * val_frac))) if val_frac > 0 and n_ids >= 3 else 0
    n_test = max(1, int(round(n_ids * test_frac))) if test_frac > 0 and n_ids >= 3 else 0
    parts = {"val": perm[:n_val], "test": perm[n_val:n_val + n_test], "train": perm[n_val + n_test:]}
    if split not in parts:
        raise ValueError(f"face_folder has splits train/val/test, not {split!r}")
    return np.sort(parts[split])


def load_face_folder(root, split: str, image_size: int, val_frac: float = 0.1, test_frac: float = 0.1,
                     seed: int = 0, name: str = "face_folder") -> EncodedImageSplit:
    ids, items = scan_face_folder(root, name)
    keep = set(identity_split(len(ids), split, seed, val_frac, test_frac).tolist())
    items = [(p, k) for p, k in items if k in keep]
    if not items:
        raise DatasetLayoutError(name, root, f"split {split!r} has no identities ({len(ids)} in total)", LAYOUT)
    return EncodedImageSplit(name, split, [p for p, _ in items], [k for _, k in items],
                          [str(p) for p, _ in items], image_size,
                          meta={"identities": [ids[k] for k in sorted(keep)], "root": str(root)})


@DATASETS.register("face_folder")
class FaceFolder(DatasetSpec):
    name = "face_folder"
    tasks = ("recognition",)
    layout = LAYOUT

    def load(self, task: str, split: str, root: str | None, profile: Profile, image_size: int) -> TaskSplit:
        if task != "recognition":
            raise ValueError(f"face_folder serves recognition only, not {task!r}")
        return load_face_folder(root, split, image_size)
