"""CelebA attributes (40 binary attributes), FaRL's attribute benchmark; plus the image-list split
shared by the classification readers (lfwa, rafdb, affectnet).

Images are the aligned 178x218 crops; the reader takes the centred 178x178 square (rows 20..198)
and resizes it to the task's input size. Targets: multi-hot uint8 (40,), from -1/1.
Splits: list_eval_partition.txt (0 train, 1 val, 2 test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench_tasks.api import DatasetLayoutError, DatasetSpec, TaskSplit
from bench_tasks.registry import DATASETS

LAYOUT = """celeba/
  img_align_celeba/000001.jpg ...        aligned 178x218 images
  list_attr_celeba.txt                   line 1: image count; line 2: the 40 attribute names;
                                         then '000001.jpg  -1  1 ...' (40 values in {-1, 1})
  list_eval_partition.txt                '000001.jpg 0' (0 train, 1 val, 2 test)
  list_landmarks_align_celeba.txt        (optional) line 1 count, line 2 header, then file + 10 ints"""


class CorruptImageError(OSError):
    pass


def read_image(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image listed in the annotations is missing: {path}") from None
    except Exception as err:
        raise CorruptImageError(f"corrupt or unreadable image {path}: {type(err).__name__}: {err}") from None


def to_tensor(im: Image.Image) -> torch.Tensor:
    a = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255.0)


class ImageListSplit(TaskSplit):
    """Images listed by path with one target each.

    crop: None (resize the whole image), "center_square" (largest centred square), or per-image
    boxes (N, 4) as x, y, w, h in pixels (clipped to the image) given in `boxes`."""

    def __init__(self, name: str, split: str, paths: list[str], targets: np.ndarray, image_size: int,
                 meta: dict | None = None, crop: str | None = None, boxes: np.ndarray | None = None,
                 slices: dict | None = None):
        meta = dict(meta or {})
        meta.setdefault("transform", f"{crop or 'resize'}@{image_size}")
        super().__init__(name, split, meta=meta, slices=slices)
        self.paths = list(paths)
        self.targets = np.asarray(targets)
        self.image_size = image_size
        self.crop = crop
        self.boxes = None if boxes is None else np.asarray(boxes, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, i: int) -> Image.Image:
        im = read_image(self.paths[i])
        if self.boxes is not None:
            x, y, w, h = self.boxes[i]
            x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
            x1, y1 = min(im.width, int(round(x + w))), min(im.height, int(round(y + h)))
            if x1 > x0 and y1 > y0:
                im = im.crop((x0, y0, x1, y1))
        elif self.crop == "center_square":
            s = min(im.width, im.height)
            x0, y0 = (im.width - s) // 2, (im.height - s) // 2
            im = im.crop((x0, y0, x0 + s, y0 + s))
        return im.resize((self.image_size, self.image_size), Image.BILINEAR)

    def __getitem__(self, i: int):
        x = to_tensor(self.load_image(i))
        t = self.targets[i]
        y = torch.as_tensor(t) if np.ndim(t) else int(t)
        return x, y


def check_root(name: str, root, layout: str, required: list[str]) -> Path:
    if root is None:
        raise DatasetLayoutError(name, root, "no data root given", layout)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(name, root, "the root folder does not exist", layout)
    missing = [r for r in required if not (root / r).exists()]
    if missing:
        raise DatasetLayoutError(name, root, f"missing {', '.join(missing)}", layout)
    return root


def carve_val(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) index split of n items; val has round(n * frac) items (>= 1 if n > 1)."""
    k = int(round(n * frac))
    if n > 1:
        k = min(max(1, k), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


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
