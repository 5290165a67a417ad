"""FaRL's downstream protocol for face parsing (LaPa, CelebAMask-HQ) and face alignment (300W,
WFLW, AFLW-19), following FaRL's configuration files file by file (FacePerceiver/FaRL,
`farl/experiments/face_parsing/` and `farl/experiments/face_alignment/`: trainers/, augmenters/,
optimizers/, scorers/, networks/; crops from `farl/datasets/*.py` and `prepare.py`).

Protocols (cells): `farl-frozen` = FaRL's `freeze_backbone` optimizer file, `farl-refine` =
`refine_backbone`. The values of every file are in `FARL_COMMON` / `FARL_DATASETS` below, with the
file each comes from; `docs/farl_protocol.md` has one card per data set (FaRL's setting, ours, and
every remaining difference with its reason).

A row records exactly what ran (`config.farl`): the settings, the overrides applied (profile
`extra["farl_<key>"]`, or the built-in CPU overrides of the `smoke` / `cpu` profiles) and
`farl_exact` (True only when no setting differs from FaRL's files). The report puts a measured
number next to FaRL's "(reported)" one only for rows with `farl_exact` on a real data set.

Pipeline per item (the geometry lives in `bench_tasks.farl_transforms`):
  parsing   image (+ label) -> align matrix (LaPa: 5 of its 106 points onto FaRL's standard
            points at 512; CelebAMask-HQ: identity on the image resized to 512) -> [train: random
            similarity] -> tanh warp (LaPa 0.8, CelebAMask-HQ 0) to 512 x 512 -> [train: gray /
            gamma / blur] -> the network resizes to 448 -> logits upsampled to 512 -> test: logits
            warped back to the original image (inverse map, bilinear), argmax, F1 over all pixels.
  landmarks image -> crop matrix from the box (300W / WFLW: centre +- 100 * scale from HRNet's
            CSVs, 300W's coordinates - 2 as FaRL reads them; AFLW-19: the .mat box) -> test:
            scale_mu about the centre (0.8; AFLW-19 1.0) / train: random similarity -> 512 ->
            [train: occlusion, noise, gray, gamma, blur] -> 448 -> heatmaps (sigmoid) -> weighted
            mean -> points mapped back to the original image -> NME with FaRL's normalisers.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench_tasks import farl_transforms as T
from bench_tasks.contracts import CellContext, CellResult, DatasetLayoutError, TaskSplit
from bench_tasks.heads.dense import DENSE_HEAD
from bench_tasks.protocols.train import BackboneWithHead, FitConfig, fit
from bench_tasks.registry import PROTOCOLS

PROTOCOL_NAMES = ("farl-frozen", "farl-refine")
FARL_REPO = "FacePerceiver/FaRL"

# ----------------------------------------------------------------------------- FaRL's files

FARL_COMMON = {
    # networks/farl.yaml + network/transformers.py (FaRLVisualFeatures) + network/mmseg.py
    "warped_size": 512,           # augmenters: warped_shape [512, 512]
    "input_size": 448,            # forced_input_resolution 448 (bilinear resize of the 512 input)
    "head_channels": 768,         # head_channel 768 (MMSEG_UPerHead, pool scales 1,2,3,6, dropout 0.1)
    "layers": [3, 5, 7, 11],      # output_indices of ViT-B ('base'), FPN x4, x2, x1, x1/2
    # optimizers/{freeze,refine}_backbone.yaml
    "optimizer": "AdamW", "betas": [0.9, 0.999], "weight_decay": 1e-5,
    "lr_schedule": "multistep", "milestones": [200], "gamma": 0.1,  # MultiStepLR, epochwise
    "ema_decay": 0.999,           # trainers: main_ema EMAConfig decay 0.999, evaluated
    # train_*_farl-b-ep64_448_refinebb.yaml: batch_size=5 per GPU process, DistributedGPURun on the
    # 8 V100 GPUs FaRL's README requires, SyncBatchNorm: one step sees 40 images and BN normalises
    # over 40 -- one process with batch 40 and plain BN computes the same step
    "batch_size": 40, "batch_size_per_gpu": 5, "gpus": 8,
    "eval_every": 1,              # eval_interval 1
    "grad_clip": None,
}

_PARSING_TRAIN_AUG = {"shift_sigma": 0.01, "rot_sigma": 0.314, "scale_sigma": 0.1, "scale_mu": 1.0,
                      "shift_normal": False, "rot_normal": True, "scale_normal": True}
_ALIGN_TRAIN_AUG = {"shift_sigma": 0.05, "rot_sigma": 0.174, "scale_sigma": 0.1,
                    "shift_normal": False, "rot_normal": False, "scale_normal": False}
LAPA_FARL_CLASSES = ["background", "face_lr_rr", "lb", "rb", "le", "re", "nose", "ul", "im", "ll", "hair"]
# CelebAMask-HQ: FaRL paints the part masks in this order (a later part overrides), label = i + 1
CELEBM_FARL_PARTS = ["neck", "skin", "cloth", "l_ear", "r_ear", "l_brow", "r_brow", "l_eye", "r_eye", "nose",
                     "mouth", "l_lip", "u_lip", "hair", "eye_g", "hat", "ear_r", "neck_l"]
CELEBM_FARL_CLASSES = ["background", "neck", "face", "cloth", "rr", "lr", "rb", "lb", "re", "le", "nose",
                       "imouth", "llip", "ulip", "hair", "glass", "hat", "earr", "neckl"]

FARL_DATASETS = {
    "lapa": {
        "task": "parsing", "files": ["face_parsing/trainers/lapa_farl.yaml", "face_parsing/augmenters/lapa/*.yaml",
                                     "face_parsing/scorers/lapa.yaml", "datasets/prepare.py (freeze_lapa)"],
        "epochs": 300, "warp_factor": 0.8, "crop": "align 5 points [104, 105, 54, 84, 90] onto the standard 512 points",
        "train_aug": _PARSING_TRAIN_AUG, "colour_aug": ["RandomGray", "RandomGamma", "RandomBlur"],
        "num_classes": 11, "classes": LAPA_FARL_CLASSES, "lr": {"frozen": (None, 1e-3), "refine": (1e-4, 1e-3)},
        "scorer": "F1 over all pixels of the original label, summed confusion over test; fg_mean over the 10 "
                  "non-background classes", "test_sets": ["test"], "val": None,
    },
    "celebamaskhq": {
        "task": "parsing", "files": ["face_parsing/trainers/celebm_farl.yaml", "face_parsing/augmenters/celebm/*.yaml",
                                     "face_parsing/scorers/celebm.yaml", "datasets/celebamask_hq.py"],
        "epochs": 300, "warp_factor": 0.0, "crop": "identity on the image resized (cv2 bilinear) to the 512 label",
        "train_aug": _PARSING_TRAIN_AUG, "colour_aug": ["RandomGray", "RandomGamma", "RandomBlur"],
        "num_classes": 19, "classes": CELEBM_FARL_CLASSES, "lr": {"frozen": (None, 1e-3), "refine": (1e-4, 1e-3)},
        "scorer": "F1 at 512, summed confusion over test (CelebA partition 2); fg_mean over 18 classes",
        "test_sets": ["test"], "val": None,
    },
    "300w": {
        "task": "landmarks", "files": ["face_alignment/trainers/ibug300w_farl.yaml", "face_alignment/augmenters/*.yaml",
                                       "face_alignment/scorers/ibug300w.yaml", "datasets/ibug300w.py"],
        "epochs": 250, "warp_factor": 0.0, "test_scale_mu": 0.8, "train_aug": {**_ALIGN_TRAIN_AUG, "scale_mu": 0.8},
        "crop": "HRNet CSV box: centre - 2 +- 100 * scale (points - 2), crop-and-resize to 512",
        "colour_aug": ["RandomOcclusion", "Maybe(0.5, NoiseFusion)", "RandomGray", "RandomGamma", "RandomBlur"],
        "num_points": 68, "lr": {"frozen": (None, 1e-2), "refine": (1e-4, 1e-2)},
        "heatmap_size": 128, "heatmap_radius": 5.0, "loss_weights": {"coord_l1_loss": 1.0, "heatmap_ce_loss": 1.0},
        "norms": {"inter_ocular": ([36], [45]), "inter_pupil": ([36, 37, 38, 39, 40, 41], [42, 43, 44, 45, 46, 47])},
        "headline_norm": "inter_ocular", "auc": None,
        "scorer": "NME inter-ocular (36, 45) and inter-pupil, per image mean / unit, averaged over images",
        "test_sets": ["common", "challenging", "full (= common + challenging)"], "val": None,
    },
    "wflw": {
        "task": "landmarks", "files": ["face_alignment/trainers/wflw_farl.yaml", "face_alignment/augmenters/*.yaml",
                                       "face_alignment/scorers/wflw.yaml", "datasets/wflw.py"],
        "epochs": 150, "warp_factor": 0.0, "test_scale_mu": 0.8, "train_aug": {**_ALIGN_TRAIN_AUG, "scale_mu": 0.8},
        "crop": "HRNet CSV box: centre +- 100 * scale, crop-and-resize to 512",
        "colour_aug": ["RandomOcclusion", "Maybe(0.5, NoiseFusion)", "RandomGray", "RandomGamma", "RandomBlur"],
        "num_points": 98, "lr": {"frozen": (None, 1e-2), "refine": (1e-4, 1e-2)},
        "heatmap_size": 128, "heatmap_radius": 5.0, "loss_weights": {"coord_l1_loss": 1.0, "heatmap_ce_loss": 1.0},
        "norms": {"inter_ocular": ([60], [72]), "inter_pupil": ([96], [97])},
        "headline_norm": "inter_ocular", "auc": ("inter_ocular", 0.1),
        "scorer": "NME inter-ocular (60, 72), inter-pupil (96, 97); AUC / FR @ 0.1 inter-ocular (Simpson, step 1e-4)",
        "test_sets": ["all", "blur", "expression", "illumination", "largepose", "makeup", "occlusion"], "val": None,
    },
    "aflw19": {
        "task": "landmarks", "files": ["face_alignment/trainers/aflw19_farl.yaml",
                                       "face_alignment/augmenters/{train,aflw19_test,aflw19_test_post}.yaml",
                                       "face_alignment/scorers/aflw19.yaml", "datasets/aflw.py"],
        "epochs": 150, "warp_factor": 0.0, "test_scale_mu": 1.0, "train_aug": {**_ALIGN_TRAIN_AUG, "scale_mu": 1.0},
        "crop": "the .mat box (left, right, top, bottom) as y1 x1 y2 x2, crop-and-resize to 512",
        "colour_aug": ["RandomOcclusion", "Maybe(0.5, NoiseFusion)", "RandomGray", "RandomGamma", "RandomBlur"],
        "num_points": 19, "lr": {"frozen": (None, 1e-2), "refine": (1e-4, 1e-2)},
        "heatmap_size": 128, "heatmap_radius": 5.0, "loss_weights": {"coord_l1_loss": 1.0, "heatmap_ce_loss": 1.0},
        "norms": {"inter_ocular": ([6], [11]), "inter_pupil": ([7], [10]), "box": "box", "diag": "diag"},
        "headline_norm": "diag", "auc": ("box", 0.07),
        "scorer": "NME by box diagonal (headline), sqrt(w h), inter-ocular (6, 11), inter-pupil (7, 10); "
                  "AUC / FR @ 0.07 box", "test_sets": ["full", "frontal"], "val": None,
    },
}

# CPU profiles cannot run FaRL's sizes: bench_tasks/configs/{smoke,cpu}.yaml set `farl_<key>`
# overrides (warped / input size 64, 32 head channels, 2 epochs of 4, heatmaps 16 px), recorded in
# the row (farl_exact False), never silently applied. The keys a profile may override:
OVERRIDABLE = ("warped_size", "input_size", "head_channels", "epochs", "batch_size", "heatmap_size",
               "heatmap_radius", "eval_every", "ema_decay", "milestones", "train_images", "test_images")

for _p in PROTOCOL_NAMES:
    PROTOCOLS.register(_p)(_p)


def is_farl(protocol: str) -> bool:
    return protocol in PROTOCOL_NAMES


def canonical_dataset(name: str) -> str:
    return {"celebamask_hq": "celebamaskhq", "celebm": "celebamaskhq", "ibug300w": "300w"}.get(name, name)


def farl_settings(dataset: str, protocol: str, profile) -> dict:
    """Every setting of the cell: FaRL's files, then overrides (recorded). Raises for data sets
    FaRL's protocol does not define."""
    ds = canonical_dataset(dataset)
    if ds not in FARL_DATASETS:
        raise ValueError(f"the FaRL protocol is defined for {sorted(FARL_DATASETS)} (FaRL's configuration "
                         f"files), not for {dataset!r}; use protocols frozen / finetune there")
    if protocol not in PROTOCOL_NAMES:
        raise ValueError(f"unknown FaRL protocol {protocol!r}; choose from {PROTOCOL_NAMES}")
    spec = FARL_DATASETS[ds]
    st = {**copy.deepcopy(FARL_COMMON), **copy.deepcopy({k: v for k, v in spec.items() if k not in ("lr",)})}
    mode = "frozen" if protocol == "farl-frozen" else "refine"
    lr_bb, lr_head = spec["lr"][mode]
    st.update(dataset=ds, protocol=protocol, optimizer_file=f"{spec['files'][0].split('/')[0]}/optimizers/"
              f"{'freeze' if mode == 'frozen' else 'refine'}_backbone.yaml", frozen=mode == "frozen",
              lr_backbone=lr_bb, lr_head=lr_head, train_images=None, test_images=None)
    overrides = {}
    ex = profile.extra or {}
    for k in OVERRIDABLE:
        if f"farl_{k}" in ex:
            overrides[k] = ex[f"farl_{k}"]
    if "dense_train_images" in ex and "train_images" not in overrides:
        overrides["train_images"] = int(ex["dense_train_images"])
    overrides = {k: v for k, v in overrides.items() if k in st and st[k] != v}
    st.update(overrides)
    st["overrides"] = overrides
    st["farl_exact"] = not overrides
    return st


