"""SynthFace 2.0 properties: readable expressions (landmark shift in px at 64 and 112 px, visible
appearance change), an intensity variable with slices, identity that cannot be read from colour
statistics but can from geometry, discrete attributes with margins, version-in-path cache."""

import json

import numpy as np
import pytest

from paco_fr.data.synthface import ATTRIBUTES, EXPRESSIONS, GENERATOR_VERSION, generate_arrays, load_synthface
from paco_fr.data.synthface import dataset as ds_mod
from paco_fr.data.synthface import geometry as G
from paco_fr.data.synthface import identity as id_mod
from paco_fr.data.synthface.measure import (
    colour_features,
    expression_shifts,
    geometry_features,
    verification_accuracy,
    verification_pairs,
)
from paco_fr.data.synthface.render import render
from paco_fr.data.synthface.spec import EXPR_INTENSITY_RANGE, INTENSITY_SPLIT

N = 360  # 64 px images of the test split: ~36 identities


@pytest.fixture(scope="module")
def batch():
    return generate_arrays("test", N, 64, seed=0, workers=2)


# ------------------------------------------------------------------------------------ expressions

# bounds on the smallest class-mean shift over the six expressions (measured: 3.2 px / 5.6 px, the
# 1.2 generator gave 0.7 / 1.3 px), and on neutral (resting-face jitter only)
MIN_SHIFT_PX = {64: 3.0, 112: 5.0}


@pytest.mark.parametrize("size", [64, 112])
def test_expression_landmark_shift_px(size):
    shifts = expression_shifts(size, n_identities=350, seed=0)
    expressive = {e: v for e, v in shifts.items() if e != "neutral"}
    assert min(expressive.values()) >= MIN_SHIFT_PX[size], shifts
    assert np.median(list(expressive.values())) >= 1.2 * MIN_SHIFT_PX[size], shifts
    assert shifts["neutral"] < 0.25 * MIN_SHIFT_PX[size], shifts


def test_expression_changes_appearance_at_64px():
    """Same identity, pose, light and background: each expression changes many face pixels clearly
    (creases, teeth, open mouth, brows), not just a sub-pixel landmark move."""
    ident = id_mod.sample_identity(0, 12345)
    base = id_mod.sample_image(np.random.default_rng(7), ident, 64)
    base.update(yaw=0.0, pitch=0.0, roll=0.0, occluded=False, blur_sigma=0.0, noise_std=0.0, eyes_closed=False,
                hat=False, glasses=False, illum_strength=0.0)
    neutral = dict(base, deltas={}, teeth=0, intensity=0.0)
    ref, ref_mask, *_ = render(ident, neutral, 64, np.random.default_rng(3))
    face = ref_mask > 0
    for e, name in enumerate(EXPRESSIONS[1:], start=1):
        img = dict(base, expression=e, intensity=0.75, teeth=int(id_mod.EXPRESSION_DELTAS[name].get("teeth", 0)),
                   deltas={k: 0.75 * v for k, v in id_mod.EXPRESSION_DELTAS[name].items() if k != "teeth"})
        img["deltas"]["mouth_open"] = max(img["deltas"].get("mouth_open", 0.0), 0.0)
        out, *_ = render(ident, img, 64, np.random.default_rng(3))
        changed = (np.abs(out.astype(int) - ref.astype(int)).max(-1) > 40) & face
        assert changed.sum() >= 25, (name, int(changed.sum()))


def test_intensity_variable_and_slices(batch):
    from bench_tasks.datasets.synthface import synthface_slices

    inten, expr = batch["nuisance"]["expr_intensity"], batch["expression"]
    neutral = expr == EXPRESSIONS.index("neutral")
    assert np.all(inten[neutral] == 0)
    lo, hi = EXPR_INTENSITY_RANGE
    assert np.all((inten[~neutral] >= lo) & (inten[~neutral] <= hi))
    sl = synthface_slices(batch["nuisance"])
    low, high = sl["intensity:low"], sl["intensity:high"]
    assert low.any() and high.any() and not (low & high).any()
    assert not (low | high)[neutral].any() and (low | high)[~neutral].all()
    assert np.all(inten[high] >= INTENSITY_SPLIT)
    # the nuisance slices of 1.x are all still there
    assert {"pose:frontal", "pose:profile", "occlusion:yes", "occlusion:no", "illumination:hard",
            "illumination:normal", "blur:yes"} <= set(sl)


# ------------------------------------------------------------------------------------ identity


def test_identity_not_readable_from_colour_but_from_geometry(batch):
    """10-fold verification accuracy (cosine, threshold chosen on 9 folds) on 1000 + 1000 pairs:
    colour statistics alone (per-channel mean / std / 8-bin histograms of the image and of its
    centre) <= 60 %; the 68 landmarks' Procrustes-aligned geometry (near-frontal images) >= 70 %."""
    ids = batch["identity"]
    pairs, same = verification_pairs(ids, 1000, seed=1)
    colour = verification_accuracy(colour_features(batch["images"]), pairs, same)
    assert colour <= 0.60, colour
    frontal = np.flatnonzero(np.abs(batch["nuisance"]["yaw"]) < 12)
    fp, fs = verification_pairs(ids[frontal], 1000, seed=2)
    geom = verification_accuracy(geometry_features(batch["landmarks"][frontal]), fp, fs)
    assert geom >= 0.70, geom


