"""FaRL's inputs as the benchmark's splits: `FarlParsingSplit` (image, label, align matrix -> warped
crop and label) and `FarlLandmarkSplit` (image, points, box -> crop, points), with FaRL's train-time
augmentations (bench_tasks.protocols.farl.transforms)."""

from __future__ import annotations

import numpy as np
import torch

from bench_tasks.contracts import TaskSplit
from bench_tasks.datasets._readers import read_image, read_label
from bench_tasks.protocols.farl import transforms as T


def _rng_from_torch() -> np.random.Generator:
    """A fresh numpy Generator seeded from torch's RNG: reproducible from the cell's seed in the
    main process, different per worker and per epoch in DataLoader workers."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


def _read_rgb(path) -> np.ndarray:
    return read_image(path)


def _resize_linear(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """cv2.resize(..., INTER_LINEAR) as FaRL's CelebAMask-HQ reader does (PIL bilinear without cv2)."""
    try:
        # lazy: cv2 is optional (PIL's bilinear without it) and slow to import
        import cv2

        return cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
    except ImportError:  # pragma: no cover - cv2 is installed with the test env
        from PIL import Image

        return np.asarray(Image.fromarray(img).resize((hw[1], hw[0]), Image.BILINEAR))


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0


class FarlParsingSplit(TaskSplit):
    """Items: (warped image (3, S, S) in [0, 1], warped label (S, S) long), S = warped_size.
    `matrices[i]` maps the original image (as FaRL reads it) to the aligned 512 frame."""

    def __init__(self, name, split, images, labels, matrices, st: dict, train: bool, resize_to_label=False,
                 meta=None, slices=None):
        super().__init__(name, split, meta=meta, slices=slices)
        self.images, self.labels, self.matrices = images, labels, np.asarray(matrices, dtype=np.float64)
        self.st, self.train, self.resize_to_label = st, train, resize_to_label
        s = st["warped_size"]
        self.scale = T.to3x3(np.diag([s / 512.0, s / 512.0, 1.0]))  # identity at FaRL's 512

    def __len__(self):
        return len(self.images)

    def original_label(self, i) -> np.ndarray:
        lab = self.labels[i]
        if callable(lab):
            return lab()
        return read_label(lab)

    def original_image(self, i) -> np.ndarray:
        img = _read_rgb(self.images[i])
        if self.resize_to_label:
            lab_hw = self.original_label(i).shape[:2]
            if img.shape[:2] != lab_hw:
                img = _resize_linear(img, lab_hw)
        return img

    def matrix(self, i) -> np.ndarray:
        """original -> warped frame at warped_size (FaRL's 512 matrix, scaled for overrides)."""
        return self.scale @ self.matrices[i]

    def __getitem__(self, i):
        st, s = self.st, self.st["warped_size"]
        img = _to_tensor(self.original_image(i))
        lab = torch.from_numpy(self.original_label(i).astype(np.int64))[None]
        m = self.matrices[i]
        rng = _rng_from_torch() if self.train else None
        if self.train:
            m = T.random_transform_matrix(m, rng, **st["train_aug"])
        m = self.scale @ m
        mp = T.warp_map(m, st["warp_factor"], (s, s))
        wimg = T.remap(img, mp, "bilinear").clamp(0, 1)
        wlab = T.remap(lab, mp, "nearest")[0]
        if self.train:
            wimg = T.parsing_colour_augment(wimg, rng)
        return wimg, wlab


class FarlLandmarkSplit(TaskSplit):
    """Items: (warped image (3, S, S), warped points (K, 2) in warped pixels). `points`,
    `boxes` (y1, x1, y2, x2) in original pixels; `matrices` the crop matrices (original -> 512)."""

    def __init__(self, name, split, paths, points, boxes, st: dict, train: bool, meta=None, slices=None):
        super().__init__(name, split, meta=meta, slices=slices)
        self.paths, self.points = list(paths), np.asarray(points, dtype=np.float64)
        self.boxes = np.asarray(boxes, dtype=np.float64)
        self.st, self.train = st, train
        s = st["warped_size"]
        self.scale = T.to3x3(np.diag([s / 512.0, s / 512.0, 1.0]))
        self.matrices = np.stack([T.crop_resize_matrix(b, (512, 512)) for b in self.boxes]) if len(self.boxes) \
            else np.zeros((0, 3, 3))

    def __len__(self):
        return len(self.paths)

    def test_matrix(self, i) -> np.ndarray:
        """original -> warped frame at warped_size, with the test-time scale_mu (FaRL test.yaml)."""
        return self.scale @ T.update_transform_matrix(self.matrices[i], scale_mu=self.st["test_scale_mu"])

    def __getitem__(self, i):
        st, s = self.st, self.st["warped_size"]
        img = _to_tensor(_read_rgb(self.paths[i]))
        if self.train:
            rng = _rng_from_torch()
            m = self.scale @ T.random_transform_matrix(self.matrices[i], rng, **st["train_aug"])
        else:
            rng, m = None, self.test_matrix(i)
        wimg = T.remap(img, T.warp_map(m, st["warp_factor"], (s, s)), "bilinear").clamp(0, 1)
        pts = T.warp_points(self.points[i], m, st["warp_factor"], (s, s))
        if self.train:
            wimg = T.alignment_colour_augment(wimg, rng)
        return wimg, torch.as_tensor(pts, dtype=torch.float32)
