"""Pre-training data sources (all yield aligned face crops of `img_size`).

`build_pretrain_dataset(data_cfg, img_size, seed)` -> a torch Dataset whose items are
{"image": uint8 (3, H, W), "index": int, "skipped": [file names that failed]} (+ "landmarks":
float32 (68, 2) in unit coordinates of the crop, NaN where unknown, for sources that have them:
PaCo-FR's per-face region maps, paco_fr.region_maps) and which has `.captions` (list[str] or None).

Sources (`data.source`):
- `synthface`: paco_fr.data.synthface.load_synthface(split, num_images, img_size, seed, root)
  (split `pretrain` by default; `teacher` for MCF-style's teacher: disjoint identities and images);
  captions are built from SynthFace's labels, partial and noisy by default (paco_fr.data.captions);
  the 68 landmarks come from SynthFace.
- `folder`: an image folder (recursive; jpg/jpeg/png/bmp/webp) of already-aligned faces, resized
  to img_size. `data.path` = the folder. Optional `data.landmarks_file`: lines `relpath` + 5
  points (10 numbers) or 68 points (136 numbers) in that image's pixel coordinates; 5 points give
  a 68-point estimate (paco_fr.data.template.landmarks68_from_five); images without a line get NaN.
- `tar`: tar shards of already-aligned faces; `data.path` = a shard, a folder of shards or a glob.
- `landmarks`: raw face images + a 5-point landmarks file (`data.landmarks_file`; one line per
  image: `relpath x1 y1 ... x5 y5`, paths relative to `data.path`, `#` comments allowed), aligned
  on the fly with paco_fr.data.template.align_face; the 5 points, moved into the aligned crop,
  give the face's 68-point estimate.
- `wds`: streaming webdataset shards made by `python -m paco_fr prepare` (aligned faces with their
  landmarks; index = manifest.json): paco_fr.data.shards.ShardStream, an IterableDataset that
  splits shards across ranks and loader workers each epoch and yields whole batches.
- `random`: seeded smooth random images with dummy captions (tests / throughput only).

Corrupt or unreadable images are reported (warning with the file name), counted and replaced
by the next readable index (deterministic), never a crash; the engine logs the running count.
"""

from __future__ import annotations

import glob
import io
import logging
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from paco_fr.data.captions import build_captions
from paco_fr.data.shards import ShardStream
from paco_fr.data.synthface import EXPRESSIONS, load_synthface
from paco_fr.data.template import (
    CANONICAL_5,
    align_face,
    landmarks68_from_five,
    similarity_from_points,
    transform_points,
)

log = logging.getLogger(__name__)
IMG_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _decode(data: bytes | str | Path) -> np.ndarray:
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(src) as im:
        return np.asarray(im.convert("RGB"))


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC))


class _FileDataset(Dataset):
    """Base for file-backed sources: subclasses implement `_load(i) -> HWC uint8` and `_name(i)`."""

    captions = None

    def __init__(self, img_size: int):
        self.img_size = img_size
        self.bad: set[str] = set()

    def _landmarks(self, i: int) -> np.ndarray | None:
        """(68, 2) unit coords of item i (NaN = unknown), or None when the source has none."""
        return None

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def __getitem__(self, i: int) -> dict:
        skipped = []
        n = len(self)
        for t in range(min(n, 64)):
            j = (i + t) % n
            try:
                img = self._load(j)
                item = {"image": torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1), "index": j,
                        "skipped": skipped}
                lm = self._landmarks(j)
                if lm is not None:
                    item["landmarks"] = torch.from_numpy(np.asarray(lm, dtype=np.float32))
                return item
            except Exception as e:  # noqa: BLE001 - any decoding failure means "skip this file"
                name = self._name(j)
                if name not in self.bad:
                    log.warning("skipping unreadable image %s: %s", name, e)
                self.bad.add(name)
                skipped.append(name)
        raise RuntimeError(f"no readable image found around index {i} (tried {len(skipped)})")


def read_landmarks_file(path) -> dict[str, np.ndarray]:
    """`relpath x1 y1 ... xK yK` lines (K = 5 or 68, pixel coords; `#` comments) -> {relpath: (K, 2)}."""
    out: dict[str, np.ndarray] = {}
    for ln, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) not in (11, 137):
            raise ValueError(f"{path}:{ln}: expected `relpath` and 5 or 68 points (10 or 136 numbers), "
                             f"got {len(parts) - 1} numbers")
        out[parts[0]] = np.array([float(v) for v in parts[1:]], dtype=np.float64).reshape(-1, 2)
    return out


