import time

import numpy as np
import pytest
import torch

from paco_fr.data.synthface import (
    ATTRIBUTES,
    EXPRESSIONS,
    GENERATOR_VERSION,
    PARSING_CLASSES,
    SPLITS,
    generate_arrays,
    identities_for,
    load_synthface,
)
from paco_fr.data.synthface import dataset as ds_mod


@pytest.fixture(scope="module")
def batch():
    return generate_arrays("train", 120, 64, seed=0, workers=1)


def test_constants():
    assert len(PARSING_CLASSES) == 11 and PARSING_CLASSES[0] == "background" and PARSING_CLASSES[10] == "hair"
    assert len(EXPRESSIONS) == 7 and len(ATTRIBUTES) >= 12
    for a in ("Smiling", "Eyeglasses", "Bangs", "Mouth_Slightly_Open", "Wearing_Hat", "Heavy_Makeup",
              "Black_Hair", "Blond_Hair", "Male", "No_Beard", "Eyes_Closed", "Pale_Skin"):
        assert a in ATTRIBUTES
    assert set(SPLITS) == {"train", "val", "test", "pretrain", "teacher"}


def test_determinism():
    a = generate_arrays("val", 6, 64, seed=3, workers=1)
    b = generate_arrays("val", 6, 64, seed=3, workers=1)
    c = generate_arrays("val", 6, 64, seed=4, workers=1)
    for k in ("images", "masks", "landmarks", "attributes", "expression"):
        assert np.array_equal(a[k], b[k])
    assert not np.array_equal(a["images"], c["images"])
    # image i does not depend on how many images are generated
    d = generate_arrays("val", 3, 64, seed=3, workers=1)
    assert np.array_equal(d["images"], a["images"][:3])


def test_identities_disjoint_and_grouped():
    sets = [set(identities_for(s, 200, 0)) for s in SPLITS]
    for i in range(len(SPLITS)):
        for j in range(i + 1, len(SPLITS)):
            assert not sets[i] & sets[j]
    ids = identities_for("test", 300, 0)
    _, counts = np.unique(ids, return_counts=True)
    assert counts[:-1].min() >= 8 and counts.max() <= 12


def test_shapes_and_coverage(batch):
    n = 120
    assert batch["images"].shape == (n, 64, 64, 3) and batch["images"].dtype == np.uint8
    assert batch["masks"].shape == (n, 64, 64) and batch["masks"].max() <= 10
    assert batch["landmarks"].shape == (n, 68, 2) and batch["landmarks"].dtype == np.float32
    assert batch["attributes"].shape == (n, len(ATTRIBUTES))
    assert set(np.unique(batch["masks"])) == set(range(11))
    assert set(batch["expression"].tolist()) == set(range(7))
    frac = batch["attributes"].mean(0)
    assert (frac > 0).sum() >= 18  # most attributes occur in 120 images


def test_landmarks_in_regions(batch):
    m, lm, nu = batch["masks"], batch["landmarks"], batch["nuisance"]
    ok = ~nu["occluded"] & (np.abs(nu["yaw"]) < 30)
    hits, total = np.zeros(4), 0
    for i in np.flatnonzero(ok):
        def at(p, i=i):
            x, y = np.clip(np.rint(p).astype(int), 0, 63)
            return m[i, y, x]
        total += 1
        hits[0] += at(lm[i, 36:42].mean(0)) in (5, 3, 1)  # right eye (subject's) / brow / skin
        hits[1] += at(lm[i, 42:48].mean(0)) in (4, 2, 1)
        hits[2] += at(lm[i, 30]) == 6
        win = [m[i, max(0, int(y) - 2):int(y) + 3, max(0, int(x) - 2):int(x) + 3]
               for x, y in np.rint(lm[i, [48, 54]])]
        hits[3] += all(np.isin(w, (7, 8, 9)).any() for w in win)
    assert total > 40
    assert (hits / total > 0.9).all(), hits / total
    # eye centres of open-eyed frontal faces sit on the eye of the right side
    r = [m[i, int(round(lm[i, 36:42, 1].mean())), int(round(lm[i, 36:42, 0].mean()))] for i in np.flatnonzero(ok)]
    assert np.mean(np.isin(r, (5,))) > 0.6
    assert 4 not in r  # never the subject's left eye


def test_glasses_twin_differs():
    from paco_fr.data.synthface.identity import sample_identity, sample_image
    from paco_fr.data.synthface.render import render

    ident = sample_identity(0, 5)
    img = sample_image(np.random.default_rng(1), ident, 64)
    img.update(glasses=False, occluded=False, blur_sigma=0.0, noise_std=0.0)
    a = render(ident, img, 64, np.random.default_rng(2))
    b = render(ident, dict(img, glasses=True), 64, np.random.default_rng(2))
    diff = np.abs(a[0].astype(int) - b[0].astype(int)).sum(-1) > 30
    assert diff.sum() > 30
    eyes = np.isin(a[1], (4, 5, 1))
    assert diff[eyes].sum() > 0.6 * diff.sum() * 0.5
    assert np.array_equal(a[2], b[2])