# ----------------------------------------------------------------------------- data


def _rng_from_torch() -> np.random.Generator:
    """A fresh numpy Generator seeded from torch's RNG: reproducible from the cell's seed in the
    main process, different per worker and per epoch in DataLoader workers."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


def _read_rgb(path) -> np.ndarray:
    from bench_tasks.datasets._readers import read_image

    return read_image(path)


def _resize_linear(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """cv2.resize(..., INTER_LINEAR) as FaRL's CelebAMask-HQ reader does (PIL bilinear without cv2)."""
    try:
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
        from bench_tasks.datasets._readers import read_label

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


def _layout_error(ds, root, problem):
    from bench_tasks.datasets._readers import get_dataset_spec

    return DatasetLayoutError(ds, root, f"{problem} (the FaRL protocol reads FaRL's inputs)",
                              get_dataset_spec(ds).layout)


def load_lapa_farl(root, split: str, st: dict) -> FarlParsingSplit:
    from bench_tasks.datasets.lapa import FIVE_IDX, LAPA_CLASSES, load_lapa, read_lapa_landmarks

    base = load_lapa(root, split, 512)  # the reader's checks and file lists
    mats = []
    for p in base.images:
        stem = Path(p).stem
        pts = read_lapa_landmarks(Path(root) / split / "landmarks" / f"{stem}.txt")
        mats.append(T.face_align_matrix(pts[FIVE_IDX], (512, 512)))
    return FarlParsingSplit("lapa", split, base.images, base.labels, np.stack(mats), st, train=split == "train",
                            meta={"classes": LAPA_CLASSES, "farl_classes": LAPA_FARL_CLASSES})