def unit_landmarks68(pts: np.ndarray, width: int, height: int) -> np.ndarray:
    """5 or 68 points in pixel coords of a width x height image -> 68 points in unit coords."""
    unit = (np.asarray(pts, dtype=np.float64) + 0.5) / np.array([width, height], dtype=np.float64)
    return unit if len(unit) == 68 else landmarks68_from_five(unit)


class FolderDataset(_FileDataset):
    def __init__(self, root, img_size: int, landmarks_file=None):
        super().__init__(img_size)
        root = Path(root)
        self.root = root
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMG_EXT)
        if not self.files:
            raise FileNotFoundError(f"no images under {root}")
        self.points = read_landmarks_file(landmarks_file) if landmarks_file else None
        self._unit: dict[int, np.ndarray] = {}

    def _landmarks(self, i):
        if self.points is None:
            return None
        return self._unit.get(i, np.full((68, 2), np.nan, dtype=np.float32))

    def __len__(self):
        return len(self.files)

    def _name(self, i):
        return str(self.files[i])

    def _load(self, i):
        img = _decode(self.files[i])
        if self.points is not None:
            pts = self.points.get(self.files[i].relative_to(self.root).as_posix())
            if pts is not None:
                self._unit[i] = unit_landmarks68(pts, img.shape[1], img.shape[0]).astype(np.float32)
        return _resize(img, self.img_size)


class TarDataset(_FileDataset):
    def __init__(self, spec, img_size: int):
        super().__init__(img_size)
        p = Path(spec)
        shards = sorted(p.glob("*.tar")) if p.is_dir() else [Path(s) for s in sorted(glob.glob(str(spec)))]
        if not shards:
            raise FileNotFoundError(f"no tar shards at {spec}")
        self.members: list[tuple[Path, str]] = []
        for s in shards:
            with tarfile.open(s) as tf:
                for m in tf.getmembers():
                    if m.isfile() and Path(m.name).suffix.lower() in IMG_EXT:
                        self.members.append((s, m.name))
        self._open: dict[Path, tarfile.TarFile] = {}

    def __len__(self):
        return len(self.members)

    def _name(self, i):
        s, m = self.members[i]
        return f"{s}:{m}"

    def _load(self, i):
        s, m = self.members[i]
        tf = self._open.get(s)
        if tf is None:
            tf = self._open[s] = tarfile.open(s)
        f = tf.extractfile(m)
        if f is None:
            raise OSError("not a regular file")
        return _resize(_decode(f.read()), self.img_size)

    def __getstate__(self):
        st = dict(self.__dict__)
        st["_open"] = {}
        return st