def test_colour_check_detects_identity_colours(monkeypatch):
    """Control: the same colour check, on images whose colours follow the identity (as in 1.x), is
    far above chance - so the <= 60 % above is the generator's doing, not a blind test."""
    orig = ds_mod.sample_image

    def identity_coloured(rng, ident, size):
        img = orig(rng, ident, size)
        img.update(id_mod.sample_colours(np.random.default_rng([99, ident["id"]])))
        return img

    monkeypatch.setattr(ds_mod, "sample_image", identity_coloured)
    ds_mod._IDENT_CACHE.clear()
    b = generate_arrays("val", 200, 64, seed=0, workers=1)
    pairs, same = verification_pairs(b["identity"], 1000, seed=1)
    assert verification_accuracy(colour_features(b["images"]), pairs, same) >= 0.70


def test_colours_vary_within_identity(batch):
    """Hair colour (and with it the attribute) changes between images of one identity."""
    a = {n: batch["attributes"][:, ATTRIBUTES.index(n)] for n in ("Black_Hair", "Blond_Hair", "Brown_Hair")}
    ids = batch["identity"]
    varying = sum(len({tuple(a[n][ids == u]) for n in a}) > 1 or len(set(a["Black_Hair"][ids == u])) > 1
                  for u in np.unique(ids))
    assert varying >= 0.8 * len(np.unique(ids))


# ------------------------------------------------------------------------------------ attributes


def test_attributes_discrete_with_margins():
    """Every label that used to be a threshold on a continuous parameter is now drawn as a class whose
    parameter range keeps a margin around the old threshold; per-image quantities avoid their band."""
    assert len(ATTRIBUTES) == 24
    for k in range(1000):
        ident = id_mod.sample_identity(5, k)
        nose = ident["nose_width"] * ident["nose_length"]
        assert (nose >= 1.3) if ident["big_nose"] else (nose <= 1.1), nose
        assert (ident["lip_thick"] >= 1.3) if ident["big_lips"] else (ident["lip_thick"] <= 1.05)
        assert (ident["brow_thick"] >= 1.45) if ident["bushy_brows"] else (ident["brow_thick"] <= 1.1)
        assert (ident["brow_arch"] >= 0.85) if ident["arched_brows"] else (ident["brow_arch"] <= 0.55)
        assert (ident["jaw_round"] >= 0.55) if ident["oval"] else (ident["jaw_round"] <= 0.15)
        img = id_mod.sample_image(np.random.default_rng([5, k]), ident, 64)
        eff = ident["eye_height"] * (1 + img["deltas"]["eye_open"])
        lo, hi = id_mod.NARROW_EYES_BAND
        assert not (lo <= eff < hi), eff
        pts = G.shape_2d(ident, img)["pts"]
        gap = float(np.mean(pts[65:68, 1] - pts[61:64, 1][::-1]))
        assert gap < 0.004 or gap >= id_mod.OPEN_GAP_MIN, (gap, img["deltas"])
        assert (img["tone"] <= 0.07) if img["pale"] else (img["tone"] >= 0.3)
        attrs = dict(zip(ATTRIBUTES, ds_mod.attributes_of(ident, img, {"mouth_gap": gap})))
        assert attrs["Smiling"] == (EXPRESSIONS[img["expression"]] == "happy")
        assert attrs["Mouth_Slightly_Open"] == (gap >= id_mod.OPEN_GAP_MIN)


def test_every_attribute_occurs(batch):
    frac = batch["attributes"].mean(0)
    rare = {a: f for a, f in zip(ATTRIBUTES, frac) if not 0.02 <= f <= 0.98}
    assert not rare, rare


# ------------------------------------------------------------------------------------ determinism, cache


def test_determinism_v2():
    a = ds_mod.generate_one(0, "val", 17, 10_000_003, 64)
    ds_mod._IDENT_CACHE.clear()
    b = ds_mod.generate_one(0, "val", 17, 10_000_003, 64)
    for x, y in zip(a[:5], b[:5]):
        assert np.array_equal(x, y)
    assert a[5] == b[5] and "expr_intensity" in a[5]


def test_cache_path_has_generator_version(tmp_path):
    assert GENERATOR_VERSION.startswith("2.")
    path = ds_mod.cache_dir(tmp_path, "val", 6, 64, 0)
    assert path == tmp_path / f"v{GENERATOR_VERSION}" / "size64-seed0" / "val-6"
    # an old generator's cache (1.x layout) in the same root is neither read nor touched
    old = tmp_path / "v1" / "size64-seed0" / "val-6"
    old.mkdir(parents=True)
    (old / "meta.json").write_text(json.dumps({"generator_version": "1.2", "num_images": 6}))
    s = load_synthface("val", 6, image_size=64, seed=0, root=tmp_path, progress=False)
    assert s.path == str(path) and s.meta["generator_version"] == GENERATOR_VERSION
    assert json.loads((old / "meta.json").read_text())["generator_version"] == "1.2"
    assert "expr_intensity" in s.nuisance and s.nuisance["expr_intensity"].shape == (6,)
    # a cache in this version's folder written by another (development) version is regenerated
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps(dict(meta, generator_version="2.0-dev")))
    s2 = load_synthface("val", 6, image_size=64, seed=0, root=tmp_path, progress=False)
    assert s2.meta["generator_version"] == GENERATOR_VERSION and np.array_equal(s.images, s2.images)
