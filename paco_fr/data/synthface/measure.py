"""Measurements of the generator itself (used by tests/test_synthface2.py and docs/synthface.md).

* `expression_shifts`: how far each expression moves the 68 landmarks from neutral, in pixels.
* `colour_features` / `geometry_features` + `verification_accuracy`: how well identity can be
  verified from colour statistics alone (should be chance) versus from face geometry.
* `render_speed`: images per second of one process.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import geometry as G
from .dataset import generate_arrays, generate_one, identities_for
from .identity import sample_identity, sample_image
from .spec import EXPRESSIONS, GENERATOR_VERSION


def expression_shifts(image_size: int, n_identities: int = 300, seed: int = 0) -> dict[str, float]:
    """Class-mean landmark shift of every expression from neutral, in pixels at `image_size`.

    For each of `n_identities` identities one image's parameters are drawn as the generator does
    (expression and intensity included); the face is put frontal (no pose, scale or shift jitter,
    eyes open) and its 68 landmarks are computed with the drawn expression and with a neutral face
    (same identity, same resting jitter removed). The class-mean displacement of every landmark is
    averaged over the images of each class; the reported number is its largest norm over the 68
    landmarks (the point that moves most, on average), times `image_size`. Neutral gives ~0.
    """
    acc: dict[str, list[np.ndarray]] = {e: [] for e in EXPRESSIONS}
    for k in range(n_identities):
        ident = sample_identity(seed, 900_000 + k)
        img = sample_image(np.random.default_rng([seed, 31337, k]), ident, image_size)
        img.update(yaw=0.0, pitch=0.0, roll=0.0, scale=1.0, shift=np.zeros(2), eyes_closed=False)
        a = G.build(ident, img)["lm"]
        b = G.build(ident, dict(img, deltas={}))["lm"]
        acc[EXPRESSIONS[img["expression"]]].append(a - b)
    out = {}
    for e, v in acc.items():
        if not v:
            raise ValueError(f"no {e!r} image among {n_identities} draws; use more identities")
        m = np.mean(v, 0)
        out[e] = float(np.hypot(m[:, 0], m[:, 1]).max() * image_size)
    return out


def colour_features(images: np.ndarray, bins: int = 8) -> np.ndarray:
    """Per image: per-channel mean and std, and a per-channel `bins`-bin histogram (normalised), of
    the whole image and of its central half (where the face is): colour statistics only, no shape."""
    x = np.asarray(images, np.float32)
    n, h, w, _ = x.shape
    feats = []
    for region in (x, x[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4]):
        r = region.reshape(n, -1, 3)
        feats += [r.mean(1) / 255.0, r.std(1) / 255.0]
        idx = np.minimum((r * (bins / 256.0)).astype(np.int64), bins - 1)
        for c in range(3):
            hist = np.stack([np.bincount(idx[i, :, c], minlength=bins) for i in range(n)]).astype(np.float32)
            feats.append(hist / r.shape[1])
    return np.concatenate(feats, 1)


def geometry_features(landmarks: np.ndarray, points=None) -> np.ndarray:
    """Landmark geometry with pose-free similarity removed: each shape is Procrustes-aligned (scale,
    rotation, translation) to the mean shape, and the mean is subtracted (what is left is the face's
    own proportions + expression + residual out-of-plane pose)."""
    p = np.asarray(landmarks, np.float64)
    if points is not None:
        p = p[:, points]
    p = p - p.mean(1, keepdims=True)
    p = p / np.linalg.norm(p, axis=(1, 2), keepdims=True)
    ref = p.mean(0)
    out = np.empty_like(p)
    for i, s in enumerate(p):
        u, _, vt = np.linalg.svd(s.T @ ref)
        r = u @ vt
        q = s @ r
        out[i] = q * (q * ref).sum() / (q * q).sum()
    mean = out.mean(0)
    return (out - mean).reshape(len(p), -1)


def verification_pairs(identity: np.ndarray, n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n_pairs` same-identity and `n_pairs` different-identity index pairs -> (pairs (2n, 2), same (2n,))."""
    rng = np.random.default_rng(seed)
    identity = np.asarray(identity)
    groups = [np.flatnonzero(identity == u) for u in np.unique(identity)]
    groups = [g for g in groups if len(g) >= 2]
    if len(groups) < 2:
        raise ValueError("verification needs at least two identities with two images each")
    pos = []
    for _ in range(n_pairs):
        g = groups[int(rng.integers(len(groups)))]
        pos.append(rng.choice(g, 2, replace=False))
    neg = []
    while len(neg) < n_pairs:
        i, j = rng.integers(len(identity), size=2)
        if identity[i] != identity[j]:
            neg.append((i, j))
    pairs = np.concatenate([np.asarray(pos), np.asarray(neg)])
    return pairs, np.r_[np.ones(n_pairs, bool), np.zeros(n_pairs, bool)]


