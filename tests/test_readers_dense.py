"""Readers of the dense data sets on fixtures written in exactly their formats."""

import numpy as np
import pytest
import torch
from PIL import Image

from bench_tasks.contracts import DatasetLayoutError
from bench_tasks.datasets.aflw19 import load_aflw19
from bench_tasks.datasets.celebamaskhq import CELEBAMASK_CLASSES, load_celebamaskhq
from bench_tasks.datasets.lapa import FIVE_IDX, load_lapa
from bench_tasks.datasets.w300 import load_300w
from bench_tasks.datasets.wflw import load_wflw

RNG = np.random.default_rng(0)


def _img(path, h=48, w=40):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


# ----------------------------------------------------------------------------- LaPa


def _lapa_face(d, name, h=60, w=50):
    _img(d / "images" / f"{name}.jpg", h, w)
    lab = np.zeros((h, w), np.uint8)
    lab[10:50, 10:40] = 1
    lab[20:25, 15:20] = 4
    (d / "labels").mkdir(parents=True, exist_ok=True)
    Image.fromarray(lab).save(d / "labels" / f"{name}.png")
    pts = np.tile([[25.0, 30.0]], (106, 1)) + RNG.normal(0, 1, (106, 2))
    pts[FIVE_IDX] = [[18, 22], [32, 22], [25, 30], [19, 38], [31, 38]]
    (d / "landmarks").mkdir(parents=True, exist_ok=True)
    with open(d / "landmarks" / f"{name}.txt", "w") as f:
        f.write("106\n" + "".join(f"{x:.3f} {y:.3f}\n" for x, y in pts))
    return lab


def test_lapa_reader(tmp_path):
    for split in ("train", "val", "test"):
        for i in range(2):
            _lapa_face(tmp_path / split, f"img{i}")
    tr = load_lapa(tmp_path, "train", 32)
    te = load_lapa(tmp_path, "test", 32)
    assert len(tr) == 2 and len(te) == 2
    img, lab = tr[0]
    assert img.shape == (3, 32, 32) and lab.shape == (32, 32) and lab.dtype == torch.long
    assert 0 <= img.min() and img.max() <= 1
    assert set(lab.unique().tolist()) <= set(range(11)) and (lab == 1).any()
    assert not tr.meta["warp_back"] and te.meta["warp_back"]
    assert te.original_label(0).shape == (60, 50)
    # the eye centres land on the canonical template
    from bench_tasks.tasks._dense import apply_affine
    from paco_fr.data.template import CANONICAL_5

    eyes = apply_affine(np.array([[18, 22], [32, 22]]), te.matrices[0])
    np.testing.assert_allclose(eyes, np.asarray(CANONICAL_5)[:2] * 32 - 0.5, atol=1.5)


def test_lapa_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="expected layout"):
        load_lapa(tmp_path / "nope", "train", 32)
    _lapa_face(tmp_path / "train", "a")
    (tmp_path / "train" / "landmarks" / "a.txt").write_text("106\n1 2\n")
    with pytest.raises(DatasetLayoutError, match="malformed"):
        load_lapa(tmp_path, "train", 32)


# ----------------------------------------------------------------------------- CelebAMask-HQ


def test_celebamaskhq_reader(tmp_path):
    (tmp_path / "CelebA-HQ-img").mkdir()
    with open(tmp_path / "CelebA-HQ-to-CelebA-mapping.txt", "w") as f:
        f.write("idx         orig_idx        orig_file\n")
        for i, orig in enumerate([5, 170000, 190000]):
            f.write(f"{i}          {orig}          {orig + 1:06d}.jpg\n")
    with open(tmp_path / "list_eval_partition.txt", "w") as f:
        f.write("000006.jpg 0\n170001.jpg 1\n190001.jpg 2\n")
    for i in range(3):
        _img(tmp_path / "CelebA-HQ-img" / f"{i}.jpg", 64, 64)  # image at 2x the mask resolution
    anno = tmp_path / "CelebAMask-HQ-mask-anno" / "0"
    anno.mkdir(parents=True)
    skin = np.zeros((32, 32), np.uint8)
    skin[4:28, 4:28] = 255
    nose = np.zeros((32, 32), np.uint8)
    nose[10:20, 10:20] = 255
    hair = np.zeros((32, 32), np.uint8)
    hair[0:12, :] = 255  # overrides skin and nose where they overlap
    for i in range(3):
        Image.fromarray(skin).save(anno / f"{i:05d}_skin.png")
        Image.fromarray(nose).save(anno / f"{i:05d}_nose.png")
        Image.fromarray(hair).save(anno / f"{i:05d}_hair.png")
    tr = load_celebamaskhq(tmp_path, "train", 16)
    va = load_celebamaskhq(tmp_path, "val", 16)
    te = load_celebamaskhq(tmp_path, "test", 16)
    assert (len(tr), len(va), len(te)) == (1, 1, 1)
    assert te.meta["ids"] == [2] and te.meta["classes"] == CELEBAMASK_CLASSES
    lab = te.original_label(0)
    assert lab.shape == (32, 32)
    assert lab[5, 5] == CELEBAMASK_CLASSES.index("hair")  # painted after skin
    assert lab[15, 15] == CELEBAMASK_CLASSES.index("nose")
    assert lab[25, 25] == CELEBAMASK_CLASSES.index("skin")
    assert lab[30, 30] == 0
    img, t = tr[0]
    assert img.shape == (3, 16, 16) and t.shape == (16, 16)
    assert t[2, 8] == 13 and t[12, 12] == 1