def celebm_farl_label(anno_dir: Path, hq_id: int) -> np.ndarray:
    """FaRL's `make_label`: a 512 x 512 map painted in CELEBM_FARL_PARTS order (later overrides)."""
    from bench_tasks.datasets._readers import read_label

    label = np.zeros((512, 512), np.uint8)
    folder = Path(anno_dir) / str(hq_id // 2000)
    for i, part in enumerate(CELEBM_FARL_PARTS):
        p = folder / f"{hq_id:05d}_{part}.png"
        if p.exists():
            m = read_label(p)
            if m.shape[:2] != label.shape:
                raise ValueError(f"{p}: mask is {m.shape[:2]}, FaRL's reader expects 512 x 512")
            label = np.where(m > 0, np.uint8(i + 1), label)
    return label


def load_celebm_farl(root, split: str, st: dict) -> FarlParsingSplit:
    import functools

    from bench_tasks.datasets.celebamaskhq import load_celebamaskhq

    base = load_celebamaskhq(root, split, 512)  # the reader's split logic and checks
    anno = Path(root) / "CelebAMask-HQ-mask-anno"
    ids = [int(Path(p).stem) for p in base.images]
    labels = [functools.partial(celebm_farl_label, anno, i) for i in ids]
    return FarlParsingSplit("celebamaskhq", split, base.images, labels, np.stack([np.eye(3)] * len(ids)), st,
                            train=split == "train", resize_to_label=True,
                            meta={"classes": CELEBM_FARL_CLASSES, "farl_classes": CELEBM_FARL_CLASSES})


def _hrnet_rows(root: Path, fname: str, k: int, ds: str):
    from bench_tasks.datasets.w300 import read_hrnet_csv

    p = root / fname
    if not p.exists():
        raise _layout_error(ds, root, f"missing {fname}")
    return read_hrnet_csv(p, k)


def load_300w_farl(root, split: str, st: dict) -> FarlLandmarkSplit:
    from bench_tasks.datasets.w300 import find_image

    r = Path(root)
    if split == "train":
        rows = _hrnet_rows(r, "face_landmarks_300w_train.csv", 68, "300w")
        subsets = {}
    else:
        common = _hrnet_rows(r, "face_landmarks_300w_valid_common.csv", 68, "300w")
        chall = _hrnet_rows(r, "face_landmarks_300w_valid_challenge.csv", 68, "300w")
        rows = common + chall  # FaRL's "full" = IBUG300W.test_common.zip + test_challenging.zip
        subsets = {"common": np.arange(len(rows)) < len(common), "challenging": np.arange(len(rows)) >= len(common)}
    names = [("ibug/image_092 _01.jpg" if x["name"] == "ibug/image_092_01.jpg"
              and not find_image(r, x["name"]).exists() else x["name"]) for x in rows]
    pts = np.stack([x["points"] - 2.0 for x in rows])  # FaRL's IBUG300W reader: v - 2.0
    boxes = []
    for x in rows:
        half = 100.0 * x["scale"]
        cw, ch = x["center"][0] - 2.0, x["center"][1] - 2.0
        boxes.append([ch - half, cw - half, ch + half, cw + half])
    return FarlLandmarkSplit("300w", split, [str(find_image(r, n)) for n in names], pts, np.array(boxes), st,
                             train=split == "train", meta={"num_points": 68}, slices=subsets)


WFLW_SUBSETS = ("blur", "expression", "illumination", "largepose", "makeup", "occlusion")


def load_wflw_farl(root, split: str, st: dict) -> FarlLandmarkSplit:
    from bench_tasks.datasets.w300 import find_image, row_key

    r = Path(root)
    rows = _hrnet_rows(r, "face_landmarks_wflw_train.csv" if split == "train" else "face_landmarks_wflw_test.csv",
                       98, "wflw")
    slices = {}
    if split != "train":
        keys = [row_key(x) for x in rows]
        for sub in WFLW_SUBSETS:
            p = r / f"face_landmarks_wflw_test_{sub}.csv"
            if p.exists():
                want = {row_key(x) for x in _hrnet_rows(r, p.name, 98, "wflw")}
                slices[sub] = np.array([k in want for k in keys])
    boxes = [[x["center"][1] - 100 * x["scale"], x["center"][0] - 100 * x["scale"],
              x["center"][1] + 100 * x["scale"], x["center"][0] + 100 * x["scale"]] for x in rows]
    return FarlLandmarkSplit("wflw", split, [str(find_image(r, x["name"])) for x in rows],
                             np.stack([x["points"] for x in rows]), np.array(boxes), st, train=split == "train",
                             meta={"num_points": 98}, slices=slices)


def load_aflw19_farl(root, split: str, st: dict) -> FarlLandmarkSplit:
    from bench_tasks.datasets.aflw19 import NUM_TRAIN, find_image, read_aflw_mat

    r = Path(root)
    if not (r / "AFLWinfo_release.mat").exists():
        raise _layout_error("aflw19", root, "missing AFLWinfo_release.mat")
    info = read_aflw_mat(r / "AFLWinfo_release.mat")
    idx = info["ra"][:NUM_TRAIN] if split == "train" else info["ra"][NUM_TRAIN:]
    left, right, top, bottom = info["bbox"][idx].T
    boxes = np.stack([top, left, bottom, right], -1)  # FaRL: box_y1x1y2x2 = top, left, bottom, right
    slices = {"frontal": np.all(info["mask"][idx] == 1, axis=1)} if split != "train" else {}
    return FarlLandmarkSplit("aflw19", split, [find_image(r, info["names"][i]) for i in idx], info["points"][idx],
                             boxes, st, train=split == "train", meta={"num_points": 19}, slices=slices)


LOADERS = {"lapa": load_lapa_farl, "celebamaskhq": load_celebm_farl, "300w": load_300w_farl,
           "wflw": load_wflw_farl, "aflw19": load_aflw19_farl}


def load_farl_splits(ctx: CellContext, st: dict):
    """(train, None, test) as FaRL reads them: FaRL trains on the whole training set and evaluates
    the test set every epoch; no file of FaRL's reads a validation split, so none is read here (the
    row's `metrics` are the last epoch's, `metrics_best_test` the best test epoch's). A data set
    spec with st["val"] set would be read for model selection."""
    from torch.utils.data import Subset

    from bench_tasks.protocols.fractions import subset_indices

    if ctx.data_root is None:
        raise _layout_error(st["dataset"], None, "the FaRL protocol runs on the real data set: pass --data-root")
    load = LOADERS[st["dataset"]]
    train = load(ctx.data_root, "train", st)
    test = load(ctx.data_root, "test", st)
    val = None
    if st.get("val"):
        try:
            val = load(ctx.data_root, "val", st)
        except DatasetLayoutError:  # no official val folder / partition: select the last epoch
            val = None
    tr = train
    if ctx.cell.fraction < 1:
        tr = Subset(train, subset_indices(len(train), ctx.cell.fraction, ctx.cell.seed).tolist())
    if st.get("train_images") and len(tr) > st["train_images"]:
        tr = Subset(tr, list(range(int(st["train_images"]))))
    return tr, val, test


# ----------------------------------------------------------------------------- model


class FarlNet(BackboneWithHead):
    """FaRL's FaceParsingTransformer / FaceAlignmentTransformer: the warped input is resized
    (bilinear, align_corners False) to `input_size` inside the network, as FaRLVisualFeatures does."""

    def __init__(self, backbone, head, layers, frozen: bool, input_size: int):
        super().__init__(backbone, head, layers, frozen)
        self.input_size = int(input_size)

    def forward(self, x01):
        if x01.shape[-1] != self.input_size or x01.shape[-2] != self.input_size:
            x01 = F.interpolate(x01, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return super().forward(x01)


def farl_layers(backbone) -> list[int]:
    """FaRL's output_indices [3, 5, 7, 11] for a 12-block ViT; other depths: the backbone's scaled
    dense layers (recorded)."""
    if backbone.depth == 12:
        return list(FARL_COMMON["layers"])
    return list(backbone.dense_layers())


def parsing_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """FaRL FaceParsing: logits upsampled (bilinear) to the warped label size, cross-entropy per
    pixel, mean over pixels then batch (no ignore index: outside the image is background)."""
    logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, labels.long(), reduction="none").mean((1, 2)).mean()


def landmark_loss(logits: torch.Tensor, pts: torch.Tensor, st: dict) -> torch.Tensor:
    """FaRL FaceAlignment: coord_l1_loss = mean over points of the Euclidean distance in [0, 1]
    units (pred = heatmap2points(sigmoid)) + heatmap_ce_loss = BCE-with-logits of the heatmap
    logits resized to heatmap_size against gaussian_awing targets of heatmap_radius."""
    s = st["warped_size"]
    gt = T.normalize_points(pts.float(), s, s)
    pred = T.heatmap_to_points(torch.sigmoid(logits.float()))
    coord = (gt - pred).norm(dim=-1).mean(1)
    hs = int(st["heatmap_size"])
    hm = F.interpolate(logits.float(), (hs, hs), mode="bilinear", align_corners=False)
    with torch.no_grad():
        tgt = T.awing_heatmaps(gt, hs, float(st["heatmap_radius"]))
    ce = F.binary_cross_entropy_with_logits(hm, tgt, reduction="none").mean((1, 2, 3))
    w = st["loss_weights"]
    return (w["coord_l1_loss"] * coord + w["heatmap_ce_loss"] * ce).mean()


# ----------------------------------------------------------------------------- scoring


def parsing_confusions(model, loader, split: FarlParsingSplit, k: int, device) -> dict[int, np.ndarray]:
    """FaRL test_post.yaml: warped logits (upsampled to the warped size) -> inverse transform map
    onto the original label grid (bilinear, 0 outside) -> argmax -> confusion over all pixels."""
    from bench_tasks.metrics.parsing import confusion_matrix

    s = split.st["warped_size"]
    cms = {}
    for images, extra in loader:
        logits = model(images.to(device)).float()
        logits = F.interpolate(logits, size=(s, s), mode="bilinear", align_corners=False).cpu()
        for b, idx in enumerate(extra["index"].tolist()):
            gt = split.original_label(idx)
            mp = T.unwarp_map(split.matrix(idx), split.st["warp_factor"], gt.shape[:2], (s, s))
            pred = T.remap(logits[b], mp, "bilinear").argmax(0)
            cms[idx] = confusion_matrix(pred, torch.from_numpy(gt.astype(np.int64)), k, ignore_index=None)
    return cms


def predict_landmarks(model, loader, split: FarlLandmarkSplit, device) -> dict[int, np.ndarray]:
    """Predicted points in original image pixels (FaRL test_post.yaml: TransformPoints2DInverted)."""
    s = split.st["warped_size"]
    out = {}
    for images, extra in loader:
        logits = model(images.to(device))
        pred = T.denormalize_points(T.heatmap_to_points(torch.sigmoid(logits.float())), s, s).cpu().numpy()
        for b, idx in enumerate(extra["index"].tolist()):
            out[idx] = T.unwarp_points(pred[b], split.test_matrix(idx), split.st["warp_factor"], (s, s))
    return out


def unit_distance(norm, gt: np.ndarray, box_y1x1y2x2: np.ndarray) -> float:
    """FaRL's NormalizeByLandmarks / NormalizeByBox / NormalizeByBoxDiag."""
    if norm == "box":
        y1, x1, y2, x2 = box_y1x1y2x2
        return math.sqrt((y2 - y1) * (x2 - x1))
    if norm == "diag":
        y1, x1, y2, x2 = box_y1x1y2x2
        return math.sqrt((x2 - x1) ** 2 + (y2 - y1) ** 2)
    left, right = norm
    return float(np.linalg.norm(gt[left].mean(0) - gt[right].mean(0)))


def auc_fr(nmes: np.ndarray, threshold: float, step: float = 1e-4) -> tuple[float, float]:
    """FaRL's AUC_FR (HRNet's recipe): CED on arange(0, thr + step, step), Simpson's rule / thr;
    FR = 1 - CED(thr)."""
    from scipy.integrate import simpson

    nmes = np.sort(np.asarray(nmes, dtype=np.float64))
    xs = np.arange(0.0, threshold + step, step)
    ced = np.array([np.count_nonzero(nmes <= x) / len(nmes) for x in xs])
    return float(simpson(ced, x=xs) / threshold), float(1.0 - ced[-1])


def landmark_scores(preds: dict, split: FarlLandmarkSplit, st: dict, sel: np.ndarray | None = None) -> dict:
    """NMEs (in %, per image mean over points / unit, averaged over images) for every normaliser of
    FaRL's scorer file; `nme` = the headline normaliser; AUC / FR where the file has them."""
    idx = [i for i in sorted(preds) if sel is None or sel[i]]
    out: dict[str, float] = {}
    if not idx:
        return out
    per: dict[str, np.ndarray] = {}
    for name, norm in st["norms"].items():
        v = []
        for i in idx:
            gt = split.points[i]
            unit = unit_distance(norm, gt, split.boxes[i])
            v.append(float(np.linalg.norm(gt - preds[i], axis=-1).mean() / unit))
        per[name] = np.array(v)
        out[f"nme_{name}"] = float(per[name].mean() * 100)
    out["nme"] = out[f"nme_{st['headline_norm']}"]
    if st.get("auc"):
        norm, thr = st["auc"]
        a, fr = auc_fr(per[norm], thr)
        tag = f"{norm}_{int(round(thr * 100))}"
        out[f"auc_{tag}"], out[f"fr_{tag}"] = a, fr * 100
    out["n"] = float(len(idx))
    return out


# ----------------------------------------------------------------------------- run


def _loaders(train, val, test, st, seed, num_workers):
    from torch.utils.data import DataLoader

    from bench_tasks.datasets._readers import WithIndex

    g = torch.Generator().manual_seed(seed)
    bs = max(2, min(int(st["batch_size"]), len(train)))
    tl = DataLoader(train, batch_size=bs, shuffle=True, drop_last=len(train) > bs, num_workers=num_workers,
                    generator=g)
    ev = max(1, int(st["batch_size"]))
    vl = DataLoader(WithIndex(val), batch_size=ev, num_workers=num_workers) if val is not None else None
    te = DataLoader(WithIndex(test), batch_size=ev, num_workers=num_workers)
    return tl, vl, te


def run_farl(ctx: CellContext, task: str) -> CellResult:
    """Train and score one cell with FaRL's protocol; the row's config is `farl_settings`."""
    from bench_tasks.heads.dense import build_dense_head
    from bench_tasks.metrics.parsing import scores_from_confusion

    st = farl_settings(ctx.cell.dataset, ctx.cell.protocol, ctx.profile)
    if st["task"] != task:
        raise ValueError(f"{ctx.cell.dataset} is a {st['task']} data set in FaRL's files, not {task}")
    train, val, test = load_farl_splits(ctx, st)
    if len(train) < 2:
        raise ValueError(f"{ctx.cell.dataset}: {len(train)} training image(s) at fraction {ctx.cell.fraction:g}; "
                         "the FPN / UPerHead BatchNorm layers need at least 2 per batch")
    if st.get("test_images") and len(test) > st["test_images"]:
        keep = int(st["test_images"])
        test.images = test.images[:keep] if hasattr(test, "images") else test.images
        if isinstance(test, FarlLandmarkSplit):
            test.paths, test.points, test.boxes = test.paths[:keep], test.points[:keep], test.boxes[:keep]
            test.matrices = test.matrices[:keep]
        else:
            test.labels, test.matrices = test.labels[:keep], test.matrices[:keep]
        test.slices = {k: v[:keep] for k, v in test.slices.items()}
    layers = farl_layers(ctx.backbone)
    k = st["num_classes"] if task == "parsing" else st["num_points"]
    torch.manual_seed(ctx.cell.seed)
    head, layers = build_dense_head(ctx.backbone, k, int(st["head_channels"]), layers=layers)
    model = FarlNet(ctx.backbone, head, layers, frozen=st["frozen"], input_size=st["input_size"])
    tl, vl, te = _loaders(train, val, test, st, ctx.cell.seed, int(ctx.profile.num_workers))
    device = ctx.device
    classes = test.meta.get("classes")

    if task == "parsing":
        def loss_fn(out, labels):
            return parsing_loss(out, labels)

        def evaluate(m, loader):
            cms = parsing_confusions(m, loader, loader.dataset.ds, k, device)
            return scores_from_confusion(sum(cms.values()), classes)
        select, higher = "f1_mean", True
    else:
        def loss_fn(out, pts):
            return landmark_loss(out, pts, st)

        def evaluate(m, loader):
            return landmark_scores(predict_landmarks(m, loader, loader.dataset.ds, device), loader.dataset.ds, st)
        select, higher = "nme", False

    cfg = FitConfig(epochs=int(st["epochs"]), lr_head=st["lr_head"], lr_backbone=st["lr_backbone"] or 0.0,
                    weight_decay=st["weight_decay"], layer_decay=1.0, ema_decay=st["ema_decay"] or None,
                    grad_clip=st["grad_clip"], eval_every=int(st["eval_every"]), select_metric=select,
                    higher_is_better=higher, lr_schedule="multistep", milestones=tuple(st["milestones"]),
                    gamma=st["gamma"], decay_all_params=True)
    res = fit(model, tl, vl, te, loss_fn, evaluate, cfg, device,
              backbone_depth=None if st["frozen"] else ctx.backbone.depth, progress=ctx.progress,
              desc=f"{task}/{ctx.cell.dataset}/{ctx.cell.protocol}")

    # subsets with the selected weights
    slices: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        if task == "parsing":
            cms = parsing_confusions(model, te, test, k, device)
            for name, sel in test.slices.items():
                ids = np.flatnonzero(sel)
                if len(ids):
                    s = scores_from_confusion(sum(cms[i] for i in ids), classes)
                    slices[name] = {"f1_mean": s["f1_mean"], "n": float(len(ids))}
        else:
            preds = predict_landmarks(model, te, test, device)
            for name, sel in test.slices.items():
                s = landmark_scores(preds, test, st, np.asarray(sel, bool))
                if s:
                    slices[name] = s
    metrics = dict(res.metrics)
    for name, s in slices.items():
        metrics[f"{'f1_mean' if task == 'parsing' else 'nme'}/{name}"] = s["f1_mean" if task == "parsing" else "nme"]
    config = {key: v for key, v in st.items() if key not in ("files",)}
    config.update(layers=layers, farl_files=[f"{FARL_REPO}/farl/experiments/{f}" if not f.startswith("datasets")
                                             else f"{FARL_REPO}/farl/{f}" for f in st["files"]],
                  selection="val split" if val is not None else "last epoch (no val split in FaRL's files)")
    return CellResult(metrics=metrics, metrics_last=res.metrics_last, metrics_best_test=res.metrics_best_test,
                      slices=slices, history=res.extra.get("history", []), protocol_used=ctx.cell.protocol,
                      head=DENSE_HEAD, config={"farl": config})


def cell_image_size(cell, profile) -> int:
    """The backbone's input size for a FaRL cell (448 unless overridden)."""
    return int(farl_settings(cell.dataset, cell.protocol, profile)["input_size"])
