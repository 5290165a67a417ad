import numpy as np

from paco_fr.data.template import (
    CANONICAL_5,
    CANONICAL_68,
    IBUG_GROUPS,
    align_face,
    five_from_68,
    similarity_from_points,
    transform_points,
)


def test_canonical_layout():
    assert CANONICAL_68.shape == (68, 2) and CANONICAL_5.shape == (5, 2)
    assert sorted(i for g in IBUG_GROUPS.values() for i in g) == list(range(68))
    re, le = CANONICAL_68[36:42].mean(0), CANONICAL_68[42:48].mean(0)
    assert 0.3 < re[0] < 0.38 and 0.62 < le[0] < 0.7 and 0.38 < re[1] < 0.46
    assert 0.58 < CANONICAL_68[30, 1] < 0.66 and 0.74 < CANONICAL_68[48:60, 1].mean() < 0.82
    assert np.allclose(five_from_68(np.stack([CANONICAL_68] * 3)), CANONICAL_5)


def test_similarity_recovers_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (10, 2))
    a, s, t = 0.4, 1.7, np.array([5.0, -3.0])
    m = np.c_[s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]), t]
    est = similarity_from_points(src, transform_points(src, m))
    assert np.allclose(est, m, atol=1e-8)


def test_align_rendered_face():
    from PIL import Image

    from paco_fr.data.synthface import generate_one, identities_for

    size = 112
    ids = identities_for("test", 40, 0)
    for i in range(0, 40, 5):
        img, _, lm, *_ = generate_one(0, "test", i, int(ids[i]), size)
        # put the face into a bigger, rotated, scaled frame and align it back
        big = Image.fromarray(img).resize((160, 160), Image.BILINEAR).rotate(20, expand=True)
        sc = 160 / size
        p = (lm + 0.5) * sc - 0.5
        c_in = np.array([79.5, 79.5])
        c_out = (np.array(big.size) - 1) / 2
        a = np.deg2rad(20)
        rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        p = (p - c_in) @ rot.T + c_out
        aligned, m = align_face(np.asarray(big), five_from_68(p), size)
        assert aligned.shape == (size, size, 3)
        got = transform_points(five_from_68(p), m)
        target = CANONICAL_5 * size - 0.5
        err = np.linalg.norm(got - target, axis=1).mean()
        assert err < 0.12 * size, err  # poses differ: 5 points agree up to the face's own pose
        # the rotation was removed: landmarks mapped into the crop match the original crop
        back = transform_points(p, m)
        ref = transform_points(lm, similarity_from_points(five_from_68(lm), target))
        assert np.abs(back - ref).max() < 1.0
