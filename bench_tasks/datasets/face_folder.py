"""`face_folder`: a face-recognition training set stored folder-per-identity.

    <root>/<identity>/<any name>.jpg|jpeg|png

Images should be aligned face crops (e.g. insightface's 112x112); they are resized to the
task's input size. Identities are split, seeded and disjoint, into train / val / test
(default 80 / 10 / 10 % of identities, at least one identity each for val and test when there
are >= 3 identities). The recognition task uses this set as the *training* source for the
test-only verification sets (lfw, lfw_bin, cfp_fp, agedb_30) when `<data-root>/train_faces`
exists; then its val identities select the epoch. Items: (image float (3, H, W) in [0, 1],
identity index). Corrupt images raise `ValueError` naming the file.

Also home of `ImageListSplit`, the lazily decoded image list the other readers of this family
(lfw, verification_bin) use.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from bench_tasks.api import DatasetLayoutError, DatasetSpec, Profile, TaskSplit
from bench_tasks.registry import DATASETS

IMAGE_EXTS = (".jpg", ".jpeg", ".png")

LAYOUT = """<root>/                      (e.g. <data-root>/train_faces)
  <identity_a>/0001.jpg ...   one folder per identity, .jpg/.jpeg/.png aligned face crops
  <identity_b>/...            (>= 2 images per identity to form genuine pairs)"""


def decode_image(src: str | Path | bytes, size: int, what: str, crop_frac: float = 1.0) -> torch.Tensor:
    """Decode a JPEG/PNG (path or bytes) to float (3, size, size) in [0, 1]; `crop_frac` < 1 takes
    a centred square of that fraction of the shorter side first. Raises ValueError naming `what`."""
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src) as im:
            im = im.convert("RGB")
            if crop_frac < 1.0:
                w, h = im.size
                c = int(round(min(w, h) * crop_frac))
                left, top = (w - c) // 2, (h - c) // 2
                im = im.crop((left, top, left + c, top + c))
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"corrupt or unreadable image {what}: {err}") from err
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


class ImageListSplit(TaskSplit):
    """Items decoded on access from `sources` (paths or encoded bytes); target = targets[i].
    `names[i]` names the item in errors. `identity` (np.ndarray) is exposed for pair building;
    `pairs` (dict name -> bench_tasks.pairs.Pairs) is set by readers that ship a pair list."""

    def __init__(self, name, split, sources, targets, names, image_size, crop_frac=1.0, meta=None):
        super().__init__(name, split, meta=meta)
        self.sources, self.names = list(sources), list(names)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.identity = self.targets
        self.image_size, self.crop_frac = image_size, crop_frac
        self.pairs: dict = {}
        self.labels: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i):
        img = decode_image(self.sources[i], self.image_size, self.names[i], self.crop_frac)
        return img, int(self.targets[i])


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
                     seed: int = 0, name: str = "face_folder") -> ImageListSplit:
    ids, items = scan_face_folder(root, name)
    keep = set(identity_split(len(ids), split, seed, val_frac, test_frac).tolist())
    items = [(p, k) for p, k in items if k in keep]
    if not items:
        raise DatasetLayoutError(name, root, f"split {split!r} has no identities ({len(ids)} in total)", LAYOUT)
    return ImageListSplit(name, split, [p for p, _ in items], [k for _, k in items],
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
