"""FaRL's downstream protocol for face parsing (LaPa, CelebAMask-HQ) and face alignment (300W,
WFLW, AFLW-19), following FaRL's configuration files file by file (FacePerceiver/FaRL,
`farl/experiments/face_parsing/` and `farl/experiments/face_alignment/`: trainers/, augmenters/,
optimizers/, scorers/, networks/; crops from `farl/datasets/*.py` and `prepare.py`).

Protocols (cells): `farl-frozen` = FaRL's `freeze_backbone` optimizer file, `farl-refine` =
`refine_backbone`. The values of every file are in `FARL_COMMON` / `FARL_DATASETS` (`settings`), with
the file each comes from; `docs/farl_protocol.md` has one card per data set (FaRL's setting, ours, and
every remaining difference with its reason).

A row records exactly what ran (`config.farl`): the settings, the overrides applied (profile
`extra["farl_<key>"]`, or the built-in CPU overrides of the `smoke` / `cpu` profiles) and
`farl_exact` (True only when no setting differs from FaRL's files). The report puts a measured
number next to FaRL's "(reported)" one only for rows with `farl_exact` on a real data set.

Pipeline per item (the geometry lives in `bench_tasks.protocols.farl.transforms`):
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

One module per piece: `settings` (FaRL's files per data set, `farl_settings`), `transforms` (the
geometry and augmentations), `splits` and `readers` (FaRL's inputs), `model` (network, losses),
`scoring` (FaRL's scorers), `loop` (`run_farl`: the training loop of one cell), `protocol` (the two
protocol objects, registered in bench_tasks.registry.PROTOCOLS). This package names them all;
importing it registers the protocols.
"""

from __future__ import annotations

from bench_tasks.protocols.farl.loop import cell_image_size, run_farl
from bench_tasks.protocols.farl.model import FarlNet, farl_layers, landmark_loss, parsing_loss
from bench_tasks.protocols.farl.protocol import FarlProtocol
from bench_tasks.protocols.farl.readers import (
    LOADERS,
    WFLW_SUBSETS,
    celebm_farl_label,
    load_300w_farl,
    load_aflw19_farl,
    load_celebm_farl,
    load_farl_splits,
    load_lapa_farl,
    load_wflw_farl,
)
from bench_tasks.protocols.farl.scoring import (
    auc_fr,
    landmark_scores,
    parsing_confusions,
    predict_landmarks,
    unit_distance,
)
from bench_tasks.protocols.farl.settings import (
    CELEBM_FARL_CLASSES,
    CELEBM_FARL_PARTS,
    FARL_COMMON,
    FARL_DATASETS,
    FARL_REPO,
    LAPA_FARL_CLASSES,
    OVERRIDABLE,
    PROTOCOL_NAMES,
    canonical_dataset,
    farl_settings,
    is_farl,
)
from bench_tasks.protocols.farl.splits import FarlLandmarkSplit, FarlParsingSplit

__all__ = ["CELEBM_FARL_CLASSES", "CELEBM_FARL_PARTS", "FARL_COMMON", "FARL_DATASETS", "FARL_REPO", "LAPA_FARL_CLASSES",
           "LOADERS", "OVERRIDABLE", "PROTOCOL_NAMES", "WFLW_SUBSETS", "FarlLandmarkSplit", "FarlNet",
           "FarlParsingSplit", "FarlProtocol", "auc_fr", "canonical_dataset", "celebm_farl_label", "cell_image_size", "farl_layers",
           "farl_settings", "is_farl", "landmark_loss", "landmark_scores", "load_300w_farl", "load_aflw19_farl",
           "load_celebm_farl", "load_farl_splits", "load_lapa_farl", "load_wflw_farl", "parsing_confusions",
           "parsing_loss", "predict_landmarks", "run_farl", "unit_distance"]