class LandmarksDataset(_FileDataset):
    def __init__(self, root, landmarks_file, img_size: int):
        super().__init__(img_size)
        self.root = Path(root) if root else Path(landmarks_file).parent
        self.items: list[tuple[str, np.ndarray]] = []
        for ln, line in enumerate(Path(landmarks_file).read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 11:
                log.warning("%s:%d: expected `relpath x1 y1 ... x5 y5`, skipping", landmarks_file, ln)
                continue
            self.items.append((parts[0], np.array([float(v) for v in parts[1:]], dtype=np.float64).reshape(5, 2)))
        if not self.items:
            raise ValueError(f"no entries in {landmarks_file}")

    def __len__(self):
        return len(self.items)

    def _name(self, i):
        return str(self.root / self.items[i][0])

    def _landmarks(self, i):
        # the 5 points moved into the aligned crop (the same similarity align_face uses)
        size = self.img_size
        pts = self.items[i][1]
        m = similarity_from_points(pts, CANONICAL_5 * size - 0.5)
        return landmarks68_from_five((transform_points(pts, m) + 0.5) / size).astype(np.float32)

    def _load(self, i):
        rel, pts = self.items[i]
        img = _decode(self.root / rel)
        aligned, _ = align_face(img, pts, self.img_size)
        return aligned


class ArrayDataset(Dataset):
    def __init__(self, images: np.ndarray, captions: list[str] | None, landmarks: np.ndarray | None = None):
        """landmarks: optional (N, 68, 2) in unit coordinates of the crop."""
        self.images = images
        self.captions = captions
        self.landmarks = None if landmarks is None else np.asarray(landmarks, dtype=np.float32)
        self.bad: set[str] = set()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        item = {"image": torch.from_numpy(np.ascontiguousarray(self.images[i])).permute(2, 0, 1), "index": int(i),
                "skipped": []}
        if self.landmarks is not None:
            item["landmarks"] = torch.from_numpy(self.landmarks[i])
        return item


def random_faces(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Smooth seeded random images (low-frequency noise) with dummy captions."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    img = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    img = (img * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    words = ["smiling", "young", "old", "glasses", "beard", "neutral"]
    caps = [f"a face {words[i % 6]} {words[(i // 6) % 6]}" for i in range(n)]
    return img, caps


def build_pretrain_dataset(data_cfg: dict, img_size: int, seed: int = 0, captions: dict | None = None):
    """`captions`: the `farl.captions` section (noise / mode of SynthFace's captions; default noisy)."""
    src = data_cfg["source"]
    if src == "synthface":
        s = load_synthface(data_cfg.get("split") or "pretrain", int(data_cfg["num_images"]), image_size=img_size,
                           seed=seed, root=data_cfg.get("root"))
        caps = build_captions(s.attributes, s.expression, captions, seed, s.attribute_names, EXPRESSIONS)
        # SynthFace landmarks are pixel coords with pixel centres at integers -> unit coords
        unit = (np.asarray(s.landmarks, dtype=np.float64) + 0.5) / img_size
        return ArrayDataset(np.asarray(s.images), caps, unit)
    if src == "random":
        imgs, caps = random_faces(int(data_cfg["num_images"]), img_size, seed)
        return ArrayDataset(imgs, caps)
    if src == "folder":
        return FolderDataset(data_cfg["path"], img_size, data_cfg.get("landmarks_file"))
    if src == "tar":
        return TarDataset(data_cfg["path"], img_size)
    if src == "landmarks":
        if not data_cfg.get("landmarks_file"):
            raise ValueError("data.source=landmarks needs data.landmarks_file (lines 'relpath x1 y1 ... x5 y5')")
        return LandmarksDataset(data_cfg.get("path"), data_cfg["landmarks_file"], img_size)
    if src == "wds":
        return ShardStream(data_cfg["path"], img_size, seed=seed, shuffle_buffer=int(data_cfg.get("shuffle_buffer") or 1))
    raise ValueError(f"unknown data.source {src!r}")


class ResumableBatchSampler:
    """Deterministic batches: epoch e uses randperm(N, seed + e), sharded rank::world, dropping the
    last incomplete batch. Yields the index lists of micro-batches [start, end) so that a resumed
    run sees exactly the batches the uninterrupted run would have."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, end: int, rank: int = 0, world: int = 1):
        self.n, self.bs, self.seed = n, batch_size, seed
        self.start, self.end, self.rank, self.world = start, end, rank, world
        self.per_epoch = max(1, (n // world) // batch_size)
        if (n // world) < batch_size:
            raise ValueError(f"dataset of {n} images is smaller than one batch of {batch_size} x {world} ranks")

    def batch(self, micro: int) -> list[int]:
        e, i = divmod(micro, self.per_epoch)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + e))
        shard = perm[self.rank::self.world]
        return shard[i * self.bs:(i + 1) * self.bs].tolist()

    def __iter__(self):
        cache_epoch, shard = None, None
        for micro in range(self.start, self.end):
            e, i = divmod(micro, self.per_epoch)
            if e != cache_epoch:
                perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + e))
                shard, cache_epoch = perm[self.rank::self.world], e
            yield shard[i * self.bs:(i + 1) * self.bs].tolist()

    def __len__(self):
        return self.end - self.start


def collate(items: list[dict]) -> dict:
    out = {
        "image": torch.stack([it["image"] for it in items]),
        "index": torch.tensor([it["index"] for it in items]),
        "skipped": [s for it in items for s in it["skipped"]],
    }
    if all("landmarks" in it for it in items):
        out["landmarks"] = torch.stack([it["landmarks"] for it in items])
    return out