def test_celebamaskhq_missing(tmp_path):
    with pytest.raises(DatasetLayoutError, match="CelebA-HQ-img"):
        load_celebamaskhq(tmp_path, "train", 16)


# ----------------------------------------------------------------------------- 300W / WFLW


def _hrnet_rows(k, n, names, scale=0.2, cx=20.0, cy=24.0):
    rows = []
    for i in range(n):
        pts = np.c_[RNG.uniform(8, 32, k), RNG.uniform(8, 40, k)]
        rows.append([names[i % len(names)], f"{scale}", f"{cx}", f"{cy}", *[f"{v:.2f}" for v in pts.reshape(-1)]])
    return rows


def _write_csv(path, k, rows):
    header = ["image_name", "scale", "center_w", "center_h"] + [f"original_{i}_{c}" for i in range(k) for c in "xy"]
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(r) + "\n")


def test_300w_hrnet_csv(tmp_path):
    _img(tmp_path / "images" / "ibug" / "a.jpg")
    _img(tmp_path / "images" / "helen" / "b.jpg")
    names = ["ibug/a.jpg", "helen/b.jpg"]
    _write_csv(tmp_path / "face_landmarks_300w_train.csv", 68, _hrnet_rows(68, 20, names))
    full = _hrnet_rows(68, 5, names)
    _write_csv(tmp_path / "face_landmarks_300w_valid.csv", 68, full)
    _write_csv(tmp_path / "face_landmarks_300w_valid_common.csv", 68, full[:3])
    _write_csv(tmp_path / "face_landmarks_300w_valid_challenge.csv", 68, full[3:])
    tr, va, te = (load_300w(tmp_path, s, 32) for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (19, 1, 5)
    assert te.slices["common"].tolist() == [True] * 3 + [False] * 2
    assert te.slices["challenging"].tolist() == [False] * 3 + [True] * 2
    img, pts = te[0]
    assert img.shape == (3, 32, 32) and pts.shape == (68, 2)
    # box = centre +- 100 * scale (= 20 px) enlarged by 1.25 -> 50 px onto 32 px
    orig = np.array(full[0][4:], dtype=float).reshape(68, 2)
    f = 32 / 50
    np.testing.assert_allclose(pts.numpy(), (orig - [20, 24]) * f + 15.5, atol=1e-4)
    assert te.meta["eyes"] == (36, 45)


def _pts(path, pts):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write("version: 1\nn_points:  68\n{\n" + "".join(f"{x:.3f} {y:.3f}\n" for x, y in pts) + "}\n")


def test_300w_pts_folders(tmp_path):
    for sub, n in (("train/lfpw", 4), ("test/common", 2), ("test/challenging", 1)):
        for i in range(n):
            _img(tmp_path / sub / f"f{i}.png")
            _pts(tmp_path / sub / f"f{i}.pts", np.c_[RNG.uniform(5, 35, 68), RNG.uniform(5, 40, 68)])
    te = load_300w(tmp_path, "test", 32)
    assert len(te) == 3 and te.slices["challenging"].sum() == 1 and te.slices["common"].sum() == 2
    assert len(load_300w(tmp_path, "train", 32)) == 4 - 1  # 5% (at least one) held out as val
    (tmp_path / "test" / "common" / "f0.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    with pytest.raises(DatasetLayoutError):
        load_300w(tmp_path, "test", 32)


def test_300w_missing_root(tmp_path):
    with pytest.raises(DatasetLayoutError, match="300w"):
        load_300w(tmp_path / "x", "train", 32)
    with pytest.raises(DatasetLayoutError, match="neither"):
        load_300w(tmp_path, "train", 32)


def test_wflw_hrnet_csv(tmp_path):
    _img(tmp_path / "images" / "0--Parade" / "a.jpg")
    names = ["0--Parade/a.jpg"]
    _write_csv(tmp_path / "face_landmarks_wflw_train.csv", 98, _hrnet_rows(98, 10, names))
    test = _hrnet_rows(98, 4, names)
    _write_csv(tmp_path / "face_landmarks_wflw_test.csv", 98, test)
    _write_csv(tmp_path / "face_landmarks_wflw_test_largepose.csv", 98, [test[1]])
    _write_csv(tmp_path / "face_landmarks_wflw_test_blur.csv", 98, [test[0], test[3]])
    te = load_wflw(tmp_path, "test", 32)
    assert len(te) == 4 and te.meta["eyes"] == (60, 72) and te.meta["fr_thr"] == 0.1
    assert te.slices["pose"].tolist() == [False, True, False, False]
    assert te.slices["blur"].tolist() == [True, False, False, True]
    assert te[2][1].shape == (98, 2)
    assert len(load_wflw(tmp_path, "train", 32)) + len(load_wflw(tmp_path, "val", 32)) == 10


def test_wflw_original_list(tmp_path):
    _img(tmp_path / "WFLW_images" / "1--Handshaking" / "b.jpg")
    d = tmp_path / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    d.mkdir(parents=True)
    for which, n in (("train", 6), ("test", 3)):
        with open(d / f"list_98pt_rect_attr_{which}.txt", "w") as f:
            for i in range(n):
                pts = np.c_[RNG.uniform(8, 32, 98), RNG.uniform(8, 40, 98)].reshape(-1)
                attrs = [1 if (i + j) % 3 == 0 else 0 for j in range(6)]
                f.write(" ".join(f"{v:.3f}" for v in pts) + " 5 6 35 44 " + " ".join(map(str, attrs))
                        + " 1--Handshaking/b.jpg\n")
    te = load_wflw(tmp_path, "test", 32)
    assert sorted(te.slices) == sorted(["pose", "expression", "illumination", "makeup", "occlusion", "blur"])
    assert te.slices["pose"].tolist() == [True, False, False]  # attr j=0 set when i % 3 == 0
    assert te.slices["expression"].tolist() == [False, False, True]
    img, pts = te[0]
    assert img.shape == (3, 32, 32) and pts.shape == (98, 2)


# ----------------------------------------------------------------------------- AFLW-19


def test_aflw19_mat(tmp_path):
    from scipy.io import savemat

    n = 6
    names = np.empty((n, 1), dtype=object)
    for i in range(n):
        names[i, 0] = np.array([f"3/image{i:05d}.jpg"])
        _img(tmp_path / "data" / "flickr" / "3" / f"image{i:05d}.jpg", 60, 60)
    xs, ys = RNG.uniform(15, 45, (n, 19)), RNG.uniform(15, 45, (n, 19))
    bbox = np.tile([10.0, 50.0, 12.0, 42.0], (n, 1))  # x1 x2 y1 y2: w 40, h 30
    ra = np.array([[3, 1, 6, 2, 5, 4]], dtype=np.float64)  # MATLAB 1-based
    mask = np.ones((n, 19))
    mask[4, 7] = 0  # face index 4 (ra position 5, in test) is not frontal
    savemat(tmp_path / "AFLWinfo_release.mat",
            {"data": np.c_[xs, ys], "bbox": bbox, "ra": ra, "nameList": names, "mask_new": mask})
    te = load_aflw19(tmp_path, "test", 32, num_train=4)
    assert len(te) == 2  # ra[4:] = faces 4 and 3 (0-based)
    assert te.slices["frontal"].tolist() == [False, True]
    assert te.paths[0].endswith("image00004.jpg")
    img, pts = te[0]
    assert pts.shape == (19, 2) and img.shape == (3, 32, 32)
    # boxes in crop pixels keep the aspect: w / h = 40 / 30; side 1.25 * 40 = 50 -> scale 32/50
    b = te.meta["boxes"][0]
    assert (b[2] - b[0]) == pytest.approx(40 * 32 / 50) and (b[3] - b[1]) == pytest.approx(30 * 32 / 50)
    tr = load_aflw19(tmp_path, "train", 32, num_train=4)
    va = load_aflw19(tmp_path, "val", 32, num_train=4)
    assert len(tr) + len(va) == 4 and te.meta["norm"] == "box" and te.meta["auc_thr"] == 0.07


def test_aflw19_missing(tmp_path):
    with pytest.raises(DatasetLayoutError, match="AFLWinfo_release.mat"):
        load_aflw19(tmp_path, "test", 32)