def verification_accuracy(features: np.ndarray, pairs: np.ndarray, same: np.ndarray, folds: int = 10) -> float:
    """LFW-style 10-fold accuracy of thresholding the cosine similarity of `features` (the threshold
    chosen on 9 folds, scored on the 10th)."""
    f = np.asarray(features, np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    sim = (f[pairs[:, 0]] * f[pairs[:, 1]]).sum(1)
    order = np.random.default_rng(0).permutation(len(sim))
    accs = []
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        cands = np.unique(sim[train])
        best = max(cands, key=lambda t: ((sim[train] >= t) == same[train]).mean())
        accs.append(((sim[test] >= best) == same[test]).mean())
    return float(np.mean(accs))


def render_speed(image_size: int, n: int = 200, seed: int = 0) -> dict[str, float]:
    """Images per second of `generate_one` in one process (CPU time and wall time)."""
    ids = identities_for("train", n, seed)
    t0, w0 = time.process_time(), time.perf_counter()
    for i in range(n):
        generate_one(seed, "train", i, int(ids[i]), image_size)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    return {"cpu_img_s": n / cpu, "wall_img_s": n / wall}


def linear_probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                          weight_decays=(1e-4, 1e-3, 1e-2, 1e-1), steps: int = 300, seed: int = 0) -> dict:
    """Multinomial logistic regression (torch, full batch, Adam) on standardised raw features: the
    weight decay is chosen on the last 20 % of the training set, then the probe is refit on all of it.
    -> {"accuracy", "majority", "weight_decay"}."""
    # lazy: torch only for the linear probe; the generator stays torch-free
    import torch

    def prep(x):
        return torch.as_tensor(np.asarray(x, np.float32).reshape(len(x), -1))

    xtr, xte = prep(x_train), prep(x_test)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-3
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    ytr, yte = torch.as_tensor(np.asarray(y_train, np.int64)), torch.as_tensor(np.asarray(y_test, np.int64))
    k = int(max(ytr.max(), yte.max())) + 1

    def fit(x, y, wd):
        g = torch.Generator().manual_seed(seed)
        lin = torch.nn.Linear(x.shape[1], k)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 1e-3)
            lin.bias.zero_()
        opt = torch.optim.Adam(lin.parameters(), lr=1e-3)
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(lin(x), y) + wd * lin.weight.pow(2).sum()
            loss.backward()
            opt.step()
        return lin

    cut = int(0.8 * len(xtr))
    scores = {}
    for wd in weight_decays:
        lin = fit(xtr[:cut], ytr[:cut], wd)
        with torch.no_grad():
            scores[wd] = float((lin(xtr[cut:]).argmax(1) == ytr[cut:]).float().mean())
    best = max(scores, key=scores.get)
    lin = fit(xtr, ytr, best)
    with torch.no_grad():
        acc = float((lin(xte).argmax(1) == yte).float().mean())
    majority = float((yte == torch.bincount(ytr, minlength=k).argmax()).float().mean())
    return {"accuracy": acc, "majority": majority, "weight_decay": best}


def main(argv=None) -> int:
    """`python -m paco_fr.data.synthface.measure [--parts shifts,verify,probe,speed]`: the numbers
    quoted in docs/synthface.md."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--parts", default="shifts,verify,probe,speed")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--probe-train", type=int, default=2000)
    ap.add_argument("--probe-test", type=int, default=500)
    ap.add_argument("--verify-n", type=int, default=600)
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    print(f"SynthFace generator {GENERATOR_VERSION}")
    if "shifts" in parts:
        for size in (64, 112):
            s = expression_shifts(size, 700)
            print(f"expression shift from neutral, px at {size}: "
                  + ", ".join(f"{e} {v:.2f}" for e, v in s.items()))
    if "verify" in parts:
        a = generate_arrays("test", args.verify_n, 64, seed=0, workers=args.workers)
        pairs, same = verification_pairs(a["identity"], 1000, seed=1)
        print(f"verification, 64 px, {args.verify_n} test images, 2000 pairs, 10-fold: colour statistics "
              f"{verification_accuracy(colour_features(a['images']), pairs, same):.3f}")
        fr = np.flatnonzero(np.abs(a["nuisance"]["yaw"]) < 12)
        fp, fs = verification_pairs(a["identity"][fr], 1000, seed=2)
        print(f"  landmark geometry, all images {verification_accuracy(geometry_features(a['landmarks']), pairs, same):.3f}"
              f", near-frontal (|yaw| < 12, {len(fr)} images) "
              f"{verification_accuracy(geometry_features(a['landmarks'][fr]), fp, fs):.3f}")
    if "probe" in parts:
        tr = generate_arrays("train", args.probe_train, 64, seed=0, workers=args.workers)
        te = generate_arrays("test", args.probe_test, 64, seed=0, workers=args.workers)
        r = linear_probe_accuracy(tr["images"], tr["expression"], te["images"], te["expression"])
        print(f"expression, linear probe on raw 64 px pixels ({args.probe_train} train / {args.probe_test} test): "
              f"accuracy {r['accuracy']:.3f}, majority class {r['majority']:.3f} (weight decay {r['weight_decay']})")
        lm = linear_probe_accuracy(geometry_features(tr["landmarks"]), tr["expression"],
                                   geometry_features(te["landmarks"]), te["expression"])
        print(f"  reference: linear probe on the true landmarks' geometry: {lm['accuracy']:.3f}")
    if "speed" in parts:
        for size in (64, 112):
            r = render_speed(size, 200)
            print(f"render speed, one process, {size} px: {r['cpu_img_s']:.0f} img/s CPU time, "
                  f"{r['wall_img_s']:.0f} img/s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
