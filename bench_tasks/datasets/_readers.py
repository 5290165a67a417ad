"""What the dataset readers share, so that datasets never import tasks: image and label reading
with clear errors, the root check, the split classes readers return, seeded split helpers and the
pixel geometry of the dense readers (affine crops).

    read_pil / read_image / read_label / decode_image / image_tensor / to_tensor
    check_root(name, root, layout, required) -> Path        DatasetLayoutError naming what is missing
    ImageListSplit       classification: image paths + one target each (resize / centre square / boxes)
    EncodedImageSplit    recognition: paths or encoded bytes + identity targets, pair lists
    LandmarkRecordsSplit / AlignedParsingSplit   landmarks / parsing from files, warped by a matrix
    holdout(n, frac, seed) / carve_val(n, frac, seed)         seeded (train, val) index splits
    invert_affine / apply_affine / crop_matrix / warp_affine / resize_matrix / compose

Pixel convention (the same as `paco_fr.data.template`): pixel centres at integer coordinates,
(x, y) order; a 2x3 matrix `m` maps source pixel coords to destination pixel coords.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from bench_tasks.contracts import DatasetLayoutError, TaskSplit
from bench_tasks.errors import DataError
from bench_tasks.registry import DATASETS

# ----------------------------------------------------------------------------- reading images


class CorruptImageError(DataError, OSError):
    pass


def read_pil(path: str | Path) -> Image.Image:
    """An image file as an RGB PIL image; a missing file raises FileNotFoundError naming it, an
    unreadable one CorruptImageError naming it."""
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


class EncodedImageSplit(TaskSplit):
    """Items decoded on access from `sources` (paths or encoded bytes); target = targets[i].
    `names[i]` names the item in errors. `identity` (np.ndarray) is exposed for pair building;
    `pairs` (dict name -> bench_tasks.stats.pairs.Pairs) is set by readers that ship a pair list."""

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


# ----------------------------------------------------------------------------- roots and splits


def check_root(name: str, root, layout: str, required: list[str]) -> Path:
    """Path(root), ~ expanded and made absolute (so that paths read from the annotations and
    joined to it are never joined twice when the root is relative), or DatasetLayoutError naming
    every missing entry and the layout."""
    if root is None:
        raise DatasetLayoutError(name, root, "no data root given", layout)
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DatasetLayoutError(name, root, "the root folder does not exist", layout)
    missing = [r for r in required if not (root / r).exists()]
    if missing:
        raise DatasetLayoutError(name, root, f"missing {', '.join(missing)}", layout)
    return root


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
        im = read_pil(self.paths[i])
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


def carve_val(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) index split of n items; val has round(n * frac) items (>= 1 if n > 1,
    and at most n - 1). `holdout` below is the dense readers' variant (its own fixed seed)."""
    k = int(round(n * frac))
    if n > 1:
        k = min(max(1, k), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


# ----------------------------------------------------------------------------- geometry (dense readers)


def invert_affine(m) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    a_inv = np.linalg.inv(m[:, :2])
    return np.concatenate([a_inv, (-a_inv @ m[:, 2])[:, None]], axis=1)


def apply_affine(pts, m) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def crop_matrix(cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """Similarity mapping the square box of `side` pixels centred on (cx, cy) onto a `size` crop
    (centre -> crop centre)."""
    f = size / side
    return np.array([[f, 0.0, size / 2 - 0.5 - cx * f], [0.0, f, size / 2 - 0.5 - cy * f]])


def warp_affine(src: torch.Tensor, m_src_to_dst, out_hw: tuple[int, int], mode: str = "bilinear",
                padding_mode: str = "zeros") -> torch.Tensor:
    """Warp src (B, C, H, W) (or (C, H, W)) into an out_hw image so that source pixel p lands on
    m @ p. m: (2, 3) or (B, 2, 3), source pixel coords -> destination pixel coords."""
    squeeze = src.ndim == 3
    if squeeze:
        src = src[None]
    b, _, h, w = src.shape
    m = torch.as_tensor(np.asarray(m_src_to_dst), dtype=torch.float64)
    if m.ndim == 2:
        m = m.expand(b, 2, 3)
    a_inv = torch.linalg.inv(m[:, :, :2])
    t_inv = -(a_inv @ m[:, :, 2:])
    ho, wo = out_hw
    ys, xs = torch.meshgrid(torch.arange(ho, dtype=torch.float64), torch.arange(wo, dtype=torch.float64),
                            indexing="ij")
    dst = torch.stack([xs, ys], -1).reshape(1, -1, 2)  # (1, P, 2)
    srcp = dst @ a_inv.transpose(1, 2) + t_inv.transpose(1, 2)  # (B, P, 2)
    gx = (srcp[..., 0] + 0.5) / w * 2 - 1
    gy = (srcp[..., 1] + 0.5) / h * 2 - 1
    grid = torch.stack([gx, gy], -1).reshape(b, ho, wo, 2).to(src.dtype if src.is_floating_point() else torch.float32)
    grid = grid.to(src.device)
    x = src if src.is_floating_point() else src.float()
    out = F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    if not src.is_floating_point():
        out = out.round().to(src.dtype)
    return out[0] if squeeze else out


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 (H, W, 3) RGB (errors as `read_pil`)."""
    return np.asarray(read_pil(path))


def read_label(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        a = np.asarray(im)
    return a[..., 0] if a.ndim == 3 else a


def image_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).float() / 255.0


# ----------------------------------------------------------------------------- reader bases


class LandmarkRecordsSplit(TaskSplit):
    """Landmarks from image files: each record = (image path, points (K, 2) in original pixels,
    crop matrix original -> crop). Items: (image (3, S, S) in [0, 1], points (K, 2) in crop
    pixels). meta["boxes"] (N, 4) x1, y1, x2, y2 in crop pixels when the dataset normalises by box."""

    def __init__(self, name: str, split: str, paths: list[str], points: np.ndarray, matrices: np.ndarray,
                 size: int, meta: dict | None = None, slices: dict | None = None):
        super().__init__(name, split, meta=meta, slices=slices)
        self.paths, self.points, self.matrices, self.size = paths, np.asarray(points), np.asarray(matrices), size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = image_tensor(read_image(self.paths[i]))
        m = self.matrices[i]
        crop = warp_affine(img, m, (self.size, self.size), padding_mode="zeros").clamp(0, 1)
        pts = apply_affine(self.points[i], m)
        return crop, torch.as_tensor(pts, dtype=torch.float32)


class AlignedParsingSplit(TaskSplit):
    """Parsing from image + label files, each warped by its matrix (original -> crop) to S x S.
    With meta["warp_back"] the evaluation warps logits back with `matrices[i]` and scores against
    `original_label(i)` at the original resolution."""

    def __init__(self, name: str, split: str, images: list[str], labels: list, matrices: np.ndarray | None,
                 size: int, meta: dict | None = None, slices: dict | None = None):
        super().__init__(name, split, meta=meta, slices=slices)
        self.images, self.labels, self.size = images, labels, size
        self.matrices = matrices

    def __len__(self):
        return len(self.images)

    def original_label(self, i) -> np.ndarray:
        lab = self.labels[i]
        return lab() if callable(lab) else read_label(lab)

    def matrix(self, i, label_hw) -> np.ndarray:
        """original-label pixels -> crop pixels (plain resize when no matrices were given)."""
        if self.matrices is not None:
            return self.matrices[i]
        return resize_matrix(label_hw, (self.size, self.size))

    def __getitem__(self, i):
        img = read_image(self.images[i])
        lab = self.original_label(i)
        m_lab = self.matrix(i, lab.shape[:2])
        # the image may be stored at another resolution than its label (CelebAMask-HQ)
        m_img = compose(m_lab, resize_matrix(img.shape[:2], lab.shape[:2]))
        s = (self.size, self.size)
        crop = warp_affine(image_tensor(img), m_img, s).clamp(0, 1)
        lab_t = warp_affine(torch.from_numpy(lab.astype(np.int64))[None].float(), m_lab, s, mode="nearest")
        return crop, lab_t[0].long()


def resize_matrix(src_hw, dst_hw) -> np.ndarray:
    """Pixel coords of an image of size src_hw -> the same image resized to dst_hw."""
    (hs, ws), (hd, wd) = src_hw, dst_hw
    fx, fy = wd / ws, hd / hs
    return np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])


def compose(a, b) -> np.ndarray:
    """a after b, for 2x3 affine matrices."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.concatenate([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]], axis=1)


def holdout(n: int, frac: float = 0.05, seed: int = 20240601) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: a fixed seeded `frac` of a training set held out for model
    selection, for datasets without an official validation split."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    k = max(1, int(round(n * frac))) if n > 1 else 0
    return np.sort(perm[k:]), np.sort(perm[:k])


def holdout_rows(dataset: str, root, rows: list, split: str, layout: str, where: str) -> list:
    """The `split` ("train" or "val") part of a training set's `rows` by `holdout`, or
    DatasetLayoutError when there are too few annotated items to hold one out (at least 2: one to
    train on, one for validation)."""
    if len(rows) < 2:
        raise DatasetLayoutError(dataset, root, f"{len(rows)} annotated training image(s) in {where}; at least 2 "
                                 "are needed (one is held out for validation), more for a meaningful number",
                                 layout)
    tr, va = holdout(len(rows))
    return [rows[i] for i in (tr if split == "train" else va)]


def get_dataset_spec(name: str):
    spec = DATASETS.get(name)
    return spec() if isinstance(spec, type) else spec


class WithIndex(Dataset):
    """(image, target) -> (image, {"target": target, "index": i}) so evaluation can look up
    per-item data of the split (original labels, boxes, slices)."""

    def __init__(self, ds: Dataset):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        img, tgt = self.ds[i]
        return img, {"target": tgt, "index": i}
