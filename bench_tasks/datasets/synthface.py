"""SynthFace (embedded, procedural) serving all five tasks; no root needed."""

from __future__ import annotations

import numpy as np
import torch

from bench_tasks.contracts import DatasetSpec, Profile, TaskSplit
from bench_tasks.registry import DATASETS
from paco_fr.data.synthface import ATTRIBUTES, EXPRESSIONS, PARSING_CLASSES, load_synthface
from paco_fr.data.synthface.spec import GENERATOR_VERSION, INTENSITY_SPLIT


class SynthFaceTaskSplit(TaskSplit):
    """One SynthFace split for one task. `.data` is the underlying `SynthFaceSplit`; `.labels` exposes
    identity, expression, attributes, landmarks and every nuisance array (yaw, occluded, ...)."""

    def __init__(self, task: str, split: str, data, meta: dict, slices: dict):
        super().__init__("synthface", split, meta, slices)
        self.task = task
        self.data = data
        self.labels = {"identity": data.identity, "expression": data.expression,
                       "attributes": data.attributes, "landmarks": data.landmarks, **data.nuisance}

    def __len__(self) -> int:
        return len(self.data)

    @property
    def targets(self) -> torch.Tensor:
        """Every target of the split, stacked, without building the images (feature cache)."""
        d = self.data
        if self.task == "attributes":
            return torch.from_numpy(d.attributes.astype(np.float32))
        if self.task == "expression":
            return torch.from_numpy(d.expression.astype(np.int64))
        if self.task == "parsing":
            return torch.from_numpy(d.masks.astype(np.int64))
        if self.task == "landmarks":
            return torch.from_numpy(d.landmarks.astype(np.float32))
        return torch.from_numpy(d.identity.astype(np.int64))

    def __getitem__(self, i: int):
        img = torch.from_numpy(np.ascontiguousarray(self.data.images[i])).permute(2, 0, 1).float() / 255.0
        t = self.task
        if t == "attributes":
            target = torch.from_numpy(self.data.attributes[i].astype(np.float32))
        elif t == "expression":
            target = int(self.data.expression[i])
        elif t == "parsing":
            target = torch.from_numpy(self.data.masks[i].astype(np.int64))
        elif t == "landmarks":
            target = torch.from_numpy(self.data.landmarks[i].astype(np.float32))
        elif t == "recognition":
            target = int(self.data.identity[i])
        else:
            raise KeyError(t)
        return img, target


def synthface_slices(nuisance: dict) -> dict[str, np.ndarray]:
    """Boolean masks of the robustness slices. `intensity:low` / `intensity:high` hold the expressive
    images (not neutral) below / from `INTENSITY_SPLIT` of expression intensity (generator >= 2.0)."""
    yaw, pitch = np.abs(nuisance["yaw"]), np.abs(nuisance["pitch"])
    occ = nuisance["occluded"].astype(bool)
    hard = nuisance["illum_strength"] >= 0.5
    extra = {}
    if "expr_intensity" in nuisance:
        inten = np.asarray(nuisance["expr_intensity"], np.float64)
        extra = {"intensity:low": (inten > 0) & (inten < INTENSITY_SPLIT),
                 "intensity:high": inten >= INTENSITY_SPLIT}
    return {
        "pose:frontal": (yaw < 15) & (pitch < 15),
        "pose:profile": yaw >= 30,
        "occlusion:yes": occ,
        "occlusion:no": ~occ,
        "illumination:hard": hard,
        "illumination:normal": ~hard,
        "blur:yes": nuisance["blur_sigma"] > 0,
        **extra,
    }


@DATASETS.register("synthface")
class SynthFaceDataset(DatasetSpec):
    name = "synthface"
    tasks = ("attributes", "expression", "parsing", "landmarks", "recognition")
    needs_root = False
    layout = "(embedded: generated on first use under $PACO_FR_DATA or ~/.cache/paco_fr/synthface)"
    version = GENERATOR_VERSION  # rows of another generator are stale (runner.version_stale)

    def load(self, task: str, split: str, root: str | None, profile: Profile, image_size: int,
             progress: bool = True) -> TaskSplit:
        if task not in self.tasks:
            raise KeyError(f"synthface does not serve task {task!r}")
        n = {"train": profile.synthface_train, "val": profile.synthface_val,
             "test": profile.synthface_test}.get(split)
        if n is None:
            raise KeyError(f"unknown split {split!r}")
        data = load_synthface(split, n, image_size=image_size, root=root, progress=progress)
        meta: dict = {"image_size": image_size, "identity": data.identity, "expression": data.expression,
                      "nuisance": data.nuisance}
        if task == "attributes":
            meta.update(class_names=list(ATTRIBUTES), attribute_names=list(ATTRIBUTES), num_classes=len(ATTRIBUTES))
        elif task == "expression":
            meta.update(class_names=list(EXPRESSIONS), num_classes=len(EXPRESSIONS))
        elif task == "parsing":
            meta.update(class_names=list(PARSING_CLASSES), num_classes=len(PARSING_CLASSES), ignore_index=255)
        elif task == "landmarks":
            meta.update(num_points=68, num_classes=68 * 2, normalizer="inter_ocular", layout="ibug68")
        else:
            ids = np.unique(data.identity)
            meta.update(num_classes=len(ids), identity_ids=ids)
        return SynthFaceTaskSplit(task, split, data, meta, synthface_slices(data.nuisance))
