"""CelebA, LFWA, RAF-DB and AffectNet readers on fixtures written in their real formats."""

import numpy as np
import pytest
from PIL import Image

from bench_tasks.contracts import DatasetLayoutError
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.registry import DATASETS

P = PROFILES["smoke"]


def _img(path, w=40, h=48, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full((h, w, 3), value, np.uint8)
    a[: h // 2] = 255 - value
    Image.fromarray(a).save(path)


def _load(name, root, split, size=24, task=None):
    spec = DATASETS.get(name)()
    return spec.load(task or spec.tasks[0], split, str(root), P, size)


def test_celeba(tmp_path):
    names = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Smiling"]
    files = [f"{i:06d}.jpg" for i in range(1, 7)]
    vals = [[1, -1, 1], [-1, -1, -1], [1, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]]
    lines = [str(len(files)), " ".join(names)] + [f"{f} " + " ".join(f"{v:2d}" for v in r) for f, r in zip(files, vals)]
    (tmp_path / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "list_eval_partition.txt").write_text(
        "\n".join(f"{f} {p}" for f, p in zip(files, [0, 0, 0, 1, 2, 2])) + "\n")
    (tmp_path / "list_landmarks_align_celeba.txt").write_text("6\nlefteye_x lefteye_y\n")
    for f in files:
        _img(tmp_path / "img_align_celeba" / f, 178, 218)
    tr, va, te = (_load("celeba", tmp_path, s) for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (3, 1, 2)
    assert tr.meta["attribute_names"] == names
    x, y = tr[0]
    assert x.shape == (3, 24, 24) and 0 <= x.min() and x.max() <= 1
    assert y.tolist() == [1, 0, 1]
    assert te[1][1].tolist() == [0, 0, 1]
    # malformed / missing
    (tmp_path / "list_attr_celeba.txt").write_text("6\na b c\n000001.jpg 1 1\n")
    with pytest.raises(DatasetLayoutError, match="list_attr_celeba"):
        _load("celeba", tmp_path, "train")
    with pytest.raises(DatasetLayoutError, match="img_align_celeba"):
        _load("celeba", tmp_path / "nothing", "train")


def test_lfwa(tmp_path):
    header = "#\tperson\timagenum\tMale\tSmiling"
    rows = ["Aaron Eckhart\t1\t1.5\t-0.2", "Aaron Eckhart\t2\t0.3\t0.9", "Zoe Ball\t1\t-1.1\t2.0"]
    (tmp_path / "lfw_attributes.txt").write_text("# 3\n" + header + "\n" + "\n".join(rows) + "\n")
    for p, n in (("Aaron_Eckhart", 1), ("Aaron_Eckhart", 2), ("Zoe_Ball", 1)):
        _img(tmp_path / "lfw" / p / f"{p}_{n:04d}.jpg", 250, 250)
    (tmp_path / "splits.txt").write_text("Aaron_Eckhart_0001.jpg train\nAaron_Eckhart_0002.jpg val\n"
                                         "Zoe_Ball_0001.jpg test\n")
    tr, va, te = (_load("lfwa", tmp_path, s) for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (1, 1, 1)
    assert tr.meta["attribute_names"] == ["Male", "Smiling"]
    assert tr[0][1].tolist() == [1, 0] and va[0][1].tolist() == [1, 1] and te[0][1].tolist() == [0, 1]
    # without splits.txt: identity-disjoint seeded splits cover every image once
    (tmp_path / "splits.txt").unlink()
    sizes = [len(_load("lfwa", tmp_path, s)) for s in ("train", "val", "test")]
    assert sum(sizes) == 3


def test_rafdb(tmp_path):
    labels = {"train_00001.jpg": 5, "train_00002.jpg": 7, "train_00003.jpg": 4, "train_00004.jpg": 4,
              "test_0001.jpg": 1, "test_0002.jpg": 6}
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel/list_patition_label.txt").write_text("".join(f"{f} {v}\n" for f, v in labels.items()))
    for f in labels:
        _img(tmp_path / "Image/aligned" / f"{f[:-4]}_aligned.jpg", 100, 100)
    tr, va, te = (_load("rafdb", tmp_path, s) for s in ("train", "val", "test"))
    assert len(tr) + len(va) == 4 and len(va) == 1 and len(te) == 2
    # 1 Surprise -> 3, 6 Anger -> 6 in (neutral, happy, sad, surprise, fear, disgust, anger)
    assert [te[i][1] for i in range(2)] == [3, 6]
    assert sorted(tr.targets.tolist() + va.targets.tolist()) == [0, 1, 1, 2]  # 7 Neutral, 4 Happy, 5 Sad
    assert te.meta["class_names"][3] == "surprise"
    # corrupt image: reported with its file name
    (tmp_path / "Image/aligned/test_0001_aligned.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="test_0001_aligned.jpg"):
        te[0]
    (tmp_path / "EmoLabel/list_patition_label.txt").write_text("train_00001.jpg 9\n")
    with pytest.raises(DatasetLayoutError, match="line 1"):
        _load("rafdb", tmp_path, "train")


def test_affectnet(tmp_path):
    head = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
    lm = '"1.0;2.0;3.0;4.0"'
    train = [(f"1/a{i}.jpg", i % 11) for i in range(22)]  # expressions 0..10
    test = [("2/b0.jpg", 1), ("2/b1.jpg", 7), ("2/b2.jpg", 9)]
    for name, rows in (("training.csv", train), ("validation.csv", test)):
        (tmp_path / name).write_text(head + "".join(f"{p},4,6,20,24,{lm},{y},0.1,-0.2\n" for p, y in rows))
        for p, _ in rows:
            _img(tmp_path / "Manually_Annotated_Images" / p, 32, 40)
    tr8, va8, te8 = (_load("affectnet8", tmp_path, s) for s in ("train", "val", "test"))
    assert len(tr8) + len(va8) == 16 and len(va8) == 8  # classes 0..7, two each; >= 1 val per class
    assert te8.targets.tolist() == [1, 7]
    te7 = _load("affectnet7", tmp_path, "test")
    assert te7.targets.tolist() == [1] and len(te7.meta["class_names"]) == 7
    x, y = te7[0]
    assert x.shape == (3, 24, 24) and y == 1
    tr7 = _load("affectnet7", tmp_path, "train")
    assert set(tr7.targets.tolist()) <= set(range(7))
    assert DATASETS.get("affectnet7").folder == "affectnet"


@pytest.mark.parametrize("name", ["celeba", "lfwa", "rafdb", "affectnet7", "affectnet8"])
def test_missing_root_shows_layout(tmp_path, name):
    with pytest.raises(DatasetLayoutError) as e:
        DATASETS.get(name)().load(DATASETS.get(name).tasks[0], "train", None, P, 24)
    assert "expected layout" in str(e.value)
    with pytest.raises(DatasetLayoutError):
        DATASETS.get(name)().load(DATASETS.get(name).tasks[0], "train", str(tmp_path / "x"), P, 24)


