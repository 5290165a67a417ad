"""FaRL's settings per data set, file by file (FacePerceiver/FaRL's configuration files: trainers,
augmenters, optimizers, scorers, networks; `FARL_COMMON` / `FARL_DATASETS`), the overrides a
profile may set (`OVERRIDABLE`, recorded in the row) and `farl_settings`, every setting of one cell.
The protocols `farl-frozen` and `farl-refine` are registered by bench_tasks.protocols.farl.protocol."""

from __future__ import annotations

import copy

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