def test_cache_reuse_and_errors(tmp_path, monkeypatch):
    s = load_synthface("val", 12, image_size=64, seed=0, root=tmp_path, progress=False)
    assert len(s) == 12 and s.images.shape == (12, 64, 64, 3) and len(s.oracle_captions) == 12
    path = tmp_path / f"v{GENERATOR_VERSION}" / "size64-seed0" / "val-12"
    assert (path / "labels.npz").exists() and (path / "images" / "000000.png").exists()
    assert not [p for p in path.parent.iterdir() if ".tmp" in p.name]

    def boom(*a, **k):
        raise AssertionError("regenerated")

    monkeypatch.setattr(ds_mod, "generate_one", boom)
    t = time.time()
    s2 = load_synthface("val", 12, image_size=64, seed=0, root=tmp_path, progress=False)
    assert time.time() - t < 5
    assert np.array_equal(s.images, s2.images) and np.array_equal(s.landmarks, s2.landmarks)
    (path / "masks" / "000003.png").write_bytes(b"not a png")
    with pytest.raises(OSError, match="000003.png"):
        load_synthface("val", 12, image_size=64, seed=0, root=tmp_path, progress=False)
    (path / "images" / "000001.png").unlink()
    with pytest.raises(FileNotFoundError, match="000001.png"):
        ds_mod.read_cache(path)


def test_interrupted_generation_leaves_no_cache(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ds_mod, "generate_one", boom)
    with pytest.raises(KeyboardInterrupt):
        load_synthface("test", 4, image_size=64, root=tmp_path, progress=False)
    parent = tmp_path / f"v{GENERATOR_VERSION}" / "size64-seed0"
    assert not parent.exists() or not list(parent.iterdir())


def test_task_splits(tmp_path):
    from bench_tasks.datasets.synthface import SynthFaceDataset
    from bench_tasks.plan.profiles import PROFILES
    from bench_tasks.registry import DATASETS

    assert DATASETS.get("synthface") is SynthFaceDataset
    prof = PROFILES["smoke"].__class__(**{**PROFILES["smoke"].__dict__, "synthface_val": 10})
    spec = SynthFaceDataset()
    for task, check in {
        "attributes": lambda t: t.dtype == torch.float32 and t.shape == (len(ATTRIBUTES),),
        "expression": lambda t: isinstance(t, int) and 0 <= t < 7,
        "parsing": lambda t: t.dtype == torch.int64 and t.shape == (64, 64),
        "landmarks": lambda t: t.dtype == torch.float32 and t.shape == (68, 2),
        "recognition": lambda t: isinstance(t, int),
    }.items():
        ts = spec.load(task, "val", str(tmp_path), prof, 64)
        assert len(ts) == 10
        x, y = ts[0]
        assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        assert check(y), task
        assert {"pose:frontal", "pose:profile", "occlusion:yes", "occlusion:no", "illumination:hard",
                "illumination:normal", "blur:yes"} <= set(ts.slices)
        assert all(v.shape == (10,) and v.dtype == bool for v in ts.slices.values())
        assert "num_classes" in ts.meta and len(ts.labels["identity"]) == 10
    assert ts.meta["identity"].shape == (10,)
    assert spec.load("landmarks", "val", str(tmp_path), prof, 64).meta["normalizer"] == "inter_ocular"


def test_concurrent_writer_keeps_the_first_finished_cache(tmp_path):
    """Two processes generating the same split: the one finishing second keeps the first one's cache
    (a third process may already be reading it) instead of replacing it under the reader."""
    s = load_synthface("val", 6, image_size=64, seed=0, root=tmp_path, progress=False)
    path = tmp_path / f"v{GENERATOR_VERSION}" / "size64-seed0" / "val-6"
    marker = path / "images" / "000000.png"
    ino = marker.stat().st_ino
    ds_mod._write_cache(path, "val", 6, 64, 0, workers=1, progress=False)  # the late writer
    assert marker.stat().st_ino == ino  # the first cache was not replaced
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # its own copy cleaned up
    assert np.array_equal(load_synthface("val", 6, image_size=64, seed=0, root=tmp_path, progress=False).images,
                          s.images)


def test_concurrent_loaders_generate_a_split_once(tmp_path, monkeypatch):
    """Two loaders of a split not cached yet (pytest-xdist workers, the device study's data stage beside
    a run): one generates it, the other waits on the lock and reads that cache."""
    from concurrent.futures import ThreadPoolExecutor

    calls = []
    real = ds_mod.generate_arrays

    def counted(*a, **k):
        calls.append(1)
        time.sleep(0.5)  # the other loader arrives while this one generates
        return real(*a, **k)

    monkeypatch.setattr(ds_mod, "generate_arrays", counted)
    with ThreadPoolExecutor(2) as ex:  # flock: two open() calls lock each other out, threads too
        got = list(ex.map(lambda _: load_synthface("val", 5, image_size=32, seed=0, root=tmp_path, progress=False,
                                                   workers=1), range(2)))
    assert len(calls) == 1
    assert np.array_equal(got[0].images, got[1].images) and len(got[1]) == 5
